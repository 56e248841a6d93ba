"""Plot widgets for run curves (plotext through textual-plotext)."""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual_plotext import PlotextPlot

from ..engine.history import RunHistory


def downsample(xs: list[float], ys: list[float], n: int) -> tuple[list[float], list[float]]:
    """At most n points, each the mean of a run of neighbours: drawing cost stays flat."""
    if len(xs) <= n or n <= 0:
        return xs, ys
    size = len(xs) / n
    out_x, out_y = [], []
    for i in range(n):
        a, b = int(i * size), max(int((i + 1) * size), int(i * size) + 1)
        out_x.append(sum(xs[a:b]) / (b - a))
        out_y.append(sum(ys[a:b]) / (b - a))
    return out_x, out_y


LOG_SCALE_RATIO = 20  # a loss range wider than this flattens the rest of the curve on a linear axis
SMALLEST_LOSS = 1e-6  # a loss of exactly 0 has no place on a log axis


def loss_scale(values: list[float]) -> str:
    """'log' when the losses span more than LOG_SCALE_RATIO, e.g. a test loss of 134 after a first
    epoch from scratch beside training losses near 2: on a linear axis those would be one flat line."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "linear"
    return "log" if max(finite) > LOG_SCALE_RATIO * max(min(finite), SMALLEST_LOSS) else "linear"


def log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Positions (log10) and labels of 1-2-5 values between low and high; only the powers of ten
    when the range spans many decades."""
    low, high = max(low, SMALLEST_LOSS), max(high, SMALLEST_LOSS)
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    steps = (1, 2, 5) if len(decades) <= 4 else (1,)
    values = [m * 10.0**k for k in decades for m in steps if low <= m * 10.0**k <= high] or [low, high]
    return [math.log10(v) for v in values], [f"{v:g}" for v in values]


RGB = tuple[int, int, int]
STEPS: RGB = (140, 140, 140)
SMOOTHED: RGB = (80, 160, 255)
TEST: RGB = (255, 165, 0)
ACCURACY: RGB = (80, 200, 120)
RESUME: RGB = (210, 90, 210)
REFERENCE: RGB = (230, 180, 60)  # the report's accuracy
MIN_ACCURACY_SPAN = 5.0  # points of accuracy: a half-point gain must not fill the height


def accuracy_range(values: list[float]) -> tuple[float, float]:
    """The accuracy axis: the values with a little room, at least MIN_ACCURACY_SPAN wide, within 0-100."""
    low, high = min(values), max(values)
    pad = max(MIN_ACCURACY_SPAN - (high - low), 0) / 2 + (high - low) * 0.05
    low, high = low - pad, high + pad
    if low < 0:
        low, high = 0.0, min(high - low, 100.0)
    if high > 100:
        low, high = max(low - (high - 100), 0.0), 100.0
    return float(math.floor(low)), float(math.ceil(high))  # whole points: round ticks


class CurvePlot(PlotextPlot):
    """Curves against epochs, whose legend is in the title line, keyed by colour, never over the data."""

    legend: list[tuple[str, RGB]]

    def begin(self, title: str, history: RunHistory, legend: list[tuple[str, RGB]]) -> None:
        """A clear figure: title and legend, the x axis over the whole run, a mark where each resume began."""
        plt = self.plt
        plt.clear_figure()  # also forgets the ticks of a log axis drawn before
        # ...and the theme, whose colour sequence the curves take as they are added: set it again
        # as render() does (textual-plotext is pinned in pyproject.toml).
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        plt.xlabel("epoch")
        if history.resumes:
            legend = legend + [("│resume", RESUME)]  # as plotext draws the vertical mark
        self.legend = legend
        plt.title(" ".join([title + ":" if legend else title] + [key for key, _ in legend]))
        # From 0 to the last epoch: one step is not -1 to 1, and the curves grow across the run.
        last = max(history.total_epochs, len(history.epochs), 1)
        plt.xlim(0, last)
        plt.xticks(list(range(0, last + 1, max(1, math.ceil(last / 6)))))  # whole epochs
        for epoch in history.resumes:
            plt.vline(epoch, RESUME)

    def render(self) -> Text:
        text = super().render()
        first_line = text.plain.split("\n", 1)[0]
        for key, colour in getattr(self, "legend", []):
            at = first_line.find(key)
            if at >= 0:
                text.stylize(Style(color=f"rgb{colour}", bold=True), at, at + 1)  # the key's mark
        return text


class LossPlot(CurvePlot):
    """Training loss per step (raw and smoothed) and test loss per epoch, against epochs.

    On a log axis the curves are drawn as log10 of the loss with ticks labelled in loss units:
    plotext's own yscale("log") fails when the same figure is drawn twice (textual-plotext 1.0.1,
    plotext 5.3.2), and a screen repaints its widgets many times.
    """

    def show(self, history: RunHistory) -> None:
        plt, per_epoch = self.plt, max(history.steps_per_epoch, 1)
        width = max(self.size.width * 2, 20)
        curves = []
        for series, colour in ((history.loss, STEPS), (history.smoothed, SMOOTHED)):
            xs, ys = downsample(*series.points(), width)
            if xs:
                curves.append(([x / per_epoch for x in xs], ys, colour, "braille"))
        if history.epochs:
            curves.append(([e.epoch + 1 for e in history.epochs], [e.test_loss for e in history.epochs], TEST, "dot"))
        values = [y for curve in curves for y in curve[1]]
        log = loss_scale(values) == "log"
        legend = [("━steps", STEPS), ("━smooth", SMOOTHED), ("•test", TEST)]
        self.begin("loss (log)" if log else "loss", history, legend)
        for xs, ys, colour, marker in curves:
            plt.plot(xs, [math.log10(max(y, SMALLEST_LOSS)) for y in ys] if log else ys, color=colour, marker=marker)
        if log:
            plt.yticks(*log_ticks(min(values), max(values)))
        self.refresh()


class AccuracyPlot(CurvePlot):
    """Test accuracy per epoch, with the report's accuracy for the experiment as a line when it has one."""

    def show(self, history: RunHistory, reference: float | None = None) -> None:
        plt = self.plt
        legend = [(f"-- report {reference:.1f}", REFERENCE)] if reference is not None else []
        self.begin("test accuracy %", history, legend)
        accuracies = [e.test_acc for e in history.epochs]
        if reference is not None:
            plt.hline(reference, REFERENCE)
        if history.epochs:
            plt.plot([e.epoch + 1 for e in history.epochs], accuracies, color=ACCURACY, marker="dot")
        if accuracies or reference is not None:
            plt.ylim(*accuracy_range(accuracies + ([reference] if reference is not None else [])))
        self.refresh()
