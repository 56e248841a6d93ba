"""The run folder: the single source of truth for one run.

    checkpoints/<experiment>-<YYYYmmdd-HHMMSS>/
        experiment.json     the resolved experiment
        status.json         running | finished | stopped | failed, with reason and times
        metrics.jsonl       one JSON object per line, appended and flushed as it happens
        last.safetensors    model after the latest completed epoch
        best.safetensors    model with the best test accuracy so far
        resume.safetensors  optimizer, scheduler and RNG state matching last.safetensors

Anything that shows a run (the CLI, the TUI, a re-opened ftui) reads these.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError

EXPERIMENT = "experiment.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
LAST = "last.safetensors"
BEST = "best.safetensors"
RESUME = "resume.safetensors"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        self._file = open(path, "a", encoding="utf-8")

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
