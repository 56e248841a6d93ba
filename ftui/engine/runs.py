"""The run folder: the single source of truth for one run.

    checkpoints/<experiment>-<YYYYmmdd-HHMMSS>/
        experiment.json     the resolved experiment
        status.json         running | finished | stopped | failed, with reason and times
        metrics.jsonl       one JSON object per line, appended and flushed as it happens
        last.safetensors    model after the latest completed epoch
        best.safetensors    model with the best test accuracy so far
        resume.safetensors  optimizer, scheduler and RNG state for the latest epoch
        resume.prev.safetensors  the same for the epoch before (a crash between writes needs it)
        error.log           only if something went wrong that the person cannot act on: tracebacks

Anything that shows a run (the CLI, the TUI, a re-opened ftui) reads these.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import RunError, WeightsError
from .atomic import atomic_write_text
from .events import Event, from_record, to_record
from .experiment import RUN_WEIGHTS

EXPERIMENT = "experiment.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
LAST = "last.safetensors"
BEST = "best.safetensors"
RESUME = "resume.safetensors"
RESUME_PREVIOUS = "resume.prev.safetensors"  # the epoch before, until last.safetensors catches up
ERROR_LOG = "error.log"


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Temporary files a killed process left behind (never under a real name): safe to delete."""
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # what every time in a run folder is written as: 2026-01-01T10:00:00+0000


def now_iso() -> str:
    return time.strftime(ISO_FORMAT)


def parse_iso(stamp: str | None) -> float | None:
    """The POSIX time of a stamp now_iso wrote; None for anything else (missing, empty, another format)."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.strptime(stamp, ISO_FORMAT).timestamp()
    except ValueError:
        return None


def seconds_since(stamp: str | None) -> float | None:
    """Seconds from a now_iso stamp to now; None when the stamp cannot be read."""
    then = parse_iso(stamp)
    return None if then is None else time.time() - then


def create_run_dir(root: Path, experiment: str) -> Path:
    """A fresh folder; mkdir without exist_ok makes two processes never share one."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = root / (f"{experiment}-{stamp}" if n == 1 else f"{experiment}-{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"Could not create a run folder under {root}.")


@dataclass
class RunFolder:
    path: Path

    def file(self, name: str) -> Path:
        return self.path / name

    def write_experiment(self, experiment: dict) -> None:
        atomic_write_text(self.file(EXPERIMENT), json.dumps(experiment, indent=2) + "\n")

    def read_experiment(self) -> dict:
        return self._read_json(EXPERIMENT)

    def write_status(self, state: str, **fields) -> None:
        status = self.read_status() if self.file(STATUS).exists() else {}
        status.update(fields, state=state, updated_at=now_iso(), pid=os.getpid(), host=socket.gethostname())
        atomic_write_text(self.file(STATUS), json.dumps(status, indent=2) + "\n")

    def read_status(self) -> dict:
        return self._read_json(STATUS)

    def read_events(self) -> list[Event]:
        """Every event in metrics.jsonl; a torn last line (crash mid-write) and unknown lines are skipped."""
        return [event for _record, event in self._records() if event is not None]

    def keep_events(self, keep: Callable[[Event], bool]) -> None:
        """Rewrite metrics.jsonl with only the events ``keep`` accepts (resume drops a partial epoch).

        Kept lines are written back as they were read, lines of a type this
        ftui does not know included.
        """
        kept = [record for record, event in self._records() if event is None or keep(event)]
        atomic_write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in kept))

    def _records(self) -> list[tuple[dict, Event | None]]:
        path = self.file(METRICS)
        if not path.exists():
            return []
        return [read for line in path.read_bytes().splitlines() if (read := _decode(line)) is not None]

    def _read_json(self, name: str) -> dict:
        path = self.file(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise RunError(f"{self.path} is not an ftui run folder: {name} is missing.") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunError(f"{path} could not be read ({exc}).") from exc
        if not isinstance(data, dict):  # edited or damaged: every reader expects a table of fields
            raise RunError(f"{path} does not hold a table of fields (it was edited or damaged).")
        return data


class MetricsLog:
    """Appends one JSON object per line and flushes each, so a crash loses at most one line."""

    def __init__(self, path: Path):
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the run)

    def append(self, event: Event) -> None:
        self.write(to_record(event))

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _decode(line: bytes) -> tuple[dict, Event | None] | None:
    """One line of metrics.jsonl: (its object, its event or None if of an unknown type); None if unreadable."""
    try:
        record = json.loads(line)
        return (record, from_record(record)) if isinstance(record, dict) else None
    except (ValueError, TypeError):  # torn, not JSON (UnicodeDecodeError is a ValueError), or a wrong value
        return None


def process_alive(status: dict) -> bool:
    """Is the process that wrote this status still running (on this machine)?"""
    if status.get("host") != socket.gethostname() or status.get("pid") is None:
        return False
    if status["pid"] == os.getpid():
        return True
    try:
        os.kill(int(status["pid"]), 0)
    except (OSError, ValueError, TypeError, OverflowError):  # a hand-edited pid: no such process of ours
        return False
    return True


INTERRUPTED = "interrupted"
STATES = ("running", "finished", "stopped", "failed", INTERRUPTED)
INTERRUPTED_REASON = "its process ended without closing the run (killed or crashed); resume it"


def run_state(status: dict, folder: Path | None = None) -> tuple[str, str]:
    """(state, reason) of a status.json: "running" only while a process still trains into the folder.

    A run whose process died without closing it (killed, crashed, the machine
    went down) still says "running" on disk; it is "interrupted", and resumable.
    With the run folder given, its lock says whether a process holds it (RunLock);
    without it, or for a folder of an older ftui that has no lock, the writer's pid.
    """
    state, reason = status.get("state", "?"), status.get("reason", "")
    state = state if state in STATES else "?"  # an edited or foreign file: no state a screen would trust
    reason = reason if isinstance(reason, str) else ""
    held = folder_locked(folder) if folder is not None else None
    alive = held if held is not None else process_alive(status)
    if state == "running" and not alive:
        return INTERRUPTED, INTERRUPTED_REASON
    return state, reason


@dataclass(frozen=True)
class RunSummary:
    """One line about a run, read from its folder."""

    path: Path
    experiment: str
    state: str  # running, finished, stopped, failed, or interrupted (said running, but its process is gone)
    reason: str
    best_acc: float | None
    epochs_done: int
    epochs: int
    seconds: float | None
    started_at: str

    @property
    def name(self) -> str:
        return self.path.name


def summarize_run(path: Path) -> RunSummary:
    folder = RunFolder(path)
    status = folder.read_status()
    state, reason = run_state(status, path)
    name = folder.read_experiment().get("name")
    return RunSummary(
        path=path,
        experiment=name if isinstance(name, str) else path.name,
        state=state,
        reason=reason,
        best_acc=number_or_none(status.get("best_acc")),
        epochs_done=int(number_or_none(status.get("epochs_done")) or 0),
        epochs=int(number_or_none(status.get("epochs")) or 0),
        seconds=number_or_none(status.get("seconds")),
        started_at=_text(status.get("started_at")),
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def number_or_none(value: object) -> float | None:
    """A number read from a status file, or None for anything else (an edited file must not stop a screen)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return value


def list_runs(root: Path) -> list[RunSummary]:
    """Every readable run folder under root, newest first; unreadable folders are skipped."""
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        if path.is_dir() and (path / STATUS).exists():
            try:
                runs.append(summarize_run(path))
            except RunError:
                continue
    return sorted(runs, key=lambda r: (r.started_at, r.name), reverse=True)


class MetricsTail:
    """Reads the records appended to metrics.jsonl since the last call.

    A line still being written (no newline yet) is kept for the next call, so a
    reader never sees half a record, whichever process writes the file.
    """

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[Event]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        return [read[1] for line in lines if (read := _decode(line)) is not None and read[1] is not None]


class DeviceLock:
    """One run per device at a time, across processes: an flock on a file in the runs folder.

    The kernel drops the lock when its process ends, however it ends (kill -9
    included), so a crashed run never leaves the device locked.
    """

    def __init__(self, root: Path, device: str):
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f".device-{re.sub(r'[^A-Za-z0-9_-]', '_', device)}.lock"
        self.device = device
        self._fd: int | None = None

    def acquire(self, holder: dict) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = self._holder(fd)
            os.close(fd)
            raise RunError(
                f"{self.device} is in use by another ftui run: {other.get('experiment', '?')} "
                f"(process {other.get('pid', '?')}, {other.get('run_dir', '?')}). Wait for it to end or stop it; "
                "to run both at once anyway, share the device (ftui run --share-device)."
            ) from None
        self._fd = fd
        self.update(holder)

    def update(self, holder: dict) -> None:
        """Say who holds the device (shown to whoever is refused); only while holding it."""
        if self._fd is None:
            raise RuntimeError("DeviceLock.update before acquire")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps({**holder, "pid": os.getpid()}).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @staticmethod
    def _holder(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, json.JSONDecodeError):
            return {}


RUN_LOCK = ".run.lock"


class RunLock:
    """The run folder's own lock, held by the process that trains into it (rank 0) for the life of the run.

    A pid alone cannot say a run is alive: after a reboot another process may have its number, and two
    resumes started together both see a dead writer. The kernel's lock can: it is dropped when its
    process ends, however it ends.
    """

    ATTEMPTS = 40  # 2 s: a viewer's probe (folder_locked) holds the lock for microseconds

    def __init__(self, folder: Path):
        self.path = folder / RUN_LOCK
        self.existed = self.path.exists()  # a folder of an older ftui has none: its pid must still be asked
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(self.ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.05)
                continue
            self._fd = fd
            return True
        os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def folder_locked(folder: Path) -> bool | None:
    """Whether a process holds the run folder's lock; None for a folder that has no lock file."""
    try:
        fd = os.open(folder / RUN_LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False


def resolve_run_weights(weights: str, root: Path) -> str:
    """weights = "run:NAME" as the path of the best checkpoint of NAME's latest finished run under root."""
    name = weights[len(RUN_WEIGHTS) :]
    runs = [r for r in list_runs(root) if r.experiment == name]
    finished = [r for r in runs if r.state == "finished" and (r.path / BEST).is_file()]
    if finished:
        return str((finished[0].path / BEST).absolute())
    latest = (
        f" Its latest run, {runs[0].path}, is {runs[0].state}; continue it with: ftui resume {runs[0].path}"
        if runs
        else ""
    )
    raise WeightsError(
        f'weights = "{weights}": experiment {name} has no finished run in {root} to start from yet. '
        f"Train it first: ftui run {name}.{latest}"
    )
