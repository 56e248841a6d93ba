"""What a run needs before its first step: data on the device, the model, its optimizer and schedule.

Built before a run folder exists, so that a run refused here (no data, weights that do not fit, a
batch larger than the dataset) leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import FtuiError
from .augment import Augment
from .checkpoints import base_digest, load_checkpoint_model
from .data import Dataset, load_dataset
from .device import tune_for, uses_channels_last
from .distributed import World, backend_for, check_sync_bn, per_process_batch, training_device
from .evaluation import test_augment
from .experiment import NORMALIZATIONS, Experiment
from .models import LayerUnit, build_model, layer_units
from .params import apply_modes, frozen_batchnorms, make_optimizer, make_scheduler, param_groups


@dataclass
class Setup:
    """Everything a run needs, built before its folder is created."""

    exp: Experiment
    device: torch.device
    data: Dataset
    model: nn.Module  # the module itself: its state dict is what checkpoints hold
    forward: nn.Module  # what the steps call: the model, or its torch.compile'd wrapper
    units: tuple[LayerUnit, ...]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_augment: Augment
    eval_augment: Augment
    frozen_bn: list[nn.Module]
    generator: torch.Generator
    steps_per_epoch: int
    world: World  # this process among the run's processes (alone: World())

    @property
    def process_batch(self) -> int:
        """Images each process takes per step: the experiment's batch_size is the global batch."""
        return self.exp.batch_size // self.world.size

    base_sha256: str | None = None  # a LoRA run's base weights, named in its checkpoints


def steps_per_epoch(exp: Experiment, n_train: int) -> int:
    steps = n_train // exp.batch_size  # the last partial batch is dropped: BatchNorm dislikes tiny batches
    if steps == 0:
        raise FtuiError(
            f"batch_size = {exp.batch_size} is larger than the {n_train} training images of {exp.dataset}. "
            "Lower batch_size."
        )
    return min(steps, exp.max_steps_per_epoch) if exp.max_steps_per_epoch else steps


def _check_batchnorm_batch(model: nn.Module, fixed: list[nn.Module], per_process: int) -> None:
    """A BatchNorm layer that trains needs two images or more in its batch to compute statistics from."""
    if per_process >= 2:
        return
    if any(isinstance(m, _BatchNorm) and all(m is not f for f in fixed) for m in model.modules()):
        raise FtuiError(
            f"batch_size gives each process {per_process} image per step, and this model's BatchNorm layers "
            "cannot compute statistics from one image. Use batch_size = 2 or more per process."
        )


def load_data(exp: Experiment, device: torch.device) -> Dataset:
    data = load_dataset(exp.dataset, exp.data_dir, exp.input_size, exp.classes)
    if exp.max_test_images:
        data = dataclasses.replace(
            data,
            test_images=data.test_images[: exp.max_test_images],
            test_labels=data.test_labels[: exp.max_test_images],
        )
    return data.to(device)


def prepare(exp: Experiment, from_checkpoint: Path | None = None, world: World | None = None) -> Setup:
    world = world or World()
    per_process_batch(exp.batch_size, world.size)
    device = training_device(exp.device, world)
    check_sync_bn(exp.sync_bn, world, backend_for(device))
    tune_for(device)
    torch.manual_seed(exp.seed)
    data = load_data(exp, device)
    if from_checkpoint is None:
        model = build_model(exp, data.num_classes)
    else:
        model = load_checkpoint_model(from_checkpoint)[0]
    if exp.sync_bn and world.several:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same names and tensors: checkpoints are unchanged
    units = layer_units(model)
    apply_modes(model, units, exp)
    base = base_digest(model, units, exp) if exp.uses_lora else None
    channels_last = uses_channels_last(device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(param_groups(model, units, exp), exp)
    steps = steps_per_epoch(exp, len(data.train_images))
    frozen_bn = frozen_batchnorms(model, units, exp)
    _check_batchnorm_batch(model, frozen_bn, exp.batch_size // world.size)
    mean, std = NORMALIZATIONS[exp.normalize]
    augment = Augment(exp.input_size, mean, std, exp.crop_padding, exp.flip, exp.rotation, channels_last)
    generator = torch.Generator(device=device)
    generator.manual_seed(exp.seed)
    # The compiled wrapper shares the model's parameters; its state dict would prefix every
    # name with "_orig_mod.", so checkpoints are always taken from the model itself.
    # torch.compile of a Module returns an OptimizedModule, itself a Module; its annotation says only "a callable".
    forward = cast(nn.Module, torch.compile(model)) if exp.compile else model
    return Setup(
        exp,
        device,
        data,
        model,
        forward,
        units,
        optimizer,
        make_scheduler(optimizer, exp, steps),
        augment,
        test_augment(exp, device),
        frozen_bn,
        generator,
        steps,
        world,
        base,
    )


def restore_rng(setup: Setup, rng: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and setup.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], setup.device)
    setup.generator.set_state(rng["data"])
