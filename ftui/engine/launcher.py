"""Starting a run's processes: torchrun as a child of ftui, in its own process group, never left behind.

``ftui run NAME --nproc N`` (and the workbench, which must never train in its own process) start
torchrun with ``launch_command`` and watch it with a ``Launch``: a stop is a signal to torchrun's
process group, which torchrun passes to every worker (each stops cleanly after its step, the run
folder says "stopped"); if they have not ended after a bounded wait, everything left of the tree is
killed. torchrun's workers run in sessions of their own, so the tree is found by walking /proc,
before anything is killed. Once torchrun has ended, a run its rank 0 could not close (it was
killed) is closed here as failed, with what torchrun said about its processes.

Nothing here imports torch: the process that starts a run does not train.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from . import events as ev
from .runs import METRICS, STATUS, MetricsLog, RunFolder, now_iso, process_alive

LAUNCH_ID_ENV = "FTUI_LAUNCH_ID"  # rank 0 writes it into status.json: how a launcher finds the run it started
REPORT_ENV = "FTUI_LAUNCH_REPORT"  # where ftui.engine.torchrun writes what became of the processes
PARENT_ENV = "FTUI_LAUNCHER_PID"  # torchrun stops the run if this process goes away
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 60.0  # from a stop to SIGKILL of what is left; torchrun's own wait for its workers is 30 s
POLL_SECONDS = 0.1


def launch_command(nproc: int, ftui_args: Sequence[str]) -> list[str]:
    """The command that trains ``ftui ARGS`` on nproc processes of this machine: torchrun, as ftui runs it.

    ``python -m ftui.engine.torchrun`` is torch's torchrun (its main function, the same arguments)
    that ends without a traceback when it is stopped (see that module).
    """
    return [
        sys.executable,
        "-m",
        "ftui.engine.torchrun",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "ftui",
        *ftui_args,
    ]


def launch_env(nproc: int, launch_id: str, report: Path) -> dict[str, str]:
    env = dict(os.environ)
    # torchrun sets 1 thread per process when nothing is set; N CPU processes share the cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    env.update({LAUNCH_ID_ENV: launch_id, REPORT_ENV: str(report), PARENT_ENV: str(os.getpid())})
    return env


class Launch:
    """torchrun started as a child in its own process group, with every process under it."""

    def __init__(self, nproc: int, ftui_args: Sequence[str], cwd: Path | None = None):
        self.id = uuid.uuid4().hex
        handle, name = tempfile.mkstemp(prefix="ftui-launch-", suffix=".txt")
        os.close(handle)
        self.report = Path(name)
        # Its own process group: a Ctrl-C in the terminal reaches ftui alone, which passes it on once.
        self.proc = subprocess.Popen(
            launch_command(nproc, ftui_args), env=launch_env(nproc, self.id, self.report), cwd=cwd, process_group=0
        )
        self.stop_sent_at: float | None = None

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # leaving early (an error in ftui itself): nothing may outlive it
            self.kill()
        self.report.unlink(missing_ok=True)

    def send(self, sig: int) -> None:
        """A signal to torchrun (which passes SIGINT, SIGTERM and SIGHUP to every worker)."""
        if self.stop_sent_at is None:
            self.stop_sent_at = time.monotonic()
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass  # it has just ended

    def kill(self) -> None:
        """SIGKILL to torchrun and every process under it (found before any is killed: orphans leave the tree)."""
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def wait(self, grace: float = GRACE_SECONDS) -> int:
        """torchrun's exit status once it has ended; everything is killed ``grace`` seconds after a stop."""
        while True:
            try:
                return self.proc.wait(POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            if self.stop_sent_at is not None and time.monotonic() - self.stop_sent_at > grace:
                self.kill()

    def failure(self) -> str:
        """What torchrun said about processes that failed (empty when none did)."""
        try:
            return self.report.read_text(encoding="utf-8").strip()
        except OSError:
            return ""


def supervise(launch: Launch, grace: float = GRACE_SECONDS) -> tuple[int, list[int]]:
    """Wait for a launch, passing SIGINT, SIGTERM and SIGHUP on to it; (torchrun's status, signals received).

    A second Ctrl-C does not wait for the processes to stop: it kills them (the single-process CLI aborts then too).
    """
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            launch.send(signum)
        elif signum == signal.SIGINT:
            launch.kill()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        return launch.wait(grace), received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def descendants(pid: int) -> list[int]:
    """Every process under pid (children, theirs, ...), from /proc; empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue  # it ended while we looked
        # The name in parentheses may hold spaces and parentheses; the fields after the last ")" do not.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def find_run(runs_root: Path, launch_id: str) -> Path | None:
    """The run folder whose rank 0 was started by this launch; None when it never made one."""
    if not runs_root.is_dir():
        return None
    for path in sorted(runs_root.iterdir(), key=lambda p: p.name, reverse=True):
        if (path / STATUS).is_file():
            try:
                if RunFolder(path).read_status().get("launch") == launch_id:
                    return path
            except Exception:  # a folder being written or damaged is not the one we look for
                continue
    return None


def close_abandoned(run_dir: Path, why: str) -> str | None:
    """Close a run whose status still says running while its process is gone: failed, saying why; its reason or None.

    The launcher does it once torchrun has ended: rank 0 closes the run itself unless it was killed.
    """
    folder = RunFolder(run_dir)
    status = folder.read_status()
    if status.get("state") != "running" or process_alive(status):
        return None
    reason = (
        f"The run's processes ended without closing it ({why}). Its last completed epoch's checkpoint is intact; "
        f"continue with: ftui resume {run_dir}"
    )
    ending = ev.Failed(run_dir, reason, int(status.get("epochs_done") or 0), now_iso())
    log = MetricsLog(folder.file(METRICS))
    try:
        log.append(ending)
    finally:
        log.close()
    folder.write_status("failed", ended_at=ending.time, reason=reason)
    return reason
