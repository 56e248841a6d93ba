"""The report in miniature: experiments that mirror a row of the report's Table 1 (`mirrors`), the
runs they start from (`weights = "run:NAME"`), and how their results compare with the report's:
side by side, as a rank correlation, and as the report's own conclusions checked one by one."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .catalog import Catalog
from .experiment import RUN_WEIGHTS, Experiment
from .results import Measured


def base_of(exp: Experiment) -> str:
    """The experiment whose finished run this one starts from, or ""."""
    return exp.weights[len(RUN_WEIGHTS) :] if exp.weights.startswith(RUN_WEIGHTS) else ""


def in_dependency_order(catalog: Catalog, chosen: Iterable[Experiment]) -> list[Experiment]:
    """The chosen experiments and the catalog experiments they start from, each base before the runs that
    start from it, otherwise in the catalog's order: a queue that trains them in this order never starts
    a run before its base has finished."""
    entries = {e.name: e for e in catalog.experiments}
    ordered: list[Experiment] = []

    def place(exp: Experiment, path: tuple[str, ...]) -> None:
        if exp in ordered or exp.name in path:  # placed already, or a cycle (that run fails and says why)
            return
        base = entries.get(base_of(exp))
        if base is not None:
            place(base, (*path, exp.name))
        ordered.append(exp)

    for exp in chosen:
        place(exp, ())
    return ordered


def study_experiments(catalog: Catalog) -> list[Experiment]:
    """The report in miniature: every experiment that mirrors a report row, with its bases first."""
    return in_dependency_order(catalog, [e for e in catalog.experiments if e.mirrors])


def with_prefix(catalog: Catalog, prefix: str) -> list[Experiment]:
    """`ftui run --all PREFIX`: the experiments whose names start with it, with their bases first."""
    return in_dependency_order(catalog, [e for e in catalog.experiments if e.name.startswith(prefix)])


def still_to_train(experiments: list[Experiment], measured: dict[str, Measured]) -> list[Experiment]:
    """Those of the experiments that have no finished run yet (measured: measured_by_experiment's), in order:
    what continues a study that was stopped part-way."""
    return [e for e in experiments if e.name not in measured or measured[e.name].best is None]


@dataclass(frozen=True)
class StudyRow:
    mirrored: str  # the report's row (a catalog experiment)
    reference: float | None  # its accuracy in the report, percent
    experiment: str  # the miniature row
    accuracy: float | None  # ftui's measured accuracy of the miniature row, percent
    note: str  # which run gave it


def study_table(catalog: Catalog, measured: dict[str, Measured]) -> list[StudyRow]:
    entries = {e.name: e for e in catalog.experiments}
    rows = []
    for exp in catalog.experiments:
        if not exp.mirrors:
            continue
        found = measured.get(exp.name, Measured(None, 0))
        mirrored = entries.get(exp.mirrors)
        reference = mirrored.reference_acc if mirrored else None
        rows.append(StudyRow(exp.mirrors, reference, exp.name, found.accuracy, found.note()))
    return rows


def _ranks(values: list[float]) -> list[float]:
    """Rank 1 for the smallest; tied values share the mean of their ranks (as Spearman's rho needs)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation: Pearson's correlation of the ranks. None below three pairs, or when
    one side has no spread (every value the same)."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def compared(rows: list[StudyRow]) -> list[StudyRow]:
    """The rows that have both figures: the ones the correlation is computed over."""
    return [r for r in rows if r.reference is not None and r.accuracy is not None]


def rank_correlation(rows: list[StudyRow]) -> float | None:
    both = compared(rows)
    return spearman([r.reference for r in both], [r.accuracy for r in both])  # type: ignore[misc]


@dataclass(frozen=True)
class Conclusion:
    """A conclusion the report draws from Table 1: each row of `better` beats each row of `worse`."""

    text: str
    better: tuple[str, ...]
    worse: tuple[str, ...]

    def holds(self, accuracy: dict[str, float]) -> bool | None:
        """Whether it holds for these accuracies (by Table 1 row); None while a row is not measured."""
        if any(name not in accuracy for name in self.better + self.worse):
            return None
        return min(accuracy[n] for n in self.better) > max(accuracy[n] for n in self.worse)


_SINGLES = ("resnet18-layer1", "resnet18-layer2", "resnet18-layer3", "resnet18-layer4")
_PAIRS = ("resnet18-layer1-layer4", "resnet18-layer2-layer3", "resnet18-layer1-layer2", "resnet18-layer3-layer4")
CONCLUSIONS = (
    Conclusion("a new conv1 with the rest frozen does worse than the head alone (§4.1.2)",
               ("resnet18-fc",), ("resnet18-fc-conv1",)),
    Conclusion("of single layers, layer3 does best (§4.1.3)", ("resnet18-layer3",),
               tuple(n for n in _SINGLES if n != "resnet18-layer3")),
    Conclusion("two spread-out layers beat two adjacent ones (§4.1.3)", _PAIRS[:2], _PAIRS[2:]),
    Conclusion("full fine-tuning beats every partial one (§4.1.3, §5)", ("resnet18-fft",),
               ("resnet18-fc", "resnet18-fc-conv1", *_SINGLES, *_PAIRS)),
    Conclusion("per-layer learning rates beat one rate (§4.2)", ("resnet18-fft-lr",), ("resnet18-fft",)),
    Conclusion("input at the pretraining resolution beats a new stem (§4.3)", ("resnet18-fft-224",),
               ("resnet18-fft",)),
)  # fmt: skip


def verdicts(rows: list[StudyRow]) -> list[tuple[Conclusion, bool | None]]:
    accuracy: dict[str, float] = {}
    for r in rows:
        if r.accuracy is not None:
            accuracy.setdefault(r.mirrored, r.accuracy)  # the first row mirroring a report row speaks for it
    return [(c, c.holds(accuracy)) for c in CONCLUSIONS]


VERDICT_WORDS = {True: "holds", False: "does not hold", None: "not measured yet"}


def study_summary(rows: list[StudyRow]) -> str:
    """One line: how much of the miniature is measured, the rank correlation and the conclusions that hold."""
    rho = rank_correlation(rows)
    judged = [v for _, v in verdicts(rows) if v is not None]
    text = f"{sum(r.accuracy is not None for r in rows)} of {len(rows)} miniature rows measured"
    if rho is not None:
        text += f"; Spearman rho {rho:+.2f} over {len(compared(rows))} rows"
    if judged:
        text += f"; {sum(judged)} of {len(judged)} of the report's conclusions hold"
    return text


def _figure(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def study_markdown(rows: list[StudyRow]) -> str:
    """The miniature beside Table 1, the correlation and the conclusions: a section of results.md."""
    lines = [
        "## The report in miniature",
        "",
        "| report row | report % | miniature row | ftui % | measured |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.mirrored, _figure(r.reference, ".1f"), r.experiment, _figure(r.accuracy, ".2f"), r.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", study_summary(rows) + ".", "", "The report's conclusions, in miniature:", ""]
    lines += [f"- {c.text}: {VERDICT_WORDS[v]}" for c, v in verdicts(rows)]
    return "\n".join(lines) + "\n"
