"""`ftui queue-run --runs DIR` (hidden): work through the runs folder's queue, one run at a time, then exit.

The workbench starts it, detached (its own session), when the queue gets an entry and no
runner is alive; quitting the workbench leaves it going. It trains each entry exactly as the
workbench launches a run: the same command (`ftui run --experiment-json FILE`, `ftui resume
RUN`) as a child process of its own session, through tui/training_process.py (which imports no
Textual). It waits while another process trains in the same runs folder (a run launched from
the workbench directly), so only one run uses the device at a time.

A stop of the current run (s on its run screen: SIGTERM to its process) ends that run only; the
runner goes on with the next entry. Pausing the queue (the queue screen's p) lets the current
run finish and starts nothing more; the runner then exits, and unpausing starts a new one.
SIGTERM or SIGINT to the runner stops its current run after its step and ends the runner,
leaving the rest of the queue as it is.

A runner that dies without a word (SIGKILL, the machine goes down) leaves its entry first in the
queue, with the pid of the run it started: the next runner resumes that run from its last
checkpoint, in its folder, rather than training it again from the start (or, if the run's process
outlived the runner and ended it, records how it ended).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .engine.atomic import atomic_write_text
from .engine.queue import RESUME, RUN, RUNNER_LOG, QueueEntry, RunnerLock, RunQueue, runner_pid
from .engine.runs import INTERRUPTED, LAST, RunFolder, RunSummary, list_runs, now_iso, run_state
from .errors import EXIT_USAGE, RunError
from .tui.training_process import (
    OUTPUT_LOG,
    TrainingProcess,
    child_environment,
    ending_text,
    stated_reason,
    training_command,
)

LAUNCH_DIR = ".launch"  # the workbench's hand-over folder (tui/run_controller.py), shared
WAIT_SECONDS = 1.0  # how often a waiting runner looks again (another run training, its child running)


def start_runner(runs_root: Path) -> int | None:
    """Start a detached runner for runs_root unless one is alive; its pid, or None if one was running."""
    if runner_pid(runs_root) is not None:
        return None
    runs_root.mkdir(parents=True, exist_ok=True)
    with open(runs_root / RUNNER_LOG, "ab") as log:
        process = subprocess.Popen(
            training_command(["queue-run", "--runs", str(runs_root)]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # like a training process: the terminal's hang-up never reaches it
            env=child_environment(),
        )
    return process.pid


class QueueRunner:
    def __init__(self, runs_root: Path):
        self.root = Path(runs_root)
        self.queue = RunQueue(self.root)
        self.lock = RunnerLock(self.root)
        self.ending = threading.Event()  # SIGTERM/SIGINT to the runner
        self.child = None
        self.stop_file: Path | None = None  # the current run's --stop-reason-file

    def run(self) -> int:
        if not self.lock.acquire():
            print(f"{now_iso()} another runner works through {self.root}'s queue; this one exits.")
            return 0
        try:
            while not self.ending.is_set():
                self._wait_for_device()
                entry = self.queue.take_next(on_empty=self.lock.release)
                if entry is None:
                    return 0
                self._run(entry)
            return 0
        finally:
            self.lock.release()

    def stop(self, *_args) -> None:
        """The runner was asked to end: its current run stops after its step; the queue stays."""
        self.ending.set()
        if self.child is not None:
            try:
                if self.stop_file is not None:
                    atomic_write_text(self.stop_file, "because the queue runner was stopped")
            except OSError:
                pass  # then the run says it was stopped "by SIGTERM": still true
            self.child.signal(signal.SIGTERM)

    def _wait_for_device(self) -> None:
        """While a run trains in this folder outside the queue, start nothing (one run per device)."""
        while not self.ending.is_set() and any(r.state == "running" for r in list_runs(self.root)):
            self.ending.wait(WAIT_SECONDS)

    def _run(self, entry: QueueEntry) -> None:
        launch = self.root / LAUNCH_DIR
        launch.mkdir(parents=True, exist_ok=True)
        stem = launch / f"queue-{entry.name}-{entry.id}"
        handover = [stem.with_suffix(".json"), stem.with_suffix(".stop")]
        self.stop_file = handover[1]
        earlier = self._earlier_run(entry, stem.with_suffix(".log"))
        if earlier is not None and earlier.state != INTERRUPTED:
            # Its process outlived the runner and ended the run; only the record of it is missing.
            self.queue.done(entry.id, _outcome(earlier.path, earlier.path / OUTPUT_LOG, 0), earlier.path)
            _remove(handover)
            return
        if earlier is not None and (earlier.path / LAST).exists():  # killed with the runner: it goes on from there
            said = f"{entry.name} was interrupted with an earlier runner; resuming {earlier.path}"
            print(f"{now_iso()} {said}", flush=True)
            args, run_dir = ["resume", str(earlier.path)], earlier.path
        elif entry.kind == RESUME:
            args, run_dir = ["resume", str(entry.run_dir)], Path(str(entry.run_dir))
        else:
            atomic_write_text(handover[0], json.dumps(entry.experiment, indent=2) + "\n")
            args, run_dir = ["run", "--experiment-json", str(handover[0]), "--runs", str(self.root)], None
        print(f"{now_iso()} starting {entry.kind} {entry.name} ({entry.id})", flush=True)
        before = {p.name for p in self.root.iterdir()}
        log = run_dir / OUTPUT_LOG if run_dir is not None else stem.with_suffix(".log")
        outcome = "could not be started"
        try:
            self.child = TrainingProcess([*args, "--stop-reason-file", str(handover[1])], log)
            self.queue.set_pid(entry.id, self.child.pid)
            while self.child.wait(WAIT_SECONDS) is None:
                pass
            code = self.child.returncode or 0
            print(f"{now_iso()} {entry.name} {ending_text(code)}", flush=True)
            run_dir = run_dir or self._made_by(before, self.child.pid)
            if run_dir is not None and log.parent != run_dir:
                os.replace(log, log := run_dir / OUTPUT_LOG)  # beside the run, as for a run the workbench launched
            outcome = _outcome(run_dir if code != EXIT_USAGE else None, log, code)
        except OSError as exc:
            outcome = f"could not be started: {exc}"
        finally:
            self.child = None
            print(f"{now_iso()} {entry.name}: {outcome}", flush=True)
            self.queue.done(entry.id, outcome, run_dir)
            _remove(handover)

    def _earlier_run(self, entry: QueueEntry, its_log: Path) -> RunSummary | None:
        """The run that a runner which died (killed, the machine went down) started for this entry.

        The entry keeps the pid of the process that runner started; the run's status names its writer.
        The dead runner's log of the run (its_log) moves beside it, as the runner would have moved it.
        """
        if entry.kind != RUN or entry.pid is None:
            return None
        for run in list_runs(self.root):
            try:
                writer = RunFolder(run.path).read_status().get("pid")
            except RunError:
                continue
            if writer == entry.pid and run.experiment == entry.name:
                if its_log.exists() and not (run.path / OUTPUT_LOG).exists():
                    os.replace(its_log, run.path / OUTPUT_LOG)
                return run
        return None

    def _made_by(self, before: set[str], pid: int) -> Path | None:
        """The run folder the child made: new since it started, its status written by it."""
        for name in sorted({p.name for p in self.root.iterdir()} - before):
            try:
                writer = RunFolder(self.root / name).read_status().get("pid")
            except RunError:
                continue
            if writer == pid:
                return self.root / name
        return None


def _remove(handover: list[Path]) -> None:
    for path in handover:
        path.unlink(missing_ok=True)


def _outcome(run_dir: Path | None, log: Path, code: int) -> str:
    """How an entry ended, in the words of its run folder; one that never trained says why (its log kept)."""
    if run_dir is None:
        said = stated_reason(log) or f"its training process {ending_text(code)} (its log: {log})"
        return f"could not start: {said}"
    try:
        status = RunFolder(run_dir).read_status()
    except RunError as exc:
        return f"its run folder cannot be read: {exc}"
    state, reason = run_state(status)
    if state == INTERRUPTED:  # it says running and its process is gone: nobody else closes it
        reason = f"its training process {ending_text(code)} without closing the run; resume it"
        RunFolder(run_dir).write_status(INTERRUPTED, reason=reason, ended_at=now_iso())
    if state == "finished":
        best = status.get("best_acc")
        return "finished" + (f", best {best:.1f}%" if isinstance(best, (int, float)) else "")
    return f"{state} {reason}".strip()


def main(runs_root: str) -> int:
    runner = QueueRunner(Path(runs_root))
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    print(f"{now_iso()} queue runner {os.getpid()} for {runs_root}", flush=True)
    code = runner.run()
    sys.stdout.flush()
    return code
