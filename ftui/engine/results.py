"""The report's Table 1 beside ftui's measured accuracies, and its export as Markdown and CSV.

One row per catalog experiment, in catalog order. "Measured" is the best test
accuracy over the experiment's finished runs (``measured``): a stopped or
failed run did not follow the recipe to the end, so comparing it with the
report would mislead. The catalog screen's "ftui" column is the same figure.
Runs of experiments no longer in the catalog are listed after, by name, so a
renamed or deleted entry does not hide a result already paid for.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import FtuiError
from ..formatting import duration
from .atomic import atomic_write_text
from .catalog import Catalog
from .experiment import describe_changes
from .model_facts import describe
from .runs import METRICS, RunFolder, RunSummary

MARKDOWN = "results.md"
CSV = "results.csv"
MEASURED_NOTE = (
    "ftui % is the best test accuracy over the experiment's finished runs; "
    "diff = ftui % - report %, in points; time is the wall-clock time of that best run; "
    "measured on = that run's dataset, test images, epochs done of planned and starting weights."
)
FULL_TEST_SET = ("cifar10", 10_000)  # what the report's figures were measured on
NOT_COMPARABLE = "†"
NOT_COMPARABLE_NOTE = (
    f"{NOT_COMPARABLE} measured on the embedded sample or a subset of the test set: "
    "not comparable with the report's figure on the full CIFAR-10 test set."
)
CSV_HEADER = (
    "experiment",
    "model",
    "input_size",
    "trainable",
    "report_acc",
    "ftui_acc",
    "difference",
    "seconds",
    "finished_runs",
    "run",
    "dataset",
    "test_images",
    "epochs_done",
    "epochs",
    "weights",
    "comparable",
)


@dataclass(frozen=True)
class MeasuredOn:
    """What a measured figure was measured on: read from its run folder."""

    dataset: str
    test_images: int | None
    epochs_done: int
    epochs: int
    weights: str

    @property
    def comparable(self) -> bool:
        """Measured as the report measured: on CIFAR-10's whole test set."""
        return (self.dataset, self.test_images) == FULL_TEST_SET

    def text(self) -> str:
        images = f"{self.test_images} test images" if self.test_images is not None else "test images unknown"
        return f"{self.dataset}, {images}, {self.epochs_done}/{self.epochs} epochs, weights {self.weights}"


def measured_on(run: RunSummary) -> MeasuredOn | None:
    try:
        exp = RunFolder(run.path).read_experiment()
    except FtuiError:
        return None
    weights = str(exp.get("weights", "?"))
    return MeasuredOn(
        str(exp.get("dataset", "?")),
        _test_images(run.path),
        run.epochs_done,
        run.epochs,
        Path(weights).name if "/" in weights else weights,  # a file: its name says enough in a table
    )


def _test_images(run_dir: Path) -> int | None:
    """How many test images the run evaluated on: its first event says (the run's start)."""
    from .events import RunStarted, from_record

    try:
        with open(run_dir / METRICS, encoding="utf-8") as f:
            first = from_record(json.loads(f.readline()))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return first.test_images if isinstance(first, RunStarted) else None


@dataclass(frozen=True)
class ResultRow:
    experiment: str
    model: str
    input_size: int | None
    trains: str  # "all", "all but bn1", or the units that train
    reference: float | None  # the report's test accuracy, percent
    measured: float | None  # best test accuracy of a finished run, percent
    runs: int  # finished runs
    seconds: float | None  # run time of the run that gave `measured`
    run: str  # that run's folder name
    in_catalog: bool = True
    on: MeasuredOn | None = None  # what `measured` was measured on
    origin: str = ""  # a variant saved from the editor: the experiment it came from (its row is just above)
    changes: str = ""  # and what it changes of that experiment

    @property
    def comparable(self) -> bool:
        return self.on is not None and self.on.comparable

    @property
    def note(self) -> str:
        return measured_note(self.runs, self.run)

    @property
    def difference(self) -> float | None:
        if self.measured is None or self.reference is None:
            return None
        return round(self.measured - self.reference, 2)  # no float noise such as 0.09999999


def short_trainable(model: str, cifar_stem: bool, trainable, lora=()) -> str:
    """ "all", "all but X" when that is shorter, or the units in the experiment's order; then the LoRA units."""
    trainable, lora = tuple(trainable), tuple(lora)
    try:
        info = describe(model, cifar_stem)
    except (FtuiError, ValueError, TypeError):  # a removed experiment may name a model we cannot build
        return ", ".join(trainable) + (f" + LoRA {', '.join(lora)}" if lora else "")
    trained = summarize_units(trainable, info.unit_names)
    if not lora:
        return trained
    others = {a.unit for a in info.adaptable} - set(trainable)
    if set(lora) >= others:
        adapted = "all" if not trainable else "all others"
    else:
        adapted = ", ".join(lora) if len(lora) <= 3 else f"{len(lora)} units"
    return f"LoRA {adapted}" if not trainable else f"{trained} + LoRA {adapted}"


def summarize_units(trainable, units) -> str:
    """'all', 'all but bn1', or the list of trained units: whichever is shorter to read."""
    if not trainable:
        return "nothing"
    if set(trainable) >= set(units):
        return "all"
    listed = ", ".join(trainable)
    frozen = "all but " + ", ".join(u for u in units if u not in trainable)
    return frozen if len(frozen) < len(listed) else listed


@dataclass(frozen=True)
class Measured:
    """What ftui measured for one experiment: the best test accuracy of its finished runs."""

    best: RunSummary | None  # the finished run with the best accuracy
    finished: int  # how many finished runs there are

    @property
    def accuracy(self) -> float | None:
        return self.best.best_acc if self.best else None

    def note(self) -> str:
        return measured_note(self.finished, self.best.name if self.best else "")


def measured_note(finished: int, run: str) -> str:
    """What the measured figure is, said the same way on every screen."""
    if not run:
        return "no finished run yet"
    return f"best of {finished} finished run{'' if finished == 1 else 's'}: {run}"


def measured(runs: list[RunSummary]) -> Measured:
    """The one definition of ftui's measured accuracy for the runs of one experiment."""
    finished = [r for r in runs if r.state == "finished"]
    scored = [(r.best_acc, r) for r in finished if r.best_acc is not None]
    best = max(scored, key=lambda pair: pair[0], default=None)
    return Measured(best[1] if best else None, len(finished))


def by_experiment(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    grouped: dict[str, list[RunSummary]] = defaultdict(list)
    for run in runs:
        grouped[run.experiment].append(run)
    return dict(grouped)


def measured_by_experiment(runs: list[RunSummary]) -> dict[str, Measured]:
    return {name: measured(group) for name, group in by_experiment(runs).items()}


def _row(name: str, model: str, size, trains: str, reference, runs: list[RunSummary], in_catalog=True) -> ResultRow:
    found = measured(runs)
    best, count = found.best, found.finished
    return ResultRow(
        name,
        model,
        size,
        trains,
        reference,
        best.best_acc if best else None,
        count,
        best.seconds if best else None,
        best.name if best else "",
        in_catalog,
        measured_on(best) if best else None,
    )


def _orphan_row(name: str, runs: list[RunSummary]) -> ResultRow | None:
    best = measured(runs).best
    if best is None:
        return None  # nothing measured: a removed experiment's failed runs are noise here
    try:
        exp = RunFolder(best.path).read_experiment()
    except FtuiError:
        exp = {}
    model = exp.get("model", "")
    trains = (
        short_trainable(model, bool(exp.get("cifar_stem")), exp.get("trainable", ()), exp.get("lora", ()))
        if model
        else ""
    )
    return _row(name, model, exp.get("input_size"), trains, exp.get("reference_acc"), runs, in_catalog=False)


def results_table(catalog: Catalog, runs: list[RunSummary]) -> list[ResultRow]:
    """A row per catalog experiment, each variant right under the experiment it was saved from; then the
    runs of experiments no longer in the catalog."""
    by_name = by_experiment(runs)
    entries = {e.name: e for e in catalog.experiments}
    variants: dict[str, list] = defaultdict(list)
    for e in catalog.experiments:
        if e.origin in entries and e.origin != e.name:
            variants[e.origin].append(e)
    rows = []
    for e in catalog.experiments:
        if e.origin in entries and e.origin != e.name:
            continue  # listed under its origin
        for exp in (e, *variants[e.name]):
            row = _row(
                exp.name,
                exp.model,
                exp.input_size,
                short_trainable(exp.model, exp.cifar_stem, exp.trainable, exp.lora),
                exp.reference_acc,
                by_name.get(exp.name, []),
            )
            if exp is not e:
                row = replace(row, origin=e.name, changes=describe_changes(e.to_dict(), exp.to_dict()))
            rows.append(row)
    orphans = (_orphan_row(name, by_name[name]) for name in sorted(set(by_name) - set(catalog.names)))
    return rows + [row for row in orphans if row is not None]


# --- formatting ---------------------------------------------------------------------


def format_acc(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def summary(rows: list[ResultRow]) -> str:
    """One line: how much of the report is measured, and how far off on average where it compares."""
    referenced = [r for r in rows if r.reference is not None]
    measured_rows = [r for r in referenced if r.difference is not None]
    text = f"{len(measured_rows)} of {len(referenced)} report rows measured"
    diffs = [r.difference for r in measured_rows if r.comparable and r.difference is not None]
    if len(diffs) < len(measured_rows):
        text += f", {len(diffs)} on the full CIFAR-10 test set"
    return text + (f"; mean difference {sum(diffs) / len(diffs):+.1f} points" if diffs else "")


def _cells(row: ResultRow) -> list[str]:
    size = f"{row.input_size}x{row.input_size}" if row.input_size else ""
    name = row.experiment if row.in_catalog else f"{row.experiment} (not in catalog)"
    if row.origin:
        name = f"↳ {name} (variant of {row.origin}: {row.changes or 'no change'})"
    reference = "" if row.reference is None else f"{row.reference:.1f}"
    mark = NOT_COMPARABLE if row.measured is not None and not row.comparable else ""
    return [
        name,
        row.model,
        size,
        row.trains,
        reference,
        format_acc(row.measured) + mark,
        format_acc(row.difference, signed=True) + (mark if row.difference is not None else ""),
        duration(row.seconds),
        str(row.runs),
        row.run,
        row.on.text() if row.on else "",
    ]


def to_markdown(rows: list[ResultRow]) -> str:
    header = [
        "experiment",
        "model",
        "input",
        "trainable",
        "report %",
        "ftui %",
        "diff",
        "time",
        "runs",
        "run",
        "measured on",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    note = f"\n\n{NOT_COMPARABLE_NOTE}" if any(r.measured is not None and not r.comparable for r in rows) else ""
    return "\n".join(lines) + f"\n\n{summary(rows)}. {MEASURED_NOTE}{note}\n"


def to_csv(rows: list[ResultRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        writer.writerow(
            [
                r.experiment,
                r.model,
                r.input_size,
                r.trains,
                r.reference,
                r.measured,
                r.difference,
                r.seconds,
                r.runs,
                r.run,
                *(
                    (r.on.dataset, r.on.test_images, r.on.epochs_done, r.on.epochs, r.on.weights, r.comparable)
                    if r.on
                    else (None,) * 6
                ),
            ]
        )  # csv writes None as an empty cell
    return out.getvalue()


def export_results(rows: list[ResultRow], folder: Path, appendix: str = "") -> tuple[Path, Path]:
    """Write results.md (with the appendix, a Markdown section, at its end) and results.csv into folder
    (created if missing); returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    md, table = folder / MARKDOWN, folder / CSV
    # newline="": the csv module already ends its rows with \r\n
    atomic_write_text(md, to_markdown(rows) + (f"\n{appendix}" if appendix else ""), newline="")
    atomic_write_text(table, to_csv(rows), newline="")
    return md, table
