"""Freezing, per-unit learning rates and the schedule that keeps their ratios."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ftui.engine.models import build_model, layer_units
from ftui.engine.params import (
    apply_modes,
    count_params,
    frozen_batchnorms,
    lr_factor,
    make_optimizer,
    make_scheduler,
    param_groups,
    set_train_mode,
)
from ftui.errors import FtuiError


def _setup(exp):
    model = build_model(exp, 10)
    units = layer_units(model)
    apply_modes(model, units, exp)
    return model, units


def test_frozen_units_are_not_in_the_optimizer(make_exp):
    exp = make_exp(trainable=["conv1", "layer2", "fc"])
    model, units = _setup(exp)
    groups = param_groups(model, units, exp)
    assert [g["unit"] for g in groups] == ["conv1", "layer2", "fc"]
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        trains = name.split(".")[0] in ("conv1", "layer2", "fc")
        assert p.requires_grad == trains, name
        assert (id(p) in in_optimizer) == trains, name
    trainable, total = count_params(model)
    assert trainable == sum(u.params for u in units if u.name in exp.trainable)
    assert total == sum(u.params for u in units)


def test_per_unit_lrs_keep_their_ratios_through_the_schedule(make_exp):
    # The report's §3.3 optimizer: conv1 7e-3, fc 1e-2, layer1-4 5e-3, cosine.
    exp = make_exp(
        trainable=["conv1", "layer1", "layer2", "layer3", "layer4", "fc"],
        lr=5e-3,
        unit_lr={"conv1": 7e-3, "fc": 1e-2},
        warmup_epochs=1,
        epochs=4,
    )
    model, units = _setup(exp)
    opt = make_optimizer(param_groups(model, units, exp), exp)
    sched = make_scheduler(opt, exp, steps_per_epoch=10)
    base = {g["unit"]: g["lr"] / lr_factor(0, 40, 10, "cosine") for g in opt.param_groups}
    assert base == pytest.approx(
        {"conv1": 7e-3, "layer1": 5e-3, "layer2": 5e-3, "layer3": 5e-3, "layer4": 5e-3, "fc": 1e-2}
    )
    seen = []
    for _ in range(40):
        lrs = {g["unit"]: g["lr"] for g in opt.param_groups}
        assert lrs["conv1"] / lrs["layer3"] == pytest.approx(7 / 5)
        assert lrs["fc"] / lrs["layer1"] == pytest.approx(2.0)
        seen.append(lrs["fc"])
        opt.step()
        sched.step()
    assert seen[9] == pytest.approx(1e-2)  # end of warm-up: the full base LR
    assert seen[-1] < 1e-4  # cosine has decayed to nearly zero
    assert max(seen) == pytest.approx(1e-2)


def test_lr_factor_shape():
    assert lr_factor(0, 100, 0, "cosine") == 1.0
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 0, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(4, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(77, 100, 0, "constant") == 1.0


@pytest.mark.parametrize(
    "optimizer, kind, hyper",
    [
        ("sgd", torch.optim.SGD, {"momentum": 0.8, "nesterov": True, "weight_decay": 1e-3}),
        ("adamw", torch.optim.AdamW, {"betas": (0.8, 0.999), "weight_decay": 1e-3}),
        ("adam", torch.optim.Adam, {"betas": (0.8, 0.999), "weight_decay": 1e-3}),
    ],
)
def test_optimizers_take_the_groups(make_exp, optimizer, kind, hyper):
    # Values other than the defaults, so a setting that is dropped on the way shows.
    exp = make_exp(optimizer=optimizer, trainable=["fc"], lr=0.02, momentum=0.8, nesterov=True, weight_decay=1e-3)
    model, units = _setup(exp)
    opt = make_optimizer(param_groups(model, units, exp), exp)
    assert type(opt) is kind  # AdamW is not an Adam subclass, nor the other way round
    assert len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["unit"] == "fc" and group["lr"] == 0.02
    assert {name: group[name] for name in hyper} == hyper
    assert [id(p) for p in group["params"]] == [id(model.fc.weight), id(model.fc.bias)]


def test_nothing_trainable_is_an_error(make_exp):
    exp = make_exp(trainable=["fc"])
    model, units = _setup(exp)
    apply_modes(model, units, dataclasses.replace(exp, trainable=()))
    with pytest.raises(FtuiError, match="trains nothing"):
        param_groups(model, units, exp)


@pytest.mark.parametrize("mode,moves", [("freeze", False), ("update", True)])
def test_batchnorm_statistics_of_frozen_units(make_exp, mode, moves):
    exp = make_exp(trainable=["fc"], frozen_bn=mode)
    model, units = _setup(exp)
    set_train_mode(model, frozen_batchnorms(model, units, exp))
    before = model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 16, 16))
    assert (not torch.equal(before, model.bn1.running_mean)) == moves
    assert model.training
