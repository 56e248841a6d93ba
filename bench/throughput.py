"""Training throughput: the report's loop vs. ftui's training function vs. the bare step.

Not a test. One process, whatever device is present, the embedded CIFAR-10
sample, ResNet18 (CIFAR stem at 32x32, ImageNet stem at 224x224), the same
batch size and number of steps for all three, alternating round by round so
machine noise hits all three alike:

  seed  - the report's way: torchvision transforms on PIL images, a DataLoader
          with workers, a plain loop that reads loss.item() every step;
  ftui  - ftui's own train() (events, metrics log, device-side augmentation);
  bare  - forward/backward/step on tensors prepared in advance: the limit.

    .venv/bin/python bench/throughput.py [--sizes 32,224] [--steps 6] [--rounds 3] [--compile-sizes 32]

Prints a table of median images/s and the ratios, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ftui.engine import events as ev  # noqa: E402
from ftui.engine.catalog import experiment_from_dict  # noqa: E402
from ftui.engine.data import load_dataset  # noqa: E402
from ftui.engine.device import autocast, resolve_device, uses_channels_last  # noqa: E402
from ftui.engine.experiment import NORMALIZATIONS  # noqa: E402
from ftui.engine.train import train  # noqa: E402

MEAN, STD = NORMALIZATIONS["cifar10"]
WARMUP = 2  # steps not timed: allocator and kernel selection


def recipe(size: int) -> dict:
    """ResNet18 as the report trains it at each size."""
    if size == 32:
        return {"cifar_stem": True, "crop_padding": 4, "flip": True, "rotation": 0.0}
    return {"cifar_stem": False, "crop_padding": 0, "flip": True, "rotation": 10.0}


def make_model(size: int, device: torch.device) -> torch.nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    if recipe(size)["cifar_stem"]:
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    fmt = torch.channels_last if uses_channels_last(device) else torch.preserve_format
    return model.to(device, memory_format=fmt)


# -- the report's loop ----------------------------------------------------------


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def seed_transform(size: int):
    if size == 32:  # the usual CIFAR recipe the report's 32x32 runs imply
        steps = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    else:  # the report's §3.4, verbatim
        steps = [transforms.Resize(size), transforms.RandomRotation(10), transforms.RandomHorizontalFlip()]
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def run_seed(size: int, batch: int, steps: int, device: torch.device, data) -> float:
    images = data.train_images.permute(0, 2, 3, 1).numpy()
    loader = torch.utils.data.DataLoader(
        PILDataset(images, data.train_labels.numpy(), seed_transform(size)), batch_size=batch, shuffle=True,
        num_workers=os.cpu_count() or 2, drop_last=True, persistent_workers=False,
    )
    model = make_model(size, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    total, start = 0.0, None
    for i, (x, y) in enumerate(loader):
        if i == WARMUP:
            start = time.perf_counter()
        if i == WARMUP + steps:
            break
        x, y = x.to(device), y.to(device)
        with autocast(device):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()  # what a plain loop does to print its running loss
    return steps * batch / (time.perf_counter() - start)


# -- ftui -------------------------------------------------------------------------


def run_ftui(size: int, batch: int, steps: int, device: torch.device, runs: Path, compile: bool = False):
    """Images/s over the timed steps (from the step reports), seconds spent after training (eval +
    checkpoints), and seconds from calling train() to the end of the first step (start-up, compile included)."""
    exp = experiment_from_dict({
        "name": f"bench-{size}", "model": "resnet18", "weights": "none", "dataset": "cifar10-sample",
        "input_size": size, "batch_size": batch, "epochs": 1, "max_steps_per_epoch": WARMUP + steps,
        "max_test_images": batch, "device": str(device), "trainable": "all", "compile": compile, **recipe(size),
    }, where="bench")
    marks: list[tuple[float, int]] = []
    ended: list[float] = []
    called = time.perf_counter()

    def on_event(event):
        if isinstance(event, ev.Step):
            marks.append((time.perf_counter(), event.global_step))
        elif isinstance(event, ev.EpochEnd):
            ended.append(time.perf_counter())
        elif isinstance(event, ev.Finished):
            ended.append(time.perf_counter())

    result = train(exp, on_event, threading.Event(), runs_root=runs, share_device=True)
    assert result.status == "finished", result.reason
    # Steps are reported as they complete (each step outlasts the report interval on a CPU);
    # time from the report of the last warm-up step to the report of the last step.
    t0, s0 = next((t, s) for t, s in marks if s >= WARMUP - 1)
    t1, s1 = marks[-1]
    return (s1 - s0) * batch / (t1 - t0), ended[-1] - t1, marks[0][0] - called


# -- the limit --------------------------------------------------------------------------


def run_bare(size: int, batch: int, steps: int, device: torch.device) -> float:
    model = make_model(size, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    fmt = torch.channels_last if uses_channels_last(device) else torch.contiguous_format
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    model.train()
    for i in range(WARMUP + steps):
        if i == WARMUP:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(device):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


# -- the table ----------------------------------------------------------------------------


def measure_compile(size: int, args, device: torch.device, runs: Path) -> dict:
    """ftui with and without compile = true, one run each: steady-state speed and start-up cost."""
    batch = args.batch32 if size == 32 else args.batch224
    plain_ips, _, plain_start = run_ftui(size, batch, args.steps, device, runs)
    compiled_ips, _, compiled_start = run_ftui(size, batch, args.steps, device, runs, compile=True)
    return {"size": size, "batch": batch, "plain_ips": plain_ips, "compiled_ips": compiled_ips,
            "speedup": compiled_ips / plain_ips, "plain_startup_s": plain_start, "compiled_startup_s": compiled_start}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch32", type=int, default=128)
    parser.add_argument("--batch224", type=int, default=32)
    parser.add_argument("--json", default=str(REPO / "bench" / "throughput.json"))
    parser.add_argument("--compile-sizes", default="", help="also measure compile = true at these sizes, e.g. 32")
    args = parser.parse_args()
    device = resolve_device("auto")
    data = load_dataset("cifar10-sample")
    runs = Path(os.environ.get("TMPDIR", "/tmp")) / f"ftui-bench-{os.getpid()}"
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        batch = args.batch32 if size == 32 else args.batch224
        got = {"seed": [], "ftui": [], "bare": [], "ftui_after": []}
        for r in range(args.rounds):
            got["seed"].append(run_seed(size, batch, args.steps, device, data))
            ips, after, _ = run_ftui(size, batch, args.steps, device, runs)
            got["ftui"].append(ips)
            got["ftui_after"].append(after)
            got["bare"].append(run_bare(size, batch, args.steps, device))
            print(f"  {size}px round {r + 1}: seed {got['seed'][-1]:.1f}  ftui {ips:.1f}  bare {got['bare'][-1]:.1f} img/s",
                  flush=True)
        med = {k: statistics.median(v) for k, v in got.items()}
        rows.append({"size": size, "batch": batch, "steps": args.steps, "rounds": args.rounds,
                     "seed": med["seed"], "ftui": med["ftui"], "bare": med["bare"],
                     "ftui_vs_bare": med["ftui"] / med["bare"], "ftui_vs_seed": med["ftui"] / med["seed"],
                     "ftui_eval_and_checkpoint_s": med["ftui_after"], "all": got})
    machine = {"device": str(device), "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
               "date": time.strftime("%Y-%m-%d")}
    compiled = [measure_compile(int(s), args, device, runs) for s in args.compile_sizes.split(",") if s]
    print(f"\n{machine}")
    print(f"{'size':>5} {'batch':>5} {'seed':>8} {'ftui':>8} {'bare':>8} {'ftui/bare':>10} {'ftui/seed':>10}")
    for r in rows:
        print(f"{r['size']:>5} {r['batch']:>5} {r['seed']:>8.1f} {r['ftui']:>8.1f} {r['bare']:>8.1f} "
              f"{r['ftui_vs_bare']:>10.2f} {r['ftui_vs_seed']:>10.2f}")
    for c in compiled:
        print(f"compile at {c['size']}: {c['plain_ips']:.1f} -> {c['compiled_ips']:.1f} img/s "
              f"({c['speedup']:.2f}x); start-up {c['plain_startup_s']:.1f} s -> {c['compiled_startup_s']:.1f} s")
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows, "compile": compiled}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
