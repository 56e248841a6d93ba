"""Results: the report's accuracies beside ftui's measured ones, exportable as Markdown and CSV."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ...engine.results import (
    CSV,
    MARKDOWN,
    NOT_COMPARABLE,
    ResultRow,
    export_results,
    measured_by_experiment,
    results_table,
    summary,
)
from ...engine.runs import list_runs
from ...engine.study import CONCLUSIONS, StudyRow, study_markdown, study_summary, study_table, verdicts
from ...formatting import duration, shorten
from ..footer import SteadyFooter
from .confirm import ConfirmScreen

# At 80 columns: the longest Table-1 name, and what is left for trains. Longer values are cut;
# the line below the table spells out the highlighted row. Model and input come last: the name mostly says them.
NAME_WIDTH = 22
TRAINS_WIDTH = 17
COLUMNS = ("experiment", "report", "ftui", "diff", "time", "runs", "trains", "model", "input")
MINIATURE_COLUMNS = ("report row", "report", "miniature row", "ftui", "measured")
VERDICT_MARKS = {True: "✓ holds:", False: "✗ does not hold:", None: "· not measured yet:"}
WIDE = 100  # below this, model and input do not fit: they are left to the line below the table
OTHER_COLUMNS = 82  # cells taken by every column but trains when all are shown, scrollbar included


def _number(value: float | None, spec: str) -> Text:
    if value is None:
        return Text("-", style="dim", justify="right")
    return Text(format(value, spec), justify="right")


def _diff(row: ResultRow) -> Text:
    diff = _number(row.difference, "+.2f")
    if row.difference is not None:
        diff.stylize("green" if row.difference >= 0 else "red")
    return diff


def _cells(row: ResultRow, trains_width: int) -> list:
    # Text, not str: cells are never read as markup. ftui's accuracy keeps 2 decimals, as measured.
    label = f"↳ {row.experiment}" if row.origin else row.experiment  # a variant, under its origin
    name = Text(shorten(label, NAME_WIDTH), style="" if row.in_catalog else "italic")
    measured = _number(row.measured, ".2f")
    if row.measured is not None and not row.comparable:
        measured.append(NOT_COMPARABLE, style="yellow")  # not measured as the report measured
    return [
        name,
        _number(row.reference, ".1f"),
        measured,
        _diff(row),
        Text(duration(row.seconds), justify="right"),
        Text(str(row.runs), justify="right"),
        Text(shorten(row.trains, trains_width)),
        Text(row.model),
        Text(str(row.input_size or ""), justify="right"),
    ]


def _study_cells(row: StudyRow) -> list:
    return [
        Text(shorten(row.mirrored, NAME_WIDTH)),
        _number(row.reference, ".1f"),
        Text(shorten(row.experiment, NAME_WIDTH)),
        _number(row.accuracy, ".2f"),
        Text(row.note, style="dim"),
    ]


def _conclusions(rows: list[StudyRow]) -> str:
    if not rows:
        return "No experiment of the catalog mirrors a report row (mirrors = ...): there is no miniature."
    return "The report's conclusions, in miniature:\n" + "\n".join(
        f"{VERDICT_MARKS[verdict]} {conclusion.text}" for conclusion, verdict in verdicts(rows)
    )


def _detail(row: ResultRow) -> str:
    where = f"{row.model} at {row.input_size}x{row.input_size}" if row.input_size else row.model
    gone = "" if row.in_catalog else " (no longer in the catalog)"
    if row.origin:
        gone = f" (variant of {row.origin}: {row.changes or 'no change'})"
    on = ""
    if row.on is not None:
        on = f"\non {row.on.text()}" + ("" if row.comparable else f" {NOT_COMPARABLE} not comparable with the report")
    return f"{row.experiment}{gone}: {where}, trains {row.trains or '?'}\n{row.note}{on}"


class ResultsScreen(Screen):
    DEFAULT_CSS = """
    ResultsScreen #summary { height: 1; padding: 0 1; text-style: bold; text-wrap: nowrap; text-overflow: ellipsis; }
    ResultsScreen DataTable { height: 1fr; overflow-x: hidden; }
    ResultsScreen #detail { height: 3; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    ResultsScreen #error-box { height: 1fr; border: thick $error; }
    ResultsScreen #error { padding: 1 2; }
    """
    BINDINGS = [
        Binding("x", "export", "Export md+csv"),
        Binding("m", "miniature", "Miniature"),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ResultRow] = []
        self.study: list[StudyRow] = []  # the report in miniature (engine/study.py)
        self.miniature = False  # m: the table shows the miniature beside Table 1
        self._shown: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(id="summary", markup=False)
        yield DataTable(cursor_type="row", zebra_stripes=True, id="results")
        yield Static(id="detail", markup=False)
        with VerticalScroll(id="error-box"):  # a catalog with many problems may not fit the screen
            yield Static(id="error", markup=False)
        yield SteadyFooter()

    def on_screen_resume(self) -> None:
        # Shown again (or for the first time): runs may have finished meanwhile.
        self.refresh_catalog()

    def refresh_catalog(self) -> None:
        """Re-read the runs (and the app's catalog); the app's "Reload catalog" command calls this too."""
        table, error = self.query_one(DataTable), self.query_one("#error", Static)
        catalog = self.app.catalog
        table.display, self.query_one("#error-box").display = catalog is not None, catalog is None
        self.query_one("#detail").display = catalog is not None
        if catalog is None:
            self.rows = []
            self.query_one("#summary", Static).update("Results: none, the catalog could not be read.")
            error.update(f"{self.app.catalog_error}\n\nFix {self.app.catalog_path}, then press r.")
            return
        runs = list_runs(self.app.runs_root)
        self.rows = results_table(catalog, runs)
        self.study = study_table(catalog, measured_by_experiment(runs))
        self._fill(table)

    def _columns(self) -> tuple[str, ...]:
        if self.miniature:
            return MINIATURE_COLUMNS
        return COLUMNS if self.size.width >= WIDE else COLUMNS[:-2]

    def on_resize(self) -> None:
        if self.app.catalog is not None:
            self._fill(self.query_one(DataTable))

    def _fill(self, table: DataTable) -> None:
        cursor, columns = table.cursor_row, self._columns()
        trains_width = max(TRAINS_WIDTH, self.size.width - OTHER_COLUMNS) if columns == COLUMNS else TRAINS_WIDTH
        table.clear(columns=columns != self._shown)
        if columns != self._shown:
            table.add_columns(*columns)
            self._shown = columns
        if self.miniature:
            for study_row in self.study:
                table.add_row(*_study_cells(study_row))
        else:
            for row in self.rows:
                table.add_row(*_cells(row, trains_width)[: len(columns)])
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        text = f"Miniature: {study_summary(self.study)}" if self.miniature else f"Results: {summary(self.rows)}"
        self.query_one("#summary", Static).update(text)
        self._describe()

    def _describe(self) -> None:
        table, detail = self.query_one(DataTable), self.query_one("#detail", Static)
        detail.styles.height = len(CONCLUSIONS) + 1 if self.miniature else 3
        if self.miniature:
            detail.update(_conclusions(self.study))
            return
        text = _detail(self.rows[table.cursor_row]) if self.rows and table.row_count else ""
        detail.update(text)

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._describe()

    def action_refresh(self) -> None:
        if self.app.catalog is None:  # nothing to lose: read the (maybe fixed) file again
            self.app.reload_catalog()
        self.refresh_catalog()

    def action_miniature(self) -> None:
        """Switch between Table 1 beside ftui's runs and the report in miniature beside Table 1."""
        self.miniature = not self.miniature
        if self.app.catalog is not None:
            self.query_one(DataTable).move_cursor(row=0)
            self._fill(self.query_one(DataTable))

    def action_export(self) -> None:
        self.refresh_catalog()  # export what is on disk now, not what was read when the screen opened
        if self.app.catalog is None:
            self.notify("Nothing to export: the catalog could not be read.", severity="error")
            return
        earlier = [p for p in (self.app.runs_root / MARKDOWN, self.app.runs_root / CSV) if p.exists()]
        if not earlier:
            self._export()
            return
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(p.stat().st_mtime for p in earlier)))
        question = (
            f"{' and '.join(p.name for p in earlier)} in {self.app.runs_root} were exported before ({when}). "
            "Replace them with the results as they are now?"
        )
        self.app.push_screen(ConfirmScreen(question, "Replace", "Keep them"), lambda ok: self._export() if ok else None)

    def _export(self) -> None:
        try:
            appendix = study_markdown(self.study) if self.study else ""
            md, table = export_results(self.rows, self.app.runs_root, appendix)
        except OSError as exc:
            self.notify(
                f"Could not write the results into {self.app.runs_root}: {exc.strerror or exc}",
                severity="error",
                markup=False,
            )
            return
        self.notify(f"Wrote {md}\nand {table}", title="Results exported", markup=False)

    def action_back(self) -> None:
        self.app.pop_screen()
