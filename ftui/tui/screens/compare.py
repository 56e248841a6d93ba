"""Two or more runs, their curves overlaid: test accuracy per epoch and smoothed train loss."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Header, Static
from textual_plotext import PlotextPlot

from ...engine.experiment import differing_settings
from ...engine.history import RunHistory
from ...engine.runs import METRICS, RunFolder, summarize_run
from ...engine.schema import toml_value
from ...errors import FtuiError
from ...formatting import shorten, visible
from ..footer import SteadyFooter
from ..plots import downsample

REFRESH_SECONDS = 2.0
# Distinct on a dark background and still distinct when reduced to 256 colours.
PALETTE = [
    (0, 200, 255),
    (255, 95, 175),
    (135, 215, 0),
    (255, 175, 0),
    (175, 135, 255),
    (255, 95, 95),
    (0, 215, 175),
    (215, 215, 215),
]


def epoch_ticks(epochs: int) -> list[int]:
    """Whole epochs, at most about six of them: fractional ticks read badly."""
    step = max(1, -(-epochs // 6))
    return list(range(0, epochs + 1, step))


def _color(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


class CompareScreen(Screen):
    SUB_TITLE = "compare runs"
    DEFAULT_CSS = """
    CompareScreen #plots { height: 1fr; min-height: 8; }
    CompareScreen #legend { height: auto; max-height: 8; padding: 0 1; border-top: solid $primary; }
    CompareScreen #differs { height: auto; max-height: 8; padding: 0 1; border-top: solid $primary; }
    """
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, paths: list[Path]):
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self.histories: list[RunHistory] = []
        self.states: list[str] = []
        self.stamps: list[tuple] = []
        self.experiments: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="plots"):
            yield PlotextPlot(id="accuracy")
            yield PlotextPlot(id="loss")
        yield Static(id="legend")
        yield Static(id="differs")
        yield SteadyFooter()

    def on_mount(self) -> None:
        self._load()
        # The plots know their width only after the first layout.
        self.call_after_refresh(self._draw)
        self.set_interval(REFRESH_SECONDS, self._reload_if_changed)

    def on_resize(self) -> None:
        self._draw()

    # -- data --------------------------------------------------------------------

    def _stamp(self) -> list[tuple]:
        def one(path: Path) -> tuple:
            try:
                st = (path / METRICS).stat()
                return st.st_size, st.st_mtime_ns
            except OSError:
                return (None, None)

        return [one(p) for p in self.paths]

    def _load(self) -> None:
        self.stamps = self._stamp()
        self.histories, self.states, self.experiments = [], [], []
        for path in self.paths:
            try:
                self.experiments.append(RunFolder(path).read_experiment())
            except FtuiError:
                self.experiments.append({})
            history = RunHistory()
            history.feed(RunFolder(path).read_events())
            self.histories.append(history)
            try:
                self.states.append(summarize_run(path).state)
            except FtuiError:
                self.states.append("unreadable")

    def _reload_if_changed(self) -> None:
        # A run still training elsewhere grows its metrics file; finished ones cost one stat each.
        if self._stamp() != self.stamps:
            self._load()
            self._draw()

    # -- drawing -----------------------------------------------------------------

    def _draw(self) -> None:
        self._draw_accuracy(self.query_one("#accuracy", PlotextPlot))
        self._draw_loss(self.query_one("#loss", PlotextPlot))
        self.query_one("#legend", Static).update(self._legend())
        self.query_one("#differs", Static).update(self._differs())

    def _draw_accuracy(self, plot: PlotextPlot) -> None:
        plt = plot.plt
        plt.clear_data()
        plt.title("test accuracy %")
        plt.xlabel("epoch")
        most = 1
        for i, h in enumerate(self.histories):
            if h.epochs:
                plt.plot([e.epoch + 1 for e in h.epochs], [e.test_acc for e in h.epochs], color=_color(i), marker="dot")
                most = max(most, h.total_epochs, len(h.epochs))
        plt.xlim(0.5, most + 0.5)
        plt.xticks([t for t in epoch_ticks(most) if t >= 1] or [1])
        plot.refresh()

    def _draw_loss(self, plot: PlotextPlot) -> None:
        plt = plot.plt
        plt.clear_data()
        plt.title("train loss (smoothed)")
        plt.xlabel("epoch")
        width = max(plot.size.width * 2, 20)
        most = max([1] + [max(h.total_epochs, len(h.epochs)) for h in self.histories])
        plt.xticks(epoch_ticks(most))
        for i, h in enumerate(self.histories):
            per_epoch = max(h.steps_per_epoch, 1)
            xs, ys = downsample(*h.smoothed.points(), width)
            if xs:
                plt.plot([x / per_epoch for x in xs], ys, color=_color(i), marker="braille")
        plot.refresh()

    def _legend(self) -> Text:
        text = Text()
        for i, (path, h, state) in enumerate(zip(self.paths, self.histories, self.states, strict=True)):
            if i:
                text.append("\n")
            text.append("■ ", style="rgb({},{},{})".format(*_color(i)))
            text.append(path.name, style="bold")
            best = f"best {h.best_acc:.2f}%" if h.best_acc is not None else "no epoch yet"
            text.append(f"  {best} · {len(h.epochs)}/{h.total_epochs or '?'} epochs · {state}", style="dim")
        return text

    def _differs(self) -> Text:
        """The experiment settings that differ between the runs, each run's value in its colour."""
        differs = differing_settings(self.experiments)
        if not differs:
            return Text("the runs' experiments do not differ in any setting", style="dim")
        text = Text()
        width = max(len(k) for k in differs) + 2
        for n, (key, values) in enumerate(differs.items()):
            text.append(("\n" if n else "") + key.ljust(width), style="bold")
            for i, value in enumerate(values):
                shown = "-" if value is None else toml_value(value)
                text.append(("  " if i else "") + visible(shorten(shown, 24)), style="rgb({},{},{})".format(*_color(i)))
        return text

    def action_back(self) -> None:
        self.app.pop_screen()
