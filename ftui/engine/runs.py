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
