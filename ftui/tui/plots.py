"""Plot widgets for run curves (plotext through textual-plotext)."""

from __future__ import annotations

import math

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


class LossPlot(PlotextPlot):
    """Training loss per step (raw and smoothed) and test loss per epoch, against epochs.

    On a log axis the curves are drawn as log10 of the loss with ticks labelled in loss units:
    plotext's own yscale("log") fails when the same figure is drawn twice (textual-plotext 1.0.1,
    plotext 5.3.2), and a screen repaints its widgets many times.
    """

    def show(self, history: RunHistory) -> None:
        plt, per_epoch = self.plt, max(history.steps_per_epoch, 1)
        plt.clear_figure()  # also forgets the ticks of a log axis drawn before
        # ...and the theme, whose colour sequence the curves take as they are added: set it again
        # as render() does (textual-plotext is pinned in pyproject.toml).
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        plt.xlabel("epoch")
        width = max(self.size.width * 2, 20)
        curves = []
        for series, label in ((history.loss, "train"), (history.smoothed, "smoothed")):
            xs, ys = downsample(*series.points(), width)
            if xs:
                curves.append(([x / per_epoch for x in xs], ys, label, "braille"))
        if history.epochs:
            curves.append(([e.epoch + 1 for e in history.epochs], [e.test_loss for e in history.epochs], "test", "dot"))
        values = [y for curve in curves for y in curve[1]]
        log = loss_scale(values) == "log"
        plt.title("loss (log scale)" if log else "loss")
        for xs, ys, label, marker in curves:
            plt.plot(xs, [math.log10(max(y, SMALLEST_LOSS)) for y in ys] if log else ys, label=label, marker=marker)
        if log:
            plt.yticks(*log_ticks(min(values), max(values)))
        self.refresh()


class AccuracyPlot(PlotextPlot):
    """Test accuracy per epoch."""

    def show(self, history: RunHistory) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("test accuracy %")
        plt.xlabel("epoch")
        if history.epochs:
            plt.plot(
                [e.epoch + 1 for e in history.epochs],
                [e.test_acc for e in history.epochs],
                label="test acc",
                marker="dot",
            )
            plt.xlim(0.5, max(history.total_epochs, len(history.epochs)) + 0.5)
        self.refresh()
