"""`ftui` on the command line: list, run, inspect, eval, resume.

Every user-facing failure is an FtuiError whose message is printed as is, with
a non-zero exit; a traceback is never shown (unexpected errors are written to a
log file whose path is printed).
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .engine.stop import StopRequest
from .errors import FtuiError

DEFAULT_CATALOG = "experiments.toml"
DEFAULT_RUNS = "checkpoints"
EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 1, 2, 130

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _catalog(path: str):
    from .engine.catalog import load_catalog

    if path == DEFAULT_CATALOG and not Path(path).exists():
        raise FtuiError(
            f"No {DEFAULT_CATALOG} in {Path.cwd()}. Run ftui from the folder that holds your catalog, "
            "or pass --catalog PATH."
        )
    return load_catalog(path)


def cmd_list(args) -> int:
    from .engine.results import short_trainable

    catalog = _catalog(args.catalog)
    rows = [("name", "model", "input", "stem", "trains", "epochs", "report", "description")]
    for exp in catalog.experiments:
        ref = f"{exp.reference_acc:.1f}" if exp.reference_acc is not None else "-"
        rows.append(
            (
                exp.name,
                exp.model,
                str(exp.input_size),
                "cifar" if exp.cifar_stem else "",
                short_trainable(exp.model, exp.cifar_stem, exp.trainable),
                str(exp.epochs),
                ref,
                exp.description,
            )
        )
    # Key columns at full width; the description gets what is left and is cut: a line per experiment.
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in (2, 5, 6) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        line = "  ".join(cells + [row[7]])
        out.print(
            line if len(line) <= out.width else line[: out.width - 1] + "…",
            style="bold" if n == 0 else None,
            markup=False,
            soft_wrap=True,
        )
    return 0


SIGNAL_REASONS = {
    signal.SIGINT: "by SIGINT (Ctrl-C)",
    signal.SIGTERM: "by SIGTERM",
    signal.SIGHUP: "because the terminal closed (SIGHUP)",
}


def _stop_on_signals(stop: StopRequest) -> None:
    """Ctrl-C, SIGTERM and a dropped SSH session (SIGHUP) stop the run cleanly after the current step."""

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(SIGNAL_REASONS[signum])
        try:
            err.print(f"\n{signal.Signals(signum).name}: stopping after the current step (Ctrl-C again to abort)...")
        except Exception:
            pass  # the terminal may be gone (SIGHUP)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _drive(start) -> int:
    """Run a training function with a progress bar and turn its result into an exit code."""
    from .progress import ProgressPrinter

    stop = StopRequest()
    _stop_on_signals(stop)
    with ProgressPrinter(out) as printer:
        result = start(printer, stop)
    if result.status == "finished":
        out.print(f"finished: best test accuracy {result.best_acc:.2f}%, final {result.final_acc:.2f}%")
    elif result.status == "stopped":
        out.print(f"stopped: {escape(result.reason)}")
    else:
        err.print(f"[red]failed:[/] {escape(result.reason)}")
    if result.run_dir is not None:
        out.print(f"run folder: {escape(str(result.run_dir))}")
    return {"finished": 0, "stopped": EXIT_STOPPED}.get(result.status, EXIT_FAILED)


def cmd_run(args) -> int:
    from .engine.train import train

    exp = _catalog(args.catalog).get(args.name)
    changes = {k: v for k, v in (("epochs", args.epochs), ("device", args.device)) if v is not None}
    if changes:
        from .engine.catalog import experiment_from_dict

        exp = experiment_from_dict({**exp.to_dict(), **changes}, where="command line")
    return _drive(lambda printer, stop: train(exp, printer, stop, runs_root=args.runs, share_device=args.share_device))


def cmd_resume(args) -> int:
    from .engine.train import resume

    return _drive(lambda printer, stop: resume(args.run_folder, printer, stop, share_device=args.share_device))


def cmd_inspect(args) -> int:
    from .engine.checkpoints import read_checkpoint

    info = read_checkpoint(Path(args.checkpoint))
    exp, m = info.experiment, info.metrics
    out.print(
        f"[bold]{escape(str(info.path))}[/]  ({info.kind} checkpoint, epoch {info.epoch + 1} of {exp.get('epochs')})"
    )
    out.print(
        f"experiment: {exp.get('name')}  model: {exp.get('model')}  input: {exp.get('input_size')}  "
        f"dataset: {exp.get('dataset')} ({len(info.classes)} classes)"
    )
    if m:
        out.print(
            f"test accuracy {m.get('test_acc', float('nan')):.2f}%  test loss {m.get('test_loss', float('nan')):.4f}  "
            f"train loss {m.get('train_loss', float('nan')):.4f}"
        )
    out.print(f"trained units: {', '.join(info.trainable_units) or 'none'}")
    out.print("versions: " + ", ".join(f"{k} {v}" for k, v in info.versions.items()))
    table = Table(header_style="bold", box=None)
    for col in ("tensor", "shape", "dtype", "unit", "state"):
        table.add_column(col)
    for t in info.tensors:
        table.add_row(
            t.name, "x".join(map(str, t.shape)) or "scalar", t.dtype, t.unit, "trained" if t.trained else "frozen"
        )
    out.print(table)
    out.print(f"{len(info.tensors)} tensors, {info.param_count:,} values")
    return 0


def cmd_eval(args) -> int:
    from .engine.evaluation import evaluate_checkpoint

    started = time.monotonic()
    result, exp = evaluate_checkpoint(Path(args.checkpoint), args.device or "auto", args.max_images or 0)
    out.print(
        f"{args.checkpoint}: test accuracy [bold]{result.accuracy:.2f}%[/] "
        f"(loss {result.loss:.4f}) on {result.images} {exp.dataset} test images in {time.monotonic() - started:.1f}s"
    )
    return 0


def run_tui(args) -> int:
    """The workbench. If the terminal goes away (SIGHUP), the UI closes and a run in progress goes on to its end."""
    from .tui.app import make_app

    app = make_app(args.catalog, args.runs)

    def terminal_gone(_signum, _frame):
        app.exit()

    def terminate(signum, _frame):
        app.controller.request_stop(SIGNAL_REASONS[signum])
        app.exit()

    signal.signal(signal.SIGHUP, terminal_gone)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)  # a Ctrl-C typed in the terminal is a key; this is kill -INT
    # torch, torchvision and textual leave ~1M long-lived objects; a full collection walked them all
    # and froze the UI for 200-400 ms at a time. Frozen, collections only walk what the app makes.
    gc.freeze()
    try:
        app.run()
    finally:
        # Frozen objects are never freed, even at exit, and triton's bindings then print a
        # "leaked instances" report into the terminal: let the exit collect them again.
        gc.unfreeze()
        if app.controller.busy:
            where = f"; its run folder is {app.controller.run_dir}" if app.controller.run_dir else ""
            _say(f"{app.controller.experiment} goes on training until it ends{where}. Ctrl-C stops it.")
            app.controller.wait()
    return 0


def _say(message: str) -> None:
    try:
        err.print(message)
    except Exception:
        pass  # no terminal any more


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ftui",
        description="Fine-tune ImageNet-pretrained vision models from the terminal. "
        "With no command, ftui opens the terminal workbench.",
    )
    p.add_argument(
        "--catalog", default=DEFAULT_CATALOG, help="catalog file for the workbench (default: ./experiments.toml)"
    )
    p.add_argument(
        "--runs", default=DEFAULT_RUNS, help="folder of run folders for the workbench (default: ./checkpoints)"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ls = sub.add_parser("list", help="list the experiments of the catalog")
    ls.add_argument("--catalog", default=DEFAULT_CATALOG, help="catalog file (default: ./experiments.toml)")
    ls.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="train an experiment of the catalog")
    run.add_argument("name")
    run.add_argument("--catalog", default=DEFAULT_CATALOG, help="catalog file (default: ./experiments.toml)")
    run.add_argument("--epochs", type=int, help="override the experiment's epochs")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    run.add_argument("--runs", default=DEFAULT_RUNS, help="folder for run folders (default: ./checkpoints)")
    run.add_argument("--share-device", action="store_true", help="train even if another ftui run holds the device")
    run.set_defaults(func=cmd_run)

    ins = sub.add_parser("inspect", help="show a checkpoint's metadata and tensors")
    ins.add_argument("checkpoint")
    ins.set_defaults(func=cmd_inspect)

    ev = sub.add_parser("eval", help="test accuracy of a checkpoint")
    ev.add_argument("checkpoint")
    ev.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    ev.add_argument("--max-images", type=int, help="evaluate on the first N test images only")
    ev.set_defaults(func=cmd_eval)

    res = sub.add_parser("resume", help="continue a stopped run to its planned end")
    res.add_argument("run_folder")
    res.add_argument("--share-device", action="store_true", help="train even if another ftui run holds the device")
    res.set_defaults(func=cmd_resume)
    return p


def _crash_log() -> Path:
    path = Path(tempfile.gettempdir()) / f"ftui-crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.write_text(traceback.format_exc(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    func = args.func if args.command else run_tui
    try:
        return func(args)
    except FtuiError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("aborted.")
        return EXIT_STOPPED
    except Exception as exc:
        err.print(
            f"[red]ftui hit an internal error:[/] {escape(repr(exc))}\nDetails were written to {_crash_log()}; "
            "please report it."
        )
        return EXIT_FAILED


def entry() -> None:
    sys.exit(main())
