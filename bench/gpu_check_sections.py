"""The measuring sections of bench/gpu_check.py, each run in a child process of its own.

    python bench/gpu_check_sections.py SECTION --result FILE --budget SECONDS [--dry-run]

SECTION is one of:
  throughput - bench/throughput.py's three loops (the report's plain loop, ftui's train(), the bare
               step) for ResNet18, VGG16 and ViT_B_16 at 224 and ResNet18 at 32, with the share of
               the GPU's peak bf16 FLOP/s: one round of every model first, then more while the
               budget allows;
  workbench  - one recipe trained from the CLI (`ftui run`) and from the workbench, images/s side by side;
  finetune   - a short run on the CPU, then a fine-tune at 224 on the GPU from its weights, and the
               fine-tune's best checkpoint evaluated again.

The child writes what it has to FILE (JSON) after every step, so a section stopped at its budget
leaves the figures it had. --dry-run is the CPU mode: the same code paths, tiny sizes, a step or two.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# The targets of issue 14, for one H100/H200-class GPU in bf16. Judged on CUDA only: the dry run's
# sizes are not theirs.
FTUI_IMAGES_PER_SEC_224 = {"resnet18": 14_000, "vit_b_16": 3_000}
FTUI_OVER_PLAIN_LOOP_224 = 3.0
WORKBENCH_OVER_CLI = 0.95

# Seconds kept back from a section's budget when deciding to start one more throughput round, so
# that the section ends on its own, its figures written, before gpu_check.py stops it.
MARGIN_S = 10


@dataclass(frozen=True)
class Plan:
    """The sizes of one mode of the check."""

    device: str
    jobs: tuple[tuple[str, int, int], ...]  # throughput: model, input size, batch
    steps: int  # throughput: timed steps of each loop
    rounds: int  # throughput: at most, as the budget allows
    recipe: dict  # workbench vs CLI: the one catalog entry both train
    pretrain: dict  # fine-tune: the earlier run, on the CPU
    finetune: dict  # fine-tune: from the earlier run's weights, on the plan's device


SAMPLE = {"dataset": "cifar10-sample", "weights": "none", "trainable": "all", "model": "resnet18"}

CUDA_PLAN = Plan(
    device="cuda",
    # bench/throughput.py's CUDA batches: an H100 needs them this large to stay busy.
    jobs=(("resnet18", 224, 256), ("vgg16", 224, 128), ("vit_b_16", 224, 128), ("resnet18", 32, 128)),
    steps=10,  # (2 warm-up + 10) x 256 images: within the sample's 5,170
    rounds=3,
    recipe={
        **SAMPLE,
        "name": "gpu-check",
        "input_size": 224,
        "batch_size": 256,
        "epochs": 6,
        "max_steps_per_epoch": 20,
        "max_test_images": 512,
        "rotation": 10.0,
    },
    pretrain={
        **SAMPLE,
        "name": "gpu-check-cpu",
        "input_size": 32,
        "batch_size": 64,
        "epochs": 1,
        "max_steps_per_epoch": 10,
        "max_test_images": 256,
        "lr": 0.05,
    },
    finetune={
        **SAMPLE,
        "name": "gpu-check-finetune",
        "input_size": 224,
        "batch_size": 128,
        "epochs": 3,
        "max_steps_per_epoch": 10,
        "max_test_images": 512,
    },
)

# The dry run: the same recipes, a step or two of a few images at small sizes, on the CPU.
TINY_RUN = {"batch_size": 4, "max_steps_per_epoch": 1, "max_test_images": 8}
DRY_PLAN = dataclasses.replace(
    CUDA_PLAN,
    device="cpu",
    # 48 stands in for 224 (no CIFAR stem, rotation); at 32 the stem keeps 32x32 maps, the costliest: batch 2.
    jobs=(("resnet18", 48, 4), ("resnet18", 32, 2)),
    steps=1,
    rounds=1,
    recipe={**CUDA_PLAN.recipe, **TINY_RUN, "input_size": 32, "epochs": 2},
    pretrain={**CUDA_PLAN.pretrain, **TINY_RUN},
    finetune={**CUDA_PLAN.finetune, **TINY_RUN, "input_size": 64, "epochs": 1},
)


class Result:
    """What a section found, written to its file after every change; gpu_check.py reads it at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.machine: dict = {}
        self.figures: dict = {}
        self.checks: list[dict] = []
        self.targets: list[dict] = []
        self.error = ""

    def check(self, what: str, passed: bool, detail: str = "") -> bool:
        self.checks.append({"what": what, "passed": bool(passed), "detail": detail})
        self.save()
        return passed

    def save(self) -> None:
        record = {k: getattr(self, k) for k in ("machine", "figures", "checks", "targets", "error")}
        part = self.path.with_name(self.path.name + ".part")
        part.write_text(json.dumps(record, indent=1, default=str))
        os.replace(part, self.path)


def target(what: str, wanted: str, measured: float, met: bool) -> dict:
    return {"what": what, "wanted": wanted, "measured": measured, "met": met}


def machine(device) -> dict:
    """What the figures were measured on."""
    import throughput as tp
    import torch

    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "device_name": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "peak_bf16_tflops": tp.peak_tflops(props.name),
        }
    return info


# -- 2. throughput --------------------------------------------------------------------------


def throughput(plan: Plan, budget: float, result: Result) -> None:
    import throughput as tp
    import torch

    from ftui.engine.data import load_dataset
    from ftui.engine.device import tune_for

    device = torch.device(plan.device)
    tune_for(device)  # as bench/throughput.py: process-wide, so every loop has it
    data = load_dataset("cifar10-sample")
    peak = result.machine.get("peak_bf16_tflops")
    result.figures["device"] = device.type
    deadline = time.monotonic() + budget - MARGIN_S
    rounds: dict[tuple, list[dict]] = {job: [] for job in plan.jobs}
    took: dict[tuple, float] = {}
    errors: dict[tuple, str] = {}
    with tempfile.TemporaryDirectory(prefix="ftui-gpu-check-") as runs:
        for _ in range(plan.rounds):
            for job in plan.jobs:
                # Every model's first round runs; another only if it fits in what is left.
                if job in errors or (rounds[job] and time.monotonic() + 1.5 * took[job] > deadline):
                    continue
                started = time.monotonic()
                try:
                    got: dict | str = tp.measure_round(*job, plan.steps, device, data, Path(runs))
                    rounds[job].append(got)
                except Exception as exc:
                    got = errors[job] = failure_text(exc)
                    free_gpu_memory()
                took[job] = time.monotonic() - started
                print(f"throughput {job}: {got}", flush=True)
                result.figures["rows"] = throughput_rows(plan, rounds, errors, peak)
                result.save()
    if device.type == "cuda":
        result.targets = throughput_targets(result.figures["rows"])
    for (model, size, _), error in errors.items():
        result.check(f"{model}@{size} measured", False, error)


def throughput_rows(plan: Plan, rounds: dict, errors: dict, peak: float | None) -> list[dict]:
    import throughput as tp

    rows = []
    for (model, size, batch), done in rounds.items():
        if done:
            rows.append(tp.add_flops(tp.summarize(model, size, batch, plan.steps, done), peak))
        elif (model, size, batch) in errors:
            rows.append({"model": model, "size": size, "batch": batch, "error": errors[(model, size, batch)]})
    return rows


def throughput_targets(rows: list[dict]) -> list[dict]:
    """Issue 14's throughput targets, judged on the rows measured at 224."""
    targets = []
    for row in rows:
        if row["size"] != 224 or "ftui" not in row:
            continue
        name = row["model"]
        if name in FTUI_IMAGES_PER_SEC_224:
            wanted = FTUI_IMAGES_PER_SEC_224[name]
            targets.append(target(f"{name}@224: ftui images/s", f">= {wanted:,}", row["ftui"], row["ftui"] >= wanted))
        ratio = row["ftui_vs_seed"]
        targets.append(
            target(
                f"{name}@224: ftui / the report's plain loop",
                f">= {FTUI_OVER_PLAIN_LOOP_224:g}x",
                ratio,
                ratio >= FTUI_OVER_PLAIN_LOOP_224,
            )
        )
    return targets


def failure_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()[-1000:]


def free_gpu_memory() -> None:
    """After a failure (out of memory, say), hand back what the failed loop left cached, for the next one."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- 3. the workbench and the CLI ----------------------------------------------------------------


def workbench(plan: Plan, budget: float, result: Result) -> None:
    from ftui.engine.schema import toml_value

    deadline = time.monotonic() + budget - MARGIN_S
    entry = {**plan.recipe, "device": plan.device}
    with tempfile.TemporaryDirectory(prefix="ftui-gpu-check-") as tmp:
        catalog = Path(tmp) / "experiments.toml"
        catalog.write_text("[[experiment]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in entry.items()))
        result.figures["recipe"] = entry
        for path, train_from in (("cli", train_from_cli), ("workbench", train_in_workbench)):
            run_dir = train_from(catalog, Path(tmp) / path, deadline)
            result.figures[path] = epoch_speeds(run_dir)
            result.save()
    ratio = result.figures["workbench"]["images_per_sec"] / result.figures["cli"]["images_per_sec"]
    result.figures["workbench_over_cli"] = ratio
    if plan.device == "cuda":
        wanted = f">= {WORKBENCH_OVER_CLI:.0%}"
        result.targets = [target("a workbench run's images/s / the CLI's", wanted, ratio, ratio >= WORKBENCH_OVER_CLI)]
    result.save()


def train_from_cli(catalog: Path, runs: Path, deadline: float) -> Path:
    """The catalog's one experiment trained by `ftui run`, a process of its own, as a person runs it."""
    from ftui.engine.catalog import load_catalog

    name = load_catalog(catalog).experiments[0].name
    argv = [sys.executable, "-m", "ftui", "run", name, "--catalog", str(catalog), "--runs", str(runs)]
    proc = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=max(deadline - time.monotonic(), 1), check=False
    )
    print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ftui run exited with status {proc.returncode}: {proc.stderr.strip()[-500:]}")
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return run_dir


def train_in_workbench(catalog: Path, runs: Path, deadline: float) -> Path:
    """The catalog's one experiment launched in the workbench with `l`, trained to its end, then the app closed.

    The app runs as `ftui` runs it (workbench.run: its frozen garbage collector, its signal handlers,
    the run seen out after the UI closes), but headless: Textual draws to no terminal. The run trains
    in the app's training thread beside the UI thread, where the live run screen reads the run folder
    and redraws its plots four times a second. Workbench runs are moving into a child process of
    their own; when they do, this is the one function to change.
    """
    from ftui.tui import workbench as wb
    from ftui.tui.app import make_app
    from ftui.tui.run_controller import ENGINE

    app = make_app(catalog, runs)
    controller = app.controller

    def until(condition: Callable[[], bool]) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the workbench run did not end within the section's budget")
            time.sleep(0.05)

    def press_l_then_quit() -> None:
        try:
            until(lambda: ENGINE.started)  # the app starts loading torch once its catalog is painted and idle
            app.call_from_thread(app.simulate_key, "l")
            # The run has ended once it has a result or a failure (both are set in its thread, which is
            # therefore started: `busy` is False for a moment between the thread's creation and its start).
            until(lambda: controller.result is not None or controller.failure is not None)
            controller.wait(max(deadline - time.monotonic(), 1))
        finally:
            if app.is_running:
                app.call_from_thread(app.stop_run_and_exit, "by the GPU check")

    helper = threading.Thread(target=press_l_then_quit, name="gpu-check-keys", daemon=True)
    helper.start()
    wb.run(app, headless=True)
    helper.join(10)
    if controller.result is None or controller.result.status != "finished":
        reason = controller.result.reason if controller.result else controller.failure
        raise RuntimeError(f"the workbench run did not finish: {reason}")
    assert controller.result.run_dir is not None
    return controller.result.run_dir


def epoch_speeds(run_dir: Path) -> dict:
    """A run's images/s per epoch and their median after the first epoch (cuDNN's autotuning, warm-up)."""
    from ftui.engine import events as ev
    from ftui.engine.runs import RunFolder

    events = RunFolder(run_dir).read_events()
    per_epoch = [e.images_per_sec for e in events if isinstance(e, ev.EpochEnd)]
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    return {
        "device": started.device,
        "epochs": per_epoch,
        "images_per_sec": statistics.median(per_epoch[1:] or per_epoch),
    }


# -- 4. a fine-tune from a CPU run's weights -------------------------------------------------------------


def finetune(plan: Plan, budget: float, result: Result) -> None:
    from ftui.engine.evaluation import evaluate_checkpoint

    with tempfile.TemporaryDirectory(prefix="ftui-gpu-check-") as tmp:
        cpu = train_entry({**plan.pretrain, "device": "cpu"}, Path(tmp))
        result.figures["cpu_run"] = run_figures(cpu)
        if not result.check("the short run on the CPU finished", cpu.status == "finished", cpu.reason):
            return
        weights = cpu.run_dir / "last.safetensors"
        tuned = train_entry({**plan.finetune, "device": plan.device, "weights": str(weights)}, Path(tmp))
        result.figures["finetune"] = run_figures(tuned) | {"weights": f"{cpu.run_dir.name}/{weights.name}"}
        if not result.check("the fine-tune from its weights finished", tuned.status == "finished", tuned.reason):
            return
        again, _ = evaluate_checkpoint(tuned.run_dir / "best.safetensors", plan.device)
    one_image = 100 / plan.finetune["max_test_images"]
    result.figures["best_evaluated_again"] = {
        "accuracy": again.accuracy,
        "images": again.images,
        "recorded": tuned.best_acc,
    }
    result.check(
        "its best checkpoint evaluated again gives the accuracy the run recorded (within one test image)",
        tuned.best_acc is not None and abs(again.accuracy - tuned.best_acc) <= one_image + 1e-9,
        f"{again.accuracy:.2f}% against {tuned.best_acc}%",
    )


def train_entry(entry: dict, runs: Path):
    from ftui.engine.catalog import experiment_from_dict
    from ftui.engine.train import train

    return train(experiment_from_dict(entry, where="gpu check"), runs_root=runs)


def run_figures(run) -> dict:
    return {
        "status": run.status,
        "reason": run.reason,
        "best_acc": run.best_acc,
        "epochs": [
            {k: getattr(e, k) for k in ("epoch", "train_loss", "test_loss", "test_acc", "images_per_sec", "seconds")}
            for e in run.history
        ],
    }


# -- the child process ----------------------------------------------------------------------


SECTIONS: dict[str, Callable[[Plan, float, Result], None]] = {
    "throughput": throughput,
    "workbench": workbench,
    "finetune": finetune,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=SECTIONS)
    parser.add_argument("--result", required=True, type=Path)
    parser.add_argument("--budget", required=True, type=float)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    plan = DRY_PLAN if args.dry_run else CUDA_PLAN
    result = Result(args.result)
    try:
        import torch

        if plan.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU is visible to PyTorch: run the check on a GPU machine, or with --dry-run")
        result.machine = machine(torch.device(plan.device))
        SECTIONS[args.section](plan, args.budget, result)
    except Exception as exc:
        traceback.print_exc()
        result.error = failure_text(exc)
    result.save()
    return 0 if not result.error and all(c["passed"] for c in result.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
