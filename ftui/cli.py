"""`ftui` on the command line: list, run, inspect, eval, resume; with no command, the workbench.

This module parses and dispatches; the workbench's life as a process is tui/workbench.py.
Every user-facing failure is an FtuiError whose message is printed as is, with
a non-zero exit; a traceback is never shown (unexpected errors are written to a
log file whose path is printed). The exit codes are in errors.py and the README.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .engine.stop import StopRequest
from .errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    SIGNAL_REASONS,
    FtuiError,
    exit_code_for_signal,
)
from .formatting import param_count, plain_line, visible

DEFAULT_CATALOG = "experiments.toml"
DEFAULT_RUNS = "checkpoints"

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


LIST_HEADER = ("name", "model", "input", "stem", "epochs", "report", "trains", "description")
LIST_RIGHT_ALIGNED = (2, 4, 5)  # the numbers
DESCRIPTION_MIN = 12  # a cut description shorter than this says nothing: dropped instead


def list_lines(rows: list[tuple[str, ...]], width: int | None) -> list[str]:
    """One line per row. The short columns (name to report) always show in full. On a terminal
    (width given) a line that does not fit cuts its description with "…" (drops it where fewer
    than DESCRIPTION_MIN characters would show), then cuts its trains column. Piped (width None),
    lines are never cut."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(LIST_HEADER) - 1)]
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in LIST_RIGHT_ALIGNED else c.ljust(w)
            for i, (c, w) in enumerate(zip(row[:-1], widths, strict=True))
        ]
        line = "  ".join(cells + [row[-1]]).rstrip()
        if width is not None and len(line) > width:
            room = width - len("  ".join(cells)) - 2
            line = "  ".join(cells[:-1] + [row[-2]])
            if room >= DESCRIPTION_MIN:
                line = "  ".join(cells + [row[-1][: room - 1].rstrip() + "…"])
            elif len(line) > width:
                line = line[: max(width - 1, len("  ".join(cells[:-1])) + 2)].rstrip() + "…"
        lines.append(line)
    return lines


def cmd_list(args) -> int:
    from .engine.results import short_trainable

    catalog = _catalog(args.catalog)
    rows = [LIST_HEADER]
    for exp in catalog.experiments:
        ref = f"{exp.reference_acc:.1f}" if exp.reference_acc is not None else "-"
        rows.append(
            (
                exp.name,
                exp.model,
                str(exp.input_size),
                "cifar" if exp.cifar_stem else "",
                str(exp.epochs),
                ref,
                short_trainable(exp.model, exp.cifar_stem, exp.trainable, exp.lora),
                exp.description,
            )
        )
    for n, line in enumerate(list_lines(rows, out.width if out.is_terminal else None)):
        out.print(line, style="bold" if n == 0 else None, markup=False, soft_wrap=True, crop=False)
    return EXIT_OK


def _stop_on_signals(
    stop: StopRequest, received: list[int], reason_file: str | None = None, quiet: bool = False
) -> None:
    """Ctrl-C, SIGTERM and a dropped SSH session (SIGHUP) stop the run cleanly after the current step.

    reason_file: where whoever sends the signal may first write why (the workbench does: "from the
    workbench"); the run's status then says that instead of the signal's name.
    quiet: say nothing (one of a run's several processes; rank 0 speaks for them).
    """

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        stop.request(_stated_why(reason_file) or SIGNAL_REASONS[signum])
        if quiet:
            return
        try:
            err.print(f"\n{signal.Signals(signum).name}: stopping after the current step (Ctrl-C again to abort)...")
        except Exception:
            pass  # the terminal may be gone (SIGHUP)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _stated_why(reason_file: str | None) -> str:
    if not reason_file:
        return ""
    try:
        return Path(reason_file).read_text(encoding="utf-8").strip()[:200]
    except (OSError, UnicodeDecodeError):
        return ""


def _drive(start, reason_file: str | None = None) -> int:
    return _drive_result(start, reason_file)[0]


def _listen(reason_file: str | None = None) -> tuple[StopRequest, list[int]]:
    """A stop request that Ctrl-C, SIGTERM and SIGHUP set from now on, and the signals received."""
    from .engine.distributed import world_from_env  # no torch: the handlers still come before it

    stop, signals = StopRequest(), []
    _stop_on_signals(stop, signals, reason_file, quiet=not world_from_env().main)
    return stop, signals


def _drive_result(start, reason_file: str | None = None, listening=None):
    """Run a training function with a progress bar and turn its result into an exit code (and the result).

    The signal handlers come first: a stop that arrives while torch is still being imported is kept.
    listening: a (stop, signals) pair from _listen that outlives this run (a sequence of runs).
    One of several processes (started by torchrun) shows nothing but its errors: rank 0 speaks for the run.
    """
    from .engine.distributed import world_from_env

    stop, signals = listening or _listen(reason_file)
    if not world_from_env().main:
        result = start(None, stop)
        return _exit_code(result, signals, started=result.run_dir is not None), result
    from .progress import ProgressPrinter

    with ProgressPrinter(out) as printer:
        result = start(printer, stop)
    if result.status == "finished":
        out.print(f"finished: best test accuracy {result.best_acc:.2f}%, final {result.final_acc:.2f}%")
    elif result.status == "stopped":
        out.print(f"stopped: {_markup_safe(result.reason)}")
    else:
        err.print(f"[red]failed:[/] {_markup_safe(result.reason)}")
    if result.run_dir is not None:
        out.print(f"run folder: {_markup_safe(result.run_dir)}")
    return _exit_code(result, signals, started=printer.started), result


def _exit_code(result, signals: list[int], started: bool) -> int:
    if result.status == "finished":
        return EXIT_OK
    if result.status == "stopped":
        return _stopped_code(signals)
    return EXIT_FAILED if started else EXIT_USAGE  # a run that never started: its set-up was refused


def _stopped_code(signals: list[int]) -> int:
    """The exit code of a stop: that of the first signal received (Ctrl-C when none was: a stop from within)."""
    return exit_code_for_signal(signals[0] if signals else signal.SIGINT)


def _processes(asked: int | None, default: int) -> int:
    """How many processes train: --nproc, else the experiment's; under torchrun, torchrun's (--nproc must agree)."""
    from .engine.distributed import launched_by_torchrun, world_from_env

    if not launched_by_torchrun():
        return asked if asked is not None else default
    size = world_from_env().size
    if asked is not None and asked != size:
        raise FtuiError(
            f"--nproc {asked}, but torchrun started {size} processes: under torchrun its --nproc-per-node "
            "decides; leave --nproc out."
        )
    return size


def _experiment_json(path: str):
    """The resolved experiment in a JSON file (as a run folder's experiment.json holds it), validated."""
    from .engine.catalog import experiment_from_dict

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FtuiError(f"--experiment-json {path} could not be read ({exc}).") from None
    if not isinstance(data, dict):
        raise FtuiError(f"--experiment-json {path} holds no experiment: a JSON object of settings is expected.")
    return experiment_from_dict(data, where=path)


def _experiment(args):
    """The experiment `ftui run` trains: a catalog entry by name, or a resolved one from --experiment-json."""
    if (args.name is None) == (args.experiment_json is None):
        raise FtuiError(
            "ftui run needs an experiment: a NAME from the catalog (ftui list names them) "
            "or --experiment-json FILE, not both."
        )
    if args.experiment_json is not None:
        return _experiment_json(args.experiment_json)
    return _catalog(args.catalog).get(args.name)


def _changed(exp, args):
    """The experiment with the command line's --epochs and --device, if given."""
    changes = {k: v for k, v in (("epochs", args.epochs), ("device", args.device)) if v is not None}
    if not changes:
        return exp, changes
    from .engine.catalog import experiment_from_dict

    return experiment_from_dict({**exp.to_dict(), **changes}, where="command line"), changes


def cmd_run(args) -> int:
    if args.all is not None:
        return cmd_run_all(args)
    if args.skip_finished:
        raise FtuiError("--skip-finished goes with --all PREFIX: it leaves out the experiments already trained.")
    exp, changes = _changed(_experiment(args), args)
    nproc = _processes(args.nproc, exp.nproc)
    if nproc > 1 and not _under_torchrun():
        from .engine.distributed import per_process_batch

        per_process_batch(exp.batch_size, nproc)  # refused here, before any process starts
        source = ["--experiment-json", args.experiment_json] if args.experiment_json else [args.name]
        forwarded = ["run", *source, "--catalog", args.catalog, "--runs", args.runs]
        forwarded += [f"--{k}={v}" for k, v in changes.items()] + (["--share-device"] if args.share_device else [])
        return _launch(nproc, forwarded, runs_root=Path(args.runs))

    def start(printer, stop):
        from .engine.train import train

        return train(exp, printer, stop, runs_root=args.runs, share_device=args.share_device)

    return _drive(start, args.stop_reason_file)


def cmd_run_all(args) -> int:
    """`ftui run --all PREFIX`: every experiment whose name starts with PREFIX, one after another, each base
    (weights = "run:NAME") before the runs that start from it. A stop (Ctrl-C) ends the sequence."""
    from .engine.results import measured_by_experiment
    from .engine.runs import list_runs
    from .engine.study import still_to_train, study_summary, study_table, with_prefix

    if args.name is not None or args.experiment_json is not None or (args.nproc or 1) > 1:
        raise FtuiError("ftui run --all PREFIX trains the catalog's experiments one by one, on one process: "
                        "give no NAME, --experiment-json or --nproc with it.")  # fmt: skip
    catalog = _catalog(args.catalog)
    chosen = with_prefix(catalog, args.all)
    if not chosen:
        raise FtuiError(f"No experiment of {catalog.path} starts with {args.all!r} (ftui list names them).")
    if args.skip_finished:
        todo = still_to_train(chosen, measured_by_experiment(list_runs(Path(args.runs))))
        skipped = [e.name for e in chosen if e not in todo]
        if skipped:
            out.print(f"skipped, a finished run already: {', '.join(skipped)}", markup=False)
        if not todo:
            out.print(f"Every experiment starting with {args.all!r} has a finished run in {args.runs}.", markup=False)
            return EXIT_OK
        chosen = todo
    outcomes: list[tuple[str, str]] = []
    code = EXIT_OK
    # One listener for the whole sequence: a Ctrl-C between two runs stops the sequence too.
    stop, signals = _listen(args.stop_reason_file)
    for number, exp in enumerate(chosen, 1):
        if stop.is_set():
            code = code or _stopped_code(signals)
            break
        out.print(f"[bold]{number}/{len(chosen)}: {exp.name}[/]")
        exp, _ = _changed(exp, args)

        def start(printer, stop, exp=exp):
            from .engine.train import train

            return train(exp, printer, stop, runs_root=args.runs, share_device=args.share_device)

        step, result = _drive_result(start, args.stop_reason_file, (stop, signals))
        outcomes.append((exp.name, f"{result.best_acc:.2f}%" if result.status == "finished" else result.status))
        code = code or step
        if result.status == "stopped":
            break
    for name, outcome in outcomes + [(e.name, "not started") for e in chosen[len(outcomes) :]]:
        out.print(f"  {name:<32} {outcome}", markup=False)
    rows = study_table(catalog, measured_by_experiment(list_runs(Path(args.runs))))
    if any(e.mirrors for e in chosen) and rows:
        out.print(f"the report in miniature: {study_summary(rows)} (ftui's Results, t, shows it beside Table 1)")
    return code


def cmd_resume(args) -> int:
    if not _under_torchrun():
        from .engine.distributed import check_same_processes
        from .engine.runs import RunFolder

        trained_on = int(RunFolder(Path(args.run_folder)).read_experiment().get("nproc") or 1)
        check_same_processes(args.run_folder, trained_on, _processes(args.nproc, trained_on))
        if trained_on > 1:
            forwarded = ["resume", args.run_folder] + (["--share-device"] if args.share_device else [])
            return _launch(trained_on, forwarded, run_dir=Path(args.run_folder))
    elif args.nproc is not None:
        _processes(args.nproc, 1)  # under torchrun, --nproc must be what torchrun started

    def start(printer, stop):
        from .engine.train import resume

        return resume(args.run_folder, printer, stop, share_device=args.share_device)

    return _drive(start, args.stop_reason_file)


def _under_torchrun() -> bool:
    from .engine.distributed import launched_by_torchrun

    return launched_by_torchrun()


def _launch(nproc: int, ftui_args: list[str], runs_root: Path | None = None, run_dir: Path | None = None) -> int:
    """Train on nproc processes: torchrun as a child of this process, which waits for it and passes signals on.

    Rank 0 shows the run (its output is this terminal's). This process closes the run as failed
    when rank 0 could not (it was killed), and exits with the code a single-process run would.
    """
    from .engine.launcher import Launch, close_abandoned, find_run, supervise
    from .engine.runs import RunFolder, run_state

    with Launch(nproc, ftui_args) as launch:
        status, signals = supervise(launch)
        found = run_dir or (find_run(runs_root, launch.id) if runs_root is not None else None)
        if found is None:  # set-up refused (rank 0 said why), or stopped before a run folder existed
            return exit_code_for_signal(signals[0]) if signals else (EXIT_OK if status == 0 else EXIT_USAGE)
        failures = launch.failure().replace("\n", "; ")  # what torchrun said of processes that failed
    closed = close_abandoned(found, failures or f"torchrun exited with status {status}")
    if closed is not None:
        err.print(f"[red]failed:[/] {_markup_safe(closed)}")
        out.print(f"run folder: {_markup_safe(found)}")
        return EXIT_FAILED
    state, _reason = run_state(RunFolder(found).read_status())
    if state == "finished":
        return EXIT_OK
    if state == "stopped":
        return exit_code_for_signal(signals[0] if signals else signal.SIGTERM)
    if failures:  # rank 0 said what it saw; torchrun knows which process went
        err.print(f"torchrun: {_markup_safe(failures)}")
    return EXIT_FAILED


def _markup_safe(value: object) -> str:
    """Text from anywhere (messages quote files and names) inside rich markup: escaped, controls visible."""
    return escape(visible(str(value)))


def cmd_queue_run(args) -> int:
    from .queue_runner import main as run_queue

    return run_queue(args.runs)


def cmd_inspect(args) -> int:
    from .engine.checkpoints import read_checkpoint

    info = read_checkpoint(Path(args.checkpoint))
    exp, m = info.experiment, info.metrics

    def line(*parts) -> None:  # file contents as plain text: no markup, no control characters
        out.print(Text.assemble(*parts), soft_wrap=True)

    line((plain_line(info.path), "bold"), f"  ({info.kind} checkpoint, epoch {info.epoch + 1} of {exp.get('epochs')})")
    line(
        f"experiment: {plain_line(exp.get('name'))}  model: {plain_line(exp.get('model'))}  "
        f"input: {exp.get('input_size')}  dataset: {exp.get('dataset')} ({len(info.classes)} classes)"
    )
    if m:
        line(
            f"test accuracy {m.get('test_acc', float('nan')):.2f}%  test loss {m.get('test_loss', float('nan')):.4f}  "
            f"train loss {m.get('train_loss', float('nan')):.4f}"
        )
    line(f"trained units: {plain_line(', '.join(info.trainable_units) or 'none')}")
    if info.lora_base is not None:
        _inspect_lora(info, line)
    line("versions: " + plain_line(", ".join(f"{k} {v}" for k, v in info.versions.items())))
    table = Table(header_style="bold", box=None)
    for col in ("tensor", "shape", "dtype", "unit", "state"):
        table.add_column(col)
    for t in info.tensors:
        cells = (t.name, "x".join(map(str, t.shape)) or "scalar", t.dtype, t.unit, "trained" if t.trained else "frozen")
        table.add_row(*(Text(plain_line(c)) for c in cells))
    out.print(table)
    out.print(f"{len(info.tensors)} tensors, {param_count(info.param_count)} values")
    return EXIT_OK


def _inspect_lora(info, line) -> None:
    line(plain_line(info.adapters()))
    line(
        f"base weights (not in this file): {plain_line(info.lora_base['weights'])}  "
        f"sha256 {plain_line(info.lora_base['sha256'][:16])}…"
    )


def cmd_export(args) -> int:
    from .engine.export import export_merged, export_peft

    source, target = Path(args.checkpoint), Path(args.merged or args.peft)
    if target.exists() and not args.force:
        raise FtuiError(f"{target} already exists; choose another name, or add --force to replace it.")
    if args.merged:
        count = export_merged(source, target)
        out.print(
            f"wrote {_markup_safe(target)}: the whole model with its LoRA updates merged "
            f"({param_count(count)} values), under torchvision's names"
        )
    else:
        carried = export_peft(source, target)
        whole = f"; carried whole: {_markup_safe(', '.join(carried))}" if carried else ""
        out.print(f"wrote {_markup_safe(target)}: PEFT adapter_config.json + adapter_model.safetensors{whole}")
    return EXIT_OK


def cmd_eval(args) -> int:
    from .engine.evaluation import evaluate_checkpoint

    if args.max_images is not None and args.max_images < 0:
        raise FtuiError(
            f"--max-images {args.max_images}: give a number of test images, or 0 for all of them "
            "(without it, the experiment's own max_test_images)."
        )
    path = Path(args.checkpoint)
    started = time.monotonic()
    result, exp = evaluate_checkpoint(path, args.device or "auto", args.max_images)
    out.print(
        f"{_markup_safe(args.checkpoint)}: test accuracy [bold]{result.accuracy:.2f}%[/] "
        f"(loss {result.loss:.4f}) on {result.images} {exp.dataset} test images in {time.monotonic() - started:.1f}s"
    )
    return EXIT_OK


def run_tui(args) -> int:
    from .tui import workbench

    return workbench.main(args.catalog, args.runs)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ftui",
        description="Fine-tune ImageNet-pretrained vision models from the terminal. "
        "With no command, ftui opens the terminal workbench.",
    )
    _catalog_and_runs(p, DEFAULT_CATALOG, DEFAULT_RUNS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ls = sub.add_parser("list", help="list the experiments of the catalog")
    _catalog_and_runs(ls)
    ls.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="train an experiment of the catalog")
    run.add_argument("name", nargs="?", help="an experiment of the catalog")
    _catalog_and_runs(run)
    run.add_argument(
        "--experiment-json",
        metavar="FILE",
        help="train the resolved experiment in FILE (JSON, as a run folder's experiment.json) instead of NAME",
    )
    run.add_argument(
        "--all",
        metavar="PREFIX",
        help="train every experiment whose name starts with PREFIX, one after another, each run:NAME base "
        "first (--all mini- is the report in miniature)",
    )
    run.add_argument(
        "--skip-finished",
        action="store_true",
        help="with --all: leave out the experiments that already have a finished run (continue a stopped study)",
    )
    run.add_argument("--epochs", type=int, help="override the experiment's epochs")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    run.add_argument("--share-device", action="store_true", help="train even if another ftui run holds the device")
    _stop_reason_file(run)
    _nproc(run, "processes to train on (starts torchrun); default: the experiment's nproc")
    run.set_defaults(func=cmd_run)

    ins = sub.add_parser("inspect", help="show a checkpoint's metadata and tensors")
    ins.add_argument("checkpoint")
    ins.set_defaults(func=cmd_inspect)

    ev = sub.add_parser("eval", help="test accuracy of a checkpoint")
    ev.add_argument("checkpoint")
    ev.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    ev.add_argument(
        "--max-images",
        type=int,
        help="evaluate on the first N test images; 0: all of them (default: the experiment's max_test_images)",
    )
    ev.set_defaults(func=cmd_eval)

    exp_ = sub.add_parser("export", help="write a checkpoint for use without ftui: merged model or PEFT adapter")
    exp_.add_argument("checkpoint")
    where = exp_.add_mutually_exclusive_group(required=True)
    where.add_argument("--merged", metavar="OUT", help="the whole model, LoRA merged in, as one .safetensors file")
    where.add_argument("--peft", metavar="DIR", help="PEFT's adapter folder, for PeftModel.from_pretrained")
    exp_.add_argument("--force", action="store_true", help="replace OUT or DIR if it exists")
    exp_.set_defaults(func=cmd_export)

    res = sub.add_parser("resume", help="continue a stopped run to its planned end")
    res.add_argument("run_folder")
    res.add_argument("--share-device", action="store_true", help="train even if another ftui run holds the device")
    _stop_reason_file(res)
    _nproc(res, "processes to resume on: the number the run was trained on (the default)")
    res.set_defaults(func=cmd_resume)

    # Hidden (no help): the workbench starts it, detached, to work through the queue (queue_runner.py).
    qr = sub.add_parser("queue-run")
    qr.add_argument("--runs", default=argparse.SUPPRESS)
    qr.set_defaults(func=cmd_queue_run)
    return p


def _stop_reason_file(parser: argparse.ArgumentParser) -> None:
    """Hidden: the workbench, which starts every run as a child process, says here why it stops one."""
    parser.add_argument("--stop-reason-file", help=argparse.SUPPRESS)


def _nproc(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--nproc", type=_positive, metavar="N", help=help)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give at least 1 process")
    return value


def _catalog_and_runs(parser: argparse.ArgumentParser, catalog=argparse.SUPPRESS, runs=argparse.SUPPRESS) -> None:
    """--catalog and --runs, before the command (ftui --catalog C list) or after it (ftui list --catalog C).

    The top-level parser holds the defaults; a command's copies default to nothing, so that
    they never overwrite a value given before the command.
    """
    parser.add_argument("--catalog", default=catalog, help="catalog file (default: ./experiments.toml)")
    parser.add_argument("--runs", default=runs, help="folder of run folders (default: ./checkpoints)")


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
        err.print(f"[red]error:[/] {_markup_safe(exc)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("aborted.")
        return exit_code_for_signal(signal.SIGINT)
    except Exception as exc:
        err.print(
            f"[red]ftui hit an internal error:[/] {_markup_safe(repr(exc))}\nDetails were written to {_crash_log()}; "
            "please report it."
        )
        return EXIT_INTERNAL


def entry() -> None:
    sys.exit(main())
