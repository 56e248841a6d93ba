"""The training loop: the one function the TUI, the CLI and the tests all call.

``train(experiment, on_event, stop)`` prepares data and model, creates a run
folder, trains, evaluates and checkpoints every epoch, and returns a
RunResult. It talks outward only through ``on_event`` and listens only to the
``stop`` event, so it works the same with or without a terminal. It holds no
global state besides torch's RNG, which it seeds.

Speed: the data lives on the training device as uint8 and is augmented there
in batched ops; each step's loss is written into a device buffer and read back
only when a report is due (a few times a second), so there is no host sync
per step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FtuiError, RunError
from . import events as ev
from .augment import Augment
from .checkpoints import (
    cpu_state,
    load_checkpoint_model,
    load_resume_state,
    read_checkpoint,
    resume_epoch,
    save_model_checkpoint,
    save_resume_state,
)
from .data import Dataset, load_dataset
from .device import (
    autocast,
    describe_device,
    device_key,
    is_out_of_memory,
    resolve_device,
    tune_for,
    uses_bf16,
    uses_channels_last,
)
from .evaluation import eval_batch_size, evaluate, test_augment
from .experiment import NORMALIZATIONS, Experiment
from .models import LayerUnit, build_model, layer_units
from .params import (
    apply_trainable,
    count_params,
    frozen_batchnorms,
    make_optimizer,
    make_scheduler,
    param_groups,
    set_train_mode,
)
from .runs import (
    BEST,
    ERROR_LOG,
    EXPERIMENT,
    LAST,
    METRICS,
    RESUME,
    RESUME_PREVIOUS,
    DeviceLock,
    MetricsLog,
    RunFolder,
    create_run_dir,
    now_iso,
    remove_stale_temporaries,
    run_state,
)
from .stop import stop_reason
from .validation import experiment_from_dict

REPORT_INTERVAL = 0.25  # seconds between step reports (and host syncs)

EventSink = Callable[[ev.Event], None]


class Diverged(RunError):
    """The training loss stopped being a finite number: the run cannot go on."""


@dataclass
class _Setup:
    """Everything a run needs, built before its folder is created."""

    exp: Experiment
    device: torch.device
    data: Dataset
    model: nn.Module  # the module itself: its state dict is what checkpoints hold
    forward: nn.Module  # what the steps call: the model, or its torch.compile'd wrapper
    units: tuple[LayerUnit, ...]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_augment: Augment
    eval_augment: Augment
    frozen_bn: list[nn.Module]
    generator: torch.Generator
    steps_per_epoch: int


def _steps_per_epoch(exp: Experiment, n_train: int) -> int:
    steps = n_train // exp.batch_size  # the last partial batch is dropped: BatchNorm dislikes tiny batches
    if steps == 0:
        raise FtuiError(
            f"batch_size = {exp.batch_size} is larger than the {n_train} training images of {exp.dataset}. "
            "Lower batch_size."
        )
    return min(steps, exp.max_steps_per_epoch) if exp.max_steps_per_epoch else steps


def _load_data(exp: Experiment, device: torch.device) -> Dataset:
    data = load_dataset(exp.dataset, exp.data_dir, exp.input_size)
    if exp.max_test_images:
        data = dataclasses.replace(
            data,
            test_images=data.test_images[: exp.max_test_images],
            test_labels=data.test_labels[: exp.max_test_images],
        )
    return data.to(device)


def _prepare(exp: Experiment, from_checkpoint: Path | None = None) -> _Setup:
    device = resolve_device(exp.device)
    tune_for(device)
    torch.manual_seed(exp.seed)
    data = _load_data(exp, device)
    if from_checkpoint is None:
        model = build_model(exp, data.num_classes)
    else:
        model = load_checkpoint_model(from_checkpoint)[0]
    units = layer_units(model)
    apply_trainable(model, units, exp.trainable)
    channels_last = uses_channels_last(device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(param_groups(model, units, exp), exp)
    steps = _steps_per_epoch(exp, len(data.train_images))
    mean, std = NORMALIZATIONS[exp.normalize]
    augment = Augment(exp.input_size, mean, std, exp.crop_padding, exp.flip, exp.rotation, channels_last)
    generator = torch.Generator(device=device)
    generator.manual_seed(exp.seed)
    # The compiled wrapper shares the model's parameters; its state dict would prefix every
    # name with "_orig_mod.", so checkpoints are always taken from the model itself.
    # torch.compile of a Module returns an OptimizedModule, itself a Module; its annotation says only "a callable".
    forward = cast(nn.Module, torch.compile(model)) if exp.compile else model
    return _Setup(
        exp,
        device,
        data,
        model,
        forward,
        units,
        optimizer,
        make_scheduler(optimizer, exp, steps),
        augment,
        test_augment(exp, device),
        frozen_batchnorms(model, units, exp),
        generator,
        steps,
    )


def _append_error_log(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


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
            _append_error_log(self.error_log, self._unwritten)
        except OSError:
            pass  # the disk is full or the folder gone: the run's own writes will say so
        self._unwritten = None


def _failed_early(emit: EventSink, exc: FtuiError, run_dir: Path | None = None) -> ev.RunResult:
    emit(ev.Failed(run_dir, str(exc)))
    return ev.RunResult("failed", run_dir, reason=str(exc))


def _lock_device(setup: _Setup, runs_root: Path, share_device: bool, experiment: str) -> DeviceLock | None:
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
        setup = _prepare(exp)
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
    return _Loop(setup, folder, emit, stop or threading.Event(), start_epoch=0, best_acc=None, lock=lock).run()


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


def _restore_rng(setup: _Setup, rng: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and setup.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], setup.device)
    setup.generator.set_state(rng["data"])


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
        setup = _prepare(exp, from_checkpoint=folder.file(LAST))
        epoch, rng = load_resume_state(_resume_state_for(folder), setup.optimizer, setup.scheduler)
        _restore_rng(setup, rng)
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
    return _Loop(
        setup,
        folder,
        emit,
        stop or threading.Event(),
        start_epoch=start,
        best_acc=max(accs, default=None),
        lock=lock,
        warnings=warnings,
    ).run()


class _Loop:
    """One run in progress: the epoch loop, its reports and its checkpoints."""

    def __init__(
        self,
        setup: _Setup,
        folder: RunFolder,
        emit: EventSink,
        stop: threading.Event,
        start_epoch: int,
        best_acc: float | None,
        lock: DeviceLock | None = None,
        warnings: list[str] | None = None,
    ):
        self.s = setup
        self.warnings = list(warnings or [])
        self.lock = lock
        self.folder = folder
        self.emit = emit
        self.stop = stop
        self.start_epoch = start_epoch
        self.best_acc = best_acc
        self.history: list[ev.EpochEnd] = []
        self.epochs_done = start_epoch
        self.metrics = MetricsLog(folder.file(METRICS))
        self.losses = torch.zeros(setup.steps_per_epoch, device=setup.device)
        self.started = time.monotonic()
        # A resumed run's duration includes the time it ran before it was stopped.
        self.prior_seconds = folder.read_status().get("seconds") or 0.0 if start_epoch else 0.0

    # -- the run -----------------------------------------------------------

    def run(self) -> ev.RunResult:
        try:
            self._started()
            for epoch in range(self.start_epoch, self.s.exp.epochs):
                if not self._train_epoch(epoch) or not self._end_epoch(epoch):
                    return self._stopped()
            return self._finished()
        except FtuiError as exc:  # Diverged included
            return self._failed(str(exc))
        except OSError as exc:  # disk full, permissions, a vanished folder: the files already on disk are intact
            return self._failed(
                f"Could not write the run's files in {self.folder.path} ({exc}). The last completed epoch's "
                "checkpoint is intact. Free disk space (or fix the folder), then continue with: "
                f"ftui resume {self.folder.path}"
            )
        except Exception as exc:
            if is_out_of_memory(exc):
                return self._failed(
                    f"Out of memory on {self.s.device} with batch_size = {self.s.exp.batch_size}. "
                    "Lower batch_size (or input_size) and resume or start again."
                )
            self._failed(f"Internal error: {exc!r}. The traceback is in {self.folder.file(ERROR_LOG)}.")
            _append_error_log(self.folder.file(ERROR_LOG), traceback.format_exc())
            raise
        finally:
            try:
                self.metrics.close()
            except OSError:
                pass  # the disk is still full: every record that was flushed is on disk
            if self.lock is not None:
                self.lock.release()

    def _started(self) -> None:
        trainable, total = count_params(self.s.model)
        exp = self.s.exp
        started = ev.RunStarted(
            run_dir=self.folder.path,
            experiment=exp.name,
            device=describe_device(self.s.device, exp.precision),
            trainable_params=trainable,
            total_params=total,
            trainable_units=exp.trainable,
            epochs=exp.epochs,
            start_epoch=self.start_epoch,
            steps_per_epoch=self.s.steps_per_epoch,
            batch_size=exp.batch_size,
            train_images=len(self.s.data.train_images),
            test_images=len(self.s.data.test_images),
            time=now_iso(),
        )
        self._publish(started)
        if exp.precision == "bf16" and not uses_bf16(self.s.device, exp.precision):
            self.warnings.append(
                f'precision = "bf16", but {self.s.device} has no native bf16 kernels (AVX512-BF16 or AMX), '
                "where bf16 is slower than float32: this run trains in float32."
            )
        for message in self.warnings:
            self._publish(ev.RunWarning(message, time=now_iso()))

    def _publish(self, event: ev.Event, sync: bool = False) -> None:
        """To the run folder's log first (the single source of truth), then to the caller."""
        self.metrics.append(event)
        if sync:
            self.metrics.sync()
        self.emit(event)

    # -- one epoch -----------------------------------------------------------

    def _train_epoch(self, epoch: int) -> bool:
        s, batch = self.s, self.s.exp.batch_size
        set_train_mode(s.model, s.frozen_bn)
        order = torch.randperm(len(s.data.train_images), generator=s.generator, device=s.device)
        self._begin_reports(epoch)
        for step in range(s.steps_per_epoch):
            if self.stop.is_set():
                return False
            idx = order[step * batch : (step + 1) * batch]
            x = s.train_augment.train(s.data.train_images[idx], s.generator)
            with autocast(s.device, s.exp.precision):
                loss = F.cross_entropy(s.forward(x), s.data.train_labels[idx], label_smoothing=s.exp.label_smoothing)
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            s.optimizer.step()
            s.scheduler.step()
            self.losses[step] = loss.detach()
            if time.monotonic() >= self.next_report:
                self._report(epoch, step)
        self._report(epoch, s.steps_per_epoch - 1)
        self.train_seconds = time.monotonic() - self.epoch_started
        return True

    def _begin_reports(self, epoch: int) -> None:
        self.epoch_started = self.last_report_time = time.monotonic()
        self.next_report = self.epoch_started + REPORT_INTERVAL
        self.reported = 0
        self.epoch_losses: list[float] = []

    def _report(self, epoch: int, step: int) -> None:
        first = self.reported
        if step < first:
            return
        values = self.losses[first : step + 1].tolist()  # the loop's only host sync
        bad = next((v for v in values if not math.isfinite(v)), None)
        if bad is not None:
            raise Diverged(
                f"The training loss became {bad} at epoch {epoch + 1}, step {first + values.index(bad) + 1}. "
                f"Lower the learning rate (lr = {self.s.exp.lr:g}) and start again; "
                "checkpoints from earlier epochs are kept."
            )
        now = time.monotonic()
        ips = len(values) * self.s.exp.batch_size / max(now - self.last_report_time, 1e-9)
        lr = self.s.optimizer.param_groups[0]["lr"]
        self._publish(ev.Step(epoch, first, epoch * self.s.steps_per_epoch + first, tuple(values), lr, ips))
        self.epoch_losses.extend(values)
        self.reported, self.last_report_time, self.next_report = step + 1, now, now + REPORT_INTERVAL

    def _end_epoch(self, epoch: int) -> bool:
        s = self.s
        result = evaluate(
            s.forward,
            s.data.test_images,
            s.data.test_labels,
            s.eval_augment,
            eval_batch_size(s.exp),
            s.exp.precision,
            self.stop,
        )
        if result is None:
            return False
        images = s.steps_per_epoch * s.exp.batch_size
        end = ev.EpochEnd(
            epoch=epoch,
            train_loss=sum(self.epoch_losses) / len(self.epoch_losses),
            test_loss=result.loss,
            test_acc=result.accuracy,
            lr=s.optimizer.param_groups[0]["lr"],
            seconds=time.monotonic() - self.epoch_started,
            images_per_sec=images / max(self.train_seconds, 1e-9),
        )
        self._publish(end, sync=True)
        self.history.append(end)
        self._checkpoint(epoch, end)
        return True

    def _checkpoint(self, epoch: int, end: ev.EpochEnd) -> None:
        s = self.s
        rng = {"torch": torch.get_rng_state(), "data": s.generator.get_state()}
        if s.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(s.device)
        # Resume state first, keeping the previous one: whenever the process dies, the state of
        # the epoch last.safetensors holds is on disk (see _resume_state_for).
        if self.folder.file(RESUME).exists():
            os.replace(self.folder.file(RESUME), self.folder.file(RESUME_PREVIOUS))
        save_resume_state(self.folder.file(RESUME), s.optimizer, s.scheduler, rng, epoch)
        kinds = ["last"]
        if self.best_acc is None or end.test_acc > self.best_acc:
            self.best_acc = end.test_acc
            kinds.append("best")
        tensors = cpu_state(s.model)  # one device-to-host copy serves both files
        for kind in kinds:
            path = self.folder.file(LAST if kind == "last" else BEST)
            save_model_checkpoint(
                path,
                tensors,
                kind=kind,
                epoch=epoch,
                experiment=s.exp,
                metrics=ev.to_record(end),
                classes=s.data.classes,
            )
            self._publish(ev.CheckpointSaved(path, kind, epoch, end.test_acc))
        self.epochs_done = epoch + 1
        self.folder.write_status("running", epochs_done=self.epochs_done, best_acc=self.best_acc, last_acc=end.test_acc)

    # -- endings -------------------------------------------------------------

    def _close(self, ending: ev.Ending) -> ev.RunResult:
        """Log the ending, close status.json, tell the caller; what is on disk stays true if a write fails."""
        state, reason = ev.RECORD_TYPES[type(ending)], ending.reason
        seconds = round(self.prior_seconds + time.monotonic() - self.started, 1)
        try:
            self.metrics.append(ending)
        except OSError:
            pass  # the status file below is what viewers trust
        try:
            self.folder.write_status(
                state,
                ended_at=ending.time,
                reason=reason,
                epochs_done=self.epochs_done,
                best_acc=self.best_acc,
                seconds=seconds,
            )
        except OSError:
            pass  # still "running" with this pid: once the process ends it reads as interrupted, which is true
        self.emit(ending)
        final = self.history[-1].test_acc if self.history else None
        return ev.RunResult(state, self.folder.path, self.best_acc, final, self.epochs_done, reason, self.history)

    def _finished(self) -> ev.RunResult:
        final = self.history[-1].test_acc if self.history else self.best_acc
        seconds = time.monotonic() - self.started
        return self._close(ev.Finished(self.folder.path, self.best_acc, final, seconds, self.epochs_done, now_iso()))

    def _stopped(self) -> ev.RunResult:
        reason = stop_reason(self.stop, self.epochs_done, self.s.exp.epochs)
        last = self.folder.file(LAST)
        return self._close(
            ev.Stopped(self.folder.path, self.epochs_done, last if last.exists() else None, reason, now_iso())
        )

    def _failed(self, reason: str) -> ev.RunResult:
        return self._close(ev.Failed(self.folder.path, reason, self.epochs_done, now_iso()))
