"""The editor's message line: what just happened, what was refused, or which keys work where the focus is."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import Static


class Notice(Message):
    """Text for the status line, posted by the widget that has something to say.

    hint: it only says which keys work in the focused widget; an empty hint takes such a hint
    away, and never a message about something that happened.
    """

    def __init__(self, text: str, error: bool = False, hint: bool = False) -> None:
        super().__init__()
        self.text, self.error, self.hint = text, error, hint


class StatusLine(Static):
    """Shows the last notice, or the idle text when there is none."""

    DEFAULT_CSS = """
    StatusLine { height: auto; max-height: 5; padding: 0 1; color: $text-muted; }
    StatusLine.-error { color: $text-error; }
    """

    def __init__(self, idle: str, **kwargs) -> None:
        super().__init__(Text(idle), **kwargs)
        self.idle = idle
        self.text = ""
        self.hinting = False

    def say(self, text: str, error: bool = False, hint: bool = False) -> None:
        self.text, self.hinting = text, hint
        self.update(Text(text or self.idle))
        self.set_class(error, "-error")

    def take(self, notice: Notice) -> None:
        if notice.text or not notice.hint:
            self.say(notice.text, notice.error, notice.hint)
        elif self.hinting:
            self.say("")
