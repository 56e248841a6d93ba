"""A run's curves, rebuilt from its events, in bounded memory.

Whoever shows a run (the live screen, a re-opened ftui, a comparison) feeds
the events read from metrics.jsonl into a RunHistory. Step losses are kept as a
BoundedSeries: when it fills up, neighbouring points merge into their mean,
so a run of any length costs the same memory; the full log stays on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .events import RECORD_TYPES, Ending, EpochEnd, Event, RunStarted, Step


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

    def _steps(self, event: Step) -> None:
        for i, loss in enumerate(event.losses):
            self.loss.append(event.global_step + i, loss)
            self._ema = loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
            self.smoothed.append(event.global_step + i, self._ema)
        self.epoch, self.step, self.global_step = event.epoch, event.last_step, event.last_global_step
        self.lr, self.images_per_sec = event.lr, event.images_per_sec
