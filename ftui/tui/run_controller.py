"""The bridge between the engine's training function and the UI.

The training thread is a plain non-daemon thread, not a Textual worker: a run
must outlive the screen that started it, and the app itself (if the terminal
goes away, training goes on to its end). The controller keeps only what the
screens cannot read from disk (the run folder's path, a failure before it
existed); screens read the run folder (the single source of truth) a few times
a second, so a run started here and a run started by another ftui process look
the same.

torch and the training engine are not imported with this module: importing them
takes seconds, and the catalog is drawn without them. ENGINE imports them in a
background thread once the first screen is on the terminal (app.py), and a
training thread waits for it before it trains, so a launch never holds up the UI.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path

from ..engine import events as ev
from ..engine.experiment import Experiment
from ..engine.runs import RunFolder
from ..engine.stop import StopRequest
from ..errors import FtuiError

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
    """At most one run at a time in this process; the screens ask it, never the thread."""

    def __init__(self, runs_root: Path):
        self.runs_root = runs_root
        self.thread: threading.Thread | None = None
        self.stop_event = StopRequest()
        self.run_dir: Path | None = None
        self.experiment: str = ""
        self.failure: str | None = None
        self.result: ev.RunResult | None = None

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def could_not_start(self) -> bool:
        """The last run failed in its set-up (no data, no weights, device taken): it never trained."""
        return self.failure is not None and self.run_dir is None

    def start(self, exp: Experiment, share_device: bool = False) -> None:
        def run():
            from ..engine.train import train

            return train(exp, self._on_event, self.stop_event, self.runs_root, share_device)

        self._launch(exp.name, run, exp.device)

    def resume(self, run_dir: Path, experiment: str, device: str) -> None:
        def run():
            from ..engine.train import resume

            return resume(run_dir, self._on_event, self.stop_event)

        self._launch(experiment, run, device)

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
        self.stop_event.request(why)

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def _launch(self, experiment: str, run, device: str) -> None:
        if self.busy:
            raise RuntimeError("a run is already in progress")
        self.stop_event = StopRequest()
        self.run_dir, self.failure, self.result, self.experiment = None, None, None, experiment
        self.thread = threading.Thread(target=self._run, args=(run, device), name="ftui-train", daemon=False)
        self.thread.start()

    def _run(self, run, device: str) -> None:
        # Set in the training thread (set from the UI thread, the UI kept 1 thread after the run).
        try:
            ENGINE.wait()  # torch is imported here, in this thread, never by the UI thread that launched
            from ..engine.device import compute_threads, threads_for_ui_run

            with compute_threads(threads_for_ui_run(device)):
                self.result = run()
        except Exception as exc:  # the engine has already marked the run failed and logged the traceback
            self.failure = f"Internal error: {exc!r}"

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.run_dir = event.run_dir
        elif isinstance(event, ev.Failed):
            self.failure = event.reason
