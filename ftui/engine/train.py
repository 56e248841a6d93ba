"""The one function the TUI, the CLI and the tests all call to train, and the one that resumes.

``train(experiment, on_event, stop)`` prepares data and model, creates a run
folder, trains, evaluates and checkpoints every epoch (engine/loop.py), and returns a
RunResult. It talks outward only through ``on_event`` and listens only to the
``stop`` event, so it works the same with or without a terminal. It holds no
global state besides torch's RNG, which it seeds.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import cast

from torch import nn

from ..errors import FtuiError, RunError
from . import events as ev
from .checkpoints import load_resume_state, read_checkpoint, resume_epoch
from .device import device_key
from .distributed import Group, check_same_processes, process_group, training_device, world_from_env
from .experiment import RUN_WEIGHTS, Experiment
from .launcher import LAUNCH_ID_ENV
from .loop import EventSink, TrainingLoop, append_error_log
from .runs import (
    BEST,
    ERROR_LOG,
    EXPERIMENT,
    LAST,
    RESUME,
    RESUME_PREVIOUS,
    DeviceLock,
    RunFolder,
    RunLock,
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
    """One run per device unless the caller chose to share it (the TUI asks the person first).

    With several processes, each locks its own GPU (cuda:LOCAL_RANK); on a CPU, which they share, rank 0 locks it.
    """
    if share_device or not (setup.world.main or setup.device.type == "cuda"):
        return None
    lock = DeviceLock(runs_root, device_key(setup.device))
    lock.acquire({"experiment": experiment, "run_dir": "(starting)"})
    return lock


def _prepare_everywhere(
    group: Group, make: Callable[[], Setup], runs_root: Path, share_device: bool, experiment: str
) -> tuple[Setup | None, DeviceLock | None, str | None]:
    """Each process prepares (and locks its device); all learn whether every one of them could.

    A process refused here (no data, a device held by another run) must not leave the others
    waiting at their first collective: the outcome is shared, and all give up together.
    """
    setup = lock = error = None
    try:
        setup = make()
        lock = _lock_device(setup, runs_root, share_device, experiment)
    except FtuiError as exc:
        error = str(exc)
    error = group.agree(error)
    if error is not None and lock is not None:
        lock.release()
        lock = None
    return setup, lock, error


def _new_run_folder(exp: Experiment, runs_root: Path) -> RunFolder:
    folder = RunFolder(create_run_dir(runs_root, exp.name))
    folder.write_experiment(exp.to_dict())
    launch = os.environ.get(LAUNCH_ID_ENV)  # lets the ftui that started torchrun find the run (launcher.py)
    folder.write_status(
        "running", started_at=now_iso(), epochs=exp.epochs, epochs_done=0, **({"launch": launch} if launch else {})
    )
    return folder


def _shared_run_folder(group: Group, exp: Experiment, runs_root: Path) -> tuple[RunFolder | None, str | None]:
    """Rank 0 creates the run folder and every process learns its name (or why there is none)."""
    made: tuple[str | None, str | None] = (None, None)
    if group.world.main:
        try:
            made = (str(_new_run_folder(exp, runs_root).path), None)
        except FtuiError as exc:
            made = (None, str(exc))
        except OSError as exc:
            made = (None, f"Could not create a run folder under {runs_root}: {exc}")
    path, error = cast(tuple[str | None, str | None], group.share(made))
    return (RunFolder(Path(path)) if path else None), error


def _step_forward(group: Group, setup: Setup) -> nn.Module:
    if not group.several:
        return setup.forward
    return group.parallel(setup.model, setup.device, setup.exp.compile)


def train(
    exp: Experiment,
    on_event: EventSink | None = None,
    stop: threading.Event | None = None,
    runs_root: Path | str = "checkpoints",
    share_device: bool = False,
) -> ev.RunResult:
    """Run an experiment to the end (or until ``stop`` is set) and return how it ended.

    Started by torchrun, this is one of the run's processes (engine/distributed.py): only rank 0
    writes the run folder and calls ``on_event``.
    """
    emit = _SafeSink(None)
    try:
        if exp.weights.startswith(RUN_WEIGHTS):  # resolved now, and recorded so in the run's experiment
            exp = dataclasses.replace(exp, weights=resolve_run_weights(exp.weights, Path(runs_root)))
        world = world_from_env()
        emit = _SafeSink(on_event if world.main else None)
        exp = dataclasses.replace(exp, nproc=world.size)  # the run folder says how many processes trained it
        device = training_device(exp.device, world)
    except FtuiError as exc:
        return _failed_early(emit, exc)
    root = Path(runs_root)
    with process_group(world, device) as group:
        setup, lock, error = _prepare_everywhere(group, lambda: prepare(exp, world=world), root, share_device, exp.name)
        folder = None
        if error is None:
            folder, error = _shared_run_folder(group, exp, root)
        if error is not None or setup is None or folder is None:
            if lock is not None:
                lock.release()
            return _failed_early(emit, FtuiError(error or "the run could not start"))
        emit.attach(folder.path)
        if lock is not None:
            lock.update({"experiment": exp.name, "run_dir": str(folder.path)})
        run_lock = RunLock(folder.path)
        if world.main:
            run_lock.acquire()  # a new folder: nobody else has it
        try:
            return _train_loop(setup, folder, emit, stop, lock, group)
        finally:
            run_lock.release()


def _train_loop(setup: Setup, folder: RunFolder, emit, stop, lock, group: Group) -> ev.RunResult:
    return TrainingLoop(
        setup,
        folder,
        emit,
        stop or threading.Event(),
        start_epoch=0,
        best_acc=None,
        lock=lock,
        group=group,
        step_forward=_step_forward(group, setup),
    ).run()


def _check_resumable(folder: RunFolder, exp: Experiment, lock: RunLock) -> None:
    """Refuse what cannot resume; lock is the run folder's, just taken: nobody else trains into it now."""
    status = folder.read_status()
    state, _reason = run_state(status)
    if state == "finished":
        raise RunError(f"{folder.path} already finished all {exp.epochs} epochs; there is nothing to resume.")
    if state == "running" and not lock.existed:  # a folder of an older ftui: only its writer's pid can tell
        raise RunError(f"{folder.path} is still running in process {status['pid']}; stop it before resuming.")
    has_state = folder.file(RESUME).exists() or folder.file(RESUME_PREVIOUS).exists()
    if not folder.file(LAST).exists() and (has_state or folder.file(BEST).exists()):
        raise RunError(
            f"{folder.path}: its last.safetensors is missing (deleted or moved?), and a run continues from it. "
            f"Put it back, or start the run again with: ftui run {exp.name}"
        )
    if not folder.file(LAST).exists() or not has_state:
        raise RunError(
            f"{folder.path} has no completed epoch to resume from (it ended before its first checkpoint). "
            f"Start it again with: ftui run {exp.name}"
        )
    trained = read_checkpoint(folder.file(LAST)).experiment
    differ = sorted(k for k in exp.to_dict() if exp.to_dict()[k] != trained.get(k))
    if differ:
        raise RunError(
            f"{folder.path}: experiment.json differs from the experiment its last checkpoint was trained with "
            f"({', '.join(differ)}); a run continues only as it began. Put experiment.json back as it was, or train "
            "the changed experiment as a new run."
        )


def _resume_state_for(folder: RunFolder) -> tuple[Path, int]:
    """The resume state of the epoch last.safetensors holds, and that epoch.

    The state is written before last.safetensors and the previous one is kept
    until then, so a process killed between the two writes still leaves a
    matching pair.
    """
    epoch = read_checkpoint(folder.file(LAST)).epoch
    for name in (RESUME, RESUME_PREVIOUS):
        path = folder.file(name)
        if path.exists() and resume_epoch(path) == epoch:
            return path, epoch
    raise RunError(
        f"{folder.path}: no optimizer state matches last.safetensors (epoch {epoch + 1}); cannot resume exactly."
    )


def _prepare_resume(folder: RunFolder, exp: Experiment, state: Path, group: Group) -> Setup:
    setup = prepare(exp, from_checkpoint=folder.file(LAST), world=group.world)
    _epoch, rng = load_resume_state(state, setup.optimizer, setup.scheduler)
    restore_rng(setup, group.own_rng(rng))
    return setup


def resume(
    run_dir: Path | str,
    on_event: EventSink | None = None,
    stop: threading.Event | None = None,
    share_device: bool = False,
) -> ev.RunResult:
    """Continue a stopped, failed or interrupted run from its last checkpoint to its planned last epoch.

    A run of N processes resumes on N (each restores its own random-number state).
    """
    folder = RunFolder(Path(run_dir))
    run_lock = RunLock(folder.path)
    try:
        return _resume(folder, run_lock, on_event, stop, share_device)
    finally:
        run_lock.release()


def _resume(
    folder: RunFolder, run_lock: RunLock, on_event: EventSink | None, stop: threading.Event | None, share_device: bool
) -> ev.RunResult:
    emit = _SafeSink(None)
    try:
        world = world_from_env()
        emit = _SafeSink(on_event if world.main else None)
        exp = experiment_from_dict(folder.read_experiment(), where=str(folder.file(EXPERIMENT)))
        if world.main:
            emit.attach(folder.path)  # a run folder: a failing callback is logged there
            if not run_lock.acquire():
                raise RunError(
                    f"{folder.path} is still running: another process trains into it. Stop it before resuming."
                )
        _check_resumable(folder, exp, run_lock)
        check_same_processes(folder.path, exp.nproc, world.size)
        state, epoch = _resume_state_for(folder)
        device = training_device(exp.device, world)
    except FtuiError as exc:
        return _failed_early(emit, exc, folder.path)
    with process_group(world, device) as group:
        setup, lock, error = _prepare_everywhere(
            group, lambda: _prepare_resume(folder, exp, state, group), folder.path.parent, share_device, exp.name
        )
        if error is not None or setup is None:
            return _failed_early(emit, FtuiError(error or "the run could not resume"), folder.path)
        if lock is not None:
            lock.update({"experiment": exp.name, "run_dir": str(folder.path)})
        start = epoch + 1
        warnings: list[str] = []
        reopen_error = None
        try:
            warnings = _reopen(folder, start) if world.main else []
        except OSError as exc:  # a read-only or full file system: said as `ftui run` says it
            reopen_error = (
                f"Could not write to the run folder {folder.path} ({exc.strerror or exc}). "
                f"Make it writable (or free disk space), then resume again: ftui resume {folder.path}"
            )
        reopen_error = group.agree(reopen_error)  # every process stops, not only the one that writes
        if reopen_error is not None:
            if lock is not None:
                lock.release()
            return _failed_early(emit, FtuiError(reopen_error), folder.path)
        return TrainingLoop(
            setup,
            folder,
            emit,
            stop or threading.Event(),
            start_epoch=start,
            best_acc=_best_kept(folder, start) if world.main else None,
            lock=lock,
            warnings=warnings,
            group=group,
            step_forward=_step_forward(group, setup),
        ).run()


def _kept(start: int) -> Callable[[ev.Event], bool]:
    """Events of the epochs before ``start``: the steps of an epoch that never completed are dropped."""

    def kept(e: ev.Event) -> bool:
        return not isinstance(e, ev.Step | ev.EpochEnd | ev.CheckpointSaved) or e.epoch < start

    return kept


def _best_kept(folder: RunFolder, start: int) -> float | None:
    kept = _kept(start)
    return max((e.test_acc for e in folder.read_events() if isinstance(e, ev.EpochEnd) and kept(e)), default=None)


def _reopen(folder: RunFolder, start: int) -> list[str]:
    """Rank 0 makes the run folder ready to go on from epoch ``start``; the warnings to publish."""
    remove_stale_temporaries(folder.path)  # a process killed mid-write leaves its temporary file
    kept = _kept(start)
    dropped = sum(len(e.losses) for e in folder.read_events() if isinstance(e, ev.Step) and not kept(e))
    folder.keep_events(kept)
    folder.write_status("running", resumed_at=now_iso(), reason="")
    if not dropped:
        return []
    return [
        f"Epoch {start + 1} had not completed: its {dropped} steps done before are dropped and it is trained again."
    ]
