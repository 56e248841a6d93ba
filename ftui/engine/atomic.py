"""One way to replace a file so that no reader, crash or full disk ever leaves half of it.

Everything ftui writes over an existing name (status, metrics rewrites, checkpoints, the
catalog, exported results) goes through ``atomic_write``: the new content goes to a unique
temporary file beside the target, is fsynced, optionally checked, and renamed over it.
Temporaries are named ``.<name>.<random>.tmp`` so that ``remove_stale_temporaries`` can find
what a killed process left behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _default_mode() -> int:
    # What open() would have given a new file: mkstemp's 0600 would hide run folders from a team.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_DEFAULT_MODE = _default_mode()  # read once: os.umask is process-wide and not thread-safe


def atomic_write(
    path: Path,
    write: Callable[[Path], None],
    *,
    mode: int | None = None,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Call write(tmp) on a temporary file beside path, fsync it, check(tmp) if given, then rename it to path.

    mode: the permission bits of the result (default: as a newly created file). If write or
    check raises, path is untouched and the temporary file is removed.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _DEFAULT_MODE if mode is None else mode)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(
    path: Path,
    text: str,
    *,
    newline: str | None = None,
    mode: int | None = None,
    check: Callable[[Path], None] | None = None,
) -> None:
    """atomic_write for text, in UTF-8."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8", newline=newline)

    atomic_write(path, write, mode=mode, check=check)
