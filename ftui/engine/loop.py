"""The epoch loop of one run in progress: steps, reports, evaluation, checkpoints and how the run ends.

Speed: the data lives on the training device as uint8 and is augmented there in batched ops; each
step's loss is written into a device buffer and read back only when a report is due (a few times a
second), so there is no host sync per step.

Several processes (engine/distributed.py): every process runs this loop on its slice of each global
batch (forward, backward through DistributedDataParallel, step, its share of the test set) and
takes each report's decisions together with the others; only rank 0 writes the run folder
(metrics.jsonl, status.json, checkpoints) and tells the caller. A single process is a group of one.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import FtuiError, RunError
from . import events as ev
from .checkpoints import checkpoint_state, save_model_checkpoint, save_resume_state
from .device import autocast, describe_device, is_out_of_memory, memory_in_use, uses_bf16
from .distributed import Group, PeerLost, Verdict, is_peer_failure, peer_lost
from .evaluation import eval_batch_size, evaluate
from .experiment import UnitMode
from .params import count_params, set_train_mode
from .runs import (
    BEST,
    ERROR_LOG,
    LAST,
    METRICS,
    RESUME,
    RESUME_PREVIOUS,
    DeviceLock,
    MetricsLog,
    RunFolder,
    now_iso,
    number_or_none,
)
from .setup import Setup
from .stop import stop_reason

REPORT_INTERVAL = 0.25  # seconds between step reports (and host syncs)

EventSink = Callable[[ev.Event], None]


class Diverged(RunError):
    """The training loss stopped being a finite number: the run cannot go on."""


def append_error_log(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


class OutOfMemory(RunError):
    """A step needed more memory than the device has (on every process that ran out, at the same step)."""


class TrainingLoop:
    """One run in progress: the epoch loop, its reports and its checkpoints."""

    def __init__(
        self,
        setup: Setup,
        folder: RunFolder,
        emit: EventSink,
        stop: threading.Event,
        start_epoch: int,
        best_acc: float | None,
        lock: DeviceLock | None = None,
        warnings: list[str] | None = None,
        group: Group | None = None,
        step_forward: torch.nn.Module | None = None,
    ):
        self.s = setup
        self.group = group or Group(setup.world, "")
        self.main = setup.world.main
        # What steps call: the model, or its DistributedDataParallel wrapper (evaluation uses setup.forward).
        self.step_forward = step_forward or setup.forward
        self.warnings = list(warnings or [])
        self.lock = lock
        self.folder = folder
        self.emit = emit
        self.stop = stop
        self.start_epoch = start_epoch
        self.best_acc = best_acc
        self.history: list[ev.EpochEnd] = []
        self.epochs_done = start_epoch
        self.metrics = MetricsLog(folder.file(METRICS)) if self.main else None
        self.losses = torch.zeros(setup.steps_per_epoch, device=setup.device)
        self.started = time.monotonic()
        # A resumed run's duration includes the time it ran before it was stopped.
        # The training time before a resume; an edited status file's "seconds" that is not a number counts none.
        self.prior_seconds = (
            (number_or_none(folder.read_status().get("seconds")) or 0.0) if start_epoch and self.main else 0.0
        )

    # -- the run -----------------------------------------------------------

    def run(self) -> ev.RunResult:
        try:
            self._started()
            for epoch in range(self.start_epoch, self.s.exp.epochs):
                if not self._train_epoch(epoch) or not self._end_epoch(epoch):
                    return self._stopped()
            return self._finished()
        except PeerLost as exc:
            return self._failed(self._with_resume_hint(str(exc)))
        except FtuiError as exc:  # Diverged and OutOfMemory included
            return self._failed(str(exc))
        except OSError as exc:  # disk full, permissions, a vanished folder: the files already on disk are intact
            return self._failed(
                f"Could not write the run's files in {self.folder.path} ({exc}). The last completed epoch's "
                "checkpoint is intact. Free disk space (or fix the folder), then continue with: "
                f"ftui resume {self.folder.path}"
            )
        except Exception as exc:
            if is_out_of_memory(exc):
                return self._failed(self._out_of_memory())
            if self.group.several and is_peer_failure(exc):  # raised inside DDP's own all-reduce
                return self._failed(self._with_resume_hint(str(peer_lost(exc, self.s.world))))
            self._failed(f"Internal error: {exc!r}. The traceback is in {self.folder.file(ERROR_LOG)}.")
            if self.main:
                append_error_log(self.folder.file(ERROR_LOG), traceback.format_exc())
            raise
        finally:
            try:
                if self.metrics is not None:
                    self.metrics.close()
            except OSError:
                pass  # the disk is still full: every record that was flushed is on disk
            if self.lock is not None:
                self.lock.release()

    def _with_resume_hint(self, reason: str) -> str:
        kept = f"epoch {self.epochs_done}" if self.epochs_done else "nothing yet"
        return (
            f"{reason} The run folder keeps its last completed epoch ({kept}); continue with: "
            f"ftui resume {self.folder.path}"
        )

    def _out_of_memory(self) -> str:
        exp, world = self.s.exp, self.s.world
        each = f" ({self.s.process_batch} per process)" if world.several else ""
        return (
            f"Out of memory on {self.s.device} with batch_size = {exp.batch_size}{each}. "
            "Lower batch_size (or input_size) and resume or start again."
        )

    def _started(self) -> None:
        trainable, total = count_params(self.s.model)
        exp, world = self.s.exp, self.s.world
        device = describe_device(self.s.device, exp.precision)
        if world.several:
            device += f", {world.size} processes ({self.group.backend})"
        started = ev.RunStarted(
            run_dir=self.folder.path,
            experiment=exp.name,
            device=device,
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
        unused = [u for u in exp.unit_lr if exp.mode_of(u) is UnitMode.FROZEN]
        if unused:
            verb = "it is" if len(unused) == 1 else "they are"
            self.warnings.append(
                f"unit_lr sets a learning rate for {', '.join(unused)}, but {verb} frozen in this run: "
                "the rate is not used."
            )
        for message in self.warnings:
            self._publish(ev.RunWarning(message, time=now_iso()))

    def _publish(self, event: ev.Event, sync: bool = False) -> None:
        """To the run folder's log first (the single source of truth), then to the caller: rank 0 only."""
        if self.metrics is None:
            return
        self.metrics.append(event)
        if sync:
            self.metrics.sync()
        self.emit(event)

    # -- one epoch -----------------------------------------------------------

    def _train_epoch(self, epoch: int) -> bool:
        """Train one epoch; False when the run is to stop (decided at a report, by every process together)."""
        s, batch, world = self.s, self.s.process_batch, self.s.world
        set_train_mode(s.model, s.frozen_bn)
        order = self.group.epoch_order(len(s.data.train_images), s.exp.seed, epoch, s.device)
        self._begin_reports(epoch)
        for step in range(s.steps_per_epoch):
            if not self.group.several and self.stop.is_set():  # alone, a process need not wait for a report
                return False
            idx = order[step * batch : (step + 1) * batch]
            try:
                x = s.train_augment.train(s.data.train_images[idx], s.generator, share=(world.rank, world.size))
                with autocast(s.device, s.exp.precision):
                    loss = F.cross_entropy(
                        self.step_forward(x), s.data.train_labels[idx], label_smoothing=s.exp.label_smoothing
                    )
                s.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                s.optimizer.step()
            except Exception as exc:
                if not (self.group.several and is_out_of_memory(exc)):
                    raise
                # Out of memory is decided together: the others ran out at this step too (same model, same
                # batch) and are at this report; a process alone in it ends by the collective's timeout.
                self._report(epoch, step, out_of_memory=True)  # raises OutOfMemory on every process
                raise
            s.scheduler.step()
            self.losses[step] = loss.detach()
            if self._report_due(step) and not self._report(epoch, step):
                return False
        if not self._report(epoch, s.steps_per_epoch - 1):
            return False
        self.train_seconds = time.monotonic() - self.epoch_started
        return True

    def _begin_reports(self, epoch: int) -> None:
        self.epoch_started = self.last_report_time = time.monotonic()
        self.next_report = self.epoch_started + REPORT_INTERVAL
        self.next_report_step = 0  # several processes report at steps they all know: the first, then as measured
        self.reported = 0
        self.epoch_losses: list[float] = []

    def _report_due(self, step: int) -> bool:
        if self.group.several:
            return step >= self.next_report_step
        return time.monotonic() >= self.next_report

    def _report(self, epoch: int, step: int, out_of_memory: bool = False) -> bool:
        """Publish the steps since the last report; False when the run is to stop. Every process calls it together."""
        first = self.reported
        if step < first and not out_of_memory:
            return True
        now = time.monotonic()
        # Rank 0's measure of how many steps make a report interval; the others follow it.
        rate = (step + 1 - first) / max(now - self.last_report_time, 1e-9)
        verdict = self.group.decide(
            self.losses[first : step + 1], self.stop.is_set(), out_of_memory, max(1, round(rate * REPORT_INTERVAL))
        )
        if verdict.out_of_memory:
            raise OutOfMemory(self._out_of_memory())
        self._check_finite(verdict, epoch, first)
        values = verdict.losses
        ips = len(values) * self.s.exp.batch_size / max(now - self.last_report_time, 1e-9)
        lr = self.s.optimizer.param_groups[0]["lr"]
        memory = memory_in_use(str(self.s.device))  # the allocator's own count: no device sync
        self._publish(ev.Step(epoch, first, epoch * self.s.steps_per_epoch + first, tuple(values), lr, ips, memory))
        self.epoch_losses.extend(values)
        self.reported, self.last_report_time, self.next_report = step + 1, now, now + REPORT_INTERVAL
        self.next_report_step = step + verdict.next_report_in
        return not verdict.stop

    def _check_finite(self, verdict: Verdict, epoch: int, first: int) -> None:
        bad = next((v for v in verdict.losses if not math.isfinite(v)), None)
        if bad is not None:
            raise Diverged(
                f"The training loss became {bad} at epoch {epoch + 1}, step {first + verdict.losses.index(bad) + 1}. "
                f"Lower the learning rate (lr = {self.s.exp.lr:g}) and start again; "
                "checkpoints from earlier epochs are kept."
            )

    def _end_epoch(self, epoch: int) -> bool:
        s, group = self.s, self.group
        group.sync_buffers(s.model)  # every process evaluates the model rank 0 saves
        share = group.eval_share(len(s.data.test_images))
        result = evaluate(
            s.forward,
            s.data.test_images[share],
            s.data.test_labels[share],
            s.eval_augment,
            max(1, eval_batch_size(s.exp) // s.world.size),
            s.exp.precision,
            self.stop,
            total=group.total,
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

    def _rng_state(self) -> dict[str, torch.Tensor]:
        s = self.s
        rng = {"torch": torch.get_rng_state(), "data": s.generator.get_state()}
        if s.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(s.device)
        return rng

    def _checkpoint(self, epoch: int, end: ev.EpochEnd) -> None:
        rng = self.group.gather_rng(self._rng_state())  # every process's, so a resume is exact on each
        if self.best_acc is None or end.test_acc > self.best_acc:
            self.best_acc = end.test_acc
            kinds = ["last", "best"]
        else:
            kinds = ["last"]
        if self.main:
            self._write_checkpoint(epoch, end, rng, kinds)
        self.epochs_done = epoch + 1
        if self.main:
            self.folder.write_status(
                "running", epochs_done=self.epochs_done, best_acc=self.best_acc, last_acc=end.test_acc
            )

    def _write_checkpoint(self, epoch: int, end: ev.EpochEnd, rng: dict[str, torch.Tensor], kinds: list[str]) -> None:
        s = self.s
        # Resume state first, keeping the previous one: whenever the process dies, the state of
        # the epoch last.safetensors holds is on disk (see _resume_state_for).
        if self.folder.file(RESUME).exists():
            os.replace(self.folder.file(RESUME), self.folder.file(RESUME_PREVIOUS))
        save_resume_state(self.folder.file(RESUME), s.optimizer, s.scheduler, rng, epoch)
        tensors = checkpoint_state(s.model, s.units, s.exp)  # one device-to-host copy serves both files
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
                base_sha256=s.base_sha256,
            )
            self._publish(ev.CheckpointSaved(path, kind, epoch, end.test_acc))

    # -- endings -------------------------------------------------------------

    def _close(self, ending: ev.Ending) -> ev.RunResult:
        """Log the ending, close status.json, tell the caller; what is on disk stays true if a write fails."""
        state, reason = ev.RECORD_TYPES[type(ending)], ending.reason
        if self.main:
            self._record_ending(ending, state, reason)
        final = self.history[-1].test_acc if self.history else None
        return ev.RunResult(state, self.folder.path, self.best_acc, final, self.epochs_done, reason, self.history)

    def _record_ending(self, ending: ev.Ending, state: str, reason: str) -> None:
        seconds = round(self.prior_seconds + time.monotonic() - self.started, 1)
        try:
            if self.metrics is not None:
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
