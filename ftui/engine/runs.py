"""The run folder: the single source of truth for one run.

    checkpoints/<experiment>-<YYYYmmdd-HHMMSS>/
        experiment.json     the resolved experiment
        status.json         running | finished | stopped | failed, with reason and times
        metrics.jsonl       one JSON object per line, appended and flushed as it happens
        last.safetensors    model after the latest completed epoch
        best.safetensors    model with the best test accuracy so far
        resume.safetensors  optimizer, scheduler and RNG state for the latest epoch
        resume.prev.safetensors  the same for the epoch before (a crash between writes needs it)

Anything that shows a run (the CLI, the TUI, a re-opened ftui) reads these.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError
from .atomic import atomic_write_text

EXPERIMENT = "experiment.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
LAST = "last.safetensors"
BEST = "best.safetensors"
RESUME = "resume.safetensors"
RESUME_PREVIOUS = "resume.prev.safetensors"  # the epoch before, until last.safetensors catches up


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Temporary files a killed process left behind (never under a real name): safe to delete."""
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


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

    def read_metrics(self) -> list[dict]:
        """Every complete line of metrics.jsonl; a torn last line (crash mid-write) is skipped."""
        path = self.file(METRICS)
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def keep_metrics(self, keep) -> None:
        """Rewrite metrics.jsonl with only the records ``keep`` accepts (resume drops a partial epoch)."""
        lines = [json.dumps(r) for r in self.read_metrics() if keep(r)]
        atomic_write_text(self.file(METRICS), "".join(line + "\n" for line in lines))

    def _read_json(self, name: str) -> dict:
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise RunError(f"{self.path} is not an ftui run folder: {name} is missing.") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(f"{path} could not be read ({exc}).") from exc


class MetricsLog:
    """Appends one JSON object per line and flushes each, so a crash loses at most one line."""

    def __init__(self, path: Path):
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the run)

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def process_alive(status: dict) -> bool:
    """Is the process that wrote this status still running (on this machine)?"""
    if status.get("host") != socket.gethostname() or status.get("pid") is None:
        return False
    if status["pid"] == os.getpid():
        return True
    try:
        os.kill(int(status["pid"]), 0)
    except (OSError, ValueError):
        return False
    return True


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
    state = status.get("state", "?")
    reason = status.get("reason", "")
    if state == "running" and not process_alive(status):
        state, reason = "interrupted", "its process ended without closing the run (killed or crashed); resume it"
    return RunSummary(
        path=path,
        experiment=folder.read_experiment().get("name", path.name),
        state=state,
        reason=reason,
        best_acc=status.get("best_acc"),
        epochs_done=int(status.get("epochs_done", 0)),
        epochs=int(status.get("epochs", 0)),
        seconds=status.get("seconds"),
        started_at=status.get("started_at", ""),
    )


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

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records


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
        """Say who holds the device (shown to whoever is refused)."""
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
