"""Unit movement: how far each layer unit moved from the run's starting weights."""

from __future__ import annotations

import threading

import pytest
import torchvision
from safetensors.torch import save_file

from ftui.engine.catalog import experiment_from_dict
from ftui.engine.compare import unit_movement
from ftui.engine.train import train
from ftui.errors import FtuiError
from tests.conftest import TINY

FAST = {**TINY, "epochs": 1, "max_steps_per_epoch": 1, "max_test_images": 8}


def _train(runs_root, **overrides):
    exp = experiment_from_dict({**FAST, **overrides}, where="test")
    result = train(exp, stop=threading.Event(), runs_root=runs_root)
    assert result.status == "finished", result.reason
    return result.run_dir / "best.safetensors"


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A run that started from a local 'pretrained' file and trained only layer4 and fc."""
    tmp = tmp_path_factory.mktemp("compare")
    pretrained = tmp / "resnet18-fake-pretrained.safetensors"
    state = torchvision.models.resnet18(weights=None).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, pretrained)
    checkpoint = _train(tmp / "runs", weights=str(pretrained), trainable=["layer4", "fc"], cifar_stem=False)
    return {m.unit: m for m in unit_movement(checkpoint)}


def test_frozen_units_did_not_move(moved):
    for unit in ("conv1", "bn1", "layer1", "layer2", "layer3"):
        assert not moved[unit].trained and not moved[unit].new
        assert moved[unit].relative_change == 0.0 and moved[unit].abs_change == 0.0


def test_trained_units_moved(moved):
    layer4 = moved["layer4"]
    assert layer4.trained and not layer4.new
    assert 0 < layer4.relative_change < 1 and layer4.abs_change > 0


def test_replaced_head_is_new(moved):
    fc = moved["fc"]
    assert fc.new and fc.trained and fc.relative_change is None
    assert fc.params == 512 * 10 + 10


def test_units_in_model_order(moved):
    assert list(moved) == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]


def test_random_start_has_nothing_to_compare(tmp_path):
    checkpoint = _train(tmp_path / "runs", weights="none")
    with pytest.raises(FtuiError, match="random weights"):
        unit_movement(checkpoint)
