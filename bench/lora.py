"""LoRA against training the head only and against full fine-tuning (not a test).

For each model, each way of training it runs in its own process (so that its peak memory is its
own), in rounds that alternate the ways: a few warm-up steps, then timed steps on a fixed random
batch through ftui's own model, modes and optimizer (engine/models.py, params.py). Printed per way:
median step time over the rounds, peak resident memory of the process, the trainable parameters,
the optimizer state after the steps, and the size of the checkpoint ftui would save.

    .venv/bin/python bench/lora.py [--rounds 3] [--steps 3] [--models resnet18:32:32,vit_b_16:224:4]

ViT-B/16 is measured with LoRA on attention and MLP, and on the MLP only: the difference is what
PEFT's MultiheadAttention (merged into the weights around every forward) costs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# How each way trains: catalog keys on top of the model's own.
WAYS = {
    "head": {"trainable": "head"},
    "lora": {"trainable": "head", "lora": "all"},
    "lora-mlp": {"trainable": "head", "lora": "all", "lora_layers": ["linear"]},
    "full": {"trainable": "all"},
}


def experiment(model: str, size: int, way: str):
    from ftui.engine.model_facts import describe
    from ftui.engine.validation import experiment_from_dict

    keys = dict(WAYS[way])
    head = describe(model, model == "resnet18").head_unit
    keys["trainable"] = [head] if keys["trainable"] == "head" else "all"
    if model == "vit_b_16" and "lora_layers" not in keys and "lora" in keys:
        keys["lora_layers"] = ["attention", "linear"]
    return experiment_from_dict(
        {
            "name": f"{model}-{way}",
            "model": model,
            "weights": "none",
            "input_size": size,
            "cifar_stem": model == "resnet18" and size == 32,
            "optimizer": "adamw",
            "lr": 1e-3,
            "device": "cpu",
            **keys,
        },
        "bench",
    )


def one(model: str, size: int, batch: int, way: str, steps: int) -> dict:
    """Runs in its own process: the figures of one way, one round."""
    import torch
    from torch import nn

    from ftui.engine.checkpoints import checkpoint_state
    from ftui.engine.models import build_model, layer_units
    from ftui.engine.params import apply_modes, make_optimizer, param_groups

    exp = experiment(model, size, way)
    torch.manual_seed(0)
    net = build_model(exp, 10)
    units = layer_units(net)
    apply_modes(net, units, exp)
    optimizer = make_optimizer(param_groups(net, units, exp), exp)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    net.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    step()  # warm-up: first-call allocations, optimizer state
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    state = optimizer.state_dict()["state"]
    optimizer_bytes = sum(
        t.numel() * t.element_size() for s in state.values() for t in s.values() if torch.is_tensor(t)
    )
    saved = checkpoint_state(net, units, exp)
    return {
        "model": model,
        "size": size,
        "batch": batch,
        "way": way,
        "step_s": statistics.median(times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "optimizer_mib": optimizer_bytes / 2**20,
        "checkpoint_mib": sum(t.numel() * t.element_size() for t in saved.values()) / 2**20,
    }


def ways_for(model: str) -> list[str]:
    return ["head", "lora", "lora-mlp", "full"] if model == "vit_b_16" else ["head", "lora", "full"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--models", default="resnet18:32:32,vit_b_16:224:4", help="model:input:batch,...")
    p.add_argument("--one", nargs=4, metavar=("MODEL", "SIZE", "BATCH", "WAY"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        model, size, batch, way = args.one
        print(json.dumps(one(model, int(size), int(batch), way, args.steps)))
        return
    for spec in args.models.split(","):
        model, size, batch = spec.split(":")
        rows: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for way in ways_for(model):  # alternated: a slow moment of the machine hits every way alike
                out = subprocess.run(
                    [sys.executable, __file__, "--steps", str(args.steps), "--one", model, size, batch, way],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                rows.setdefault(way, []).append(json.loads(out.strip().splitlines()[-1]))
        print(f"\n{model} at {size}x{size}, batch {batch}, AdamW, {args.rounds} rounds x {args.steps} steps")
        print(f"{'way':<9} {'step s':>8} {'peak RSS MiB':>13} {'trainable':>11} {'optimizer MiB':>14} {'ckpt MiB':>9}")
        for way, runs in rows.items():
            r = runs[0]
            print(
                f"{way:<9} {statistics.median(x['step_s'] for x in runs):>8.3f} "
                f"{statistics.median(x['peak_rss_mib'] for x in runs):>13.0f} {r['trainable']:>11,} "
                f"{r['optimizer_mib']:>14.2f} {r['checkpoint_mib']:>9.2f}"
            )


if __name__ == "__main__":
    main()
