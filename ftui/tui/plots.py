"""Plot widgets for run curves (plotext through textual-plotext)."""

from __future__ import annotations

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


class LossPlot(PlotextPlot):
    """Training loss per step (raw and smoothed) and test loss per epoch, against epochs."""

    def show(self, history: RunHistory) -> None:
        plt, per_epoch = self.plt, max(history.steps_per_epoch, 1)
        plt.clear_data()
        plt.title("loss")
        plt.xlabel("epoch")
        width = max(self.size.width * 2, 20)
        for series, label in ((history.loss, "train"), (history.smoothed, "smoothed")):
            xs, ys = downsample(*series.points(), width)
            if xs:
                plt.plot([x / per_epoch for x in xs], ys, label=label, marker="braille")
        if history.epochs:
            plt.plot([e["epoch"] + 1 for e in history.epochs], [e["test_loss"] for e in history.epochs],
                     label="test", marker="dot")
        self.refresh()


class AccuracyPlot(PlotextPlot):
    """Test accuracy per epoch."""

    def show(self, history: RunHistory) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("test accuracy %")
        plt.xlabel("epoch")
        if history.epochs:
            plt.plot([e["epoch"] + 1 for e in history.epochs], [e["test_acc"] for e in history.epochs],
                     label="test acc", marker="dot")
            plt.xlim(0.5, max(history.total_epochs, len(history.epochs)) + 0.5)
        self.refresh()
