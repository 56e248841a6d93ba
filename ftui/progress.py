"""Training events rendered as a rich progress bar, for the headless CLI."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .engine import events as ev
from .formatting import param_count, share


class ProgressPrinter:
    """An ``on_event`` callback: a live bar for steps, one line per epoch and checkpoint."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[ips]} img/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = None
        self.epochs = 0
        self.started = False  # a run that fails before RunStarted never trained: its set-up was refused

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler:
            handler(event)

    def _on_RunStarted(self, e: ev.RunStarted) -> None:
        self.started = True
        self.epochs = e.epochs
        trainable = share(e.trainable_params, e.total_params)
        self.console.print(
            f"[bold]{e.experiment}[/] on {e.device}: {e.train_images} train / {e.test_images} test images, "
            f"{param_count(e.trainable_params)} of {param_count(e.total_params)} parameters train ({trainable}): "
            f"{', '.join(e.trainable_units)}"
        )
        self.console.print(f"run folder: {escape(str(e.run_dir))}")
        if e.start_epoch:
            self.console.print(f"resuming at epoch {e.start_epoch + 1} of {e.epochs} from the last checkpoint")
        total = (e.epochs - e.start_epoch) * e.steps_per_epoch
        self.steps_per_epoch = e.steps_per_epoch
        self.first_step = e.start_epoch * e.steps_per_epoch
        self.task = self.progress.add_task(f"epoch {e.start_epoch + 1}/{e.epochs}", total=total, loss="-", ips="-")

    def _on_Step(self, e: ev.Step) -> None:
        self.progress.update(
            self.task,
            completed=e.last_global_step + 1 - self.first_step,
            description=f"epoch {e.epoch + 1}/{self.epochs}",
            loss=f"{sum(e.losses) / len(e.losses):.3f}",
            ips=f"{e.images_per_sec:.0f}",
        )

    def _on_EpochEnd(self, e: ev.EpochEnd) -> None:
        self.console.print(
            f"epoch {e.epoch + 1}/{self.epochs}: test accuracy [bold]{e.test_acc:.2f}%[/]  "
            f"test loss {e.test_loss:.4f}  train loss {e.train_loss:.4f}  "
            f"{e.images_per_sec:.0f} img/s  {e.seconds:.1f}s"
        )

    def _on_CheckpointSaved(self, e: ev.CheckpointSaved) -> None:
        if e.kind == "best":
            self.console.print(f"  best so far saved: {escape(str(e.path))}", style="dim")

    def _on_RunWarning(self, e: ev.RunWarning) -> None:
        self.console.print(f"warning: {escape(e.message)}", style="yellow")
