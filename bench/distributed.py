"""1 process vs N processes training one run (not a test): images/s in total and per process.

Each round runs `ftui run` on a small ResNet18 recipe once with --nproc 1 and once with --nproc N
(alternated, so that machine noise falls on both alike), in a fresh folder, and reads the run's
metrics.jsonl: the training images/s of each epoch after the first (the warm-up: gloo's
connections, DDP's buckets, oneDNN's kernels), the evaluation left out. The figure is the
global batch's images/s, all processes together; per process it is that over N.

On a CPU the processes share its cores (ftui gives each cores / N threads), so this measures
what DDP costs (the all-reduce of every gradient), not scaling. On a machine with N GPUs the
same command measures scaling (device = "cuda": one GPU a process).

    .venv/bin/python bench/distributed.py [--nproc 2] [--rounds 3] [--device cpu] [--batch 64]
        [--steps 10] [--epochs 3] [--input-size 32] [--model resnet18] [--threads-alone T]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def catalog(args: argparse.Namespace) -> str:
    entry = {
        "name": "bench",
        "model": args.model,
        "weights": "none",
        "dataset": "cifar10-sample",
        "input_size": args.input_size,
        "cifar_stem": args.model.startswith("resnet") and args.input_size <= 64,  # the stem for 32x32 images
        "epochs": args.epochs,
        "batch_size": args.batch,
        "max_steps_per_epoch": args.steps,
        "max_test_images": 2 * args.batch,
        "device": args.device,
    }
    return "[[experiment]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())


def images_per_sec(nproc: int, args: argparse.Namespace) -> list[float]:
    """The training images/s of each epoch after the first, of one `ftui run --nproc nproc`.

    torch's threads: one process takes every core (or --threads-alone); N share them (launcher.py).
    """
    with tempfile.TemporaryDirectory(prefix="ftui-bench-ddp-") as folder:
        Path(folder, "experiments.toml").write_text(catalog(args), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("OMP_NUM_THREADS", None)
        if nproc == 1 and args.threads_alone:
            env["OMP_NUM_THREADS"] = str(args.threads_alone)
        subprocess.run(
            [sys.executable, "-m", "ftui", "run", "bench", "--nproc", str(nproc)],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        [metrics] = Path(folder, "checkpoints").glob("*/metrics.jsonl")
        records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
        return [r["images_per_sec"] for r in records if r.get("type") == "epoch"][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, default=64, help="the global batch")
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="the first is the warm-up")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--threads-alone", type=int, default=0, help="torch threads of the 1-process run (0: all)")
    args = parser.parse_args()

    measured: dict[int, list[float]] = {1: [], args.nproc: []}
    for n in range(args.rounds):
        for nproc in measured:
            epochs = images_per_sec(nproc, args)
            measured[nproc] += epochs
            print(f"round {n + 1}, {nproc} process(es): " + ", ".join(f"{v:.1f}" for v in epochs) + " img/s")
    alone = f"{args.threads_alone} thread(s)" if args.threads_alone else "all cores"
    print(
        f"\n{args.model} at {args.input_size}, global batch {args.batch}, {args.device}, {os.cpu_count()} cores "
        f"(1 process: {alone}; {args.nproc} processes: {max(1, (os.cpu_count() or 1) // args.nproc)} thread(s) each)"
    )
    print("| processes | img/s in total (median) | img/s per process | epochs measured |")
    print("| --- | --- | --- | --- |")
    for nproc, values in measured.items():
        total = statistics.median(values)
        print(f"| {nproc} | {total:.1f} | {total / nproc:.1f} | {len(values)} |")


if __name__ == "__main__":
    main()
