"""A run, live or finished: progress, curves and its event log, all read from its folder.

The screen never talks to the training process: it tails metrics.jsonl and
reads status.json four times a second. So a run started here, one going in
another ftui process and one that ended long ago are shown by the same code,
and a resume, whoever started it (this ftui, another one, the CLI), shows
within a second: the history starts again from the rewritten log, one
continuous run with a mark where each resume began.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Header, Label, ProgressBar, RichLog

from ...engine import events as ev
from ...engine.history import MetricsFollower, RunHistory, training_seconds
from ...engine.runs import INTERRUPTED, METRICS, STATUS, RunFolder, process_alive, run_state
from ...errors import RunError
from ...formatting import duration, param_count, share
from ..cpu_use import CpuMeter
from ..footer import SteadyFooter
from ..plots import AccuracyPlot, LossPlot
from ..widgets.queue_list import QueueList
from .confirm import ConfirmScreen

REFRESH_SECONDS = 0.25


class RunScreen(Screen):
    DEFAULT_CSS = """
    RunScreen #title { height: 1; padding: 0 1; text-style: bold; }
    RunScreen ProgressBar { height: 1; padding: 0 1; }
    RunScreen ProgressBar Bar { width: 1fr; }
    RunScreen #progress-text { height: 1; padding: 0 1; }
    RunScreen #plots { height: 1fr; min-height: 8; }
    RunScreen LossPlot, RunScreen AccuracyPlot { width: 1fr; }
    RunScreen RichLog { height: 5; border-top: solid $primary; }
    """
    BINDINGS = [
        Binding("s", "stop", "Stop run"),
        Binding("escape", "back", "Back"),
        Binding("r", "runs", "Runs"),
        Binding("u", "app.open_queue", "Queue"),
    ]

    def __init__(self, run_dir: Path | None = None, live: bool = False):
        super().__init__()
        self.live = live  # follows the app's run controller (the run started in this session)
        self.run_dir = run_dir
        self.history = RunHistory()
        self.follower: MetricsFollower | None = None
        self.status: dict = {}  # the run folder's status.json, read on each poll
        self.logged_epochs = 0
        self.shown_end = False
        self.redraws = 0  # plot redraws, for responsiveness measurements
        self.offered_stop = True  # what the footer showed last: "s Stop run" until the run is seen not running
        self.logged_interruption = False
        self.shown_failure_of = 0  # the launch (controller.launches) whose "could not start" is shown
        self._reference_of: tuple[Path | None, float | None] = (None, None)  # (run folder, its reference_acc)
        self.cpu = CpuMeter()  # the training process's CPU use, from /proc

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("starting…", id="title", markup=False)
        yield ProgressBar(total=None, show_eta=False, show_percentage=True)
        yield Label("", id="progress-text", markup=False)
        with Horizontal(id="plots"):
            yield LossPlot()
            yield AccuracyPlot()
        yield RichLog(wrap=True, markup=False, max_lines=500)
        yield QueueList()
        yield SteadyFooter()

    def on_mount(self) -> None:
        # Paint the screen first, then read the run: the key that opened it answers at once.
        self.call_after_refresh(self._poll)
        self.set_interval(REFRESH_SECONDS, self._poll)

    # -- reading the run folder ----------------------------------------------

    def _poll(self) -> None:
        if self.live and self.app.controller.could_not_start:
            self._show_could_not_start()
        if self.follower is None and not self._find_run_folder():
            return
        self._follow_the_live_run()
        events, restarted = self.follower.read()
        if restarted:  # a resume rewrote the log: fold it again from its start
            self.history, self.logged_interruption = RunHistory(), False
            self.query_one(RichLog).clear()
        self.status = self._read_status()
        self._log_interruption()
        if self._stoppable() != self.offered_stop:  # the run ended or was resumed: the footer follows
            self.offered_stop = not self.offered_stop
            self.refresh_bindings()
        if events or restarted:
            self.history.feed(events)
            self._log_events(events)
            self.query_one(LossPlot).show(self.history)
            self.query_one(AccuracyPlot).show(self.history, self._reference())
            self.redraws += 1
        self._show_progress()

    def _find_run_folder(self) -> bool:
        """Find the run folder; a live run only has one once its set-up has succeeded."""
        controller = self.app.controller
        if self.live and self.run_dir is None:
            self.run_dir = controller.run_dir
            if self.run_dir is None:
                return False
        self.follower = MetricsFollower(self.run_dir / METRICS)
        return True

    def _follow_the_live_run(self) -> None:
        """The live screen shows the run this session started last, also when that is a later one."""
        run_dir = self.app.controller.run_dir
        if self.live and run_dir is not None and run_dir != self.run_dir:
            self.run_dir, self.follower = run_dir, MetricsFollower(run_dir / METRICS)
            self.history, self.shown_end, self.logged_interruption = RunHistory(), False, False
            self.query_one(RichLog).clear()
            self.query_one(ProgressBar).display = True
            self.query_one("#plots").display = True

    def _reference(self) -> float | None:
        """The report's accuracy for the run's experiment, as its run folder recorded the experiment."""
        if self.run_dir is None:
            return None
        if self._reference_of[0] != self.run_dir:
            try:
                value = RunFolder(self.run_dir).read_experiment().get("reference_acc")
            except RunError:
                value = None
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            self._reference_of = (self.run_dir, float(value) if ok else None)
        return self._reference_of[1]

    def _read_status(self) -> dict:
        if self.run_dir is None or not (self.run_dir / STATUS).exists():
            return {}
        try:
            return RunFolder(self.run_dir).read_status()
        except RunError:
            return self.status  # being replaced, or broken: what was read last

    def _never_started(self) -> bool:
        return self.live and self.run_dir is None and self.app.controller.could_not_start

    def _show_could_not_start(self) -> None:
        """Why the launch never trained and what to do, once per launch; no progress, nothing to stop.

        A refused resume has a run folder: the screen goes on showing it, as it was.
        """
        controller = self.app.controller
        if self.shown_failure_of == controller.launches:
            return
        self.shown_failure_of, self.shown_end = controller.launches, True
        self.query_one(RichLog).write(f"could not start: {controller.failure}")
        self.notify(controller.failure or "", severity="error", timeout=10)
        self.refresh_bindings()  # "Stop run" leaves the footer
        if self.run_dir is not None and self.run_dir == controller.run_dir:
            return
        self.query_one("#title", Label).update(f"{controller.experiment}: could not start")
        self.query_one(ProgressBar).display = False  # an empty bar would go on animating
        self.query_one("#plots").display = False  # nothing trained: no curves to draw, the log says why
        self.query_one("#progress-text", Label).update(
            "Nothing was trained. Fix what the log below says and try again; esc goes back."
        )

    def _log_interruption(self) -> None:
        """An interrupted run wrote no ending to its log: what its folder says happened, once."""
        if self._state() != INTERRUPTED or self.logged_interruption:
            return
        self.logged_interruption = True
        self.query_one(RichLog).write(f"interrupted: {run_state(self.status)[1]}")

    def _log_events(self, events: list[ev.Event]) -> None:
        log = self.query_one(RichLog)
        for e in events:
            if isinstance(e, ev.RunStarted):
                what = f"── resumed at epoch {e.start_epoch + 1}" if e.start_epoch else "started"
                log.write(
                    f"{e.time[11:19]}  {what} on {e.device}: {e.train_images} train / "
                    f"{e.test_images} test images, batch {e.batch_size}"
                )
            elif isinstance(e, ev.EpochEnd):
                best = e.test_acc >= (self.history.best_acc or 0)
                log.write(
                    f"epoch {e.epoch + 1}: test acc {e.test_acc:.2f}%  test loss {e.test_loss:.4f}  "
                    f"train loss {e.train_loss:.4f}  {e.seconds:.1f}s — saved last" + (" and best" if best else "")
                )
            elif isinstance(e, ev.RunWarning):
                log.write(f"warning: {e.message}")
            elif isinstance(e, ev.Ending):
                log.write(ev.RECORD_TYPES[type(e)] + (f": {e.reason}" if e.reason else ""))
                if isinstance(e, ev.Failed):
                    self.notify(e.reason or "failed", severity="error", timeout=10)

    # -- progress line ---------------------------------------------------------

    def _show_progress(self) -> None:
        h, start = self.history, self.history.start
        if start is None:
            return
        spe, epochs = h.steps_per_epoch, h.total_epochs
        self.query_one("#title", Label).update(
            f"{start.experiment} · {start.device} · {param_count(start.trainable_params)} of "
            f"{param_count(start.total_params)} parameters train "
            f"({share(start.trainable_params, start.total_params)}) · {self._state_text()}"
        )
        done = (h.global_step + 1) if h.global_step >= 0 else start.start_epoch * spe
        if self._state() == "finished":
            done = epochs * spe
        self.query_one(ProgressBar).update(total=max(epochs * spe, 1), progress=done)
        self.query_one("#progress-text", Label).update(self._progress_text(done))

    def _state(self) -> str:
        """status.json's state (runs.run_state), which the run writes last; the log's before there is one."""
        return run_state(self.status)[0] if self.status else self.history.state

    def _state_text(self) -> str:
        state = self._state()
        return "interrupted (its process is gone; resume it from Runs)" if state == INTERRUPTED else state

    def _progress_text(self, done: int) -> str:
        h = self.history
        spe, epochs, batch = h.steps_per_epoch, h.total_epochs, h.start.batch_size if h.start else 0
        elapsed = self._elapsed()
        parts = [f"epoch {min(h.epoch + 1, epochs)}/{epochs}", f"step {h.step + 1}/{spe}"]
        if self._state() == "running" and h.images_per_sec:
            remaining = max(epochs * spe - done, 0) * batch / h.images_per_sec
            parts += [
                f"{h.images_per_sec:.0f} img/s",
                f"elapsed {duration(elapsed) or '-'}",
                f"ETA {duration(remaining) or '-'}",
            ]
            parts += self._device_use()
        else:
            parts += [f"best {h.best_acc:.2f}%" if h.best_acc is not None else "no epoch completed"]
        return " · ".join(parts)

    def _device_use(self) -> list[str]:
        """What the training process keeps busy: its CPU (of this machine's cores) and its GPU memory."""
        pid = self.status.get("pid") if self.status.get("host") == socket.gethostname() else None
        cpu = self.cpu.read(pid if isinstance(pid, int) else None)
        use = [f"CPU {cpu:.0f}%"] if cpu is not None else []
        if self.history.memory is not None:
            use.append(f"GPU mem {self.history.memory / 2**30:.1f} GiB")
        return use

    def _elapsed(self) -> float | None:
        return training_seconds(self.status)  # the earlier sessions of a resumed run included

    # -- actions -----------------------------------------------------------------

    def _is_ours(self) -> bool:
        """This session's run in progress is the one shown (a live screen before its folder exists)."""
        controller = self.app.controller
        if self.run_dir is None:
            return controller.busy and self.live
        return controller.busy and controller.run_dir == self.run_dir and self._state() == "running"

    def _stoppable(self) -> bool:
        """The run shown is training (or about to): only then does the footer offer to stop it."""
        controller = self.app.controller
        if self._never_started() or (controller.stopping and self._is_ours()):  # asked once already
            return False
        if self.follower is None:  # a live run before its folder exists
            return self.live and controller.busy
        return self._state() == "running"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self._stoppable() if action == "stop" else True

    def action_stop(self) -> None:
        if self._never_started():
            self.notify(f"{self.app.controller.experiment} never started: there is nothing to stop.")
        elif self._is_ours():
            question = f"Stop this run? It stops within one step; {self.app.controller.what_stopping_keeps()}."
            self.app.push_screen(ConfirmScreen(question, "Stop", "Keep training"), self._stop)
        elif self.run_dir is not None and self._state() == "running" and (pid := self._other_process()) is not None:
            self.app.push_screen(ConfirmScreen(self._stop_question(pid), "Stop", "Keep training"), self._stop_other)
        else:
            self.notify("This run is not running.")

    def _stop(self, ok: bool) -> None:
        if ok:
            self.app.controller.request_stop("from the workbench")
            self.query_one(RichLog).write("stopping after the current step…")
            self.refresh_bindings()

    def _stop_question(self, pid: int) -> str:
        queued = next((e for e in self.app.queue.read().entries if e.current and e.pid == pid), None)
        if queued is None:
            return f"This run belongs to process {pid}. Ask it to stop (SIGTERM)?"
        return (
            f"This is the queue's run of {queued.name} (process {pid}). Ask it to stop (SIGTERM)? "
            "The queue goes on with its next entry; to hold the queue too, pause it (p on the queue screen)."
        )

    def _other_process(self) -> int | None:
        status = RunFolder(self.run_dir).read_status()
        return int(status["pid"]) if process_alive(status) and status.get("pid") != os.getpid() else None

    def _stop_other(self, ok: bool) -> None:
        pid = self._other_process()
        if ok and pid is not None:
            os.kill(pid, signal.SIGTERM)
            self.query_one(RichLog).write(f"asked process {pid} to stop")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_runs(self) -> None:
        self.app.open_runs()
