"""The CLI's progress bar counts the steps the events report."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from ftui.engine import events as ev
from ftui.progress import ProgressPrinter


def test_the_bar_counts_every_step_of_a_report():
    printer = ProgressPrinter(Console(file=io.StringIO(), width=100))
    printer(ev.RunStarted(Path("run"), "tiny", "cpu", 1, 2, ("fc",), 3, 1, 4, 8, 32, 8))  # resumed at epoch 2
    task = printer.progress.tasks[0]
    assert task.total == 8  # epochs 2 and 3
    printer(ev.Step(epoch=1, step=0, global_step=4, losses=(2.0, 1.0, 3.0), lr=0.1, images_per_sec=5.0))
    assert task.completed == 3  # steps 4, 5 and 6: the report's first step and the two after it
    assert task.fields["loss"] == "2.000"
