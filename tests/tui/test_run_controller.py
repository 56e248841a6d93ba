"""The training thread's share of the CPU: a core left to the UI during a run, and nothing changed after."""

from __future__ import annotations

import threading

import torch

from ftui.engine.catalog import experiment_from_dict
from ftui.tui import run_controller
from ftui.tui.run_controller import RunController
from tests.conftest import TINY


def in_a_new_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def test_a_cpu_run_leaves_a_core_to_the_ui_and_changes_nothing_after(tmp_path, monkeypatch):
    monkeypatch.setattr(run_controller.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # The training function reports the threads it was given instead of training.
    monkeypatch.setattr(run_controller, "train", lambda *args, **kwargs: torch.get_num_threads())
    before = torch.get_num_threads()
    controller = RunController(tmp_path)
    controller.start(experiment_from_dict({**TINY, "device": "cpu"}, where="test"))
    controller.wait(30)
    assert controller.result == 3  # four cores, one left to the UI
    assert torch.get_num_threads() == before  # the UI thread kept its threads
    assert in_a_new_thread(torch.get_num_threads) == before  # and threads started after the run get them too
