"""The first screen: every experiment of the catalog, with the report's and ftui's accuracy."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from ...engine.results import Measured, measured, measured_by_experiment, short_trainable
from ...engine.runs import list_runs
from ...formatting import shorten
from ..footer import SteadyFooter
from ..widgets.queue_list import QueueList
from .confirm import ConfirmScreen

TRAINS_WIDTH = 18  # keeps the table inside 80 columns


class CatalogScreen(Screen):
    DEFAULT_CSS = """
    CatalogScreen DataTable { height: 1fr; }
    CatalogScreen #description { height: 4; padding: 0 1; color: $text-muted; }
    CatalogScreen #error { height: 1fr; padding: 1 2; border: thick $error; }
    """
    BINDINGS = [
        Binding("enter", "edit", "Edit", priority=True),
        Binding("l", "launch", "Launch"),
        Binding("space", "mark", "Mark", show=False),
        Binding("a", "queue", "Queue"),
        Binding("R", "queue_report", "Queue report", show=False),
        Binding("M", "app.queue_study", "Queue miniature", show=False),
        Binding("u", "app.open_queue", "Queue list", show=False),
        Binding("r", "runs", "Runs"),
        Binding("t", "results", "Results"),
        Binding("v", "live", "Live run"),
        Binding("f5", "reload", "Reload"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.measured: dict[str, Measured] = {}  # per experiment, read with the runs on each refresh
        self.marked: set[str] = set()  # experiments marked (space) to queue together (a)

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="experiments")
        yield QueueList()
        yield Static(id="description", markup=False)
        yield Static(id="error", markup=False)
        yield SteadyFooter(compact=True)  # eight keys and the palette fit in 80 columns

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in ("experiment", "input", "trains", "ep", "report", "ftui"):
            table.add_column(label, key=label)
        self.refresh_catalog()

    def on_screen_resume(self) -> None:
        # Back from a run or the editor: the best measured accuracies may have changed.
        self.refresh_catalog()

    def refresh_catalog(self) -> None:
        table, error = self.query_one(DataTable), self.query_one("#error", Static)
        catalog = self.app.catalog
        was_hidden = not table.display
        table.display, error.display = catalog is not None, catalog is None
        if catalog is not None and was_hidden:
            table.focus()  # hidden, it lost the focus: without it the arrows did nothing (enter is the screen's)
        if catalog is None:
            error.update(
                f"The catalog {self.app.catalog_path.resolve()} could not be read:\n\n{self.app.catalog_error}\n\n"
                "Fix the file (or start ftui with --catalog PATH) and press F5 to reload. "
                "Runs (r) and results (t) still work."
            )
            return
        # The "ftui" column is the Results screen's figure, the best of finished runs (engine/results.py):
        # a stopped or failed run did not follow the recipe to its end. The line below says so.
        self.measured = measured_by_experiment(list_runs(self.app.runs_root))
        best = {name: m.accuracy for name, m in self.measured.items()}
        if [str(k.value) for k in table.rows] == list(catalog.names):
            # Same experiments: only the measured column can have changed. Each update_cell
            # throws away the table's rendered lines, so only cells that changed are touched:
            # going back to this screen then repaints from cache.
            for exp in catalog.experiments:
                cell = self._measured_cell(best.get(exp.name))
                if table.get_cell(exp.name, "ftui") != cell:
                    table.update_cell(exp.name, "ftui", cell)
            self._describe()
            return
        row = table.cursor_row
        table.clear()
        for exp in catalog.experiments:
            table.add_row(*self._cells(exp, best.get(exp.name), exp.name in self.marked), key=exp.name)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        self._describe()

    @staticmethod
    def _cells(exp, accuracy: float | None, marked: bool = False) -> list:
        trains = short_trainable(exp.model, exp.cifar_stem, exp.trainable, exp.lora)
        size = f"{exp.input_size}" + ("c" if exp.cifar_stem else "")
        trains = shorten(trains, TRAINS_WIDTH)  # the description line below spells it out
        ref = f"{exp.reference_acc:.1f}" if exp.reference_acc is not None else "-"
        return [
            CatalogScreen._name_cell(exp.name, marked),
            size,
            trains,
            str(exp.epochs),
            ref,
            CatalogScreen._measured_cell(accuracy),
        ]

    @staticmethod
    def _name_cell(name: str, marked: bool) -> Text:
        return Text(f"* {name}", style="bold reverse") if marked else Text(name)

    @staticmethod
    def _measured_cell(accuracy: float | None) -> Text:
        return Text(f"{accuracy:.1f}" if accuracy is not None else "-", style="bold" if accuracy is not None else "dim")

    def _selected(self):
        catalog = self.app.catalog
        table = self.query_one(DataTable)
        if catalog is None or not table.row_count:
            return None
        return catalog.experiments[table.cursor_row]

    def _describe(self) -> None:
        exp = self._selected()
        text = ""
        if exp is not None:
            stem = ", CIFAR stem" if exp.cifar_stem else ""
            found = self.measured.get(exp.name) or measured([])
            text = (
                f"{exp.description}\nftui: {found.note()}\n"
                f"{exp.model}{stem}, trains {', '.join(exp.trainable)}; weights {exp.weights}, "
                f"{exp.dataset}, lr {exp.lr:g}, batch {exp.batch_size}"
            )
        description = self.query_one("#description", Static)
        if description.content != text:  # an unchanged update would still re-lay-out the screen
            description.update(text)

    def on_data_table_row_highlighted(self, _event) -> None:
        self._describe()

    def on_data_table_row_selected(self, _event) -> None:
        self.action_edit()

    def action_edit(self) -> None:
        from .editor import EditorScreen

        exp = self._selected()
        if exp is not None:
            self.app.push_screen(EditorScreen(exp))

    def action_launch(self) -> None:
        exp = self._selected()
        if exp is not None:
            self.app.launch(exp)

    def action_runs(self) -> None:
        self.app.open_runs()

    def action_results(self) -> None:
        self.app.open_results()

    def action_live(self) -> None:
        self.app.open_live_run()

    def action_reload(self) -> None:
        self.app.reload_catalog()
        self.refresh_catalog()
        if self.app.catalog is not None:
            self.notify(f"Read {len(self.app.catalog.experiments)} experiments from {self.app.catalog_path}.")

    # -- queueing (engine/queue.py) --------------------------------------------------------

    def action_mark(self) -> None:
        exp = self._selected()
        if exp is None:
            return
        self.marked ^= {exp.name}
        self.query_one(DataTable).update_cell(
            exp.name, "experiment", self._name_cell(exp.name, exp.name in self.marked)
        )
        self.query_one(DataTable).action_cursor_down()  # marking a run of rows is space, space, space

    def action_queue(self) -> None:
        """Queue the marked experiments, in the catalog's order; none marked: the highlighted one."""
        catalog = self.app.catalog
        if catalog is None:
            return
        chosen = [e for e in catalog.experiments if e.name in self.marked] or [e for e in [self._selected()] if e]
        if chosen:
            self.app.enqueue(chosen)
            self._unmark()

    def action_queue_report(self) -> None:
        """Every experiment with the report's accuracy (the whole Table 1), after a question: it is hours."""
        catalog = self.app.catalog
        report = [e for e in catalog.experiments if e.reference_acc is not None] if catalog else []
        if not report:
            self.notify("No experiment of the catalog has a reference_acc (the report's figure) to queue.")
            return
        question = f"Queue the {len(report)} experiments of the report ({', '.join(e.name for e in report)})?"
        self.app.push_screen(
            ConfirmScreen(question, f"Queue {len(report)}", "Cancel"),
            lambda ok: self.app.enqueue(report) if ok else None,
        )

    def _unmark(self) -> None:
        table = self.query_one(DataTable)
        for name in self.marked:
            table.update_cell(name, "experiment", self._name_cell(name, False))
        self.marked.clear()
