"""Torchvision classifiers, adapted to a dataset, and their layer units.

A *layer unit* is the granularity at which a person freezes layers and sets
learning rates: ResNet's conv1/bn1/layer1-4/fc, VGG's five conv blocks and its
classifier, ViT's patch projection, token embeddings, each encoder layer, the
final norm and the head. Any other torchvision classifier gets one unit per
top-level child. A unit is a set of qualified-name prefixes, so the same
definition selects parameters, buffers and modules.
"""

from __future__ import annotations

import functools

import torch
import torchvision
from torch import nn
from torchvision.models import VGG, VisionTransformer

from ..errors import ModelError, WeightsError
from .experiment import Experiment
from .lora import attach_lora, find_adaptable
from .model_facts import LayerUnit, ModelInfo, check_model_name, owner_of
from .weights import load_weights_state, mismatch_report, state_fits


def _find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """Qualified name and module of the final Linear layer: the classifier head."""
    last = None
    for qname, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = qname, module
    if last is None:
        raise ModelError(f"{type(model).__name__} has no Linear classifier head that ftui can replace.")
    return last


def _set_submodule(model: nn.Module, qname: str, module: nn.Module) -> None:
    parent_name, _, child = qname.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def replace_head(model: nn.Module, num_classes: int) -> str:
    head, old = _find_head(model)
    _set_submodule(model, head, nn.Linear(old.in_features, num_classes, device=old.weight.device))
    return head


def _resnet_stem(model: nn.Module) -> nn.Conv2d | None:
    """conv1 of a ResNet-style model (a Conv2d conv1 followed by a maxpool); None for other models."""
    conv1 = getattr(model, "conv1", None)
    return conv1 if isinstance(conv1, nn.Conv2d) and hasattr(model, "maxpool") else None


def has_resnet_stem(model: nn.Module) -> bool:
    return _resnet_stem(model) is not None


def apply_cifar_stem(model: nn.Module) -> None:
    """The report's §3.1 change: 3x3 stride-1 conv1 and no maxpool, for 32x32 inputs."""
    old = _resnet_stem(model)
    if old is None:
        raise ModelError(
            f"cifar_stem applies to ResNet-style models (conv1 + maxpool); {type(model).__name__} has none. "
            "Set cifar_stem = false."
        )
    model.conv1 = nn.Conv2d(
        old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False, device=old.weight.device
    )
    model.maxpool = nn.Identity()


def _count(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    unit = LayerUnit("", prefixes)
    return sum(p.numel() for n, p in model.named_parameters() if unit.owns(n))


def _vgg_units(model: VGG) -> list[tuple[str, tuple[str, ...]]]:
    # features is conv/relu(/bn) runs separated by MaxPool2d: one unit per run.
    units: list[tuple[str, tuple[str, ...]]] = []
    current: list[str] = []
    for idx, module in enumerate(model.features):
        current.append(f"features.{idx}")
        if isinstance(module, nn.MaxPool2d):
            units.append((f"block{len(units) + 1}", tuple(current)))
            current = []
    if current:
        units.append((f"block{len(units) + 1}", tuple(current)))
    return units + [("classifier", ("classifier",))]


def _vit_units(model: VisionTransformer) -> list[tuple[str, tuple[str, ...]]]:
    layers = [(name, (f"encoder.layers.{name}",)) for name, _ in model.encoder.layers.named_children()]
    return (
        [("conv_proj", ("conv_proj",)), ("embed", ("class_token", "encoder.pos_embedding"))]
        + layers
        + [("ln", ("encoder.ln",)), ("heads", ("heads",))]
    )


def _child_units(model: nn.Module) -> list[tuple[str, tuple[str, ...]]]:
    units: list[tuple[str, tuple[str, ...]]] = [(name, (name,)) for name, _ in model.named_parameters(recurse=False)]
    for name, child in model.named_children():
        if any(True for _ in child.parameters()):
            units.append((name, (name,)))
    return units


def layer_units(model: nn.Module) -> tuple[LayerUnit, ...]:
    if isinstance(model, VGG):
        spec = _vgg_units(model)
    elif isinstance(model, VisionTransformer):
        spec = _vit_units(model)
    else:
        spec = _child_units(model)
    units = tuple(LayerUnit(name, prefixes, _count(model, prefixes)) for name, prefixes in spec)
    # Only units that hold parameters are worth a toggle (VGG's trailing pool has none).
    return tuple(u for u in units if u.params > 0)


def unit_of(units: tuple[LayerUnit, ...], qualified_name: str) -> LayerUnit:
    """The unit a parameter belongs to: every parameter has one."""
    if (unit := owner_of(units, qualified_name)) is not None:
        return unit
    raise ModelError(f"Parameter {qualified_name!r} belongs to no layer unit (a bug in ftui's unit table).")


def _construct(name: str, num_classes: int, cifar_stem: bool) -> nn.Module:
    model = torchvision.models.get_model(name, weights=None)
    replace_head(model, num_classes)
    if cifar_stem:
        apply_cifar_stem(model)
    return model


@functools.lru_cache(maxsize=16)
def expected_shapes(name: str, cifar_stem: bool, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every tensor the adapted model holds (state dict names and shapes), from the meta device."""
    with torch.device("meta"):
        model = _construct(check_model_name(name), num_classes, cifar_stem)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def meta_model(exp: Experiment, num_classes: int) -> nn.Module:
    """The experiment's model with its LoRA updates, without memory or weights (for names and shapes)."""
    with torch.device("meta"):
        model = _construct(check_model_name(exp.model), num_classes, exp.cifar_stem)
        if exp.uses_lora:
            attach_lora(model, exp, layer_units(model))
    return model


def compute_model_info(name: str, cifar_stem: bool = False, num_classes: int = 10) -> ModelInfo:
    """Units and constraints of a model, computed on the meta device (no memory, no weights).

    Everyone else asks model_facts.describe, which keeps what this computes across processes.
    """
    name = check_model_name(name)
    with torch.device("meta"):
        model = _construct(name, num_classes, cifar_stem)
    units = layer_units(model)
    head = unit_of(units, _find_head(model)[0]).name
    fixed = model.image_size if isinstance(model, VisionTransformer) else None
    return ModelInfo(name, units, head, fixed, has_resnet_stem(model), find_adaptable(model, units))


def _head_names(model: nn.Module) -> frozenset[str]:
    head = _find_head(model)[0]
    return frozenset(k for k in model.state_dict() if k.startswith(head + "."))


def _without_other_head(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of a network trained for other classes: everything but its head (the new head starts fresh)."""
    own = model.state_dict()
    heads = _head_names(model)
    if all(k not in state or state[k].shape == own[k].shape for k in heads):
        return state
    return {k: v for k, v in state.items() if k not in heads}


def build_model(exp: Experiment, num_classes: int) -> nn.Module:
    """The experiment's model on the CPU: weights loaded, head and stem adapted, LoRA updates attached.

    Weights that fit the unmodified torchvision model (ImageNet checkpoints) are
    loaded before the head and stem are replaced; weights of a network with the
    ImageNet stem and another head (an ftui run for other classes) before the
    stem is replaced; weights that fit the adapted model (an ftui checkpoint)
    after.
    """
    name = check_model_name(exp.model)
    model = torchvision.models.get_model(name, weights=None)
    if isinstance(model, VisionTransformer) and exp.input_size != model.image_size:
        raise ModelError(
            f"{name} only accepts {model.image_size}x{model.image_size} inputs; set input_size = {model.image_size}."
        )
    state = load_weights_state(exp.weights, name)
    if state is not None and state_fits(model, state):
        model.load_state_dict(state)
        state = None
    replace_head(model, num_classes)
    if state is not None:
        state = _without_other_head(model, state)
        if exp.cifar_stem and state_fits(model, state, allow_missing=_head_names(model)):
            # trained with the ImageNet stem (an ftui run): load it all, then the new stem starts fresh,
            # as it does over torchvision's ImageNet weights
            model.load_state_dict(state, strict=False)
            state = None
    if exp.cifar_stem:
        apply_cifar_stem(model)
    if state is not None:
        if not state_fits(model, state, allow_missing=_head_names(model)):
            raise WeightsError(f"The weights in {exp.weights} do not fit {name}: {mismatch_report(model, state)}")
        model.load_state_dict(state, strict=False)  # strict on everything but a head left at its new init
    if exp.uses_lora:
        attach_lora(model, exp, layer_units(model))
    return model
