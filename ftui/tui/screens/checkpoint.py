"""One checkpoint: its metadata, its tensors, and how far each unit moved from its starting weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static
from textual.worker import Worker, WorkerState

from ...engine.results import summarize_units
from ...errors import FtuiError
from ...formatting import param_count, plain_line
from ..footer import SteadyFooter

# The engine modules that import torch are imported where they are used: the runs screen, which
# imports this one, opens before torch has loaded.
if TYPE_CHECKING:
    from ...engine.checkpoints import CheckpointInfo
    from ...engine.compare import UnitMovement

BAR_WIDTH = 24
EIGHTHS = " ▏▎▍▌▋▊▉"


def error_text(exc: BaseException | None) -> str:
    """FtuiError messages are written for people; anything else is a bug, still shown readably."""
    if isinstance(exc, FtuiError):
        return str(exc)
    return f"Unexpected error (a bug in ftui): {type(exc).__name__}: {exc}"


def evaluation_text(checkpoint: Path, device: str) -> str:
    """Evaluate on the experiment's test set (blocking: call it from a thread worker)."""
    from ...engine.evaluation import evaluate_checkpoint

    result, _ = evaluate_checkpoint(checkpoint, device)
    return f"{checkpoint.name}: {result.accuracy:.2f}% test accuracy, loss {result.loss:.4f} on {result.images} images"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar in eighths of a cell, so small differences stay visible."""
    eighths = round(max(0.0, min(fraction, 1.0)) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")


def shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


def fit(name: str, width: int) -> str:
    """Cut the middle of a long tensor name: its unit (start) and kind (end) are what people read."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


def summary_text(info: CheckpointInfo) -> Text:
    exp, m = info.experiment, info.metrics
    name, folder = plain_line(exp.get("name", "?")), plain_line(info.path.parent.name)
    text = Text()
    text.append(f"{folder}/{plain_line(info.path.name)}", style="bold")
    if not folder.startswith(name):  # run folders are named after their experiment
        text.append(f" ({name})")
    kind = "" if info.path.stem == info.kind else f" ({info.kind})"
    text.append(f"{kind} · {exp.get('model', '?')} · epoch {info.epoch + 1} of {exp.get('epochs', '?')}\n")
    if "test_acc" in m:
        text.append(f"test acc {m['test_acc']:.2f}%", style="bold")
        text.append(
            f" · test loss {m.get('test_loss', float('nan')):.4f} · train loss "
            f"{m.get('train_loss', float('nan')):.4f}\n"
        )
    units = tuple(dict.fromkeys(t.unit for t in info.tensors))
    start = "random weights" if exp.get("weights") == "none" else plain_line(exp.get("weights", "?"))
    text.append(
        f"trains {summarize_units(info.trainable_units, units)} · from {start} · "
        f"{len(info.classes)} classes · {param_count(info.param_count)} values\n"
    )
    if info.lora_base is not None:
        text.append(plain_line(info.adapters()) + " · base weights not in the file\n")
    # The safetensors version says nothing about the results; the others can.
    versions = {k: v for k, v in info.versions.items() if k != "safetensors"}
    text.append(plain_line(" · ".join(f"{k} {v}" for k, v in versions.items())), style="dim")
    return text


def movement_rows(moves: list[UnitMovement]) -> list[list]:
    scale = max((m.relative_change for m in moves if not m.new), default=0.0) or 1.0
    rows = []
    for m in moves:
        state = (
            Text("lora", style="magenta")
            if m.lora
            else Text("trained", style="green")
            if m.trained
            else Text("frozen", style="dim")
        )
        if m.new:
            rows.append(
                [
                    m.unit,
                    param_count(m.params),
                    state,
                    Text("new", style="bold yellow"),
                    Text("replaced: no starting weights", style="yellow"),
                ]
            )
            continue
        change = Text(f"{100 * m.relative_change:.3g}%", style="" if m.relative_change else "dim")
        rows.append([m.unit, param_count(m.params), state, change, Text(bar(m.relative_change / scale), style="cyan")])
    return rows


class CheckpointScreen(Screen):
    SUB_TITLE = "checkpoint"
    DEFAULT_CSS = """
    CheckpointScreen #summary { height: auto; padding: 0 1; border-bottom: solid $primary; }
    CheckpointScreen DataTable { height: 1fr; }
    CheckpointScreen #note { height: auto; padding: 0 1; color: $text-muted; }
    CheckpointScreen #note.error { color: $text; border: thick $error; padding: 1 2; }
    CheckpointScreen #message { height: 1fr; padding: 1 2; border: thick $error; }
    """
    BINDINGS = [
        Binding("t", "tensors", "Tensors"),
        Binding("m", "movement", "Movement vs start"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.info: CheckpointInfo | None = None
        self.moves: list[UnitMovement] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="summary")
        yield Static(id="note", markup=False)
        yield DataTable(cursor_type="row", zebra_stripes=True, id="tensors")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="movement")
        yield Static(id="message", markup=False)
        yield SteadyFooter()

    def on_mount(self) -> None:
        from ...engine.checkpoints import read_checkpoint

        self.query_one("#message").display = False
        try:
            self.info = read_checkpoint(self.path)
        except FtuiError as exc:
            self._show_message(f"{self.path} could not be read.\n\n{exc}")
            return
        self.query_one("#summary", Static).update(summary_text(self.info))
        self._fill_tensors()
        self.action_tensors()

    def _show_message(self, message: str) -> None:
        for widget in self.query("#summary, #note, DataTable"):
            widget.display = False
        self.query_one("#message", Static).update(message)
        self.query_one("#message").display = True

    def _fill_tensors(self) -> None:
        table = self.query_one("#tensors", DataTable)
        table.add_columns("tensor", "shape", "dtype", "unit", "state")
        tensors = self.info.tensors
        # The other columns are narrow; long names give way so the state column stays on screen.
        others = max(len(shape_text(t.shape)) for t in tensors) + max(len(t.unit) for t in tensors) + 5 + 7
        width = max(24, self.app.size.width - others - 2 * 5 - 2)
        for t in tensors:
            state = Text("trained", style="green") if t.trained else Text("frozen", style="dim")
            table.add_row(fit(t.name, width), shape_text(t.shape), t.dtype, t.unit, state, key=t.name)

    def _note(self, message: str, error: bool = False) -> None:
        note = self.query_one("#note", Static)
        note.update(message)
        note.set_class(error, "error")
        note.display = bool(message)

    # -- actions -----------------------------------------------------------

    def action_tensors(self) -> None:
        if self.info is None:
            return
        self._note("")
        self.query_one("#movement").display = False
        self.query_one("#tensors").display = True
        self.query_one("#tensors").focus()

    def action_movement(self) -> None:
        if self.info is None:
            return
        self.query_one("#tensors").display = False
        if self.moves is None:
            self._note(f"Comparing with the starting weights ({self.info.experiment.get('weights')})…")
            self._compute_movement()
            return
        self._show_movement()

    @work(thread=True, exclusive=True, group="movement", exit_on_error=False)
    def _compute_movement(self) -> list[UnitMovement]:
        from ...engine.compare import unit_movement

        return unit_movement(self.path)

    def _show_movement(self) -> None:
        table = self.query_one("#movement", DataTable)
        if not table.columns:
            table.add_columns("unit", "params", "state", "moved", "scaled to the largest")
            for row in movement_rows(self.moves):
                table.add_row(*row)
        self._note(
            f"How far each unit moved from its starting weights ({self.info.experiment.get('weights')}): "
            "‖w−w₀‖/‖w₀‖ over its parameters (BatchNorm statistics left out)."
        )
        table.display = True
        table.focus()

    def action_evaluate(self) -> None:
        if self.info is None:
            return
        self.notify(f"Evaluating {self.path.name} on the test set…")
        self._evaluate(self.info.experiment.get("device", "auto"))

    @work(thread=True, exclusive=True, group="eval", exit_on_error=False)
    def _evaluate(self, device: str) -> str:
        return evaluation_text(self.path, device)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.SUCCESS and worker.group == "movement":
            self.moves = worker.result
            if not self.query_one("#tensors").display:
                self._show_movement()
        elif event.state == WorkerState.ERROR and worker.group == "movement":
            self._note(f"Cannot compare with the starting weights.\n\n{error_text(worker.error)}", error=True)
        elif event.state == WorkerState.SUCCESS and worker.group == "eval":
            self.notify(worker.result, timeout=10)
        elif event.state == WorkerState.ERROR and worker.group == "eval":
            self.notify(error_text(worker.error), title="Evaluation failed", severity="error", timeout=15)

    def action_back(self) -> None:
        self.app.pop_screen()
