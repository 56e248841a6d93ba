"""Layer units, head and stem changes, and where weights come from."""

from __future__ import annotations

import dataclasses
import os
import urllib.error

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from ftui.engine import model_facts, models
from ftui.engine.weights import load_weights_state
from ftui.errors import ModelError, WeightsError


def test_resnet18_units():
    info = model_facts.describe("resnet18", cifar_stem=True)
    assert info.unit_names == ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")
    assert info.head_unit == "fc"
    by_name = {u.name: u.params for u in info.units}
    assert by_name["conv1"] == 64 * 3 * 3 * 3  # the CIFAR stem's 3x3 conv
    assert by_name["fc"] == 512 * 10 + 10


def test_vgg16_units_are_five_conv_blocks_and_classifier():
    info = model_facts.describe("vgg16")
    assert info.unit_names == ("block1", "block2", "block3", "block4", "block5", "classifier")
    assert info.head_unit == "classifier"
    # block1 is two 3x3 convs: 3->64 and 64->64, with biases
    assert info.units[0].params == (3 * 64 * 9 + 64) + (64 * 64 * 9 + 64)


def test_vit_b_16_units():
    info = model_facts.describe("vit_b_16")
    layers = tuple(f"encoder_layer_{i}" for i in range(12))
    assert info.unit_names == ("conv_proj", "embed") + layers + ("ln", "heads")
    assert info.fixed_input_size == 224
    assert {u.name: u.params for u in info.units}["embed"] == 768 + 197 * 768


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "vit_b_16", "mobilenet_v3_small"])
def test_every_parameter_belongs_to_exactly_one_unit(name):
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    units = models.layer_units(model)
    for pname, _ in model.named_parameters():
        assert sum(u.owns(pname) for u in units) == 1, pname
    assert sum(u.params for u in units) == sum(p.numel() for p in model.parameters())


def test_other_torchvision_models_get_top_level_units():
    info = model_facts.describe("mobilenet_v3_small")
    assert info.unit_names == ("features", "classifier")


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="resnet18"):
        model_facts.check_model_name("resnet19")


def test_cifar_stem_needs_a_resnet():
    with pytest.raises(ModelError, match="cifar_stem"):
        model_facts.describe("vgg16", cifar_stem=True)


def test_build_replaces_head_and_stem(make_exp):
    model = models.build_model(make_exp(), num_classes=7)
    assert model.fc.out_features == 7
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


def test_vit_refuses_other_input_sizes(make_exp):
    # The catalog refuses this too; the engine must hold even when a caller builds an Experiment itself.
    exp = dataclasses.replace(make_exp(model="vit_b_16", cifar_stem=False, input_size=224), input_size=32)
    with pytest.raises(ModelError, match="224"):
        models.build_model(exp, 10)


# -- weights ---------------------------------------------------------------


@pytest.fixture
def imagenet_style_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_local_safetensors_imagenet_weights_load_before_head_change(tmp_path, make_exp, imagenet_style_state):
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in imagenet_style_state.items()}, path)
    model = models.build_model(make_exp(weights=str(path), cifar_stem=False), num_classes=10)
    assert torch.equal(model.layer1[0].conv1.weight, imagenet_style_state["layer1.0.conv1.weight"])
    assert model.fc.out_features == 10


def test_local_pth_loads_with_weights_only(tmp_path, make_exp, imagenet_style_state):
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": imagenet_style_state}, path)
    model = models.build_model(make_exp(weights=str(path), cifar_stem=False), num_classes=10)
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet_style_state["layer4.1.bn2.running_var"])


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['FTUI_TEST_MARKER']}",))


def test_pth_with_pickled_code_is_refused_and_never_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("FTUI_TEST_MARKER", str(marker))
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": _Evil()}, path)
    with pytest.raises(WeightsError, match="Refused"):
        load_weights_state(str(path), "resnet18")
    assert not marker.exists()


def test_weights_of_another_model_are_refused_with_details(tmp_path, make_exp):
    path = tmp_path / "r34.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision.models.resnet34(weights=None).state_dict().items()}, path)
    with pytest.raises(WeightsError, match="unexpected"):
        models.build_model(make_exp(weights=str(path)), num_classes=10)


def test_missing_local_weights_file(make_exp, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        models.build_model(make_exp(weights=str(tmp_path / "nope.pth")), num_classes=10)


@pytest.fixture
def hub_dir(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_pretrained_weights_offline_name_the_file_and_folder(hub_dir, monkeypatch, make_exp):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError) as info:
        models.build_model(make_exp(weights="DEFAULT"), num_classes=10)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(hub_dir / "checkpoints") in message


def test_pretrained_weights_come_from_the_hub_cache(hub_dir, monkeypatch, make_exp, imagenet_style_state):
    folder = hub_dir / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(imagenet_style_state, folder / "resnet18-f37072fd.pth")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    model = models.build_model(make_exp(weights="DEFAULT"), num_classes=10)
    assert torch.equal(model.layer2[0].conv1.weight, imagenet_style_state["layer2.0.conv1.weight"])


def test_unknown_pretrained_weights_name_lists_the_offered_ones():
    with pytest.raises(WeightsError, match="IMAGENET1K_V1"):
        load_weights_state("IMAGENET9K", "resnet18")
