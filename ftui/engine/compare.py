"""How far each layer unit moved from the weights its run started from.

The report asks which layers matter when fine-tuning; the weights answer it
too: a unit whose parameters barely moved (relative to their size) could have
stayed frozen. The reference is the experiment's own starting point, the
torchvision pretrained weights or the local weights file it named, mapped by
name onto the adapted model. Tensors whose shapes differ there (a replaced
head, the CIFAR stem) have no starting point: their unit is ``new``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from ..errors import FtuiError
from .checkpoints import load_checkpoint_model, load_tensors, read_checkpoint
from .experiment import WEIGHTS_NONE
from .lora import merged_state
from .model_facts import describe
from .models import unit_of
from .validation import experiment_from_dict
from .weights import load_weights_state


@dataclass(frozen=True)
class UnitMovement:
    unit: str
    params: int
    trained: bool
    new: bool  # no starting tensor of the same shape: replaced head or stem
    relative_change: float | None  # ||w - w0|| / ||w0||; None when new
    abs_change: float | None  # ||w - w0||; None when new
    lora: bool = False  # moved by a LoRA update beside its weights: the change is ||ΔW|| / ||W||


@functools.lru_cache(maxsize=16)
def _parameter_names(model_name: str) -> frozenset[str]:
    # Parameters, not buffers: running statistics move even in frozen units.
    # Head and stem replacement keep the names, so the plain model's names serve.
    with torch.device("meta"):
        model = torchvision.models.get_model(model_name, weights=None)
    return frozenset(name for name, _ in model.named_parameters())


def _reference(exp) -> dict[str, torch.Tensor]:
    if exp.weights == WEIGHTS_NONE:
        raise FtuiError(
            f'{exp.name} started from random weights (weights = "none"): there are no starting '
            "weights to compare against."
        )
    state = load_weights_state(exp.weights, exp.model)
    assert state is not None  # only "none" gives None
    return state


def _movement(
    name: str, params: int, trained: bool, pairs: list[tuple[torch.Tensor, torch.Tensor | None]]
) -> UnitMovement:
    known = [(w, w0) for w, w0 in pairs if w0 is not None and w0.shape == w.shape]
    if len(known) < len(pairs):
        return UnitMovement(name, params, trained, True, None, None)
    diff = sum(float((w.double() - w0.double()).pow(2).sum()) for w, w0 in known)
    base = sum(float(w0.double().pow(2).sum()) for _, w0 in known)
    abs_change = math.sqrt(diff)
    relative = abs_change / math.sqrt(base) if base > 0 else (math.inf if diff > 0 else 0.0)
    return UnitMovement(name, params, trained, False, relative, abs_change)


def unit_movement(checkpoint_path: Path | str) -> list[UnitMovement]:
    """Per layer unit, in model order: how far the checkpoint moved from its starting weights."""
    path = Path(checkpoint_path)
    info = read_checkpoint(path)
    exp = experiment_from_dict(info.experiment, where=str(path))
    reference = _reference(exp)
    current = _effective_weights(path) if info.lora_base is not None else load_tensors(path)
    units = describe(exp.model, exp.cifar_stem, len(info.classes)).units
    names = _parameter_names(exp.model)
    pairs: dict[str, list] = {u.name: [] for u in units}
    for key, tensor in current.items():
        if key in names and tensor.is_floating_point():
            pairs[unit_of(units, key).name].append((tensor, reference.get(key)))
    moved = {u.name for u in units if u.name in info.trainable_units or u.name in exp.lora}
    return [
        dataclasses.replace(_movement(u.name, u.params, u.name in moved, pairs[u.name]), lora=u.name in exp.lora)
        for u in units
        if pairs[u.name]
    ]


def _effective_weights(path: Path) -> dict[str, torch.Tensor]:
    """A LoRA checkpoint's weights as the model computes with them: W + ΔW, so a LoRA unit's movement is
    ‖B·A‖·α/r over ‖W‖."""
    model, _, _ = load_checkpoint_model(path)
    return merged_state(model)
