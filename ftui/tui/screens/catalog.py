"""The first screen: every experiment of the catalog, with the report's and ftui's accuracy."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from ...engine.results import short_trainable
from ...engine.runs import list_runs
from ..footer import SteadyFooter


def best_measured(runs) -> dict[str, float]:
    """Best test accuracy ftui has measured per experiment, over every run on disk."""
    best: dict[str, float] = {}
    for run in runs:
        if run.best_acc is not None:
            best[run.experiment] = max(run.best_acc, best.get(run.experiment, run.best_acc))
    return best


TRAINS_WIDTH = 18  # keeps the table inside 80 columns


class CatalogScreen(Screen):
    DEFAULT_CSS = """
    CatalogScreen DataTable { height: 1fr; }
    CatalogScreen #description { height: 3; padding: 0 1; color: $text-muted; }
    CatalogScreen #error { height: 1fr; padding: 1 2; border: thick $error; }
    """
    BINDINGS = [
        Binding("enter", "edit", "Edit", priority=True),
        Binding("l", "launch", "Launch"),
        Binding("r", "runs", "Runs"),
        Binding("t", "results", "Results"),
        Binding("v", "live", "Live run"),
        Binding("f5", "reload", "Reload"),
        Binding("q", "app.quit", "Quit"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="experiments")
        yield Static(id="description", markup=False)
        yield Static(id="error", markup=False)
        yield SteadyFooter()

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
        table.display, error.display = catalog is not None, catalog is None
        if catalog is None:
            error.update(
                f"The catalog {self.app.catalog_path.resolve()} could not be read:\n\n{self.app.catalog_error}\n\n"
                "Fix the file (or start ftui with --catalog PATH) and press F5 to reload. "
                "Runs (r) and results (t) still work."
            )
            return
        best = best_measured(list_runs(self.app.runs_root))
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
            table.add_row(*self._cells(exp, best.get(exp.name)), key=exp.name)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        self._describe()

    @staticmethod
    def _cells(exp, measured: float | None) -> list:
        trains = short_trainable(exp.model, exp.cifar_stem, exp.trainable)
        size = f"{exp.input_size}" + ("c" if exp.cifar_stem else "")
        if len(trains) > TRAINS_WIDTH:  # the description line below spells it out
            trains = trains[: TRAINS_WIDTH - 1] + "…"
        ref = f"{exp.reference_acc:.1f}" if exp.reference_acc is not None else "-"
        return [exp.name, size, trains, str(exp.epochs), ref, CatalogScreen._measured_cell(measured)]

    @staticmethod
    def _measured_cell(measured: float | None) -> Text:
        return Text(f"{measured:.1f}" if measured is not None else "-", style="bold" if measured is not None else "dim")

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
            text = (
                f"{exp.description}\n{exp.model}{stem}, trains {', '.join(exp.trainable)}; weights {exp.weights}, "
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
