"""The editor's table of layer units: each unit's mode, name, parameter count and learning rate."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.message import Message
from textual.widgets import DataTable

from ...engine.experiment import Experiment, UnitMode
from ...engine.model_facts import LayerUnit, ModelInfo
from ...formatting import param_count
from .status_line import Notice

# How each mode shows: a word, so a third mode is one more entry here.
_MODE_STYLE = {UnitMode.TRAIN: "bold green", UnitMode.LORA: "bold magenta", UnitMode.FROZEN: "dim"}


def lr_text(lr: float) -> str:
    """A learning rate as a person reads it: 0.05, 0.001, 0.0001, 1e-05 (never rounded away)."""
    return f"{lr:g}"


class UnitTable(DataTable):
    """The units of one model; a click on a row's mode cycles it (a row cursor cannot tell columns apart)."""

    # DataTable's home/end scroll sideways; in a list of units they mean the first and last unit.
    BINDINGS = [Binding("home", "scroll_top", show=False), Binding("end", "scroll_bottom", show=False)]

    class ModeClicked(Message):
        """The mode cell of a unit was clicked."""

        def __init__(self, unit: str) -> None:
            super().__init__()
            self.unit = unit

    def __init__(self, info: ModelInfo, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.info = info

    def on_mount(self) -> None:
        self.add_column("mode", key="mode")
        self.add_column("unit", key="unit")
        self.add_column(Text("parameters", justify="right"), key="params")
        self.add_column("lr", key="lr")
        for unit in self.info.units:
            self.add_row(
                Text(), self._unit_label(unit), Text(param_count(unit.params), justify="right"), Text(), key=unit.name
            )

    def _unit_label(self, unit: LayerUnit) -> Text:
        name = Text(unit.name)
        if unit.name == self.info.head_unit:
            name.append(" head", style="dim italic")
        return name

    def show(self, exp: Experiment) -> None:
        """Each unit's mode and learning rate as exp has them."""
        lora = self.info.lora_params(exp.lora, exp.lora_layers, exp.lora_rank)
        for unit in self.info.units:
            added = f" +{param_count(lora[unit.name])}" if unit.name in lora else ""
            params = Text(param_count(unit.params) + added, justify="right")
            self.update_cell(unit.name, "params", params, update_width=True)
        for unit in self.info.unit_names:
            mode = exp.mode_of(unit)
            own = unit in exp.unit_lr
            style = ("bold" if own else "") + (" dim" if mode is UnitMode.FROZEN else "")
            self.update_cell(unit, "mode", Text(mode.value, style=_MODE_STYLE[mode]), update_width=True)
            # The column widens with its text; else 0.0001 in a column sized for 0.05 shows cut to 0.00.
            self.update_cell(unit, "lr", Text(lr_text(exp.lr_for(unit)), style=style.strip()), update_width=True)

    @property
    def cursor_unit(self) -> str:
        return self.info.units[self.cursor_row].name

    def on_click(self, event: Click) -> None:
        meta = event.style.meta
        if meta.get("column") == 0 and meta.get("row", -1) >= 0:
            event.prevent_default()  # DataTable's own click would also open the LR editor
            self.move_cursor(row=meta["row"])
            self.post_message(self.ModeClicked(self.info.units[meta["row"]].name))

    def on_focus(self) -> None:
        self.post_message(Notice("", hint=True))  # back at the units: a hint about a field no longer applies
