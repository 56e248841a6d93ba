"""A run's curves, rebuilt from its events, in bounded memory.

Whoever shows a run (the live screen, a re-opened ftui, a comparison) feeds
the events read from metrics.jsonl into a RunHistory. Step losses are kept as a
BoundedSeries: when it fills up, neighbouring points merge into their mean,
so a run of any length costs the same memory; the full log stays on disk.

A viewer reads metrics.jsonl with a MetricsFollower: a resume (in this
process, another ftui or the CLI) rewrites the file without the steps of an
epoch that never completed, and the follower then reads it again from its
start, so the viewer rebuilds one continuous history.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .events import RECORD_TYPES, Ending, EpochEnd, Event, RunStarted, Step
from .runs import MetricsTail, seconds_since


class MetricsFollower:
    """The events appended to a metrics.jsonl since the last read, through rewrites of the file.

    ``read()`` returns (events, restarted): restarted means the file was
    replaced (a resume rewrote it) and events are all of the new file's,
    from its start; whoever folded the earlier ones must start again.
    """

    def __init__(self, path: Path):
        self.path = path
        self._tail = MetricsTail(path)
        self._identity: tuple[int, int] | None = None  # the file read so far (device, inode)

    def read(self) -> tuple[list[Event], bool]:
        restarted = False
        for _ in range(3):  # replaced while being read: read the new file
            identity = _identity(self.path)
            if identity != self._identity:
                restarted = restarted or self._identity is not None
                self._tail, self._identity = MetricsTail(self.path), identity
            events = self._tail.read()
            if _identity(self.path) == identity:
                break
        return events, restarted


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def training_seconds(status: dict) -> float | None:
    """How long a run has trained, from its status.json: a closed run records it; a running one adds
    the time since it started or last resumed to what its earlier sessions recorded."""
    if status.get("state") != "running":
        return status.get("seconds")
    if not status.get("resumed_at"):  # its first session: nothing recorded before
        return seconds_since(status.get("started_at"))
    since = seconds_since(status["resumed_at"])
    return None if since is None else (status.get("seconds") or 0.0) + since


class BoundedSeries:
    """(x, y) points, at most ``max_points``; older resolution halves as it grows."""

    def __init__(self, max_points: int = 2048):
        self.max_points = max_points
        self.xs: list[float] = []
        self.ys: list[float] = []
        self._bucket = 1  # raw points per stored point
        self._pending: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.xs) + (1 if self._pending else 0)

    def append(self, x: float, y: float) -> None:
        self._pending.append((x, y))
        if len(self._pending) == self._bucket:
            self._flush()

    def points(self) -> tuple[list[float], list[float]]:
        """The stored points plus the partial bucket being filled."""
        if not self._pending:
            return list(self.xs), list(self.ys)
        px, py = _mean(self._pending)
        return self.xs + [px], self.ys + [py]

    def _flush(self) -> None:
        x, y = _mean(self._pending)
        self.xs.append(x)
        self.ys.append(y)
        self._pending = []
        if len(self.xs) >= self.max_points:
            self.xs = [(a + b) / 2 for a, b in zip(self.xs[::2], self.xs[1::2], strict=False)]
            self.ys = [(a + b) / 2 for a, b in zip(self.ys[::2], self.ys[1::2], strict=False)]
            self._bucket *= 2


def _mean(points: list[tuple[float, float]]) -> tuple[float, float]:
    n = len(points)
    return sum(p[0] for p in points) / n, sum(p[1] for p in points) / n


@dataclass
class RunHistory:
    """Everything a viewer shows about one run, folded from its events."""

    smoothing: float = 0.9  # exponential moving average of the step loss
    start: RunStarted | None = None
    loss: BoundedSeries = field(default_factory=BoundedSeries)
    smoothed: BoundedSeries = field(default_factory=BoundedSeries)
    epochs: list[EpochEnd] = field(default_factory=list)
    state: str = "running"
    reason: str = ""
    epoch: int = 0  # 0-based epoch of the latest step
    step: int = -1  # 0-based step of the latest report's last step, within its epoch
    global_step: int = -1
    lr: float | None = None
    images_per_sec: float | None = None
    memory: int | None = None  # the latest report's accelerator memory of the training process
    resumes: list[int] = field(default_factory=list)  # the epoch (0-based) each resume began at
    _ema: float | None = None

    def feed(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, RunStarted):
                self._started(event)
            elif isinstance(event, Step):
                self._steps(event)
            elif isinstance(event, EpochEnd):
                self.epochs.append(event)
            elif isinstance(event, Ending):
                self.state, self.reason = RECORD_TYPES[type(event)], event.reason

    @property
    def steps_per_epoch(self) -> int:
        return self.start.steps_per_epoch if self.start else 0

    @property
    def total_epochs(self) -> int:
        return self.start.epochs if self.start else 0

    @property
    def best_acc(self) -> float | None:
        return max((e.test_acc for e in self.epochs), default=None)

    def _started(self, event: RunStarted) -> None:
        self.start = event
        self.state, self.reason = "running", ""
        # A resumed run re-trains a partial epoch: forget what came after its checkpoint.
        self.epochs = [e for e in self.epochs if e.epoch < event.start_epoch]
        if event.start_epoch:
            self.resumes.append(event.start_epoch)
        # Nothing of this session has trained yet: no throughput, and progress where it begins.
        self.epoch, self.step = event.start_epoch, -1
        self.global_step = event.start_epoch * event.steps_per_epoch - 1
        self.images_per_sec = self.memory = None

    def _steps(self, event: Step) -> None:
        for i, loss in enumerate(event.losses):
            self.loss.append(event.global_step + i, loss)
            self._ema = loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
            self.smoothed.append(event.global_step + i, self._ema)
        self.epoch, self.step, self.global_step = event.epoch, event.last_step, event.last_global_step
        self.lr, self.images_per_sec, self.memory = event.lr, event.images_per_sec, event.memory
