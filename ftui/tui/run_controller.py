"""The run this workbench session started, trained by a child process that a background thread supervises.

Every launch starts the training as a detached child process (training_process.py): the same
`ftui run` / `ftui resume` a person would type, in its own session. A plain daemon thread waits
for it, learns its run folder when the child creates it, and, once it has ended, reads how it
ended from that folder; a child that died without closing its run is marked interrupted there,
with how it ended and the last lines of its log. The controller keeps only what the screens
cannot read from disk (the run folder's path, why a run never started); the screens read the run
folder (the single source of truth) a few times a second, so a run started here and a run started
by another ftui process or the CLI look the same.

Stopping signals the child's process group (SIGTERM: the CLI stops after the current step, as it
does for a person's Ctrl-C) and kills it (SIGKILL) if it has not ended within STOP_GRACE_SECONDS.
Quitting the workbench may leave the child training: nothing is handed over, it simply is not
stopped, so its weights are those of an uninterrupted run.

torch and the training engine are not imported with this module: importing them takes seconds,
and the catalog is drawn without them. ENGINE imports them in a background thread once the first
screen is on the terminal (app.py), for what the workbench computes itself (evaluation, the
checkpoint screens); training never needs them in this process.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..engine import events as ev
from ..engine.atomic import atomic_write_text
from ..engine.experiment import Experiment
from ..engine.launcher import descendants
from ..engine.runs import INTERRUPTED, RunFolder, now_iso, process_alive, run_state
from ..errors import EXIT_USAGE, FtuiError, RunError
from .training_process import OUTPUT_LOG, TrainingProcess, ending_text, log_tail, stated_reason

LAUNCH_DIR = ".launch"  # in the runs folder: a launch's hand-over files, until its run folder exists
STOP_GRACE_SECONDS = 120.0  # a stop waits this long for the current step (a big model on a CPU), then kills
POLL_SECONDS = 0.2

# What training, evaluation and the checkpoint screens import, in the order the import goes. The
# run screen (textual-plotext, no torch) comes first, in milliseconds: a launch opens it at once.
ENGINE_MODULES = (
    "ftui.tui.screens.run",
    "torch",
    "torchvision",
    "ftui.engine.train",
    "ftui.engine.evaluation",
    "ftui.engine.compare",
)


class EngineLoader:
    """torch, torchvision and the training engine, imported once per process in a background thread.

    One thread does the importing: everyone who needs the engine before it is loaded waits for
    that thread (wait()) rather than importing the same modules beside it.
    """

    def __init__(self, modules: tuple[str, ...] = ENGINE_MODULES):
        self.modules = modules
        self.loaded = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._then: list[Callable[[], None]] = []

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, then: Callable[[], None] | None = None) -> None:
        """Begin the import, if it has not begun; `then` runs in the loading thread once it is done
        (at once, here, if it is done already)."""
        with self._lock:
            if then is not None:
                if self.loaded.is_set():
                    then()
                else:
                    self._then.append(then)
            if self._thread is None:
                # A daemon: quitting in the first seconds does not wait for torch to finish importing.
                self._thread = threading.Thread(target=self._load, name="ftui-load-engine", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Start the import if need be and wait for it; False if the timeout came first."""
        self.start()
        return self.loaded.wait(timeout)

    def _load(self) -> None:
        try:
            for name in self.modules:
                importlib.import_module(name)
        except BaseException as exc:  # whoever needs a module imports it again and gets the error itself
            self.error = exc
        while True:  # the callbacks, then `loaded`: whoever waited finds them done
            with self._lock:
                then, self._then = self._then, []
                if not then:
                    self.loaded.set()
                    return
            for callback in then:
                callback()


ENGINE = EngineLoader()


class RunController:
    """At most one run at a time from this session; the screens ask it, never the process."""

    def __init__(self, runs_root: Path):
        self.runs_root = runs_root
        self.process: TrainingProcess | None = None
        self.run_dir: Path | None = None
        self.experiment: str = ""
        self.failure: str | None = None  # why the last run never trained, failed or was interrupted
        self.result: ev.RunResult | None = None  # how the last run ended, read from its folder
        self.launches = 0  # one number per launch: a screen tells a later launch's failure from one it showed
        self.stop_grace = STOP_GRACE_SECONDS
        self._thread: threading.Thread | None = None
        self._never_trained = False
        self._stop_asked_at: float | None = None
        self._killed = False
        self._stop_file: Path | None = None
        self._handover: list[Path] = []  # removed when the child has ended
        self._before: set[str] = set()  # what the runs folder held at the launch: the new folder is not in it

    @property
    def busy(self) -> bool:
        """A child is training (or setting up, or stopping) and has not been seen to end."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def training(self) -> bool:
        """Busy, and its run not closed: a child whose run folder says it ended is only exiting (seconds)."""
        if not self.busy:
            return False
        process, run_dir = self.process, self.run_dir
        if run_dir is None or process is None:
            return True  # setting up
        try:
            status = RunFolder(run_dir).read_status()
        except RunError:
            return True
        # A resume's folder says "stopped" until the child has written "running": only the child's word counts.
        return status.get("state") == "running" or not _written_by(status, process.pid)

    @property
    def stopping(self) -> bool:
        return self.busy and self._stop_asked_at is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def could_not_start(self) -> bool:
        """The last launch never trained: its set-up was refused (no data, no weights, the device taken)."""
        return self.failure is not None and self._never_trained

    # -- starting ----------------------------------------------------------------

    def start(self, exp: Experiment, share_device: bool = False) -> None:
        """Train exp exactly as given (an editor's unsaved edits included): the child reads it from a file."""

        def args(stem: Path) -> list[str]:
            handover = stem.with_suffix(".json")
            atomic_write_text(handover, json.dumps(exp.to_dict(), indent=2) + "\n")
            self._handover.append(handover)
            share = ["--share-device"] if share_device else []
            return ["run", "--experiment-json", str(handover), "--runs", str(self.runs_root), *share]

        self._launch(exp.name, args, run_dir=None)

    def resume(self, run_dir: Path, experiment: str) -> None:
        self._launch(experiment, lambda _stem: ["resume", str(run_dir)], run_dir=run_dir)

    def _launch(self, experiment: str, args: Callable[[Path], list[str]], run_dir: Path | None) -> None:
        if self.busy:
            raise RuntimeError("a run is already in progress")
        self.launches += 1
        self.experiment, self.run_dir, self.failure, self.result = experiment, run_dir, None, None
        self.process, self._never_trained, self._stop_asked_at, self._killed = None, False, None, False
        self._handover = []
        try:
            launch_dir = self.runs_root / LAUNCH_DIR
            launch_dir.mkdir(parents=True, exist_ok=True)
            stem = launch_dir / f"{experiment}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self.launches}"
            self._stop_file = stem.with_suffix(".stop")
            self._handover.append(self._stop_file)
            command = [*args(stem), "--stop-reason-file", str(self._stop_file)]
            self._before = self._folder_names()
            log = run_dir / OUTPUT_LOG if run_dir is not None else stem.with_suffix(".log")
            self.process = TrainingProcess(command, log)
        except OSError as exc:
            self._remove(self._handover)
            self._never_trained = True
            self.failure = f"The training process could not be started: {exc}. Check the runs folder {self.runs_root}."
            return
        self._thread = threading.Thread(target=self._supervise, name="ftui-supervise", daemon=True)
        self._thread.start()

    # -- stopping ----------------------------------------------------------------

    def what_stopping_keeps(self) -> str:
        """What a stop leaves, said truthfully: in the first epoch nothing is saved yet."""
        done = 0
        if self.run_dir is not None:
            try:
                done = int(RunFolder(self.run_dir).read_status().get("epochs_done") or 0)
            except (FtuiError, ValueError, TypeError):
                done = 0
        if done == 0:
            return "it is in its first epoch, so nothing is saved yet: stopping ends it, and it starts again from zero"
        return f"its last completed epoch ({done}) stays saved, ready to resume"

    def request_stop(self, why: str) -> None:
        """Ask the child to stop after its current step (SIGTERM); the run folder will say `why`."""
        if not self.busy or self.process is None:
            return
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
            try:
                if self._stop_file is not None:
                    atomic_write_text(self._stop_file, why)  # read by the child's signal handler
            except OSError:
                pass  # then the run says it was stopped "by SIGTERM": still true
        self.process.signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> None:
        """Until the child has ended and its ending is read (a stop: within the grace and a kill)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # -- supervising (a background thread) -------------------------------------------

    def _supervise(self) -> None:
        process = self.process
        assert process is not None
        try:
            while process.wait(POLL_SECONDS) is None:
                if self.run_dir is None:
                    self._find_run_folder(process)
                self._kill_if_overdue(process)
            if self.run_dir is None:  # a quick child may have made its folder and ended between two looks
                self._find_run_folder(process)
            self._settle(process, process.returncode or 0)
        except Exception as exc:  # never a traceback over the UI: the run folder still tells the run's state
            self.failure = f"Internal error while following the training process: {exc!r}"
        finally:
            self._remove(self._handover)

    def _folder_names(self) -> set[str]:
        try:
            return {p.name for p in self.runs_root.iterdir()}
        except OSError:
            return set()

    def _find_run_folder(self, process: TrainingProcess) -> None:
        """The new folder whose status.json names the child (or a process of its group) as its writer."""
        for name in sorted(self._folder_names() - self._before):
            path = self.runs_root / name
            try:
                status = RunFolder(path).read_status()
            except RunError:
                continue  # not a run folder, or not written yet
            if _written_by(status, process.pid):
                self._move_log(process, path / OUTPUT_LOG)
                self.run_dir = path
                return

    @staticmethod
    def _move_log(process: TrainingProcess, to: Path) -> None:
        """The child's log into its run folder (the child keeps writing to it: a rename moves no data)."""
        try:
            os.replace(process.log, to)
            process.log = to
        except OSError:
            pass  # it stays where it is; the failure messages name that place

    def _kill_if_overdue(self, process: TrainingProcess) -> None:
        asked = self._stop_asked_at
        if asked is not None and not self._killed and time.monotonic() - asked > self.stop_grace:
            self._killed = True
            process.signal(signal.SIGKILL)

    def _settle(self, process: TrainingProcess, code: int) -> None:
        """The child has ended: how, from its run folder (marked interrupted if the child could not say)."""
        self._never_trained = self.run_dir is None or code == EXIT_USAGE
        if self.run_dir is None:
            self.failure = self._why_it_never_started(process, code)
            return
        folder = RunFolder(self.run_dir)
        status = folder.read_status()
        if run_state(status)[0] == INTERRUPTED:  # it says running and its writer is gone: nobody closed it
            folder.write_status(INTERRUPTED, reason=self._why_it_died(process, code), ended_at=now_iso())
            status = folder.read_status()
        state, reason = run_state(status)
        self.result = ev.RunResult(
            state,
            self.run_dir,
            best_acc=status.get("best_acc"),
            epochs_done=int(status.get("epochs_done") or 0),
            reason=reason,
        )
        if self._never_trained:  # a resume that was refused: the folder is as it was
            self.failure = stated_reason(process.log) or self._why_it_never_started(process, code)
        elif state in ("failed", INTERRUPTED):
            self.failure = reason

    def _why_it_never_started(self, process: TrainingProcess, code: int) -> str:
        said = stated_reason(process.log)
        if said is not None and code == EXIT_USAGE:
            self._remove([process.log])  # the child said why, and that is all its log holds
            return said
        if self._stop_asked_at is not None:
            return "It was stopped before it began training: nothing was trained."
        tail = log_tail(process.log)
        return f"Its training process {ending_text(code)} before it began training" + (
            f" (the end of its log {process.log}: {tail})." if tail else "."
        )

    def _why_it_died(self, process: TrainingProcess, code: int) -> str:
        if self._killed:
            how = f"it did not stop within {self.stop_grace:g} s of being asked, so it was killed (SIGKILL)"
        else:
            how = f"its training process {ending_text(code)} without closing the run"
        tail = log_tail(process.log)
        return how + (f"; the end of its log: {tail}" if tail else "") + "; resume it"

    @staticmethod
    def _remove(paths: Sequence[Path]) -> None:
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def _written_by(status: dict, pid: int) -> bool:
    """status.json was written by process pid, or by a process of its group or below it (a launcher's worker)."""
    writer = status.get("pid")
    if status.get("host") != socket.gethostname() or not isinstance(writer, int):
        return False
    if writer == pid:
        return True
    try:
        # A multi-process run's rank 0 is a grandchild, in torchrun's own process group (engine/launcher.py).
        return process_alive(status) and (os.getpgid(writer) == pid or writer in descendants(pid))
    except OSError:
        return False
