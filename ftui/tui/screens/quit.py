"""The question asked when quitting while a run trains: stop it, leave it training, or stay."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

STOP, LEAVE = "stop", "leave"


class QuitScreen(ModalScreen[str | None]):
    """Dismisses with STOP (s), LEAVE (l) or None (c, n, Esc, or Enter on the focused Cancel).

    Cancel is focused: Enter pressed out of habit neither stops a run nor closes the UI.
    """

    AUTO_FOCUS = "#cancel"
    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    QuitScreen > Vertical { width: 72; height: auto; border: thick $warning; background: $surface; padding: 0 2; }
    QuitScreen Label { width: 100%; margin-bottom: 1; }
    QuitScreen Button { width: 100%; }
    """
    BINDINGS = [
        Binding("s", "answer('stop')", "Stop and quit"),
        Binding("l", "answer('leave')", "Leave training, quit"),
        Binding("c,n,escape", "answer(None)", "Cancel"),
    ]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)
            yield Button("Stop it and quit (s)", variant="warning", id=STOP)
            yield Button("Leave it training and quit (l)", variant="primary", id=LEAVE)
            yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id if event.button.id in (STOP, LEAVE) else None)

    def action_answer(self, value: str | None) -> None:
        self.dismiss(value)
