"""A run's training as a child process of the workbench: how it is started, signalled, and how it ended.

The workbench never trains in its own process. Each launch starts the same command a person
would type (`ftui run ...`, `ftui resume ...`), in a new session: its own process group, no
controlling terminal. So a hang-up of the workbench's terminal never reaches it, quitting the
workbench need not stop it, and the UI's thread and GIL never slow a step. Its stdout and stderr
go to a log file; everything else the workbench knows about the run it reads from the run folder,
as it reads any other run.

`training_command` is the one place the command line is built: a multi-process launcher
(torchrun) replaces its prefix and keeps the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# What the child writes, in its run folder once it has one. A resume appends to it.
OUTPUT_LOG = "output.log"
# Wide enough that rich never wraps a message in the log: a reason is read back as one line.
LOG_COLUMNS = "4000"


def training_command(args: Sequence[str]) -> list[str]:
    """The command that trains: ``python -P -m ftui ARGS`` (ARGS: ``run ...`` or ``resume ...``).

    -P: the child's current folder (the workbench's) is not put on its import path, so a folder
    named ftui there cannot stand in for this ftui (child_environment puts this one first).
    """
    return [sys.executable, "-P", "-m", "ftui", *args]


def child_environment() -> dict[str, str]:
    """The workbench's environment, with this very ftui first on the path: the child runs the same code."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the folder that holds this ftui package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # the log's last lines are current when the child dies
    env["COLUMNS"] = LOG_COLUMNS
    return env


def ending_text(returncode: int) -> str:
    """How a process ended, in words: "exited with code 1", "was killed by SIGKILL"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def log_tail(path: Path, lines: int = 3) -> str:
    """The last non-empty lines of a log, joined on one line; "" if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " / ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


STATED = ("error:", "failed:", "ftui hit an internal error")


def stated_reason(path: Path) -> str | None:
    """The message the child printed when it refused or failed (the CLI's "error: ..." or "failed: ...")."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for n in range(len(lines) - 1, -1, -1):
        if lines[n].startswith(STATED):
            first = lines[n].split(":", 1)[1].strip() if not lines[n].startswith(STATED[2]) else lines[n]
            return " ".join([first, *(line.strip() for line in lines[n + 1 :] if line.strip())])
    return None


class TrainingProcess:
    """One child process: started with its output to a log, stopped by signals to its whole group."""

    def __init__(self, args: Sequence[str], log: Path):
        self.log = log
        with open(log, "ab") as out:  # the child keeps its own descriptor; ours closes at once
            self.popen = subprocess.Popen(
                training_command(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group: SIGHUP of our terminal misses it
                env=child_environment(),
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None) -> int | None:
        """Its exit status once it has ended, or None if it is still going after timeout seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig: int) -> None:
        """Send sig to its process group (a multi-process launcher's workers included), while it lives."""
        if self.popen.poll() is not None:
            return  # reaped: its number may belong to another process by now
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
