"""Exports of a checkpoint for use outside ftui: the whole model merged, or PEFT's own adapter format.

``--merged`` writes the full model with every LoRA update added into its weight, under torchvision's
plain names, so torchvision and safetensors alone load it (for a run without LoRA it is the model as
it is). ``--peft`` writes ``adapter_config.json`` + ``adapter_model.safetensors`` made by PEFT itself
(``PeftModel.save_pretrained``), with the fully trained units as ``modules_to_save``, for
``PeftModel.from_pretrained`` on the plain torchvision model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import FtuiError
from .atomic import atomic_write
from .checkpoints import CheckpointInfo, load_checkpoint_model
from .experiment import Experiment
from .lora import ADAPTER, adapted_modules, base_name, is_lora_tensor, lora_layers, merged_state, target_pattern
from .models import build_model, layer_units, unit_of


def export_merged(checkpoint: Path, out: Path) -> int:
    """Write the merged model; returns its parameter count."""
    from safetensors.torch import save_file

    model, info, exp = load_checkpoint_model(checkpoint)
    state = {k: v.contiguous() for k, v in merged_state(model).items()}
    metadata = {"format": "torchvision-state-dict", "model": exp.model, "classes": json.dumps(list(info.classes))}
    atomic_write(out, lambda tmp: save_file(state, tmp, metadata=metadata))
    return sum(v.numel() for v in state.values())


def _saved_modules(model: nn.Module, info: CheckpointInfo) -> list[str]:
    """The modules PEFT must carry whole: the units whose tensors (not updates) the checkpoint holds."""
    units = layer_units(model)
    held = {t.unit for t in info.tensors if not is_lora_tensor(t.name)}
    modules = dict(model.named_modules())
    names = [p for u in units if u.name in held for p in u.prefixes]
    for name in names:
        if name not in modules:
            raise FtuiError(
                f"Unit {unit_of(units, name).name!r} of this checkpoint is trained and holds bare parameters "
                f"({name}), which PEFT's modules_to_save cannot carry. Use --merged instead."
            )
        # PEFT selects modules_to_save by name suffix: the stem's conv1 would also take layer1.0.conv1, ...
        clash = [m for m in modules if m != name and m.endswith(name)]
        if clash:
            raise FtuiError(
                f"Unit {unit_of(units, name).name!r} of this checkpoint is trained, and PEFT would carry it by "
                f"the name {name!r}, which also selects {', '.join(clash[:3])}{' …' if len(clash) > 3 else ''} "
                "(PEFT matches modules_to_save by name suffix). PEFT's format cannot hold this checkpoint "
                "faithfully; use --merged instead."
            )
    return names


@functools.lru_cache(maxsize=1)
def peft_attention_is_exact() -> bool:
    """Whether this PEFT's own MultiheadAttention forward computes W + ΔW (releases up to 0.21 add the output
    projection's update twice: huggingface/peft pull request 3774)."""
    from peft import LoraConfig, inject_adapter_in_model

    with torch.random.fork_rng():  # the probe's random numbers are not the caller's
        torch.manual_seed(0)
        attention = nn.MultiheadAttention(8, 2, batch_first=True)
        merged = nn.MultiheadAttention(8, 2, batch_first=True)
        merged.load_state_dict(attention.state_dict())
        holder = nn.ModuleDict({"a": attention})
        inject_adapter_in_model(LoraConfig(r=2, target_modules=["a"], init_lora_weights=False), holder)
        x = torch.randn(2, 3, 8)
    layer: Any = holder["a"]
    with torch.no_grad():
        merged.in_proj_weight.add_(layer.get_delta_weight(ADAPTER))
        merged.out_proj.weight.add_(layer.get_base_layer().out_proj.get_delta_weight(ADAPTER))
        return torch.allclose(layer(x, x, x)[0], merged(x, x, x)[0], atol=1e-5)


def export_peft(checkpoint: Path, out_dir: Path) -> list[str]:
    """Write PEFT's adapter files into out_dir; returns the modules carried whole (modules_to_save)."""
    from peft import LoraConfig, get_peft_model

    model, info, exp = load_checkpoint_model(checkpoint)
    if not exp.uses_lora:
        raise FtuiError(f"{checkpoint} is not a LoRA checkpoint: it has no adapter to export. Use --merged.")
    if any(kind == "in_proj" for _, _, kind in lora_layers(model)) and not peft_attention_is_exact():
        raise FtuiError(
            "This checkpoint adapts attention layers, and the installed PEFT computes a MultiheadAttention "
            "update differently from ftui (it adds the output projection's update twice; huggingface/peft "
            "pull request 3774), so PEFT would not reproduce this model's predictions. Use --merged, or export "
            "with a PEFT release that has the fix."
        )
    saved = _saved_modules(model, info)
    plain = _plain_model(model, exp, len(info.classes))
    config = LoraConfig(
        r=exp.lora_rank,
        lora_alpha=exp.alpha,  # type: ignore[arg-type]  # declared int; PEFT divides it by r, a float is fine
        lora_dropout=exp.lora_dropout,
        target_modules=target_pattern(adapted_modules(model)),
        modules_to_save=saved or None,
        bias="none",
    )
    peft_model = get_peft_model(plain, config)
    own = model.state_dict()
    peft_model.load_state_dict({k: own[_own_name(k)] for k in peft_model.state_dict()}, strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out_dir))
    return saved


def _plain_model(model: nn.Module, exp: Experiment, num_classes: int) -> nn.Module:
    """The adapted torchvision model (head, stem) without updates, holding the checkpoint's base weights."""
    plain = build_model(dataclasses.replace(exp, weights="none", lora=()), num_classes)
    base = {base_name(k): v for k, v in model.state_dict().items() if not is_lora_tensor(k)}
    plain.load_state_dict(base)
    return plain


def _own_name(peft_name: str) -> str:
    name = peft_name.removeprefix("base_model.model.")
    for wrapper in (f".modules_to_save.{ADAPTER}.", ".original_module."):
        name = name.replace(wrapper, ".")
    return name
