"""The queue, compact: position, experiment and state of the first few entries; hidden while it is empty."""

from __future__ import annotations

from textual.widgets import Static

from ...engine.queue import RESUME, QueueState, RunQueue, runner_pid
from ...formatting import shorten

SHOWN = 3  # entries listed; the rest are counted
REFRESH_SECONDS = 1.0  # the runner changes the file; reading it is a few hundred bytes


def entry_state(state: QueueState, index: int, runner: int | None) -> str:
    """What an entry is doing, in a word or three (the queue screen uses it too)."""
    entry = state.entries[index]
    if entry.current:
        return "training" if runner is not None else "ended, runner gone"
    if state.paused:
        return "paused"
    return "next" if index == 0 or (state.entries[0].current and index == 1) else "waiting"


def describe(state: QueueState, runner: int | None, width: int = 76) -> str:
    if state.problem is not None:
        return state.problem
    if not state.entries:
        return ""
    head = f"Queue: {len(state.entries)}" + (" - paused (u, then p, continues it)" if state.paused else "")
    if state.done:
        head += f" · last: {state.done[-1].name} {state.done[-1].outcome}"
    lines = [shorten(head, width)]
    for n, entry in enumerate(state.entries[:SHOWN]):
        what = f"resume {entry.name}" if entry.kind == RESUME else entry.name
        lines.append(shorten(f" {n + 1}. {what} - {entry_state(state, n, runner)}", width))
    if len(state.entries) > SHOWN:
        lines.append(f" … and {len(state.entries) - SHOWN} more (u shows the queue)")
    return "\n".join(lines)


class QueueList(Static):
    DEFAULT_CSS = "QueueList { height: auto; max-height: 5; padding: 0 1; color: $text-muted; }"

    def __init__(self) -> None:
        super().__init__("", markup=False)
        self.shown = ""

    def on_mount(self) -> None:
        self.update_queue()
        self.set_interval(REFRESH_SECONDS, self.update_queue)

    def update_queue(self) -> None:
        root = self.app.runs_root
        text = describe(RunQueue(root).read(), runner_pid(root))
        self.display = bool(text)
        if text != self.shown:  # an unchanged update would still re-lay-out the screen
            self.shown = text
            self.update(text)
