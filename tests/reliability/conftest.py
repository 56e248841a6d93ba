"""Fixtures shared by the reliability tests: the workbench's, and one good checkpoint to spoil."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import tui_catalog, tui_runs  # noqa: F401  (fixtures)

# A small torchvision classifier: its checkpoint is 6 MB, so each spoiled copy is cheap to write.
SMALL = {"name": "small", "model": "mobilenet_v3_small", "weights": "none", "input_size": 32, "epochs": 3}


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint as ftui writes it (epoch 2 of 3, 10 classes), for tests that change its metadata."""
    from ftui.engine.checkpoints import cpu_state, save_model_checkpoint
    from ftui.engine.models import build_model
    from ftui.engine.validation import experiment_from_dict

    exp = experiment_from_dict(SMALL, where="test")
    path = tmp_path_factory.mktemp("ckpt") / "best.safetensors"
    metrics = {"type": "epoch", "epoch": 1, "test_acc": 50.0, "test_loss": 1.5, "train_loss": 1.2}
    classes = tuple(f"c{i}" for i in range(10))
    save_model_checkpoint(
        path, cpu_state(build_model(exp, 10)), kind="best", epoch=1, experiment=exp, metrics=metrics, classes=classes
    )
    return path
