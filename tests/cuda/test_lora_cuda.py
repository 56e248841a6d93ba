"""LoRA on CUDA: updates train under bf16 autocast, the base stays bit-identical, exports match the GPU model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from ftui.engine.checkpoints import load_checkpoint_model
from ftui.engine.export import export_merged
from ftui.engine.lora import base_name, is_lora_tensor
from ftui.engine.models import apply_cifar_stem, build_model
from ftui.engine.train import train
from tests.cuda.conftest import step_losses

pytestmark = pytest.mark.cuda


def test_a_lora_run_on_cuda_learns_and_leaves_the_base_untouched(cuda_exp, runs_root, tmp_path):
    base = tmp_path / "base.safetensors"
    start = build_model(cuda_exp(weights="none"), 10)
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, base)
    exp = cuda_exp(
        weights=str(base),
        trainable=["fc"],
        lora=["layer3", "layer4"],
        lora_rank=4,
        optimizer="adamw",
        lr=1e-3,
        epochs=2,
        max_steps_per_epoch=6,
    )
    result = train(exp, runs_root=runs_root)
    assert result.status == "finished", result.reason
    losses = step_losses(result.run_dir)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses

    last = result.run_dir / "last.safetensors"
    assert all(is_lora_tensor(k) or k.startswith("fc.") for k in load_file(last))
    model, _, _ = load_checkpoint_model(last)
    reference = load_file(base)
    for name, tensor in model.state_dict().items():
        if not is_lora_tensor(name) and not name.startswith("fc."):
            assert torch.equal(tensor, reference[base_name(name)]), name

    merged = tmp_path / "merged.safetensors"
    export_merged(last, merged)
    plain = torchvision.models.resnet18(num_classes=10)
    apply_cifar_stem(plain)
    plain.load_state_dict(load_file(merged))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        gpu = model.cuda().eval()(x.cuda()).float().cpu()
        torch.testing.assert_close(plain.eval()(x), gpu, rtol=1e-3, atol=1e-3)  # TF32 and cuDNN on the GPU


def test_lora_on_vit_attention_runs_on_cuda(cuda_exp, runs_root):
    # torchvision's keyword-called MultiheadAttention under bf16 autocast, with ftui's exact W + dW.
    exp = dataclasses.replace(
        cuda_exp(model="vit_b_16", input_size=224, cifar_stem=False, batch_size=4, max_test_images=8),
        trainable=("heads",),
        lora=tuple(f"encoder_layer_{i}" for i in range(12)),
        lora_layers=("attention", "linear"),
        epochs=1,
        max_steps_per_epoch=3,
    )
    result = train(exp, runs_root=runs_root)
    assert result.status == "finished", result.reason
