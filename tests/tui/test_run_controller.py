"""The training thread's share of the CPU: a core left to the UI during a run, and nothing changed after."""

from __future__ import annotations

import threading

import pytest
import torch

from ftui.engine import device as device_module
from ftui.engine import train as train_module
from ftui.engine.catalog import experiment_from_dict
from ftui.tui.run_controller import RunController
from tests.conftest import TINY


def in_a_new_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


@pytest.mark.parametrize(
    "cuda, device, leaves_a_core",
    [(False, "cpu", True), (False, "auto", True), (True, "cpu", True), (True, "auto", False), (True, "cuda", False)],
    ids=["cpu", "auto-no-gpu", "cpu-on-a-cuda-host", "auto-on-a-cuda-host", "cuda"],
)
def test_a_cpu_run_leaves_a_core_to_the_ui_and_changes_nothing_after(
    tmp_path, monkeypatch, cuda, device, leaves_a_core
):
    # The device the run resolves decides, not the host: device = "cpu" on a CUDA host computes on the CPU.
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    # The training function reports the threads it was given instead of training.
    monkeypatch.setattr(train_module, "train", lambda *args, **kwargs: torch.get_num_threads())
    before = torch.get_num_threads()
    controller = RunController(tmp_path)
    controller.start(experiment_from_dict({**TINY, "device": device}, where="test"))
    controller.wait(30)
    assert controller.result == (3 if leaves_a_core else before)  # four cores, one left to the UI
    assert torch.get_num_threads() == before  # the UI thread kept its threads
    assert in_a_new_thread(torch.get_num_threads) == before  # and threads started after the run get them too
