"""Transfer offline: class subsets of a dataset, and weights from an earlier run ("run:NAME")."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from safetensors.torch import load_file

from ftui.engine import events as ev
from ftui.engine.checkpoints import read_checkpoint
from ftui.engine.data import load_dataset
from ftui.engine.evaluation import evaluate_checkpoint
from ftui.engine.runs import RunFolder, resolve_run_weights
from ftui.engine.train import train
from ftui.engine.validation import experiment_from_dict
from ftui.errors import CatalogError, DataError
from tests.conftest import TINY

FIRST, SECOND = ["airplane", "automobile", "bird", "cat", "deer"], ["dog", "frog", "horse", "ship", "truck"]


def test_a_class_subset_keeps_those_images_relabelled_in_the_order_given():
    full = load_dataset("cifar10-sample")
    part = load_dataset("cifar10-sample", classes=("truck", "1", "cat"))
    assert part.classes == ("truck", "automobile", "cat")
    wanted = torch.tensor([9, 1, 3])
    for images, labels, all_images, all_labels in (
        (part.train_images, part.train_labels, full.train_images, full.train_labels),
        (part.test_images, part.test_labels, full.test_images, full.test_labels),
    ):
        mine = torch.isin(all_labels, wanted)
        assert torch.equal(images, all_images[mine])
        assert torch.equal(wanted[labels], all_labels[mine])  # label k is the k-th class given
        assert set(labels.tolist()) == {0, 1, 2}


def test_an_unknown_class_is_named_with_a_hint():
    with pytest.raises(DataError, match=r"'dgo' is not a class of cifar10-sample.*Did you mean 'dog'"):
        load_dataset("cifar10-sample", classes=("dgo", "cat"))


@pytest.mark.parametrize(
    "classes,message",
    [
        (["cat", "dgo"], "did you mean 'dog'"),
        (["cat", 3], "a class is named twice"),
        (["cat"], "at least two classes"),
        ([1.5], "list of class names or indices"),
    ],
)
def test_bad_class_lists_are_refused_in_the_catalog(classes, message):
    with pytest.raises(CatalogError, match=message):
        experiment_from_dict({**TINY, "classes": classes}, "test")


def test_weights_from_a_run_must_name_an_experiment():
    with pytest.raises(CatalogError, match="must be followed by an experiment name"):
        experiment_from_dict({**TINY, "weights": "run:"}, "test")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A network trained on the first five classes, as the catalog's pretraining experiment would."""
    root = tmp_path_factory.mktemp("runs")
    pre = experiment_from_dict({**TINY, "name": "pre", "classes": FIRST, "epochs": 1}, "test")
    result = train(pre, runs_root=root)
    assert result.status == "finished", result.reason
    return root, result


def test_a_subset_run_has_a_head_of_that_size_and_evaluates_on_those_classes(pretrained):
    _, result = pretrained
    info = read_checkpoint(result.run_dir / "best.safetensors")
    assert info.classes == tuple(FIRST)
    assert load_file(result.run_dir / "best.safetensors")["fc.weight"].shape == (5, 512)
    evaluation, _ = evaluate_checkpoint(result.run_dir / "best.safetensors", "cpu", max_images=0)
    assert evaluation.images == len(load_dataset("cifar10-sample", classes=tuple(FIRST)).test_images)


def test_run_weights_start_from_the_latest_finished_run_with_a_new_head(pretrained):
    root, result = pretrained
    fine = experiment_from_dict({**TINY, "name": "fine", "classes": SECOND, "weights": "run:pre"}, "test")
    events = []
    tuned = train(fine, events.append, runs_root=root)
    assert tuned.status == "finished", tuned.reason
    recorded = RunFolder(tuned.run_dir).read_experiment()["weights"]
    assert recorded == str((result.run_dir / "best.safetensors").absolute())  # resolved, and recorded so
    start = load_file(result.run_dir / "best.safetensors")
    assert start["fc.weight"].shape == (5, 512)  # the other head is left behind: the new one has 5 other classes
    assert isinstance(events[0], ev.RunStarted)


def test_run_weights_refuse_when_there_is_no_finished_run(pretrained, tmp_path):
    root, _ = pretrained
    exp = experiment_from_dict({**TINY, "name": "fine", "weights": "run:nobody"}, "test")
    result = train(exp, runs_root=root)
    assert result.status == "failed" and "Train it first: ftui run nobody" in result.reason

    # A stopped run is not a base to start from: the message says how to finish it.
    stop = threading.Event()
    stop.set()
    exp_stopped = experiment_from_dict({**TINY, "name": "half", "epochs": 1}, "test")
    half = train(exp_stopped, stop=stop, runs_root=tmp_path)
    assert half.status == "stopped"
    later = train(dataclasses.replace(exp, weights="run:half"), runs_root=tmp_path)
    assert later.status == "failed" and "is stopped; continue it with: ftui resume" in later.reason


def test_run_weights_take_the_newest_finished_run_over_older_ones_and_a_newer_stopped_one(tmp_path):
    base = experiment_from_dict({**TINY, "name": "base", "epochs": 1}, "test")
    older, newer = train(base, runs_root=tmp_path), train(base, runs_root=tmp_path)
    stop = threading.Event()
    stop.set()
    assert train(base, stop=stop, runs_root=tmp_path).status == "stopped"
    assert older.run_dir != newer.run_dir
    assert resolve_run_weights("run:base", tmp_path) == str((newer.run_dir / "best.safetensors").absolute())


def test_weights_for_other_classes_load_all_but_the_head(tmp_path, make_exp):
    """A network trained for 3 classes starts a 10-class run: its body is loaded, its head starts fresh
    (this was refused before the report in miniature needed it)."""
    import torchvision
    from safetensors.torch import save_file

    from ftui.engine.models import build_model

    torch.manual_seed(0)
    other = torchvision.models.resnet18(num_classes=3)
    other.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    other.maxpool = torch.nn.Identity()
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "three.safetensors")
    model = build_model(make_exp(weights=str(tmp_path / "three.safetensors")), 10)
    assert model.fc.weight.shape == (10, 512)
    assert torch.equal(model.layer4[1].conv2.weight, other.layer4[1].conv2.weight)
    assert torch.equal(model.conv1.weight, other.conv1.weight)


def test_a_network_trained_with_the_imagenet_stem_starts_a_run_with_a_new_cifar_stem(tmp_path, make_exp):
    """The report in miniature pretrains with the ImageNet stem (7x7 conv1 + maxpool) and fine-tunes with a
    new CIFAR stem, as the report does over ImageNet weights: everything but stem and head is loaded
    (this was refused as "does not fit" before)."""
    import torchvision
    from safetensors.torch import save_file

    from ftui.engine.models import build_model

    torch.manual_seed(0)
    other = torchvision.models.resnet18(num_classes=5)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "pre.safetensors")
    model = build_model(make_exp(weights=str(tmp_path / "pre.safetensors"), cifar_stem=True), 10)
    assert model.conv1.weight.shape == (64, 3, 3, 3) and isinstance(model.maxpool, torch.nn.Identity)
    assert model.fc.weight.shape == (10, 512)
    assert torch.equal(model.layer1[0].conv1.weight, other.layer1[0].conv1.weight)
    assert torch.equal(model.bn1.running_var, other.bn1.running_var)
