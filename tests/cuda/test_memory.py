"""GPU memory: measured and shown while a run trains, and a batch far too large for it."""

from __future__ import annotations

import asyncio
import gc
import re
import time

import pytest
import torch

from ftui.engine import events as ev
from ftui.engine.device import memory_in_use
from ftui.engine.runs import RunFolder
from ftui.engine.schema import toml_value
from ftui.engine.train import train
from tests.cuda.conftest import cuda_entry

pytestmark = pytest.mark.cuda


def test_the_gpu_memory_a_run_holds_is_measured_while_it_trains(cuda_exp, runs_root):
    started: list[ev.RunStarted] = []
    measured: list[int | None] = []

    def on_event(event):
        if isinstance(event, ev.RunStarted):
            started.append(event)
        elif isinstance(event, ev.Step):
            measured.append(memory_in_use(started[0].device))

    result = train(cuda_exp(), on_event, runs_root=runs_root)
    assert result.status == "finished", result.reason
    assert started[0].device.startswith("cuda (") and started[0].device.endswith(", bf16")
    assert measured and all(m is not None and m > 0 for m in measured)


def test_the_run_screen_shows_the_gpu_memory_of_its_run(tmp_path):
    from ftui.tui.app import make_app
    from ftui.tui.screens.run import RunScreen

    entry = cuda_entry(name="tiny-cuda", epochs=500)  # far longer than the test
    catalog = tmp_path / "experiments.toml"
    catalog.write_text("[[experiment]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in entry.items()))
    app = make_app(catalog, tmp_path / "checkpoints")

    async def progress_line() -> str:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await pilot.press("l")  # launch the catalog's one experiment
            assert isinstance(app.screen, RunScreen)
            deadline = time.monotonic() + 120  # the engine's import and CUDA's start come first
            while "GPU mem" not in (text := str(app.screen.query_one("#progress-text").render())):
                assert time.monotonic() < deadline, f"no GPU memory on the run screen: {text!r}"
                await pilot.pause(0.1)
            return text

    try:
        text = asyncio.run(progress_line())
    finally:
        app.controller.request_stop("by the test")
        app.controller.wait(120)
    assert re.search(r"GPU mem \d+\.\d GiB", text), text


def test_an_absurd_batch_runs_out_of_memory_readably_and_the_gpu_stays_usable(cuda_exp, runs_root):
    # 5,120 images at 1024x1024: the first convolution's output alone would need 172 GB in bf16.
    absurd = cuda_exp(input_size=1024, cifar_stem=False, batch_size=5120, max_steps_per_epoch=1, epochs=1)
    result = train(absurd, runs_root=runs_root)
    assert result.status == "failed"
    assert result.reason.startswith("Out of memory on cuda with batch_size = 5120."), result.reason
    assert "Lower batch_size" in result.reason and "Traceback" not in result.reason
    assert RunFolder(result.run_dir).read_status()["state"] == "failed"
    gc.collect()
    assert torch.cuda.memory_allocated() < 2**30, "the failed run still holds GPU memory"
    small = train(cuda_exp(), runs_root=runs_root)
    assert small.status == "finished", small.reason
