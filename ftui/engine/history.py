"""A run's curves, rebuilt from its metrics records, in bounded memory.

Whoever shows a run (the live screen, a re-opened ftui, a comparison) feeds
the records of metrics.jsonl into a RunHistory. Step losses are kept as a
BoundedSeries: when it fills up, neighbouring points merge into their mean,
so a run of any length costs the same memory; the full log stays on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """Everything a viewer shows about one run, folded from its records."""

    smoothing: float = 0.9  # exponential moving average of the step loss
    start: dict = field(default_factory=dict)
    loss: BoundedSeries = field(default_factory=BoundedSeries)
    smoothed: BoundedSeries = field(default_factory=BoundedSeries)
    epochs: list[dict] = field(default_factory=list)
    state: str = "running"
    reason: str = ""
    epoch: int = 0  # 0-based epoch of the latest step
    step: int = -1  # 0-based step of the latest report within its epoch
    global_step: int = -1
    lr: float | None = None
    images_per_sec: float | None = None
    _ema: float | None = None

    def feed(self, records: list[dict]) -> None:
        for record in records:
            handler = getattr(self, f"_on_{record.get('type')}", None)
            if handler:
                handler(record)

    @property
    def steps_per_epoch(self) -> int:
        return int(self.start.get("steps_per_epoch", 0))

    @property
    def total_epochs(self) -> int:
        return int(self.start.get("epochs", 0))

    @property
    def best_acc(self) -> float | None:
        return max((e["test_acc"] for e in self.epochs), default=None)

    def _on_start(self, record: dict) -> None:
        self.start = record
        self.state, self.reason = "running", ""
        # A resumed run re-trains a partial epoch: forget what came after its checkpoint.
        first = record.get("start_epoch", 0)
        self.epochs = [e for e in self.epochs if e["epoch"] < first]

    def _on_steps(self, record: dict) -> None:
        first = record["global_step"]
        for i, loss in enumerate(record["losses"]):
            self.loss.append(first + i, loss)
            self._ema = loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
            self.smoothed.append(first + i, self._ema)
        count = len(record["losses"])
        self.epoch, self.step = record["epoch"], record["step"] + count - 1
        self.global_step = first + count - 1
        self.lr, self.images_per_sec = record.get("lr"), record.get("images_per_sec")

    def _on_epoch(self, record: dict) -> None:
        self.epochs.append(record)

    def _end(self, record: dict) -> None:
        self.state, self.reason = record["type"], record.get("reason", "")

    _on_finished = _on_stopped = _on_failed = _end
