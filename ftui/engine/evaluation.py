"""Test-set evaluation, shared by the training loop and `ftui eval`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .augment import Augment
from .checkpoints import load_checkpoint_model
from .data import load_dataset
from .device import autocast, resolve_device, uses_channels_last
from .experiment import NORMALIZATIONS, Experiment


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float  # percent
    images: int


def eval_batch_size(exp: Experiment) -> int:
    """Images per evaluation batch, the same for the training loop and `ftui eval`.

    Twice the training batch: training already showed that batch_size images fit in memory with
    their activations kept for backward and their gradients; evaluation keeps neither, so twice as
    many fit. A fixed floor (such as 256) would not: a person who lowered batch_size to fit a large
    model would see evaluation run out of memory.
    """
    return 2 * exp.batch_size


def test_augment(exp: Experiment, device: torch.device) -> Augment:
    mean, std = NORMALIZATIONS[exp.normalize]
    return Augment(exp.input_size, mean, std, channels_last=uses_channels_last(device))


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    augment: Augment,
    batch_size: int,
    precision: str,
    stop: threading.Event | None = None,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Evaluation | None:
    """Mean loss and accuracy over uint8 images already on the model's device.

    Sums stay on the device and are read once at the end. Returns None if
    ``stop`` is set part-way (the caller is stopping the run). ``total`` adds up
    the sums of every process of a run (each evaluated its own part of the test
    set), with their stop flags: all of them return the same result.
    """
    device = images.device
    model.eval()
    stopped = False
    with torch.inference_mode(), autocast(device, precision):
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for start in range(0, len(images), batch_size):
            if stop is not None and stop.is_set():
                stopped = True
                break
            logits = model(augment.test(images[start : start + batch_size]))
            target = labels[start : start + batch_size]
            loss_sum += F.cross_entropy(logits.float(), target, reduction="sum")
            correct += (logits.argmax(dim=1) == target).sum()
    # Made outside inference mode, so that a collective may add to it in place; float64 keeps the
    # counts exact whatever the test set's size.
    counts = torch.tensor([len(images), stopped], dtype=torch.float64, device=device)
    sums = torch.cat([torch.stack([loss_sum.double(), correct.double()]), counts])
    if total is not None:
        sums = total(sums)
    loss, right, n, stops = sums.tolist()
    if stops:
        return None
    return Evaluation(loss / n, 100.0 * right / n, int(n))


def evaluate_checkpoint(
    path: Path, device_name: str = "auto", max_images: int | None = None
) -> tuple[Evaluation, Experiment]:
    """Test accuracy of a saved checkpoint on its experiment's test set.

    max_images: None evaluates what the experiment did (its max_test_images), 0 every test image,
    N the first N.
    """
    model, _info, exp = load_checkpoint_model(path)
    device = resolve_device(device_name)
    data = load_dataset(exp.dataset, exp.data_dir, exp.input_size, exp.classes)
    limit = (exp.max_test_images if max_images is None else max_images) or len(data.test_images)
    images, labels = data.test_images[:limit].to(device), data.test_labels[:limit].to(device)
    model.to(device)
    if uses_channels_last(device):
        model.to(memory_format=torch.channels_last)
    result = evaluate(model, images, labels, test_augment(exp, device), eval_batch_size(exp), exp.precision)
    assert result is not None  # no stop event given
    return result, exp
