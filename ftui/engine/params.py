"""Freezing, per-unit parameter groups, the optimizer and the LR schedule.

One optimizer parameter group per trainable layer unit, each with its own
base LR. The schedule is a LambdaLR factor applied to every group's own base
LR, so per-unit ratios (conv1 7e-3 : fc 1e-2 : layers 5e-3) hold at every step.
Frozen units get ``requires_grad=False`` and are never handed to the optimizer.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import FtuiError
from .experiment import Experiment, UnitMode
from .lora import is_lora_tensor
from .models import LayerUnit, unit_of


def trains(exp: Experiment, unit: str, param_name: str) -> bool:
    """Whether a parameter learns: every one of a trained unit, only the LoRA update of a LoRA unit."""
    mode = exp.mode_of(unit)
    return mode is UnitMode.TRAIN or (mode is UnitMode.LORA and is_lora_tensor(param_name))


def apply_modes(model: nn.Module, units: tuple[LayerUnit, ...], exp: Experiment) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(trains(exp, unit_of(units, name).name, name))


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def param_groups(model: nn.Module, units: tuple[LayerUnit, ...], exp: Experiment) -> list[dict]:
    groups: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(unit_of(units, name).name, []).append(param)
    if not groups:
        raise FtuiError(
            f"Experiment {exp.name!r} trains nothing: every layer unit is frozen. Make at least one unit trainable."
        )
    return [{"params": params, "lr": exp.lr_for(unit), "unit": unit} for unit, params in groups.items()]


def make_optimizer(groups: list[dict], exp: Experiment) -> torch.optim.Optimizer:
    if exp.optimizer == "sgd":
        if exp.nesterov and exp.momentum <= 0:
            raise FtuiError(f"Experiment {exp.name!r}: nesterov = true needs momentum > 0.")
        return torch.optim.SGD(
            groups, lr=exp.lr, momentum=exp.momentum, nesterov=exp.nesterov, weight_decay=exp.weight_decay
        )
    betas = (exp.momentum, 0.999)
    if exp.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=exp.lr, betas=betas, weight_decay=exp.weight_decay)
    return torch.optim.Adam(groups, lr=exp.lr, betas=betas, weight_decay=exp.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, scheduler: str) -> float:
    """Multiplier of every group's base LR at a given optimizer step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_scheduler(
    optimizer: torch.optim.Optimizer, exp: Experiment, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = exp.epochs * steps_per_epoch
    warmup = round(exp.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup, exp.scheduler))


def stats_fixed(exp: Experiment, unit: str) -> bool:
    """Whether a unit's BatchNorm running statistics stay as loaded.

    In a run with LoRA units, in every unit that is not trained: those statistics are part of the
    base weights, so the small adapter file with the base weights, and both exports (merged and
    PEFT's), reproduce the model. Otherwise in a frozen unit when frozen_bn = "freeze".
    """
    if exp.mode_of(unit) is UnitMode.TRAIN:
        return False
    return exp.uses_lora or exp.frozen_bn == "freeze"


def frozen_batchnorms(model: nn.Module, units: tuple[LayerUnit, ...], exp: Experiment) -> list[nn.Module]:
    """BatchNorm layers whose running statistics must not move."""
    return [
        m
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and stats_fixed(exp, unit_of(units, name).name)
    ]


def set_train_mode(model: nn.Module, frozen_bn: list[nn.Module]) -> None:
    model.train()
    for module in frozen_bn:
        module.eval()
