"""Training throughput: the report's loop vs. ftui's training function vs. the bare step.

Not a test. One process, whatever device is present, the embedded CIFAR-10
sample, ResNet18 with the CIFAR stem at 32x32 and the chosen models (ResNet18,
VGG16, ViT_B_16; on a CPU ResNet18 alone unless --models says otherwise) at
224x224, the same batch size and number of steps for all three loops,
alternating round by round so machine noise hits all three alike:

  seed  - the report's way: torchvision transforms on PIL images, a DataLoader
          with workers, a plain loop that reads loss.item() every step, in
          float32 with PyTorch's default layout and backend settings, as a
          person writes it (--seed-as-ftui gives it ftui's layout and precision);
  ftui  - ftui's own train() (events, metrics log, device-side augmentation), timed over
          its second epoch of --steps steps, the first being its warm-up;
  bare  - forward/backward/step on tensors prepared in advance: the limit.

    .venv/bin/python bench/throughput.py [--sizes 32,224] [--models resnet18,vgg16,vit_b_16]
        [--batch224 resnet18=256,vgg16=128] [--steps 6] [--rounds 3] [--peak-tflops 989.4] [--compile-sizes 32]
        [--seed-as-ftui] [--precision auto|bf16|float32]

Prints a table of median images/s, the ratios, the training FLOPs per image,
the FLOP/s ftui and the bare step achieve and, on CUDA, their share of the
GPU's peak dense bf16 FLOP/s; writes them as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ftui.engine import events as ev  # noqa: E402
from ftui.engine.catalog import experiment_from_dict  # noqa: E402
from ftui.engine.data import load_dataset  # noqa: E402
from ftui.engine.device import autocast, describe_device, resolve_device, tune_for, uses_channels_last  # noqa: E402
from ftui.engine.experiment import NORMALIZATIONS, PRECISIONS  # noqa: E402
from ftui.engine.model_facts import describe  # noqa: E402
from ftui.engine.train import train  # noqa: E402

MEAN, STD = NORMALIZATIONS["cifar10"]
WARMUP = 2  # steps not timed: allocator and kernel selection
MODELS = ("resnet18", "vgg16", "vit_b_16")
# An H100 needs batches this large to stay busy; the CPU keeps the report's small ones.
CUDA_DEFAULTS = {"models": ",".join(MODELS), "batch224": "resnet18=256,vgg16=128,vit_b_16=128"}
CPU_DEFAULTS = {"models": "resnet18", "batch224": "32"}
# Dense (no sparsity) bf16 tensor-core peak with fp32 accumulation, TFLOP/s, from NVIDIA's
# datasheets, keyed by a pattern of torch.cuda.get_device_name(). "L4" must not match "L40S".
PEAK_BF16_TFLOPS = (
    (r"H100.*PCIe", 756.0),
    (r"H100.*(HBM3|SXM)", 989.4),
    (r"H200", 989.4),
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"\bL4\b", 121.0),
    (r"RTX 4090", 165.2),
)


def recipe(model: str, size: int) -> dict:
    """The settings of the report's run of this model at this size that change a step's cost."""
    if size == 32:
        return {"cifar_stem": True, "crop_padding": 4, "flip": True, "rotation": 0.0, "weight_decay": 5e-4}
    # experiments.toml trains ViT without weight decay, which spares the optimizer a pass.
    weight_decay = 0.0 if model == "vit_b_16" else 5e-4
    return {"cifar_stem": False, "crop_padding": 0, "flip": True, "rotation": 10.0, "weight_decay": weight_decay}


def make_model(name: str, size: int, device: torch.device, tuned: bool = True) -> torch.nn.Module:
    """The network; `tuned` lays it out as ftui does (channels_last), else as a plain loop leaves it."""
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    if recipe(name, size)["cifar_stem"]:
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    fmt = torch.channels_last if tuned and uses_channels_last(device) else torch.preserve_format
    return model.to(device, memory_format=fmt)


@contextlib.contextmanager
def default_backends():
    """PyTorch's own defaults for the settings ftui's tune_for changes, for the plain loop's duration."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = False, False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = saved


def make_sgd(model: torch.nn.Module, name: str, size: int) -> torch.optim.Optimizer:
    weight_decay = recipe(name, size)["weight_decay"]
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=weight_decay)


# -- FLOPs ----------------------------------------------------------------------


def forward_flops(name: str, size: int) -> int:
    """FLOPs of one image's forward pass through the benchmarked network, counted op by op.

    FlopCounterMode counts a multiply-add as 2 FLOPs, the unit of a GPU's peak. torchvision's
    meta["_ops"] (its "GFLOPS") counts it as 1: at 224 this gives 3.63, 30.9 and 35.1 GFLOPs
    for resnet18, vgg16 and vit_b_16 against its 1.81, 15.47 and 17.56.
    """
    meta = torch.device("meta")  # shapes only: no memory, no arithmetic
    with meta:
        model = make_model(name, size, meta)
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def torchvision_gmacs(name: str) -> float:
    """torchvision's published forward cost at 224, in multiply-adds (see forward_flops)."""
    return torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"]


def training_gflops(name: str, size: int) -> float:
    # The backward pass computes gradients for both inputs and weights: twice the forward.
    return 3 * forward_flops(name, size) / 1e9


def peak_tflops(device_name: str) -> float | None:
    return next((peak for pattern, peak in PEAK_BF16_TFLOPS if re.search(pattern, device_name)), None)


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


def seed_loader(size: int, batch: int, device: torch.device, data) -> torch.utils.data.DataLoader:
    images = data.train_images.permute(0, 2, 3, 1).numpy()
    # As many workers as a well-set-up loop would use: the PIL work is what they race against.
    return torch.utils.data.DataLoader(
        PILDataset(images, data.train_labels.numpy(), seed_transform(size)),
        batch_size=batch,
        shuffle=True,
        num_workers=min(os.cpu_count() or 2, 16),
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
    )


def run_seed(
    name: str, size: int, batch: int, steps: int, device: torch.device, data, as_ftui: str | None = None
) -> float:
    """`as_ftui`: None for the plain loop, else the precision setting whose layout and precision it takes."""
    with contextlib.nullcontext() if as_ftui else default_backends():
        return _seed_loop(name, size, batch, steps, device, data, as_ftui)


def _seed_loop(name: str, size: int, batch: int, steps: int, device: torch.device, data, as_ftui: str | None) -> float:
    model = make_model(name, size, device, tuned=as_ftui is not None)
    opt = make_sgd(model, name, size)
    precision = autocast(device, as_ftui) if as_ftui else contextlib.nullcontext()
    model.train()
    total, start = 0.0, None
    for i, (x, y) in enumerate(seed_loader(size, batch, device, data)):
        if i == WARMUP:
            start = time.perf_counter()
        if i == WARMUP + steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with precision:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()  # what a plain loop does to print its running loss
    return steps * batch / (time.perf_counter() - start)


# -- ftui -------------------------------------------------------------------------


def run_ftui(
    name: str,
    size: int,
    batch: int,
    steps: int,
    device: torch.device,
    runs: Path,
    compile: bool = False,
    precision: str = "auto",
):
    """Images/s of ftui's second epoch, seconds spent after training (eval + checkpoints), and seconds from
    calling train() to the first step report (start-up, compile included).

    The first epoch of `steps` steps is the warm-up. The second epoch's own figure runs from its start to
    its last step report, which waits for the device: exact on a GPU too, where a step is far shorter
    than the report interval and the reports alone would time a handful of them.
    """
    exp = experiment_from_dict(
        {
            "name": f"bench-{name}-{size}",
            "model": name,
            "weights": "none",
            "dataset": "cifar10-sample",
            "input_size": size,
            "batch_size": batch,
            "epochs": 2,
            "max_steps_per_epoch": steps,
            "max_test_images": batch,
            "device": str(device),
            "trainable": "all",
            "compile": compile,
            "precision": precision,
            **recipe(name, size),
        },
        where="bench",
    )
    reports: list[float] = []
    epochs: list[ev.EpochEnd] = []
    finished: list[float] = []
    called = time.perf_counter()

    def on_event(event):
        if isinstance(event, ev.Step):
            reports.append(time.perf_counter())
        elif isinstance(event, ev.EpochEnd):
            epochs.append(event)
        elif isinstance(event, ev.Finished):
            finished.append(time.perf_counter())

    result = train(exp, on_event, threading.Event(), runs_root=runs, share_device=True)
    assert result.status == "finished", result.reason
    return epochs[-1].images_per_sec, finished[-1] - reports[-1], reports[0] - called


# -- the limit --------------------------------------------------------------------------


def run_bare(name: str, size: int, batch: int, steps: int, device: torch.device, precision: str = "auto") -> float:
    model = make_model(name, size, device)
    opt = make_sgd(model, name, size)
    fmt = torch.channels_last if uses_channels_last(device) else torch.contiguous_format
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    model.train()
    for i in range(WARMUP + steps):
        if i == WARMUP:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast(device, precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


# -- what to measure -------------------------------------------------------------------


def parse_batches(text: str, models: list[str]) -> dict[str, int]:
    """'32' sets every model, 'vgg16=128' one of them; later items win: '64,vit_b_16=32'."""
    batches = {}
    for item in text.split(","):
        name, _, value = item.strip().rpartition("=")
        if name and name not in MODELS:
            raise ValueError(f"--batch224: unknown model {name!r}; the models are {', '.join(MODELS)}")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"--batch224: {item!r} is not a batch size; write 32 or vgg16=128")
        batches.update(dict.fromkeys([name] if name else models, int(value)))
    missing = [m for m in models if m not in batches]
    if missing:
        raise ValueError(f"--batch224 gives no batch size for {', '.join(missing)}")
    return batches


def parse_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"--models: choose among {', '.join(MODELS)} (got {text!r})")
    return models


def jobs(sizes: list[int], models: list[str]) -> list[tuple[str, int]]:
    """(model, size) pairs: 32x32 is the report's CIFAR-stem ResNet18; ViT takes only its own size."""
    pairs = []
    for size in sizes:
        names = ["resnet18"] if size == 32 else models
        pairs += [(m, size) for m in names if describe(m).fixed_input_size in (None, size)]
    return pairs


def batch_for(args, name: str, size: int) -> int:
    return args.batch32 if size == 32 else args.batches[name]


def parse_args(device: torch.device, train_images: int) -> argparse.Namespace:
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--models", default=defaults["models"], help=f"at 224, among {','.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch32", type=int, default=128)
    parser.add_argument("--batch224", default=defaults["batch224"], help="32 for all, or resnet18=256,vgg16=128,...")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16 TFLOP/s, if not in the table")
    parser.add_argument("--json", default=str(REPO / "bench" / "throughput.json"))
    parser.add_argument("--compile-sizes", default="", help="also measure compile = true at these sizes, e.g. 32")
    parser.add_argument(
        "--seed-as-ftui", action="store_true", help="give the seed loop ftui's layout (channels_last) and precision"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="ftui's precision setting, for ftui and the bare step (auto: bf16 on CUDA only)",
    )
    args = parser.parse_args()
    try:
        args.models = parse_models(args.models)
        args.batches = parse_batches(args.batch224, args.models)
    except ValueError as exc:
        parser.error(str(exc))
    args.jobs = jobs([int(s) for s in args.sizes.split(",")], args.models)
    for name, size in args.jobs:
        # The seed loop and ftui both draw every step's batch from the sample without repeating.
        needed = (WARMUP + args.steps) * batch_for(args, name, size)
        if needed > train_images:
            parser.error(
                f"{name}@{size}: {WARMUP + args.steps} steps of {batch_for(args, name, size)} need {needed} "
                f"images; the sample has {train_images}. Lower --steps or the batch size."
            )
    return args


# -- the table ----------------------------------------------------------------------------


def measure(name: str, size: int, args, device: torch.device, data, runs: Path) -> dict:
    """The three loops, alternating for args.rounds rounds: medians, ratios and every round."""
    batch = batch_for(args, name, size)
    rounds = []
    for r in range(args.rounds):
        got = measure_round(name, size, batch, args.steps, device, data, runs, args.precision, args.seed_as_ftui)
        rounds.append(got)
        print(
            f"  {name} {size}px round {r + 1}: seed {got['seed']:.1f}  ftui {got['ftui']:.1f}  "
            f"bare {got['bare']:.1f} img/s",
            flush=True,
        )
    return summarize(name, size, batch, args.steps, rounds)


def measure_round(
    name: str,
    size: int,
    batch: int,
    steps: int,
    device: torch.device,
    data,
    runs: Path,
    precision: str = "auto",
    seed_as_ftui: bool = False,
) -> dict[str, float]:
    """One round of the three loops, one after the other: images/s of each, and ftui's seconds after training."""
    seed = run_seed(name, size, batch, steps, device, data, precision if seed_as_ftui else None)
    ftui, after, _ = run_ftui(name, size, batch, steps, device, runs, precision=precision)
    bare = run_bare(name, size, batch, steps, device, precision)
    return {"seed": seed, "ftui": ftui, "bare": bare, "ftui_after": after}


def summarize(name: str, size: int, batch: int, steps: int, rounds: list[dict[str, float]]) -> dict:
    """A table row from the rounds of measure_round: medians, ratios and every round."""
    got = {key: [r[key] for r in rounds] for key in ("seed", "ftui", "bare", "ftui_after")}
    med = {k: statistics.median(v) for k, v in got.items()}
    return {
        "model": name,
        "size": size,
        "batch": batch,
        "steps": steps,
        "rounds": len(rounds),
        "seed": med["seed"],
        "ftui": med["ftui"],
        "bare": med["bare"],
        "ftui_vs_bare": med["ftui"] / med["bare"],
        "ftui_vs_seed": med["ftui"] / med["seed"],
        "ftui_eval_and_checkpoint_s": med["ftui_after"],
        "all": got,
    }


def add_flops(row: dict, peak: float | None) -> dict:
    gflops = training_gflops(row["model"], row["size"])
    row["gflops_per_image"] = gflops
    for loop in ("ftui", "bare"):
        row[f"{loop}_tflops"] = row[loop] * gflops / 1e3
        row[f"{loop}_mfu"] = row[f"{loop}_tflops"] / peak if peak else None
    return row


def measure_compile(size: int, args, device: torch.device, runs: Path) -> dict:
    """ftui's ResNet18 with and without compile = true, one run each: steady-state speed and start-up cost."""
    batch = batch_for(args, "resnet18", size)
    plain_ips, _, plain_start = run_ftui("resnet18", size, batch, args.steps, device, runs)
    compiled_ips, _, compiled_start = run_ftui("resnet18", size, batch, args.steps, device, runs, compile=True)
    return {
        "size": size,
        "batch": batch,
        "plain_ips": plain_ips,
        "compiled_ips": compiled_ips,
        "speedup": compiled_ips / plain_ips,
        "plain_startup_s": plain_start,
        "compiled_startup_s": compiled_start,
    }


def machine_info(device: torch.device, peak: float | None) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": str(device),
        "device_name": name,
        "peak_bf16_tflops": peak,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }


def share(mfu: float | None, device: torch.device) -> str:
    if mfu is not None:
        return f"{mfu:.1%}"
    return "unknown" if device.type == "cuda" else "-"


def print_rows(rows: list[dict], device: torch.device) -> None:
    # A CPU reaches GFLOP/s, a GPU TFLOP/s: print the unit that keeps the figures readable.
    unit, scale = ("TFLOP/s", 1.0) if device.type == "cuda" else ("GFLOP/s", 1e3)
    print(
        f"{'model':>9} {'size':>5} {'batch':>5} {'seed':>8} {'ftui':>8} {'bare':>8} {'ftui/bare':>10} "
        f"{'ftui/seed':>10} {'GFLOP/img':>10} {'ftui ' + unit:>13} {'bare ' + unit:>13} {'ftui share':>11} "
        f"{'bare share':>11}"
    )
    for r in rows:
        print(
            f"{r['model']:>9} {r['size']:>5} {r['batch']:>5} {r['seed']:>8.1f} {r['ftui']:>8.1f} {r['bare']:>8.1f} "
            f"{r['ftui_vs_bare']:>10.2f} {r['ftui_vs_seed']:>10.2f} {r['gflops_per_image']:>10.2f} "
            f"{r['ftui_tflops'] * scale:>13.2f} {r['bare_tflops'] * scale:>13.2f} "
            f"{share(r['ftui_mfu'], device):>11} {share(r['bare_mfu'], device):>11}"
        )


def print_notes(rows: list[dict], device: torch.device, peak: float | None) -> None:
    print(
        "GFLOP/img: one training step per image, 3 x the forward pass counted by FlopCounterMode "
        "(a multiply-add is 2 FLOPs)"
    )
    if peak:
        print(f"share: of {peak:.1f} TFLOP/s, the peak dense bf16 rate")
    elif device.type == "cuda":
        print(f"share: {torch.cuda.get_device_name(device)} is not in the peak table; give --peak-tflops")
    for name in dict.fromkeys(r["model"] for r in rows if r["size"] == 224):
        counted = forward_flops(name, 224) / 1e9
        print(
            f"FLOPs cross-check, {name}@224 forward: counted {counted:.2f} GFLOPs = "
            f"{counted / torchvision_gmacs(name):.2f} x torchvision's {torchvision_gmacs(name):.2f} (multiply-adds)"
        )


def main() -> int:
    device = resolve_device("auto")
    # ftui turns on cuDNN's autotuner and TF32 for its runs; these are process-wide, so all three
    # loops get them from the start and the comparison is of the loops, not of those settings.
    tune_for(device)
    data = load_dataset("cifar10-sample")
    args = parse_args(device, len(data.train_images))
    peak = args.peak_tflops or (peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None)
    # Every ftui run writes checkpoints (over 1 GB for VGG16): keep them only while measuring.
    with tempfile.TemporaryDirectory(prefix="ftui-bench-") as tmp:
        runs = Path(tmp)
        rows = [add_flops(measure(name, size, args, device, data, runs), peak) for name, size in args.jobs]
        compiled = [measure_compile(int(s), args, device, runs) for s in args.compile_sizes.split(",") if s]
    machine = machine_info(device, peak)
    print(f"\n{machine}")
    print_rows(rows, device)
    print_notes(rows, device, peak)
    for c in compiled:
        print(
            f"compile at {c['size']}: {c['plain_ips']:.1f} -> {c['compiled_ips']:.1f} img/s "
            f"({c['speedup']:.2f}x); start-up {c['plain_startup_s']:.1f} s -> {c['compiled_startup_s']:.1f} s"
        )
    seed_loop = "ftui's layout and precision" if args.seed_as_ftui else "plain float32, default layout"
    print(
        f"seed loop: {seed_loop}; ftui and bare step: precision = {args.precision!r}, "
        f"{describe_device(device, args.precision)}"
    )
    result = {
        "machine": machine,
        "precision": args.precision,
        "seed_loop": seed_loop,
        "rows": rows,
        "compile": compiled,
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
