"""What a run tells the outside world, as plain data, and how it is kept in metrics.jsonl.

The training function calls ``on_event(event)`` with these and nothing else,
so the TUI, the CLI and the tests consume the same stream. Events are emitted
at most a few times a second (steps are batched), and the callback must return
quickly: it runs on the training thread.

Each event is also one line of the run folder's metrics.jsonl, written by
``to_record`` and read back by ``from_record``: a viewer of the folder alone
(another ftui, a run that ended long ago) gets the same typed events the
callback got. One dataclass is the one definition of each; the line's "type"
names it (RECORD_TYPES).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    run_dir: Path
    experiment: str
    device: str
    trainable_params: int
    total_params: int
    trainable_units: tuple[str, ...]
    epochs: int
    start_epoch: int  # > 0 when resuming
    steps_per_epoch: int
    batch_size: int
    train_images: int
    test_images: int
    time: str = ""  # ISO 8601 (runs.now_iso) when the process started or resumed the run


@dataclass(frozen=True)
class Step:
    """The steps since the previous report.

    ``step`` and ``global_step`` are those of the *first* step in ``losses``:
    loss i belongs to step ``step + i``. (Every metrics.jsonl written so far
    counts that way, so old run folders read unchanged; the last step is
    ``last_step``.)
    """

    epoch: int  # 0-based
    step: int  # 0-based index of the first step in this report, within the epoch
    global_step: int  # 0-based index of the first step in this report, over the run
    losses: tuple[float, ...]  # every step's training loss since the previous report
    lr: float  # learning rate of the first trainable unit (others keep their ratio)
    images_per_sec: float  # training throughput since the previous report
    memory: int | None = None  # bytes of accelerator memory the training process holds (None on a CPU)

    @property
    def last_step(self) -> int:
        return self.step + len(self.losses) - 1

    @property
    def last_global_step(self) -> int:
        return self.global_step + len(self.losses) - 1


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 0-based
    train_loss: float
    test_loss: float
    test_acc: float  # percent
    lr: float
    seconds: float  # wall time of this epoch, evaluation included
    images_per_sec: float


@dataclass(frozen=True)
class CheckpointSaved:
    path: Path
    kind: str  # "last" or "best"
    epoch: int
    test_acc: float


@dataclass(frozen=True)
class Finished:
    run_dir: Path | None
    best_acc: float | None
    final_acc: float | None
    seconds: float | None  # this process's share of the run; status.json holds the whole
    epochs_done: int = 0
    time: str = ""

    @property
    def reason(self) -> str:
        return ""  # like every ending, but a run that finished needs no explanation


@dataclass(frozen=True)
class Stopped:
    run_dir: Path | None
    epochs_done: int
    last_checkpoint: Path | None
    reason: str = ""  # who asked, and after how many epochs
    time: str = ""


@dataclass(frozen=True)
class Failed:
    run_dir: Path | None  # None when the run failed before its folder existed
    reason: str
    epochs_done: int = 0
    time: str = ""


@dataclass(frozen=True)
class RunWarning:
    """Something the run decided for the person that they did not ask for."""

    message: str
    time: str = ""


Event = RunStarted | Step | EpochEnd | CheckpointSaved | Finished | Stopped | Failed | RunWarning
Ending = Finished | Stopped | Failed

# The "type" of each event's line in metrics.jsonl. These names are on disk in every run folder: never rename one.
RECORD_TYPES: dict[type, str] = {
    RunStarted: "start",
    Step: "steps",
    EpochEnd: "epoch",
    CheckpointSaved: "checkpoint",
    Finished: "finished",
    Stopped: "stopped",
    Failed: "failed",
    RunWarning: "warning",
}
_BY_TYPE = {name: cls for cls, name in RECORD_TYPES.items()}


def to_record(event: Event) -> dict[str, Any]:
    """The event as one JSON-ready object: {"type": ..., field: value, ...}."""
    record: dict[str, Any] = {"type": RECORD_TYPES[type(event)]}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        record[f.name] = value
    return record


def from_record(record: object) -> Event | None:
    """The event a metrics.jsonl line holds; None for a line that is not one (another type, not an object).

    A field the line lacks reads as empty (0, "", (), None): hand-written
    folders and older ftui versions leave some out. A value of the wrong kind
    raises ValueError (or TypeError).
    """
    if not isinstance(record, dict):
        return None
    kind = record.get("type")
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    return cls(**{name: convert(record.get(name)) for name, convert in _converters(cls).items()})


@functools.cache
def _converters(cls: type) -> dict[str, typing.Callable[[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: _converter(hints[f.name]) for f in dataclasses.fields(cls)}


def _converter(hint: Any) -> typing.Callable[[Any], Any]:
    """From a JSON value (or None when missing) to the field's type."""
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    if typing.get_origin(base) is tuple:
        inner = typing.get_args(base)[0]
        return lambda v: tuple(inner(x) for x in v) if v is not None else (None if optional else ())
    # bool is an int to Python: a JSON true where a number belongs is a wrong value, not 1.
    if base in (int, float):

        def number(v: Any) -> Any:
            if v is None:
                return None if optional else base(0)
            if isinstance(v, bool) or not isinstance(v, int | float) or (base is int and v != int(v)):
                raise ValueError(f"expected {base.__name__}, got {v!r}")
            return base(v)

        return number
    return lambda v: base(v) if v is not None else (None if optional else base())


@dataclass
class RunResult:
    """What ``train`` returns: how the run ended and where it lives."""

    status: str  # "finished", "stopped" or "failed"
    run_dir: Path | None
    best_acc: float | None = None
    final_acc: float | None = None
    epochs_done: int = 0
    reason: str = ""
    history: list[EpochEnd] = field(default_factory=list)
