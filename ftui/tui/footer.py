"""The key footer, rebuilt only when the keys it shows change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class SteadyFooter(Footer):
    """Textual's Footer, minus the rebuilds that change nothing.

    Footer recomposes on every bindings update: each screen switch and focus change
    threw away its ~10 key widgets and built, styled and bound new ones. While a CPU run
    trains that was the largest single cost of going back to a screen (py-spy, main thread).
    The keys, their labels and whether each is enabled decide what it shows: when those are
    what it shows already, there is nothing to rebuild.
    """

    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        if self._bindings_ready and screen is self.screen and self._keys(screen) == self._shown:
            return
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self._keys(self.screen)
        yield from super().compose()

    def _keys(self, screen: Screen) -> tuple:
        shown = tuple(
            (binding.key, binding.description, binding.action, binding.group, enabled, tooltip)
            for _node, binding, enabled, tooltip in screen.active_bindings.values()
            if binding.show
        )
        return shown, self.compact, self.show_command_palette
