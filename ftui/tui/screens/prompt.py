"""A one-line question as a modal: dismisses with the accepted answer, or None when cancelled."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.events import Click
from textual.screen import ModalScreen
from textual.validation import Validator
from textual.widgets import Input, Label, Static

from ..widgets.edit_field import EditField, first_failure, mark_invalid

# Given the answer and the Input's own validation failure (None if it passed): why it is refused, or None.
Check = Callable[[str, str | None], str | None]
_HINT = "enter applies · escape cancels"


class PromptScreen(ModalScreen[str | None]):
    """Asks for one value; enter tries it (check), escape or a click outside cancels.

    A refused answer stays in the field, marked, with the reason below it, so it can be fixed.
    """

    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 72; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    PromptScreen #prompt-label { width: 100%; text-style: bold; }
    PromptScreen #prompt-input { width: 100%; margin: 1 0 0 0; }
    PromptScreen #prompt-message { width: 100%; height: auto; max-height: 5; margin: 1 0 0 0; color: $text-muted; }
    PromptScreen #prompt-message.-error { color: $text-error; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#prompt-input"

    def __init__(
        self, label: str, value: str, check: Check, kind: str = "text", validators: Iterable[Validator] = ()
    ) -> None:
        super().__init__()
        self.label, self.value, self.check, self.kind = label, value, check, kind
        self.validators = list(validators)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.label, id="prompt-label", markup=False)
            yield EditField(self.value, type=self.kind, validators=self.validators, id="prompt-input", compact=True)
            yield Static(Text(_HINT), id="prompt-message")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        refusal = self.check(event.value, first_failure(event.validation_result))
        if refusal is None:
            self.dismiss(event.value)
            return
        mark_invalid(event.input)
        message = self.query_one("#prompt-message", Static)
        message.update(Text(refusal))
        message.add_class("-error")

    def on_click(self, event: Click) -> None:
        if event.widget is self:  # the dimmed screen around the question
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
