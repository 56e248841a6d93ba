"""Fixtures for driving the real app with App.run_test() and the Pilot."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import TINY

CATALOG = """# a tiny catalog for the TUI tests
[defaults]
dataset = "cifar10-sample"
weights = "none"
device = "cpu"
input_size = 16
batch_size = 8
max_test_images = 32
seed = 1

[[experiment]]
name = "tiny"
description = "ResNet18, CIFAR stem, 2 steps an epoch"
cifar_stem = true
epochs = 2
max_steps_per_epoch = 2
lr = 0.05

[[experiment]]
name = "tiny-fc"
description = "only the head trains"
reference_acc = 80.9
trainable = ["fc"]
epochs = 3
max_steps_per_epoch = 3
"""


@pytest.fixture
def tui_catalog(tmp_path: Path) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(CATALOG)
    return path


@pytest.fixture
def tui_runs(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture
def app(tui_catalog, tui_runs):
    from ftui.tui.app import make_app

    app = make_app(tui_catalog, tui_runs)
    yield app
    app.controller.request_stop("by the test")
    app.controller.wait(60)


@pytest.fixture
def finished_run(tui_runs):
    """A real, finished tiny run in tui_runs."""
    from ftui.engine.catalog import experiment_from_dict
    from ftui.engine.train import train

    exp = experiment_from_dict({**TINY, "name": "tiny"}, where="test")
    result = train(exp, stop=threading.Event(), runs_root=tui_runs)
    assert result.status == "finished", result.reason
    return result.run_dir
