"""What a run tells the outside world, as plain data.

The training function calls ``on_event(event)`` with these and nothing else,
so the TUI, the CLI and the tests consume the same stream. Events are emitted
at most a few times a second (steps are batched), and the callback must return
quickly: it runs on the training thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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


@dataclass(frozen=True)
class Step:
    epoch: int  # 0-based
    step: int  # 0-based index of the last step in this report, within the epoch
    global_step: int  # 0-based index of the last step in this report, over the run
    losses: tuple[float, ...]  # every step's training loss since the previous report
    lr: float  # learning rate of the first trainable unit (others keep their ratio)
    images_per_sec: float  # training throughput since the previous report


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
    run_dir: Path
    best_acc: float
    final_acc: float
    seconds: float


@dataclass(frozen=True)
class Stopped:
    run_dir: Path
    epochs_done: int
    last_checkpoint: Path | None


@dataclass(frozen=True)
class Failed:
    run_dir: Path | None  # None when the run failed before its folder existed
    reason: str


@dataclass(frozen=True)
class RunWarning:
    message: str


Event = RunStarted | Step | EpochEnd | CheckpointSaved | Finished | Stopped | Failed | RunWarning


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
