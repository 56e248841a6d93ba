"""The bridge between the engine's training function and the UI.

The training thread is a plain non-daemon thread, not a Textual worker: a run
must outlive the screen that started it, and the app itself (if the terminal
goes away, training goes on to its end). The controller keeps only what the
screens cannot read from disk (the run folder's path, a failure before it
existed); screens read the run folder (the single source of truth) a few times
a second, so a run started here and a run started by another ftui process look
the same.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..engine import events as ev
from ..engine.device import compute_threads, threads_for_ui_run
from ..engine.experiment import Experiment
from ..engine.stop import StopRequest
from ..engine.train import resume, train


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
        self._launch(
            exp.name, lambda: train(exp, self._on_event, self.stop_event, self.runs_root, share_device), exp.device
        )

    def resume(self, run_dir: Path, experiment: str, device: str) -> None:
        self._launch(experiment, lambda: resume(run_dir, self._on_event, self.stop_event), device)

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
            with compute_threads(threads_for_ui_run(device)):
                self.result = run()
        except Exception as exc:  # the engine has already marked the run failed and logged the traceback
            self.failure = f"Internal error: {exc!r}"

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.run_dir = event.run_dir
        elif isinstance(event, ev.Failed):
            self.failure = event.reason
