"""The one function the TUI, the CLI and the tests all call to train, and the one that resumes.

``train(experiment, on_event, stop)`` prepares data and model, creates a run
folder, trains, evaluates and checkpoints every epoch (engine/loop.py), and returns a
RunResult. It talks outward only through ``on_event`` and listens only to the
``stop`` event, so it works the same with or without a terminal. It holds no
global state besides torch's RNG, which it seeds.
"""

from __future__ import annotations

import dataclasses
import threading
import traceback
from pathlib import Path

from ..errors import FtuiError, RunError
from . import events as ev
from .checkpoints import load_resume_state, read_checkpoint, resume_epoch
from .device import device_key
from .experiment import RUN_WEIGHTS, Experiment
from .loop import EventSink, TrainingLoop, append_error_log
from .runs import (
    ERROR_LOG,
    EXPERIMENT,
    LAST,
    RESUME,
    RESUME_PREVIOUS,
    DeviceLock,
    RunFolder,
    create_run_dir,
    now_iso,
    remove_stale_temporaries,
    resolve_run_weights,
    run_state,
)
from .setup import Setup, prepare, restore_rng
from .validation import experiment_from_dict


class _SafeSink:
    """The caller's on_event, which must never take the run down with it (say, the UI is gone).

    Its first failure is written to the run's error.log, with its traceback, as
    soon as the run has a folder; later ones are not: a callback that fails on
    every step would otherwise fill the disk.
    """

    def __init__(self, on_event: EventSink | None):
        self.on_event = on_event
        self.failed = False
        self.error_log: Path | None = None
        self._unwritten: str | None = None

    def __call__(self, event: ev.Event) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            if not self.failed:
                self.failed = True
                self._unwritten = (
                    f"{now_iso()} the on_event callback failed on {type(event).__name__}; training went on "
                    "without it (later failures of the callback are not logged):\n" + traceback.format_exc()
                )
                self._write()

    def attach(self, run_dir: Path) -> None:
        """The run has its folder now: its error log is where a failure goes."""
        self.error_log = run_dir / ERROR_LOG
        self._write()

    def _write(self) -> None:
        if self._unwritten is None or self.error_log is None:
            return
        try:
            append_error_log(self.error_log, self._unwritten)
        except OSError:
            pass  # the disk is full or the folder gone: the run's own writes will say so
        self._unwritten = None


def _failed_early(emit: EventSink, exc: FtuiError, run_dir: Path | None = None) -> ev.RunResult:
    emit(ev.Failed(run_dir, str(exc)))
    return ev.RunResult("failed", run_dir, reason=str(exc))


def _lock_device(setup: Setup, runs_root: Path, share_device: bool, experiment: str) -> DeviceLock | None:
    """One run per device unless the caller chose to share it (the TUI asks the person first)."""
    if share_device:
        return None
    lock = DeviceLock(runs_root, device_key(setup.device))
    lock.acquire({"experiment": experiment, "run_dir": "(starting)"})
    return lock


def train(
    exp: Experiment,
    on_event: EventSink | None = None,
    stop: threading.Event | None = None,
    runs_root: Path | str = "checkpoints",
    share_device: bool = False,
) -> ev.RunResult:
    """Run an experiment to the end (or until ``stop`` is set) and return how it ended."""
    emit = _SafeSink(on_event)
    lock = None
    try:
        if exp.weights.startswith(RUN_WEIGHTS):  # resolved now, and recorded so in the run's experiment
            exp = dataclasses.replace(exp, weights=resolve_run_weights(exp.weights, Path(runs_root)))
        setup = prepare(exp)
        lock = _lock_device(setup, Path(runs_root), share_device, exp.name)
        folder = RunFolder(create_run_dir(Path(runs_root), exp.name))
        folder.write_experiment(exp.to_dict())
        folder.write_status("running", started_at=now_iso(), epochs=exp.epochs, epochs_done=0)
    except (FtuiError, OSError) as exc:
        if lock is not None:
            lock.release()
        if isinstance(exc, OSError):
            exc = FtuiError(f"Could not create a run folder under {runs_root}: {exc}")
        return _failed_early(emit, exc)
    emit.attach(folder.path)
    if lock is not None:
        lock.update({"experiment": exp.name, "run_dir": str(folder.path)})
    return TrainingLoop(setup, folder, emit, stop or threading.Event(), start_epoch=0, best_acc=None, lock=lock).run()


def _check_resumable(folder: RunFolder, exp: Experiment) -> None:
    status = folder.read_status()
    state, _reason = run_state(status)
    if state == "finished":
        raise RunError(f"{folder.path} already finished all {exp.epochs} epochs; there is nothing to resume.")
    if state == "running":
        raise RunError(f"{folder.path} is still running in process {status['pid']}; stop it before resuming.")
    if not folder.file(LAST).exists() or not (folder.file(RESUME).exists() or folder.file(RESUME_PREVIOUS).exists()):
        raise RunError(
            f"{folder.path} has no completed epoch to resume from (it ended before its first checkpoint). "
            f"Start it again with: ftui run {exp.name}"
        )


def _resume_state_for(folder: RunFolder) -> Path:
    """The resume state of the epoch last.safetensors holds.

    The state is written before last.safetensors and the previous one is kept
    until then, so a process killed between the two writes still leaves a
    matching pair.
    """
    epoch = read_checkpoint(folder.file(LAST)).epoch
    for name in (RESUME, RESUME_PREVIOUS):
        path = folder.file(name)
        if path.exists() and resume_epoch(path) == epoch:
            return path
    raise RunError(
        f"{folder.path}: no optimizer state matches last.safetensors (epoch {epoch + 1}); cannot resume exactly."
    )


def resume(
    run_dir: Path | str,
    on_event: EventSink | None = None,
    stop: threading.Event | None = None,
    share_device: bool = False,
) -> ev.RunResult:
    """Continue a stopped, failed or interrupted run from its last checkpoint to its planned last epoch."""
    emit = _SafeSink(on_event)
    folder = RunFolder(Path(run_dir))
    lock = None
    try:
        exp = experiment_from_dict(folder.read_experiment(), where=str(folder.file(EXPERIMENT)))
        emit.attach(folder.path)  # a run folder: a failing callback is logged there
        _check_resumable(folder, exp)
        setup = prepare(exp, from_checkpoint=folder.file(LAST))
        epoch, rng = load_resume_state(_resume_state_for(folder), setup.optimizer, setup.scheduler)
        restore_rng(setup, rng)
        lock = _lock_device(setup, folder.path.parent, share_device, exp.name)
    except FtuiError as exc:
        return _failed_early(emit, exc, folder.path)
    if lock is not None:
        lock.update({"experiment": exp.name, "run_dir": str(folder.path)})
    remove_stale_temporaries(folder.path)  # a process killed mid-write leaves its temporary file
    start = epoch + 1
    # Steps of an epoch that never completed are dropped: it is trained again from its start.
    events = folder.read_events()

    def kept(e: ev.Event) -> bool:
        return not isinstance(e, ev.Step | ev.EpochEnd | ev.CheckpointSaved) or e.epoch < start

    dropped = sum(len(e.losses) for e in events if isinstance(e, ev.Step) and not kept(e))
    folder.keep_events(kept)
    accs = [e.test_acc for e in events if isinstance(e, ev.EpochEnd) and kept(e)]
    folder.write_status("running", resumed_at=now_iso(), reason="")
    warnings = (
        [f"Epoch {start + 1} had not completed: its {dropped} steps done before are dropped and it is trained again."]
        if dropped
        else []
    )
    return TrainingLoop(
        setup,
        folder,
        emit,
        stop or threading.Event(),
        start_epoch=start,
        best_acc=max(accs, default=None),
        lock=lock,
        warnings=warnings,
    ).run()
