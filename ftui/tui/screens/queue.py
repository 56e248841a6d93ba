"""The queue: every entry in order, to reorder, remove, pause and continue (engine/queue.py holds it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from ...engine.queue import QueueEntry, RunQueue, runner_pid
from ..footer import SteadyFooter
from ..widgets.queue_list import entry_state

REFRESH_SECONDS = 1.0


class QueueScreen(Screen):
    DEFAULT_CSS = """
    QueueScreen DataTable { height: 1fr; }
    QueueScreen #about { height: 3; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("left_square_bracket,shift+up", "move(-1)", "Up"),
        Binding("right_square_bracket,shift+down", "move(1)", "Down"),
        Binding("x,delete", "remove", "Remove"),
        Binding("p", "pause", "Pause/continue"),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[QueueEntry] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="queue")
        yield Static(id="about", markup=False)
        yield SteadyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in ("#", "experiment", "kind", "state", "added/ended"):
            table.add_column(label, key=label)
        self.refresh_queue()
        self.set_interval(REFRESH_SECONDS, self.refresh_queue)

    def refresh_queue(self, keep: str | None = None) -> None:
        """Read the file again; the cursor stays on the entry it was on (keep: the one just moved)."""
        table = self.query_one(DataTable)
        keep, at = keep or self._selected_id(), table.cursor_row
        state, runner = RunQueue(self.app.runs_root).read(), runner_pid(self.app.runs_root)
        rows = [
            (str(n + 1), e.name, e.kind, entry_state(state, n, runner), _when(e.added_at))
            for n, e in enumerate(state.entries)
        ]
        # Then what was run, newest first: how each ended (not to move or remove).
        rows += [("-", d.name, d.kind, d.outcome, _when(d.ended_at)) for d in reversed(state.done)]
        if rows != [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]:
            table.clear()
            for row in rows:
                table.add_row(*row)
        self.entries = state.entries
        ids = [e.id for e in state.entries]
        if keep in ids:
            table.move_cursor(row=ids.index(keep))
        elif ids:  # the entry left (removed, or it ran): the cursor stays where it was
            table.move_cursor(row=min(at, len(ids) - 1))
        self.query_one("#about", Static).update(self._about(state.problem, state.paused, runner))

    def _about(self, problem: str | None, paused: bool, runner: int | None) -> str:
        if problem is not None:
            return problem
        if not self.entries:
            return (
                "The queue is empty. In the catalog, space marks experiments, a queues them, R queues the "
                "report; on the runs screen, a queues the resume of a stopped run."
            )
        going = f"Its runner is process {runner}." if runner is not None else "Its runner starts when nothing trains."
        if paused:
            going = "Paused: the run training goes on to its end, and nothing after it starts until p."
        return (
            f"{going} One run at a time; each goes on after ftui closes. s on a run's screen stops that run "
            "only: the queue goes on with the next (p pauses the queue)."
        )

    def _selected_id(self) -> str | None:
        """The waiting entry under the cursor; None on a row of what was run."""
        table = self.query_one(DataTable)
        if not table.row_count or table.cursor_row >= len(self.entries):
            return None
        return self.entries[table.cursor_row].id

    def action_move(self, by: int) -> None:
        entry_id = self._selected_id()
        if entry_id is not None:
            self.app.change_queue(lambda q: q.move(entry_id, by))
            self.refresh_queue(keep=entry_id)

    def action_remove(self) -> None:
        entry_id = self._selected_id()
        if entry_id is not None:
            self.app.change_queue(lambda q: q.remove(entry_id))
            self.refresh_queue()

    def action_pause(self) -> None:
        paused = not RunQueue(self.app.runs_root).read().paused
        self.app.change_queue(lambda q: q.set_paused(paused))
        self.app.kick_queue()
        self.notify("The queue is paused: nothing more starts." if paused else "The queue goes on.")
        self.refresh_queue()


def _when(stamp: str) -> str:
    return stamp[:16].replace("T", " ")
