"""The editor's settings form, built from the experiment schema: a number field or a list per setting.

The form turns what is typed or picked into a typed value and posts it (SettingsForm.Changed); the
screen decides, with the catalog's own checks, whether the experiment takes it, and calls refused()
when not. What a setting is (integer, number or one of some choices) and its label come from its
declaration in engine/experiment.py.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import DescendantBlur, DescendantFocus
from textual.message import Message
from textual.validation import ValidationResult
from textual.widget import Widget
from textual.widgets import Input, Label, Select

from ...engine.experiment import SETTINGS, WEIGHTS_NONE, Experiment
from ...engine.model_facts import weight_names
from ...engine.schema import Setting
from ...engine.weights import is_local_weights
from .edit_field import EditField, first_failure, mark_invalid
from .status_line import Notice

# Which settings the form shows, a row each line; the rest are edited in the catalog file.
ROWS = (
    ("epochs", "batch_size", "input_size", "lr", "device"),
    ("weights", "optimizer", "scheduler"),
    ("lora_rank", "lora_alpha", "lora_dropout"),
    ("precision",),
)
# A reminder beside a setting whose choices say little on their own.
_NOTES = {"precision": "auto: bf16 on CUDA · bf16: also on bf16-capable CPUs"}
_DEVICES = ("auto", "cpu", "cuda")
PICK_FILE = "<file>"  # the weights list's "a file..." entry, never a real weights value
_FIELD_HINT = "enter or tab applies · escape drops the change and returns to the units"
_LIST_HINT = "enter opens the list · escape returns to the units"


def shown(value: object) -> str:
    if value is None:
        return ""  # an optional setting left to its default (lora_alpha: twice the rank)
    return f"{value:g}" if isinstance(value, float) else str(value)


class SettingsForm(Vertical):
    DEFAULT_CSS = """
    SettingsForm { height: auto; border-top: solid $primary 50%; border-title-color: $text-muted; }
    SettingsForm Horizontal { height: 1; }
    SettingsForm Label { width: auto; margin: 0 1 0 1; color: $text-muted; }
    SettingsForm Input { width: 8; }
    SettingsForm #set-lr { width: 10; }
    SettingsForm #set-device { width: 10; }
    SettingsForm #set-weights { width: 1fr; }
    SettingsForm #set-optimizer { width: 9; }
    SettingsForm #set-scheduler { width: 12; }
    SettingsForm #set-precision { width: 11; }
    """

    class Changed(Message):
        """A setting was given a value; leaving: the field lost focus (a refusal puts its value back)."""

        def __init__(self, key: str, value: object, leaving: bool = False) -> None:
            super().__init__()
            self.key, self.value, self.leaving = key, value, leaving

    class PickFile(Message):
        """The weights list's "a file..." was chosen: the screen asks for the path."""

    def __init__(self, exp: Experiment, original: Experiment, **kwargs) -> None:
        super().__init__(**kwargs)
        self.exp, self.original = exp, original
        self._options: dict[str, list[tuple[str, str]]] = {}  # each list's options, to rebuild only on change
        self._hinted: Widget | None = None  # the widget whose keys the status line says
        self._special: dict[str, Callable[[], list[tuple[str, str]]]] = {
            "weights": self._weights_options,
            "device": self._device_options,
        }

    def compose(self) -> ComposeResult:
        for row in ROWS:
            with Horizontal():
                for key in row:
                    yield Label(SETTINGS[key].label)
                    yield self._widget(SETTINGS[key])
                    if key in _NOTES:
                        yield Label(_NOTES[key], id=f"{key}-help", markup=False)

    def on_mount(self) -> None:
        self.border_title = "settings (tab)"

    def _widget(self, setting: Setting) -> Widget:
        key = setting.name
        if key in self._special or setting.choices:
            self._options[key] = self._options_of(setting)
            return Select(
                self._options[key], value=getattr(self.exp, key), allow_blank=False, compact=True, id=f"set-{key}"
            )
        if setting.kind.base in (int, float):
            kind = "integer" if setting.kind.base is int else "number"
            return EditField(
                shown(getattr(self.exp, key)),
                type=kind,
                placeholder="auto" if setting.kind.optional else "",
                id=f"set-{key}",
                classes="setting",
                compact=True,
            )
        raise TypeError(f"the settings form has no widget for {key} ({setting.kind})")

    def _options_of(self, setting: Setting) -> list[tuple[str, str]]:
        special = self._special.get(setting.name)
        return special() if special else [(c, c) for c in setting.choices]

    def _weights_options(self) -> list[tuple[str, str]]:
        names = [WEIGHTS_NONE, *weight_names(self.exp.model)]
        files = {w for w in (self.original.weights, self.exp.weights) if is_local_weights(w)}
        return [(n, n) for n in names] + [(f, f) for f in sorted(files)] + [("a file...", PICK_FILE)]

    def _device_options(self) -> list[tuple[str, str]]:
        extra = {d for d in (self.original.device, self.exp.device) if d not in _DEVICES}
        return [(d, d) for d in (*_DEVICES, *sorted(extra))]

    def show(self, exp: Experiment, original: Experiment | None = None) -> None:
        """Put exp's values into the widgets (after a reset, a save or a refusal)."""
        self.exp, self.original = exp, original or self.original
        for key in (k for row in ROWS for k in row):
            if key in self._options:
                options = self._options_of(SETTINGS[key])
                select = self.query_one(f"#set-{key}", Select)
                if options != self._options[key]:
                    self._options[key] = options
                    select.set_options(options)
                select.value = getattr(exp, key)
            else:
                self.query_one(f"#set-{key}", Input).value = shown(getattr(exp, key))

    def refused(self, key: str, leaving: bool) -> None:
        """The screen did not take the value: leaving, put the value in use back; else keep the text to fix."""
        widget = self.query_one(f"#set-{key}")
        if isinstance(widget, Select):
            widget.value = getattr(self.exp, key)
        elif leaving:
            widget.value = shown(getattr(self.exp, key))  # never show a value not in use
        else:
            mark_invalid(widget)

    # -- what is typed or picked ------------------------------------------------------

    def _typed(self, field: Input, validation: ValidationResult | None, leaving: bool) -> None:
        key = field.id.removeprefix("set-") if field.id else ""
        if not field.value.strip() and SETTINGS[key].kind.optional:
            self.post_message(self.Changed(key, None, leaving))  # emptied: back to the default
            return
        failure = first_failure(validation)
        if failure:
            self.post_message(Notice(f"refused: {key} = {field.value or 'empty'}: {failure}", error=True))
            self.refused(key, leaving)
            return
        value = int(field.value) if field.type == "integer" else float(field.value)
        self.post_message(self.Changed(key, value, leaving))

    @on(Input.Submitted, ".setting")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._typed(event.input, event.validation_result, leaving=False)

    @on(Input.Blurred, ".setting")
    def _left(self, event: Input.Blurred) -> None:
        event.stop()
        if self.is_attached:
            self._typed(event.input, event.validation_result, leaving=True)

    @on(Select.Changed)
    def _picked(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != event.select.value:
            return  # stale: set_options passed through its first option on the way to the value set after it
        if event.value == PICK_FILE:
            event.select.value = self.exp.weights
            self.post_message(self.PickFile())
        elif event.select.id:
            self.post_message(self.Changed(event.select.id.removeprefix("set-"), event.value))

    # -- which keys work here -----------------------------------------------------------

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        # Said once per visit: a list gets focus back from its own overlay after its change was reported.
        if event.widget is self._hinted or event.widget.parent is self._hinted:
            return
        self._hinted = event.widget
        if event.widget.has_class("setting"):
            self.post_message(Notice(_FIELD_HINT, hint=True))
        elif isinstance(event.widget, Select):
            self.post_message(Notice(_LIST_HINT, hint=True))

    def on_descendant_blur(self, event: DescendantBlur) -> None:
        focused = self.screen.focused
        if focused is None or self not in focused.ancestors:
            self._hinted = None  # left the form: coming back is a new visit
