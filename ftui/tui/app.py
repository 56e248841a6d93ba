"""The ftui application: owns the catalog, the runs folder and the one run controller.

Nothing on the way to the catalog screen imports torch (seconds on a small machine): the
catalog is validated from the model facts file (engine/model_facts.py), and torch with the
training engine is imported in a background thread once the catalog is on the terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen

from ..engine.catalog import Catalog, load_catalog
from ..engine.experiment import Experiment
from ..engine.queue import QueueError, RunQueue, runner_pid
from ..engine.runs import RunFolder, list_runs
from ..errors import FtuiError
from .run_controller import ENGINE, RunController
from .screens.confirm import ConfirmScreen
from .screens.quit import LEAVE, STOP, QuitScreen

LIVE_RUN = "live-run"


class FtuiApp(App):
    TITLE = "ftui"
    SUB_TITLE = "fine-tune ImageNet-pretrained vision models"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),
        # Not a priority: a focused text field types its q. Shown in the catalog's footer (its own binding).
        Binding("q", "quit_key", "Quit", show=False),
    ]

    def __init__(self, catalog_path: Path, runs_root: Path):
        super().__init__()
        self.catalog_path = Path(catalog_path)
        self.runs_root = Path(runs_root)
        self.controller = RunController(self.runs_root)
        self.catalog: Catalog | None = None
        self.catalog_error: str | None = None
        self.queue = RunQueue(self.runs_root)  # a file: it and its runner outlive this UI
        self.stopped_run_on_exit = False  # the run of this session was stopped by quitting
        self.left_training = False  # quit with "leave it training": the run goes on after the UI
        # Run in the loading thread once torch and the engine are imported (workbench.py freezes the GC there).
        self.after_engine_loaded: Callable[[], None] | None = None
        self.reload_catalog()

    def get_driver_class(self):
        driver = super().get_driver_class()
        # Only where Textual would use its LinuxDriver (not on Windows, where importing it fails,
        # and not with TEXTUAL_DRIVER set).
        if driver.__module__ != "textual.drivers.linux_driver" or driver.__name__ != "LinuxDriver":
            return driver
        from .driver import PromptEscapeDriver

        return PromptEscapeDriver

    # -- catalog -------------------------------------------------------------

    def reload_catalog(self) -> None:
        try:
            self.catalog, self.catalog_error = load_catalog(self.catalog_path), None
        except FtuiError as exc:
            self.catalog, self.catalog_error = None, str(exc)

    def on_mount(self) -> None:
        from .screens.catalog import CatalogScreen

        self.push_screen(CatalogScreen())
        self.set_interval(0.5, self.kick_queue)
        # Called once the catalog screen is painted and idle: its first frame never waits for torch.
        self.call_after_refresh(self._load_engine)

    def _load_engine(self) -> None:
        ENGINE.start(then=self._engine_loaded)

    def _engine_loaded(self) -> None:
        hook = self.after_engine_loaded  # read when loading ends: workbench.py takes it back when the app closes
        if hook is not None:
            hook()

    # -- runs ----------------------------------------------------------------

    def launch(self, exp: Experiment) -> None:
        """Start a run; while one trains (here or the queue's), queue it instead: never fight for the device."""
        if self.controller.busy or runner_pid(self.runs_root) is not None:
            self.enqueue([exp])
            return
        elsewhere = [r for r in list_runs(self.runs_root) if r.state == "running"]
        if elsewhere:
            question = (
                f"Another ftui process is training {elsewhere[0].experiment} ({elsewhere[0].name}) "
                f"on this machine. Start {exp.name} anyway and share the device?"
            )
            self.push_screen(
                ConfirmScreen(question, "Start anyway", "Cancel"),
                lambda ok: self._start(exp, share_device=True) if ok else None,
            )
            return
        self._start(exp)

    def _start(self, exp: Experiment, share_device: bool = False) -> None:
        self.controller.start(exp, share_device)
        self._show_new_live_run()

    # -- the queue (engine/queue.py; worked through by queue_runner.py, a process of its own) ----------

    def enqueue(self, experiments: list[Experiment]) -> None:
        self.queue.add_runs([exp.to_dict() for exp in experiments])
        names = experiments[0].name if len(experiments) == 1 else f"{len(experiments)} experiments"
        self.notify(f"Queued {names}: the queue trains one run at a time, also after ftui has closed (u shows it).")
        self.kick_queue()

    def action_queue_study(self) -> None:
        """The report in miniature (engine/study.py), each base before the runs that start from it, after asking.

        Rows with a finished run, or waiting in the queue, are left out: M again continues a study."""
        from ..engine.results import measured_by_experiment
        from ..engine.study import still_to_train, study_experiments

        study = study_experiments(self.catalog) if self.catalog else []
        if not study:
            self.notify("No experiment of the catalog mirrors a report row (mirrors = ...): no miniature to queue.")
            return
        waiting = {e.name for e in self.queue.read().entries}
        unfinished = still_to_train(study, measured_by_experiment(list_runs(self.runs_root)))
        todo = [e for e in unfinished if e.name not in waiting]
        if not todo:
            self.notify(
                "Every run of the report in miniature has finished or waits in the queue: t, then m, compares it "
                "with the report. To train a row again, launch it (l) or queue it (a)."
            )
            return
        question = f"Queue the report in miniature: {len(todo)} runs, {todo[0].name} first"
        question += f" ({', '.join(e.name for e in todo[1:])})?" if len(todo) > 1 else "?"
        if len(todo) < len(study):
            question += f" The other {len(study) - len(todo)} have a finished run already or wait in the queue."
        self.push_screen(
            ConfirmScreen(question, f"Queue {len(todo)}", "Cancel"),
            lambda ok: self.enqueue(todo) if ok else None,
        )

    def queue_resume(self, path: Path) -> None:
        try:
            self.queue.add_resume(path, RunFolder(path).read_experiment().get("name", path.name))
        except FtuiError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"Queued the resume of {path.name} (u shows the queue).")
        self.kick_queue()

    def kick_queue(self) -> None:
        """Start the queue's runner when it has work and this session trains nothing (the runner waits
        for runs of other processes itself; a launch of ours still setting up has no folder to wait for)."""
        if self.controller.busy:
            return
        state = self.queue.read()
        if state.entries and not state.paused and runner_pid(self.runs_root) is None:
            from ..queue_runner import start_runner

            try:
                start_runner(self.runs_root)
            except OSError as exc:
                self.notify(f"The queue's runner could not be started: {exc}.", severity="error")

    def change_queue(self, change: Callable[[RunQueue], object]) -> None:
        """A change from the queue screen; one the queue refuses (the entry started meanwhile) is said."""
        try:
            change(self.queue)
        except QueueError as exc:
            self.notify(str(exc), severity="warning")

    def open_queue(self) -> None:
        from .screens.queue import QueueScreen

        self.go_to(lambda s: isinstance(s, QueueScreen), QueueScreen)

    def action_open_queue(self) -> None:  # u on the screens that show the queue
        self.open_queue()

    def _show_new_live_run(self) -> None:
        """One run screen per live run, installed so that going back to it is instant (no re-compose)."""
        from .screens.run import RunScreen

        if self.is_screen_installed(LIVE_RUN):
            if self.get_screen(LIVE_RUN) in self.screen_stack:
                return  # open already (a queued run started under it): it follows the new run
            self.uninstall_screen(LIVE_RUN)
        self.install_screen(RunScreen(live=True), LIVE_RUN)
        self.push_screen(LIVE_RUN)

    def resume_run(self, path: Path) -> None:
        if runner_pid(self.runs_root) is not None:
            self.notify("The queue is training: a queues the resume after it.", severity="warning")
            return
        if self.controller.busy:
            what = "is training" if self.controller.training else "has ended and its process is exiting"
            self.notify(f"{self.controller.experiment} {what}; resume when it is gone.", severity="warning")
            return
        exp = RunFolder(path).read_experiment()
        self.controller.resume(path, exp.get("name", path.name))
        self._show_new_live_run()

    # -- going between screens: the catalog at the bottom, each screen once ------------------

    def go_to(self, matches: Callable[[Screen], bool], make: Callable[[], Screen | str]) -> None:
        """Back to the topmost screen on the stack that matches (closing those above it), or a new one.

        So going in circles (runs, a run, runs, a run, ...) never piles screens up: the stack
        holds the catalog and at most one screen of each kind, and esc always heads home.
        """
        for screen in reversed(self.screen_stack[1:]):
            if matches(screen):
                while self.screen is not screen:
                    self.pop_screen()
                return
        self.push_screen(make())

    def open_run(self, path: Path) -> None:
        """The curves of any run folder: live if it is still going, here or in another process."""
        from .screens.run import RunScreen

        self.go_to(lambda s: isinstance(s, RunScreen) and s.run_dir == path, lambda: RunScreen(run_dir=path))

    def open_live_run(self) -> None:
        """This session's run while it goes; else a run going in another process (the queue's, or one left
        training by an earlier ftui); else this session's last run."""
        if self.is_screen_installed(LIVE_RUN) and self.controller.busy:
            self.go_to(lambda s: s is self.get_screen(LIVE_RUN), lambda: LIVE_RUN)
            return
        running = [r for r in list_runs(self.runs_root) if r.state == "running"]
        if running:
            self.open_run(running[0].path)
        elif self.is_screen_installed(LIVE_RUN):
            self.go_to(lambda s: s is self.get_screen(LIVE_RUN), lambda: LIVE_RUN)
        else:
            self.notify("No run is training: launch one with l, or see past runs with r.")

    def open_runs(self) -> None:
        from .screens.runs import RunsScreen

        self.go_to(lambda s: isinstance(s, RunsScreen), RunsScreen)

    def open_results(self) -> None:
        from .screens.results import ResultsScreen

        self.go_to(lambda s: isinstance(s, ResultsScreen), ResultsScreen)

    # -- leaving -------------------------------------------------------------

    async def action_quit_key(self) -> None:
        if not isinstance(self.screen, ModalScreen):  # in a dialog, q is not one of its answers: nothing
            await self.action_quit()

    async def action_quit(self) -> None:
        if isinstance(self.screen, QuitScreen):
            return  # asked already
        edits = self._unsaved_edits()
        if self.controller.training:
            self.push_screen(QuitScreen(self._quit_question(edits)), self._quit_answered)
        elif edits:
            question = f"Quit and drop your edits to {edits}? (s in the editor saves them as a new entry)"
            self.push_screen(ConfirmScreen(question, "Quit", "Stay"), lambda ok: self.exit() if ok else None)
        else:
            self.exit()

    def _unsaved_edits(self) -> str | None:
        """The name of an experiment being edited with changes kept nowhere (neither saved nor launched), if any."""
        from .screens.editor import EditorScreen

        for screen in self.screen_stack:
            if isinstance(screen, EditorScreen) and screen.experiment not in (screen.original, screen.launched):
                return screen.experiment.name
        return None

    def _quit_question(self, edits: str | None) -> str:
        name, where = self.controller.experiment, self.controller.run_dir or f"{self.runs_root}/"
        question = (
            f"{name} is still training. Stopping it: {self.controller.what_stopping_keeps()}. "
            f"Leaving it: it trains on to its end after ftui has closed (also after the terminal or SSH session "
            f"has), in {where}; `ftui` shows it again, live."
        )
        waiting = len(self.queue.read().entries)
        if waiting:
            question += f" The queue ({waiting}) goes on either way, one run after another; `ftui` shows it again."
        return question + (f" Your edits to {edits} are not saved." if edits else "")

    def _quit_answered(self, choice: str | None) -> None:
        if choice == STOP:
            self.stop_run_and_exit("because ftui was quit")
        elif choice == LEAVE:
            self.leave_run_and_exit()

    def leave_run_and_exit(self) -> None:
        """Close the UI and leave the run training: it is a process of its own, not stopped (workbench.py says so)."""
        self.left_training = self.controller.training
        self.exit()

    def stop_run_and_exit(self, why: str) -> None:
        """Stop the run in progress, if any, after its current step, and close the UI (workbench.py waits)."""
        if self.controller.training:
            self.stopped_run_on_exit = True
            self.controller.request_stop(why)
        self.exit()

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Runs and checkpoints", "All runs on disk, their checkpoints and curves", self.open_runs)
        yield SystemCommand("Results", "The report's Table 1 beside ftui's measured accuracies", self.open_results)
        yield SystemCommand("Live run", "The run started in this session", self.open_live_run)
        yield SystemCommand("Queue", "The runs waiting to train, one after another", self.open_queue)
        yield SystemCommand(
            "Queue the report in miniature",
            "Pretraining, then every Table 1 row in miniature, on the embedded sample (M on the catalog)",
            self.action_queue_study,
        )
        yield SystemCommand("Reload catalog", f"Read {self.catalog_path} again", self._reload_and_refresh)

    def _reload_and_refresh(self) -> None:
        self.reload_catalog()
        refresh = getattr(self.screen, "refresh_catalog", None)
        if refresh:
            refresh()


def make_app(catalog_path: Path | str = "experiments.toml", runs_root: Path | str = "checkpoints") -> FtuiApp:
    """One factory for the CLI and the tests."""
    return FtuiApp(Path(catalog_path), Path(runs_root))
