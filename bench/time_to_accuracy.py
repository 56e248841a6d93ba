"""Time to the report's accuracy: each Table 1 recipe, trained by ftui, until it matches the report.

Not a test. For every experiment of the catalog with a reference_acc (or those
named by --only), ftui's train() runs on whatever device is present, and the
wall time from the call to the end of the first epoch whose test accuracy
reaches reference_acc is recorded; that run then stops (--full trains every
epoch). A run that never gets there records its best accuracy and its whole
time.

The recipes need the full CIFAR-10 and torchvision's pretrained weights. They
are looked for on disk before anything runs, never downloaded: whatever is
missing is named with where to put it, and the script exits with status 2.

    .venv/bin/python bench/time_to_accuracy.py [--only resnet18-fft,vit_b_16-fft-224] [--full]
        [--catalog experiments.toml] [--runs DIR] [--json bench/time_to_accuracy.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torchvision
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ftui.engine import events as ev  # noqa: E402
from ftui.engine.catalog import load_catalog  # noqa: E402
from ftui.engine.data import cifar10_root  # noqa: E402
from ftui.engine.device import describe_device, resolve_device  # noqa: E402
from ftui.engine.experiment import WEIGHTS_NONE, Experiment  # noqa: E402
from ftui.engine.train import train  # noqa: E402
from ftui.engine.weights import cached_weights_path, is_local_weights  # noqa: E402
from ftui.errors import FtuiError  # noqa: E402


class Unusable(Exception):
    """The command line or the catalog names nothing that can be timed."""


# -- what the recipes need ---------------------------------------------------------


def cifar10_missing(exp: Experiment) -> str | None:
    """What ftui's loader would have to download, if anything.

    The loader accepts intact batch files, or an intact archive that it unpacks;
    both are checked against torchvision's checksums, as the loader does.
    """
    if exp.dataset != "cifar10":
        return None
    root = cifar10_root(exp.data_dir)
    batches = [(root / CIFAR10.base_folder / name, md5) for name, md5 in CIFAR10.train_list + CIFAR10.test_list]
    if all(check_integrity(str(path), md5) for path, md5 in batches):
        return None
    archive = root / CIFAR10.filename
    if check_integrity(str(archive), CIFAR10.tgz_md5):
        return None
    return (
        f"CIFAR-10 is not in {root} (or fails its checksum): put {CIFAR10.filename} there, "
        f"e.g. curl --create-dirs -L -o {archive} {CIFAR10.url} (ftui unpacks it on the first run; "
        f"FTUI_DATA_DIR or data_dir sets another folder)"
    )


def weights_missing(exp: Experiment) -> str | None:
    """The weights file ftui would have to download, if it is not where ftui looks (see weights.py)."""
    if exp.weights == WEIGHTS_NONE:
        return None
    if is_local_weights(exp.weights):
        path = Path(exp.weights).expanduser()
        return None if path.is_file() else f"The weights file {path} does not exist: put it there or change weights"
    entry = torchvision.models.get_model_weights(exp.model)[exp.weights]
    url, target = entry.url, cached_weights_path(entry)
    if target.is_file():
        return None
    return (
        f"Pretrained weights {exp.model} {exp.weights} are not in {target.parent}: put {target.name} there, "
        f"e.g. curl --create-dirs -L -o {target} {url} (TORCH_HOME sets another folder)"
    )


def missing_inputs(recipes: list[Experiment]) -> dict[str, list[str]]:
    """Each missing file's message, with the recipes that need it."""
    missing: dict[str, list[str]] = {}
    for exp in recipes:
        for line in (cifar10_missing(exp), weights_missing(exp)):
            if line:
                missing.setdefault(line, []).append(exp.name)
    return missing


def report_missing(missing: dict[str, list[str]]) -> None:
    for line, names in missing.items():
        who = ", ".join(names) if len(names) <= 3 else f"{len(names)} recipes"
        print(f"missing ({who}): {line}", file=sys.stderr)
    print(
        "Nothing was run: no download is attempted. Put the files above in place and run this again.", file=sys.stderr
    )


# -- one recipe -----------------------------------------------------------------------


def time_recipe(exp: Experiment, runs: Path, full: bool) -> dict:
    """Train exp; the seconds from calling train() to the end of the first epoch at the report's accuracy."""
    stop = threading.Event()
    reached: dict = {}
    called = time.perf_counter()

    def on_event(event) -> None:
        if not isinstance(event, ev.EpochEnd):
            return
        seconds = time.perf_counter() - called
        print(
            f"  {exp.name} epoch {event.epoch + 1}/{exp.epochs}: {event.test_acc:.2f}% "
            f"(report {exp.reference_acc:.1f}%) after {seconds:.0f} s",
            flush=True,
        )
        if not reached and event.test_acc >= exp.reference_acc:
            reached.update(epoch=event.epoch + 1, seconds=seconds, acc=event.test_acc)
            if not full:
                stop.set()

    result = train(exp, on_event, stop, runs_root=runs)
    return {
        "name": exp.name,
        "model": exp.model,
        "input_size": exp.input_size,
        "epochs": exp.epochs,
        "reference_acc": exp.reference_acc,
        "reached": bool(reached),
        "epoch": reached.get("epoch"),
        "seconds": reached.get("seconds"),
        "acc_at_epoch": reached.get("acc"),
        "best_acc": result.best_acc,
        "epochs_done": result.epochs_done,
        "total_seconds": time.perf_counter() - called,
        "status": result.status,
        "reason": result.reason,
    }


# -- the table ---------------------------------------------------------------------------


def pick_recipes(catalog_path: str, only: str) -> list[Experiment]:
    try:
        catalog = load_catalog(catalog_path)
    except FtuiError as exc:
        raise Unusable(str(exc)) from None
    recipes = {e.name: e for e in catalog.experiments if e.reference_acc is not None}
    if not recipes:
        raise Unusable(f"{catalog_path} has no experiment with reference_acc: nothing to time.")
    names = [n.strip() for n in only.split(",") if n.strip()] or list(recipes)
    unknown = [n for n in names if n not in recipes]
    if unknown:
        raise Unusable(
            f"--only: {catalog_path} has no experiment with reference_acc named {', '.join(unknown)}; "
            f"those it has are: {', '.join(recipes)}"
        )
    return [recipes[n] for n in names]


def cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    width = max(len("recipe"), *(len(r["name"]) for r in rows))
    print(
        f"{'recipe':<{width}} {'report %':>8} {'reached':>7} {'epoch':>5} {'seconds':>9} {'best %':>7} "
        f"{'epochs run':>10} {'total s':>9} {'status':>8}"
    )
    for r in rows:
        print(
            f"{r['name']:<{width}} {r['reference_acc']:>8.1f} {'yes' if r['reached'] else 'no':>7} "
            f"{cell(r['epoch'], 'd'):>5} {cell(r['seconds'], '.1f'):>9} {cell(r['best_acc'], '.2f'):>7} "
            f"{r['epochs_done']:>10} {r['total_seconds']:>9.1f} {r['status']:>8}"
        )
    for r in rows:
        if r["status"] == "failed":
            print(f"{r['name']} failed: {r['reason']}")


def machine_info() -> dict:
    return {
        "device": describe_device(resolve_device("auto")),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }


def run_all(recipes: list[Experiment], runs: str, full: bool, machine: dict, json_path: Path) -> list[dict]:
    """Time each recipe, writing the JSON after each one: the whole table takes hours, even on a GPU."""
    rows = []
    # Checkpoints of a benchmark are of no use afterwards, unless --runs asks to keep them.
    with contextlib.nullcontext(runs) if runs else tempfile.TemporaryDirectory(prefix="ftui-tta-") as folder:
        for exp in recipes:
            rows.append(time_recipe(exp, Path(folder), full))
            json_path.write_text(json.dumps({"machine": machine, "full": full, "recipes": rows}, indent=2) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time for each recipe with a reference_acc to reach it.")
    parser.add_argument("--catalog", default=str(REPO / "experiments.toml"))
    parser.add_argument(
        "--only", default="", help="comma-separated experiment names (default: every one with reference_acc)"
    )
    parser.add_argument(
        "--full", action="store_true", help="train every epoch instead of stopping at the report's accuracy"
    )
    parser.add_argument("--runs", default="", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--json", default=str(REPO / "bench" / "time_to_accuracy.json"))
    args = parser.parse_args(argv)
    try:
        recipes = pick_recipes(args.catalog, args.only)
    except Unusable as exc:
        print(exc, file=sys.stderr)
        return 2
    missing = missing_inputs(recipes)
    if missing:
        report_missing(missing)
        return 2
    machine = machine_info()
    rows = run_all(recipes, args.runs, args.full, machine, Path(args.json))
    print(f"\n{machine}")
    print_table(rows)
    print(f"wrote {args.json}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
