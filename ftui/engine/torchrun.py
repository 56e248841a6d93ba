"""torchrun as ftui starts it: torch's own launcher, its arguments unchanged, without its tracebacks.

``python -m ftui.engine.torchrun ARGS`` runs torch.distributed.run's main with ARGS, exactly what
the ``torchrun`` script runs. torchrun ends a run it was signalled to stop, or one whose worker
died, by raising: a traceback on the person's terminal. Here those endings become an exit status
(128+N for signal N, 1 for a failed worker), and what failed is written, one line a process, to
the file FTUI_LAUNCH_REPORT names, for the ftui that started it (launcher.py).

If that ftui goes away (FTUI_LAUNCHER_PID; killed, its terminal lost), torchrun is sent SIGTERM:
the run stops cleanly and no worker is left training for nobody.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .launcher import PARENT_ENV, POLL_SECONDS, REPORT_ENV


def _follow_parent() -> None:
    parent = os.environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        # A process whose parent ends is adopted by another: its parent id changes.
        while os.getppid() == int(parent):
            time.sleep(POLL_SECONDS * 5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ftui-parent-watch", daemon=True).start()


def describe_failures(failures: dict) -> str:
    """One line a failed process, the first to fail first: "process 1 (pid 4242) was killed by SIGKILL"."""
    lines = []
    for rank, failure in sorted(failures.items(), key=lambda item: item[1].timestamp):
        if failure.exitcode < 0:
            how = f"was killed by {failure.signal_name()}"
        else:
            how = f"exited with status {failure.exitcode}"
        lines.append(f"process {rank} (pid {failure.pid}) {how}")
    return "\n".join(lines)


def _report(text: str) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    # torchrun logs each signal it passes on and each worker that failed: ftui says both itself (the
    # run folder's reason; the launcher prints the failures below). Its agent's loggers read LOGLEVEL
    # when they are made (at import); the others take their level from the package's logger.
    os.environ.setdefault("LOGLEVEL", "CRITICAL")
    _follow_parent()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    logging.getLogger("torch.distributed.elastic").setLevel(os.environ["LOGLEVEL"])

    try:
        torchrun(argv if argv is not None else sys.argv[1:])
    except SignalException as exc:  # it stopped the workers with the same signal, and waited for them
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        _report(describe_failures(exc.failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
