"""The experiment editor: which layer units train and at what learning rate, plus the run's settings."""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Click, DescendantFocus
from textual.message import Message
from textual.screen import Screen
from textual.validation import Function, Number, ValidationResult
from textual.widget import Widget
from textual.widgets import DataTable, Header, Input, Label, Select, Static

from ...engine.catalog import experiment_from_dict, save_experiment
from ...engine.experiment import OPTIMIZERS, PRECISIONS, SCHEDULERS, WEIGHTS_NONE, Experiment
from ...engine.models import LayerUnit, ModelInfo, describe
from ...engine.weights import is_local_weights, weight_names
from ...errors import FtuiError
from ...formatting import param_count
from ..footer import SteadyFooter
from ..widgets.edit_field import EditField
from .confirm import ConfirmScreen

# (experiment field, label, Input type); the catalog's own checks decide what is in range.
_NUMBER_SETTINGS = (
    ("epochs", "epochs", "integer"),
    ("batch_size", "batch", "integer"),
    ("input_size", "input", "integer"),
    ("lr", "base lr", "number"),
)
_CHOICE_SETTINGS = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}
_PRECISION_HELP = "auto: bf16 on CUDA · bf16: also on bf16-capable CPUs"
_DEVICES = ("auto", "cpu", "cuda")
_PICK_FILE = "<file>"  # the weights Select's "a file..." entry, never a real weights value
# Single-letter keys reach the screen only from the table: a focused Input eats them.
_TABLE_ACTIONS = {"toggle", "edit_lr", "all_trainable", "head_only", "reset", "save"}
_HINT = "space trains or freezes a unit · enter sets its learning rate · tab: settings"


def _positive(value: str) -> bool:
    try:
        return float(value) > 0
    except ValueError:
        return False


def _first_failure(result: ValidationResult | None) -> str | None:
    if result is None or result.is_valid:
        return None
    text = result.failure_descriptions[0] if result.failure_descriptions else "invalid"
    return text[:1].lower() + text[1:].rstrip(".")


def _mark_invalid(field: Input) -> None:
    # Refused by the catalog's checks, which the Input's own validators do not know.
    field.remove_class("-valid").add_class("-invalid")


class UnitTable(DataTable):
    """The units; a click on a row's [x] box toggles it (a row cursor cannot tell columns apart)."""

    # DataTable's home/end scroll sideways; in a list of units they mean the first and last unit.
    BINDINGS = [Binding("home", "scroll_top", show=False), Binding("end", "scroll_bottom", show=False)]

    class Toggle(Message):
        def __init__(self, row: int) -> None:
            super().__init__()
            self.row = row

    def on_click(self, event: Click) -> None:
        meta = event.style.meta
        if meta.get("column") == 0 and meta.get("row", -1) >= 0:
            event.prevent_default()  # DataTable's own click would also open the LR editor
            self.move_cursor(row=meta["row"])
            self.post_message(self.Toggle(meta["row"]))


class LeaveEditorScreen(ConfirmScreen):
    """Leaving drops the edits: enter answers the safe way, staying."""

    AUTO_FOCUS = "#no"


class EditorScreen(Screen):
    DEFAULT_CSS = """
    EditorScreen #summary { height: 1; padding: 0 1; }
    EditorScreen #model { width: 1fr; }
    EditorScreen #totals { width: auto; text-style: bold; }
    EditorScreen #units { height: 1fr; }
    EditorScreen #prompt { height: 1; display: none; padding: 0 1; background: $boost; }
    EditorScreen #prompt Label { width: auto; padding-right: 1; text-style: bold; }
    EditorScreen #prompt Input { width: 1fr; }
    EditorScreen #message { height: auto; max-height: 5; padding: 0 1; color: $text-muted; }
    EditorScreen #message.-error { color: $text-error; }
    EditorScreen #settings { height: auto; border-top: solid $primary 50%; border-title-color: $text-muted; }
    EditorScreen #settings Horizontal { height: 1; }
    EditorScreen #settings Label { width: auto; margin: 0 1 0 1; color: $text-muted; }
    EditorScreen #settings Input { width: 8; }
    EditorScreen #settings #set-lr { width: 10; }
    EditorScreen #set-device { width: 10; }
    EditorScreen #set-weights { width: 1fr; }
    EditorScreen #set-optimizer { width: 9; }
    EditorScreen #set-scheduler { width: 12; }
    EditorScreen #set-precision { width: 11; }
    """
    BINDINGS = [
        Binding("space", "toggle", "Toggle"),
        Binding("e", "edit_lr", "LR"),
        Binding("a", "all_trainable", "All"),
        Binding("h", "head_only", "Head only"),
        Binding("r", "reset", "Reset"),
        Binding("s", "save", "Save as"),
        # A focused Input hides "l" from the footer (it types it), and then "F5" shows in its place.
        Binding("l", "launch", "Launch", key_display="l/F5"),
        Binding("f5", "launch", "Launch", key_display="F5"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, exp: Experiment):
        super().__init__()
        self.original = exp  # the catalog entry "r" returns to
        self._exp = exp
        self.info: ModelInfo = describe(exp.model, exp.cifar_stem)
        self.message = ""
        self._hinting = False  # the message only says which keys work in the focused field
        self._hinted: Widget | None = None  # the field whose keys it says
        self._mode: str | None = None  # what the prompt line is asking for: lr, weights or name
        self._prompt_unit = ""
        self._options: dict[str, list[tuple[str, str]]] = {}  # each Select's options, to rebuild only on change

    @property
    def experiment(self) -> Experiment:
        return self._exp

    # -- layout -------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="summary"):
            yield Static(id="model")
            yield Static(id="totals")
        yield UnitTable(id="units", cursor_type="row")
        with Horizontal(id="prompt"):
            yield Label(id="prompt-label", markup=False)
            yield EditField(id="prompt-input", compact=True)
        yield Static(id="message")
        with Vertical(id="settings"):
            with Horizontal():
                for key, label, kind in _NUMBER_SETTINGS:
                    yield Label(label)
                    yield EditField(self._shown(key), type=kind, id=f"set-{key}", classes="setting", compact=True)
                yield Label("device")
                yield self._select("device", self._device_options())
            with Horizontal():
                yield Label("weights")
                yield self._select("weights", self._weights_options())
                for key, choices in _CHOICE_SETTINGS.items():
                    yield Label(key)
                    yield self._select(key, [(c, c) for c in choices])
            with Horizontal():
                yield Label("precision")
                yield self._select("precision", [(c, c) for c in PRECISIONS])
                yield Label(_PRECISION_HELP, id="precision-help", markup=False)
        # The palette (ctrl+p) stays reachable; its footer entry would push "esc Back" off an 80-column screen.
        yield SteadyFooter(compact=True, show_command_palette=False)

    def _select(self, key: str, options: list[tuple[str, str]]) -> Select:
        self._options[key] = options
        return Select(options, value=getattr(self._exp, key), allow_blank=False, compact=True, id=f"set-{key}")

    def on_mount(self) -> None:
        self.query_one("#settings").border_title = "settings (tab)"
        table = self.query_one(UnitTable)
        table.add_column("trains", key="trains")
        table.add_column("unit", key="unit")
        table.add_column(Text("parameters", justify="right"), key="params")
        table.add_column("lr", key="lr")
        for unit in self.info.units:
            table.add_row(*self._cells(unit), key=unit.name)
        table.focus()
        self._refresh()

    # -- what is shown --------------------------------------------------------

    def _cells(self, unit: LayerUnit) -> tuple[Text, Text, Text, Text]:
        trains = unit.name in self._exp.trainable
        box = Text("[x]", style="bold green") if trains else Text("[ ]", style="dim")
        name = Text(unit.name)
        if unit.name == self.info.head_unit:
            name.append(" head", style="dim italic")
        own = unit.name in self._exp.unit_lr
        lr = Text(f"{self._exp.lr_for(unit.name):g}", style=("bold" if own else "") + ("" if trains else " dim"))
        return box, name, Text(param_count(unit.params), justify="right"), lr

    def totals_text(self) -> str:
        total = self.info.total_params
        trainable = sum(u.params for u in self.info.units if u.name in self._exp.trainable)
        return f"trainable {param_count(trainable)} of {param_count(total)} parameters ({100 * trainable / total:.1f}%)"

    def _refresh(self) -> None:
        table = self.query_one(UnitTable)
        for unit in self.info.units:
            box, _, _, lr = self._cells(unit)
            table.update_cell(unit.name, "trains", box)
            table.update_cell(unit.name, "lr", lr, update_width=True)  # else 0.0001 shows cut to 0.00
        exp, edited = self._exp, self._exp != self.original
        model = Text.assemble((exp.model, "bold"), " · CIFAR stem" * exp.cifar_stem)
        self.query_one("#model", Static).update(model)
        self.query_one("#totals", Static).update(self.totals_text())
        self.sub_title = f"edit {exp.name}" + (" (edited)" if edited else "")
        if not self.message:
            self.query_one("#message", Static).update(Text(_HINT))

    def _say(self, text: str, error: bool = False, hint: bool = False) -> None:
        self.message, self._hinting = text, hint
        widget = self.query_one("#message", Static)
        widget.update(Text(text or _HINT))
        widget.set_class(error, "-error")

    def _shown(self, key: str) -> str:
        value = getattr(self._exp, key)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def _weights_options(self) -> list[tuple[str, str]]:
        names = [WEIGHTS_NONE, *weight_names(self._exp.model)]
        files = {w for w in (self.original.weights, self._exp.weights) if is_local_weights(w)}
        return [(n, n) for n in names] + [(f, f) for f in sorted(files)] + [("a file...", _PICK_FILE)]

    def _device_options(self) -> list[tuple[str, str]]:
        extra = {d for d in (self.original.device, self._exp.device) if d not in _DEVICES}
        return [(d, d) for d in (*_DEVICES, *sorted(extra))]

    def _sync_settings(self) -> None:
        """Put the experiment's values back into the settings widgets (after reset, save or a refusal)."""
        for key, _, _ in _NUMBER_SETTINGS:
            self.query_one(f"#set-{key}", Input).value = self._shown(key)
        for key, options in (("weights", self._weights_options()), ("device", self._device_options())):
            if options != self._options.get(key):
                self._options[key] = options
                self.query_one(f"#set-{key}", Select).set_options(options)
        for key in ("weights", "device", "precision", *_CHOICE_SETTINGS):
            self.query_one(f"#set-{key}", Select).value = getattr(self._exp, key)

    # -- keys -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _TABLE_ACTIONS:
            return self.focused is None or isinstance(self.focused, UnitTable)
        return True

    def _cursor_unit(self) -> str:
        return self.info.units[self.query_one(UnitTable).cursor_row].name

    def _set_trainable(self, units: set[str]) -> None:
        # Keep the model's order so the experiment compares equal to a catalog entry.
        trainable = tuple(u for u in self.info.unit_names if u in units)
        self._exp = dataclasses.replace(self._exp, trainable=trainable)
        self._refresh()

    def action_toggle(self) -> None:
        self._toggle(self._cursor_unit())

    def _toggle(self, unit: str) -> None:
        self._set_trainable(set(self._exp.trainable) ^ {unit})
        self._say(f"{unit} {'trains' if unit in self._exp.trainable else 'is frozen'}")

    @on(UnitTable.Toggle)
    def _toggle_clicked(self, event: UnitTable.Toggle) -> None:
        self._toggle(self.info.units[event.row].name)

    def action_all_trainable(self) -> None:
        self._set_trainable(set(self.info.unit_names))
        self._say("every unit trains")

    def action_head_only(self) -> None:
        self._set_trainable({self.info.head_unit})
        self._say(f"only the head ({self.info.head_unit}) trains")

    def action_reset(self) -> None:
        self._exp = self.original
        self._sync_settings()
        self._refresh()
        self._say(f"reset to the catalog entry {self.original.name}")

    def action_launch(self) -> None:
        if not self._exp.trainable:
            self._say("Nothing would train: toggle a unit with space, or press a for all.", error=True)
            self.app.notify("Nothing would train; select at least one unit.", severity="warning")
            return
        self.app.launch(self._exp)

    def action_back(self) -> None:
        if not (self.focused is None or isinstance(self.focused, UnitTable)):
            self._leave_field()
        elif self._exp != self.original:
            question = f"Leave the editor and drop your edits to {self._exp.name}? (s saves them as a new entry)"
            self.app.push_screen(
                LeaveEditorScreen(question, "Drop edits", "Stay"), lambda ok: self.app.pop_screen() if ok else None
            )
        else:
            self.app.pop_screen()

    def _leave_field(self) -> None:
        """Escape from a field: drop what was typed there and go back to the table."""
        if self._mode:
            self._close_prompt()
        else:
            self._sync_settings()
        self.query_one(UnitTable).focus()

    # -- the prompt line: a unit's LR, a weights file, a name to save as --------------

    def _ask(self, mode: str, label: str, value: str, kind: str = "text", validators=()) -> None:
        self._mode = mode
        self.query_one("#prompt-label", Label).update(label)
        field = self.query_one("#prompt-input", Input)
        field.type, field.validators, field.value = kind, list(validators), value
        self.query_one("#prompt").display = True
        field.focus()
        self._say("enter applies · escape cancels", hint=True)

    def _close_prompt(self) -> None:
        self._mode = None
        self.query_one("#prompt").display = False
        self.query_one(UnitTable).focus()

    def action_edit_lr(self) -> None:
        self._prompt_unit = unit = self._cursor_unit()
        checks = [Number(maximum=10), Function(_positive, "Must be greater than 0")]
        self._ask("lr", f"learning rate of {unit}:", f"{self._exp.lr_for(unit):g}", "number", checks)

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_edit_lr()

    def action_save(self) -> None:
        self._ask("name", "save as a new catalog entry named:", self._free_name())

    def _free_name(self) -> str:
        taken = set(self.app.catalog.names) if self.app.catalog else set()
        base = self._exp.name
        return next(f"{base}-{i}" for i in range(2, 10_000) if f"{base}-{i}" not in taken)

    @on(Input.Submitted, "#prompt-input")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        submit = {"lr": self._submit_lr, "weights": self._submit_weights_file, "name": self._submit_name}
        if self._mode in submit:
            submit[self._mode](event)

    @on(Input.Blurred, "#prompt-input")
    def _prompt_left(self) -> None:
        # Tab or a click elsewhere abandons the question, as escape does.
        if self._mode:
            self._mode = None
            self.query_one("#prompt").display = False

    def _submit_lr(self, event: Input.Submitted) -> None:
        unit, old = self._prompt_unit, self._exp.lr_for(self._prompt_unit)
        failure = _first_failure(event.validation_result)
        if failure:
            self._say(f"{event.value or 'empty'}: {failure}; {unit} keeps learning rate {old:g}", error=True)
            return
        lr, rates = float(event.value), dict(self._exp.unit_lr)
        rates[unit] = lr
        if lr == self._exp.lr:
            del rates[unit]  # the base rate: no override, so it follows later base-rate changes
        self._exp = dataclasses.replace(self._exp, unit_lr=rates)
        self._close_prompt()
        self._refresh()
        self._say(f"{unit} learns at {lr:g}")

    def _submit_weights_file(self, event: Input.Submitted) -> None:
        if self._apply("weights", event.value.strip()):
            self._close_prompt()
            self._sync_settings()

    def _submit_name(self, event: Input.Submitted) -> None:
        exp = dataclasses.replace(self._exp, name=event.value.strip())
        try:
            save_experiment(self.app.catalog_path, exp)
        except (FtuiError, OSError) as exc:
            _mark_invalid(self.query_one("#prompt-input", Input))
            self._say(f"Not saved: {exc}", error=True)
            return
        self._saved(exp.name)

    def _saved(self, name: str) -> None:
        self.app.reload_catalog()
        # What the file now says is the entry "r" returns to.
        self.original = self._exp = self.app.catalog.get(name) if self.app.catalog else self._exp
        self._close_prompt()
        self._sync_settings()
        self._refresh()
        self._say(f"saved as {name} in {self.app.catalog_path}")
        self.app.notify(f"Saved {name} to {self.app.catalog_path}")

    # -- settings ----------------------------------------------------------------------

    def _validated(self, key: str, value: object) -> Experiment:
        data = {**self._exp.to_dict(), key: value}
        # Nothing trainable is a fine state to edit through (launch and save refuse it):
        # check the rest as if every unit trained.
        data["trainable"] = data["trainable"] or "all"
        exp = experiment_from_dict(data, where="refused", base_dir=self.app.catalog_path.absolute().parent)
        return dataclasses.replace(exp, trainable=self._exp.trainable)

    def _apply(self, key: str, value: object) -> bool:
        """Rebuild the experiment with one setting changed; a value the catalog would refuse is refused here."""
        if value == getattr(self._exp, key):
            return True
        try:
            self._exp = self._validated(key, value)
        except FtuiError as exc:
            self._say(str(exc), error=True)
            return False
        self._refresh()
        self._say(f"{key} = {self._shown(key)}")
        return True

    def _apply_input(self, field: Input, validation: ValidationResult | None) -> bool:
        key = field.id.removeprefix("set-")
        failure = _first_failure(validation)
        if failure:
            self._say(f"refused: {key} = {field.value or 'empty'}: {failure}", error=True)
            return False
        value = int(field.value) if field.type == "integer" else float(field.value)
        return self._apply(key, value)

    @on(Input.Submitted, ".setting")
    def _setting_submitted(self, event: Input.Submitted) -> None:
        if not self._apply_input(event.input, event.validation_result):
            _mark_invalid(event.input)  # keep the text so it can be fixed

    @on(Input.Blurred, ".setting")
    def _setting_left(self, event: Input.Blurred) -> None:
        if self.is_attached and not self._apply_input(event.input, event.validation_result):
            event.input.value = self._shown(event.input.id.removeprefix("set-"))  # never show a value not in use

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        # The footer hides the letter keys away from the table; say what works in a setting instead,
        # once per visit: a Select gets focus back from its own list, after its change was reported.
        if event.widget is self._hinted or event.widget.parent is self._hinted:
            return
        self._hinted = event.widget
        if event.widget.has_class("setting"):
            self._say("enter or tab applies · escape drops the change and returns to the units", hint=True)
        elif isinstance(event.widget, Select):
            self._say("enter opens the list · escape returns to the units", hint=True)
        elif isinstance(event.widget, UnitTable) and self._hinting:
            self._say("")

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        key = event.select.id.removeprefix("set-")
        if event.value != event.select.value:
            return  # stale: set_options passed through its first option on the way to the value set after it
        if event.value == _PICK_FILE:
            event.select.value = self._exp.weights
            self._ask("weights", "weights file (.safetensors/.pth):", "")
        elif not self._apply(key, event.value):
            event.select.value = getattr(self._exp, key)
