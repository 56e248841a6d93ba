"""Shared fixtures: tiny, fast, offline experiments."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # The model facts cache (engine/model_facts.py) of this test session, never the user's: set before
    # collection, since test modules describe models at import time; subprocesses inherit it.
    os.environ["FTUI_CACHE_DIR"] = tempfile.mkdtemp(prefix="ftui-test-cache-")


def pytest_unconfigure(config):
    shutil.rmtree(os.environ.pop("FTUI_CACHE_DIR", ""), ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked cuda (tests/cuda/) run only where PyTorch sees a CUDA GPU; elsewhere they are skipped.

    bench/gpu_check.py runs them on a GPU machine and reports the skip reason "no CUDA" as it is.
    """
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    for item in marked:
        item.add_marker(pytest.mark.skip(reason="no CUDA"))


# A real but tiny setup: ResNet18 with the CIFAR stem on 16x16 crops of the
# embedded CIFAR-10 sample, 2 steps of 8 images per epoch, 32 test images.
TINY = {
    "name": "tiny",
    "model": "resnet18",
    "weights": "none",
    "dataset": "cifar10-sample",
    "input_size": 16,
    "cifar_stem": True,
    "trainable": "all",
    "lr": 0.05,
    "epochs": 2,
    "batch_size": 8,
    "max_steps_per_epoch": 2,
    "max_test_images": 32,
    "device": "cpu",
    "seed": 1,
}


@pytest.fixture
def make_exp():
    """Build a validated Experiment from TINY plus overrides."""
    from ftui.engine.catalog import experiment_from_dict

    def make(**overrides):
        return experiment_from_dict({**TINY, **overrides}, where="test")

    return make


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture
def tiny_catalog(tmp_path: Path) -> Path:
    """A catalog file with one tiny experiment, written as a person would."""
    path = tmp_path / "experiments.toml"
    lines = ["# a tiny catalog for tests", "[defaults]", 'device = "cpu"', "", "[[experiment]]"]
    for key, value in TINY.items():
        if key == "device":
            continue
        lines.append(f"{key} = {value!r}".replace("True", "true").replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return path


def epoch_records(run_dir: Path) -> list[tuple]:
    """Each epoch's figures from a run folder's metrics.jsonl, for comparing two runs."""
    from ftui.engine.events import EpochEnd
    from ftui.engine.runs import RunFolder

    return [
        (e.epoch, e.test_acc, e.test_loss, e.train_loss)
        for e in RunFolder(run_dir).read_events()
        if isinstance(e, EpochEnd)
    ]
