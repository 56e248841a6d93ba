"""An Input that applies its own editing keys in the order the keys came."""

from __future__ import annotations

from textual import events
from textual.validation import Function, Number, ValidationResult, Validator
from textual.widgets import Input

from ...engine.schema import Range


class EditField(Input):
    """Input, with its own bindings (ctrl+u, ctrl+k, enter, ...) run as soon as their key reaches it.

    Textual looks a focused widget's bindings up only when the key has bubbled back up to the App,
    while the Input types a printable key the moment it takes it from its queue. So when ctrl+u and 5
    arrive in one read from the terminal, the 5 was typed before ctrl+u ran, and ctrl+u then deleted
    it. Running the Input's own bindings here keeps the keys in order; every other key (escape, F5,
    tab, a screen's keys) still bubbles up as before.
    """

    async def _on_key(self, event: events.Key) -> None:
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()
                return
        await super()._on_key(event)


def first_failure(result: ValidationResult | None) -> str | None:
    """An Input's first validation failure, worded to follow a colon; None when it passed."""
    if result is None or result.is_valid:
        return None
    text = result.failure_descriptions[0] if result.failure_descriptions else "invalid"
    return text[:1].lower() + text[1:].rstrip(".")


def mark_invalid(field: Input) -> None:
    # Refused by the catalog's checks, which the Input's own validators do not know.
    field.remove_class("-valid").add_class("-invalid")


def range_checks(allowed: Range | None) -> list[Validator]:
    """An Input's validators for a declared range (a number, within the bounds), each failure worded on its own."""
    if allowed is None:
        return [Number()]
    closed_hi = allowed.hi if allowed.hi is not None and not allowed.hi_open else None
    checks: list[Validator] = [Number(minimum=None if allowed.lo_open else allowed.lo, maximum=closed_hi)]
    if allowed.lo_open:
        checks.append(Function(lambda v: _number(v) > allowed.lo, f"Must be greater than {allowed.lo}"))
    if allowed.hi is not None and allowed.hi_open:
        hi = allowed.hi
        checks.append(Function(lambda v: _number(v) < hi, f"Must be less than {hi}"))
    return checks


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # compares false either way: the Number check says what is wrong
