"""Every run on disk: state, best accuracy, duration; inspect, evaluate, resume, compare."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static
from textual.worker import Worker, WorkerState

from ...engine.history import training_seconds
from ...engine.runs import BEST, LAST, RunFolder, RunSummary, list_runs
from ...errors import FtuiError, RunError
from ...formatting import duration, shorten
from ..footer import SteadyFooter
from .checkpoint import CheckpointScreen, error_text, evaluation_text

REFRESH_SECONDS = 0.5  # a change in a run folder, whoever made it, shows within a second
COLUMNS = (
    ("", "mark"),
    ("started", "started"),
    ("experiment", "exp"),
    ("state", "state"),
    ("best", "best"),
    ("epochs", "epochs"),
    ("time", "time"),
    ("reason", "reason"),
)
STATE_STYLES = {"finished": "green", "running": "cyan", "stopped": "yellow", "failed": "red", "interrupted": "red"}


def run_seconds(run: RunSummary) -> float | None:
    """Closed runs record their duration; a running one goes on from it (history.training_seconds)."""
    if run.state != "running":
        return run.seconds
    try:
        return training_seconds(RunFolder(run.path).read_status())  # when it resumed: not in the summary
    except RunError:
        return run.seconds


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def started(run: RunSummary) -> str:
    """Month, day and minute of the start: enough to tell an experiment's runs apart."""
    stamp = run.started_at
    return f"{stamp[5:10]} {stamp[11:16]}" if len(stamp) >= 16 else "-"


def model_checkpoint(run_dir: Path) -> Path | None:
    """best.safetensors, or last.safetensors before a best exists; None before the first epoch ends."""
    for name in (BEST, LAST):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


class RunsScreen(Screen):
    SUB_TITLE = "runs and checkpoints"
    DEFAULT_CSS = """
    RunsScreen DataTable { height: 1fr; }
    RunsScreen #detail { height: auto; max-height: 6; padding: 0 1; border-top: solid $primary; }
    RunsScreen #empty { height: 1fr; padding: 1 2; color: $text-muted; }
    """
    BINDINGS = [
        # priority: otherwise the table's own (hidden) enter binding hides this one in the footer
        Binding("enter", "curves", "Curves", priority=True),
        Binding("i", "inspect", "Inspect"),
        Binding("e", "evaluate", "Eval"),
        Binding("r", "resume", "Resume"),
        Binding("a", "resume(True)", "Queue resume", show=False),  # the footer is full at 80 columns
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self):
        super().__init__()
        self.runs: list[RunSummary] | None = None
        self.cells: list[list] = []  # the table's cells as last drawn
        self.marked: set[Path] = set()
        self.evaluations: dict[Path, Text] = {}  # run folder -> result or error of its last evaluation
        self.pending: dict[Worker, Path] = {}  # evaluations under way -> their run folder

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="runs")
        yield Static(id="detail")
        yield Static(id="empty", markup=False)
        yield SteadyFooter(compact=True)  # seven keys and the palette fit in 80 columns

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key, width=1 if key == "mark" else None)
        self.refresh_runs()
        self.set_interval(REFRESH_SECONDS, self.refresh_runs)

    def on_screen_resume(self) -> None:
        self.refresh_runs(force=True)

    def on_resize(self) -> None:
        self.refresh_runs(force=True)  # the reason column takes the width that is left

    # -- the table -------------------------------------------------------------

    def refresh_runs(self, force: bool = False) -> None:
        if not (force or self.is_current):
            return  # under another screen: on_screen_resume catches up
        runs = list_runs(self.app.runs_root)
        if runs == self.runs and not force and not any(r.state == "running" for r in runs):
            return  # unchanged (and no running duration to advance): skip the redraw
        self.marked &= {r.path for r in runs}
        cells = [self._cells(run) for run in runs]
        if runs == self.runs and cells == self.cells and not force:
            return  # a running duration that has not reached its next second
        self.runs, self.cells = runs, cells
        table = self.query_one(DataTable)
        selected = self._selected()
        table.clear()
        width = self._reason_width(cells)
        for run, row in zip(runs, cells, strict=True):
            table.add_row(*row[:-1], Text(shorten(row[-1], width), style="dim"), key=str(run.path))
        if selected is not None and str(selected.path) in table.rows:
            table.move_cursor(row=table.get_row_index(str(selected.path)))
        self._show_empty(not runs)
        self._describe()

    def _cells(self, run: RunSummary) -> list:
        best = f"{run.best_acc:.2f}" if run.best_acc is not None else "-"
        mark = Text("●", style="bold magenta") if run.path in self.marked else ""
        return [
            mark,
            started(run),
            run.experiment,
            state_text(run.state),
            best,
            f"{run.epochs_done}/{run.epochs}",
            duration(run_seconds(run)) or "-",
            run.reason,
        ]

    def _reason_width(self, cells: list[list]) -> int:
        """What the other columns leave for the reason: the table never scrolls sideways."""
        width = self.query_one(DataTable).size.width or self.app.size.width
        used = sum(
            max([len(label)] + [len(str(row[i])) for row in cells]) + 2 for i, (label, _) in enumerate(COLUMNS[:-1])
        )
        return max(12, width - used - 4)  # 2 for the reason's own padding, 2 for a vertical scrollbar

    def _show_empty(self, empty: bool) -> None:
        self.query_one(DataTable).display = not empty
        self.query_one("#detail").display = not empty
        self.query_one("#empty").display = empty
        if empty:
            self.query_one("#empty", Static).update(
                f"No runs yet in {self.app.runs_root}: launch one from the catalog (escape, then l)."
            )

    def _selected(self) -> RunSummary | None:
        table = self.query_one(DataTable)
        if not table.row_count or not self.runs:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.runs if str(r.path) == key), None)

    def _describe(self) -> None:
        run = self._selected()
        text = Text()
        if run is not None:
            text.append(f"{self.app.runs_root / run.name}  ")
            text.append_text(state_text(run.state))
            if run.reason:
                text.append(f": {run.reason}")
            if run.path in self.evaluations:
                text.append("\n").append_text(self.evaluations[run.path])
        self.query_one("#detail", Static).update(text)

    def on_data_table_row_highlighted(self, _event) -> None:
        self._describe()

    def on_data_table_row_selected(self, _event) -> None:
        self.action_curves()

    # -- actions -----------------------------------------------------------------

    def action_curves(self) -> None:
        run = self._selected()
        if run is not None:
            self.app.open_run(run.path)

    def _selected_checkpoint(self):
        """(run, its best or last checkpoint), or None after saying why there is none."""
        run = self._selected()
        if run is None:
            return None
        checkpoint = model_checkpoint(run.path)
        if checkpoint is None:
            self.notify(f"{run.name} has no checkpoint yet: no epoch has completed.", severity="warning")
            return None
        return run, checkpoint

    def action_inspect(self) -> None:
        selected = self._selected_checkpoint()
        if selected is not None:
            self.app.push_screen(CheckpointScreen(selected[1]))

    def action_evaluate(self) -> None:
        selected = self._selected_checkpoint()
        if selected is None:
            return
        run, checkpoint = selected
        try:
            device = RunFolder(run.path).read_experiment().get("device", "auto")
        except FtuiError as exc:
            self.notify(str(exc), severity="error")
            return
        self.evaluations[run.path] = Text(f"evaluating {checkpoint.name} on the test set…", style="italic")
        self.pending[self._evaluate(checkpoint, device)] = run.path
        self._describe()

    @work(thread=True, exclusive=True, group="eval", exit_on_error=False)
    def _evaluate(self, checkpoint: Path, device: str) -> str:
        return evaluation_text(checkpoint, device)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        finished = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)
        if event.worker not in self.pending or event.state not in finished:
            return
        worker, run_dir = event.worker, self.pending.pop(event.worker)
        if event.state == WorkerState.SUCCESS:
            self.evaluations[run_dir] = Text(worker.result, style="bold")
            self.notify(f"{run_dir.name}: {worker.result}", timeout=10)
        elif event.state == WorkerState.ERROR:
            message = error_text(worker.error)
            self.evaluations[run_dir] = Text(f"evaluation failed: {message}", style="red")
            self.notify(message, title="Evaluation failed", severity="error", timeout=15)
        elif run_dir not in self.pending.values():  # cancelled: another evaluation replaced it
            self.evaluations.pop(run_dir, None)
        self._describe()

    def action_resume(self, queue: bool = False) -> None:
        """Resume the selected run now, or (a) add its resume to the queue."""
        run = self._selected()
        if run is None:
            return
        if run.state == "finished":
            self.notify(f"{run.name} finished all its {run.epochs} epochs: there is nothing to resume.")
        elif run.state == "running":
            self.notify(f"{run.name} is still running.")
        elif not (run.path / LAST).is_file():
            self.notify(
                f"{run.name} ended before its first epoch completed: nothing to resume from. "
                f"Start {run.experiment} again from the catalog.",
                severity="warning",
            )
        else:
            try:
                if queue:
                    self.app.queue_resume(run.path)
                else:
                    self.app.resume_run(run.path)
            except FtuiError as exc:
                self.notify(str(exc), title="Cannot resume", severity="error")

    def action_mark(self) -> None:
        run = self._selected()
        if run is None:
            return
        self.marked ^= {run.path}
        table = self.query_one(DataTable)
        mark = Text("●", style="bold magenta") if run.path in self.marked else ""
        table.update_cell(str(run.path), "mark", mark)
        table.action_cursor_down()

    def action_compare(self) -> None:
        from .compare import CompareScreen

        paths = [r.path for r in self.runs or [] if r.path in self.marked]
        if len(paths) < 2:
            self.notify("Mark two or more runs with space, then press c to compare them.")
            return
        self.app.push_screen(CompareScreen(paths))

    def action_back(self) -> None:
        self.app.pop_screen()
