"""LoRA on torchvision models, through PEFT: which layers can carry an update, attaching it, merging it.

A layer unit in LoRA mode keeps its weights; PEFT's LoRA layers learn a low-rank update
(α/r)·B·A beside each adapted Linear, Conv2d and MultiheadAttention of the unit. ftui names its
targets by their full qualified names in PEFT's regex form (matched whole), so the stem's "conv1"
never also selects "layer1.0.conv1".

PEFT's MultiheadAttention adapts the in- and output projections together, by merging the update
into the weights before every forward and subtracting it after. ftui does not accept two
consequences of that and corrects them here (``_exact_attention``): the subtraction rounds, so the
frozen base weights drift a little at every step; and PEFT releases up to at least 0.21 add the
output projection's update twice in that forward (huggingface/peft pull request 3774). Hooks around
each such forward set the weights to W + ΔW themselves and put the original parameters back after,
so the base stays bit-identical and the model computes exactly what a merged export holds.

PEFT is imported only where an update is attached or merged: start-up and non-LoRA runs do not
pay for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import FtuiError
from .experiment import Experiment
from .model_facts import Adaptable, LayerUnit, owner_of

ADAPTER = "default"  # PEFT's adapter name; ftui attaches one adapter per model


def find_adaptable(model: nn.Module, units: tuple[LayerUnit, ...]) -> tuple[Adaptable, ...]:
    """Every layer of the (unadapted) model that LoRA can adapt, with its unit and its cost per rank."""
    found: list[Adaptable] = []
    inside_attention: set[str] = set()  # PEFT adapts an attention's out_proj with the attention itself
    for name, module in model.named_modules():
        owner = owner_of(units, name)
        if owner is None or name in inside_attention:
            continue
        unit = owner.name
        if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
            e = module.embed_dim
            inside_attention.add(f"{name}.out_proj")
            found.append(Adaptable(name, unit, "attention", (e + 3 * e) + (e + e)))
        elif isinstance(module, nn.Linear):
            found.append(Adaptable(name, unit, "linear", module.in_features + module.out_features))
        elif isinstance(module, nn.Conv2d) and module.groups == 1:
            area = module.kernel_size[0] * module.kernel_size[1]
            # PEFT's A is a conv with the layer's kernel into r channels, B a 1x1 conv out of them.
            found.append(Adaptable(name, unit, "conv", module.in_channels * area + module.out_channels))
    return tuple(found)


def is_lora_tensor(name: str) -> bool:
    return ".lora_" in name


def base_name(name: str) -> str:
    """A tensor's torchvision name: PEFT moves an adapted layer's own weights under `base_layer`."""
    return name.replace(".base_layer.", ".")


def target_pattern(modules: tuple[str, ...]) -> str:
    # A string target_modules is matched whole (re.fullmatch) by PEFT; a list would match name suffixes.
    return "^(?:" + "|".join(re.escape(m) for m in modules) + ")$"


def attach_lora(model: nn.Module, exp: Experiment, units: tuple[LayerUnit, ...]) -> None:
    """Add the experiment's LoRA updates to its LoRA units, in place (A random from torch's seed, B zero)."""
    targets = tuple(a for a in find_adaptable(model, units) if a.unit in exp.lora and a.kind in exp.lora_layers)
    if not targets:
        raise FtuiError(
            f"Experiment {exp.name!r}: LoRA units {', '.join(exp.lora)} hold no layer of the kinds "
            f"{', '.join(exp.lora_layers)}. Choose other units or lora_layers."
        )
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora.layer import MultiheadAttention as LoraAttention

    config = LoraConfig(
        r=exp.lora_rank,
        lora_alpha=exp.alpha,  # type: ignore[arg-type]  # declared int; PEFT divides it by r, a float is fine
        lora_dropout=exp.lora_dropout,
        target_modules=target_pattern(tuple(t.module for t in targets)),
        bias="none",
    )
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for module in model.modules():
        if isinstance(module, LoraAttention):
            _exact_attention(module)


def _exact_attention(layer: nn.Module) -> None:
    """Run an adapted MultiheadAttention with exactly W + ΔW and leave its base parameters untouched."""
    attention = layer.get_base_layer()  # type: ignore[operator]
    out_proj = attention.out_proj  # PEFT's LoRA Linear around the attention's own out_proj
    out_linear = out_proj.get_base_layer()
    originals: list[tuple[nn.Parameter, nn.Parameter]] = []

    def before(_module, _args):
        in_w, out_w = attention.in_proj_weight, out_linear.weight
        originals.append((in_w, out_w))
        # Plain tensors in the parameters' places: autograd reaches A and B through them.
        del attention.in_proj_weight
        attention.in_proj_weight = in_w + layer.get_delta_weight(ADAPTER).to(in_w.dtype)  # type: ignore[operator]
        del out_linear.weight
        out_linear.weight = out_w + out_proj.get_delta_weight(ADAPTER).to(out_w.dtype)
        layer.merged_adapters.append(ADAPTER)  # PEFT's forward then calls the attention as it is

    def after(_module, _args, _output):
        layer.merged_adapters.remove(ADAPTER)  # type: ignore[union-attr]
        in_w, out_w = originals.pop()
        del attention.in_proj_weight
        attention.register_parameter("in_proj_weight", in_w)
        del out_linear.weight
        out_linear.register_parameter("weight", out_w)

    layer.register_forward_pre_hook(before)
    layer.register_forward_hook(after, always_call=True)


def lora_layers(model: nn.Module) -> Iterator[tuple[str, Any, str]]:
    """(torchvision name of the adapted weight, PEFT layer, kind) for every update in the model."""
    from peft.tuners.lora.layer import LoraLayer
    from peft.tuners.lora.layer import MultiheadAttention as LoraAttention

    attentions: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, LoraAttention):
            attentions.append(name + ".")
            yield base_name(f"{name}.in_proj_weight"), module, "in_proj"
            yield base_name(f"{name}.out_proj.weight"), module.get_base_layer().out_proj, "linear"
        elif isinstance(module, LoraLayer) and not any(name.startswith(a) for a in attentions):
            yield base_name(f"{name}.weight"), module, "linear"


def adapted_modules(model: nn.Module) -> tuple[str, ...]:
    """The torchvision names of the layers that carry an update (an attention's out_proj comes with it)."""
    from peft.tuners.lora.layer import LoraLayer

    names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return tuple(names)


def lora_deltas(model: nn.Module) -> dict[str, torch.Tensor]:
    """ΔW = (α/r)·B·A of every adapted weight, under the weight's torchvision name."""
    with torch.no_grad():
        return {name: layer.get_delta_weight(ADAPTER).detach() for name, layer, _ in lora_layers(model)}


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every update merged into its weight, under torchvision's plain names."""
    state = {base_name(k): v.detach() for k, v in model.state_dict().items() if not is_lora_tensor(k)}
    for name, delta in lora_deltas(model).items():
        state[name] = state[name] + delta.to(state[name].dtype)
    return state
