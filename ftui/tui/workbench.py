"""The workbench as a process: a terminal to run in, signals, garbage collection, and what is said after it closes.

`ftui` with no command comes here (cli.py only parses and dispatches). The app
itself lives in app.py; this module owns what happens around ``app.run()``:

- no terminal (cron, ``ssh host ftui`` without -t, ``ftui </dev/null``): say so
  and exit at once, instead of an app that can never read a key;
- SIGHUP (the terminal went away): the UI closes at once and a run in progress
  goes on to its end, as when the person quits with "leave it training": it is a
  process of its own, in its own session, which the hang-up never reaches;
  SIGTERM and SIGINT (``kill -INT``; Ctrl-C typed in the terminal is a key) stop
  the run after its current step, wait for it, and close the UI;
- after the UI closed: what became of the run, in words that match its status
  (stopped, finished, failed, or going on in its own process, with its pid);
- the exit code (errors.py): 0, 128+N after signal N, EXIT_INTERNAL when the
  app crashed.
"""

from __future__ import annotations

import gc
import signal
import sys

from rich.console import Console
from rich.markup import escape

from ..errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, SIGNAL_REASONS, exit_code_for_signal
from .app import FtuiApp, make_app

err = Console(stderr=True, highlight=False)

NO_TERMINAL = (
    "The ftui workbench needs an interactive terminal, and this process has none "
    "(its input or output is not a terminal: cron, a pipe, or `ssh host ftui` without -t). "
    "To train without one, use `ftui run NAME` (`ftui list` names the experiments); "
    "over SSH, `ssh -t host ftui` opens the workbench."
)


def has_terminal() -> bool:
    """Whether keys can be read and the screen drawn: stdin, and the stream Textual draws on, are terminals."""
    streams = (sys.stdin, sys.__stderr__)
    return all(s is not None and s.isatty() for s in streams)


def main(catalog: str, runs: str) -> int:
    if not has_terminal():
        err.print(f"[red]error:[/] {escape(NO_TERMINAL)}", soft_wrap=True)
        return EXIT_USAGE
    return run(make_app(catalog, runs))


def run(app: FtuiApp, headless: bool = False) -> int:
    """Run the app to its end, then wait for a run that goes on; the exit code says how it ended."""
    ended_by: list[int] = []

    def terminal_gone(signum, _frame):
        ended_by.append(signum)
        app.leave_run_and_exit()  # nobody is there to ask; the run is not the terminal's to stop

    def terminate(signum, _frame):
        ended_by.append(signum)
        app.stop_run_and_exit(SIGNAL_REASONS[signum])

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGHUP, terminal_gone)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    # torch, torchvision and textual leave ~1M long-lived objects that every full collection walked,
    # freezing the UI (BENCHMARKS.md, section 2). Frozen, collections only walk what the app makes.
    # torch is imported after the catalog is drawn (app.py), so its objects are frozen once it is in.
    gc.freeze()
    app.after_engine_loaded = gc.freeze
    try:
        app.run(headless=headless)
    finally:
        # Frozen objects are never freed, even at exit, and triton's bindings then print a
        # "leaked instances" report into the terminal: let the exit collect them again. A torch still
        # loading when the UI closed must not freeze them again.
        app.after_engine_loaded = None
        gc.unfreeze()
        try:
            _see_the_run_out(app)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    if app.return_code:  # Textual has shown the traceback of an exception it caught
        return EXIT_INTERNAL
    return exit_code_for_signal(ended_by[0]) if ended_by else EXIT_OK


def _see_the_run_out(app: FtuiApp) -> None:
    """A run in progress when the UI closed: that it goes on (left training), or, stopped, how it ended."""
    controller = app.controller
    if controller.training and not app.stopped_run_on_exit:
        _say_it_goes_on(controller)
    elif app.stopped_run_on_exit or app.left_training:
        if controller.training:
            _say(f"Stopping {controller.experiment} after its current step…")
        controller.wait()
        _say_how_it_ended(controller)
    _hand_the_queue_over(app)


def _hand_the_queue_over(app: FtuiApp) -> None:
    """The queue goes on after the UI: its runner (started now if need be) waits for a run left training."""
    from ..engine.queue import RunQueue, runner_pid
    from ..queue_runner import start_runner

    state = RunQueue(app.runs_root).read()
    if not state.entries:
        return
    if state.paused:
        _say(f"The queue holds {len(state.entries)} runs and is paused; `ftui` shows it (u), p continues it.")
        return
    try:
        pid = start_runner(app.runs_root) or runner_pid(app.runs_root)
    except OSError as exc:
        _say(f"The queue's runner could not be started ({exc}); `ftui` starts it again.")
        return
    _say(
        f"The queue goes on: {len(state.entries)} runs, one after another, in the queue runner's own process "
        f"({pid}); `ftui` shows it again (u)."
    )


def _say_it_goes_on(controller) -> None:
    folder = controller.run_dir
    where = f"Its run folder is {folder}" if folder else f"Its run folder will be in {controller.runs_root}"
    _say(
        f"{controller.experiment} goes on training in its own process ({controller.pid}); closing ftui did not "
        f"stop it. {where}; `ftui` shows it live again (v), and s there stops it."
    )


def _say_how_it_ended(controller) -> None:
    name, result, folder = controller.experiment, controller.result, controller.run_dir
    if result is None or folder is None:  # it never started
        _say(f"{name} failed: {controller.failure}")
    elif result.status == "stopped" and result.epochs_done == 0:
        _say(
            f"{name} stopped {result.reason}, before its first epoch ended: nothing was saved to resume; "
            f"launch it again to train it. Its run folder {folder} keeps its log."
        )
    elif result.status == "stopped":
        _say(f"{name} stopped {result.reason}. Its run folder is {folder}; `ftui resume {folder}` continues it.")
    elif result.status == "finished":
        _say(f"{name} finished. Its run folder is {folder}.")
    else:
        _say(f"{name} {result.status}: {result.reason.rstrip('.')}. Its run folder is {folder}.")


def _say(message: str) -> None:
    try:
        err.print(escape(message), soft_wrap=True)
    except Exception:
        pass  # no terminal any more
