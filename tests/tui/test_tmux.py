"""ftui driven in a real terminal (tmux, 80x24) as a person would: keys in, screen text out.

catalog -> editor (head only) -> launch -> the run finishes -> runs -> checkpoint;
launch -> quit, leaving it training -> the terminal closes -> a new ftui shows it live -> it finishes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tui.conftest import CATALOG, HOOKS

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


class Terminal:
    def __init__(self, session: str):
        self.session = session

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.session, key)
            time.sleep(0.15)

    def wait_for(self, *texts: str, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts):
                return screen
            time.sleep(0.1)
        pytest.fail(f"{texts} never appeared on the screen:\n{self.screen()}")


@pytest.fixture
def terminal(tmp_path):
    (tmp_path / "experiments.toml").write_text(CATALOG)
    term = Terminal(f"ftui-test-{os.getpid()}")
    # The shell stays after ftui ends, so what ftui left on the terminal can be read.
    term.tmux("new-session", "-d", "-s", term.session, "-x", "80", "-y", "24", ftui_command(tmp_path))
    yield term
    term.tmux("kill-session", "-t", term.session)


def ftui_command(folder: Path, env: str = "") -> str:
    """ftui in folder, then the shell stays, so what ftui left on the terminal can be read.

    PYTHONPATH: this checkout's ftui, whatever the tmux server's environment holds.
    """
    return (
        f"cd {folder} && PYTHONPATH={REPO} {env} {sys.executable} -m ftui --runs {folder / 'checkpoints'}; "
        "echo ftui exited $?; sleep 60"
    )


def test_catalog_editor_launch_finish_checkpoints(terminal, tmp_path):
    terminal.wait_for("tiny-fc", "Launch")  # the catalog
    terminal.keys("Enter")
    terminal.wait_for("edit tiny", "trainable 11.17M")  # the editor on the first entry
    terminal.keys("h")  # only the head trains
    terminal.wait_for("trainable 5.1k of 11.17M")
    terminal.keys("l")
    screen = terminal.wait_for("finished", "best")  # the run screen, once the run ended
    assert "tiny · cpu" in screen and "epoch 2: test acc" in screen
    terminal.keys("r")
    terminal.wait_for("finished", "Curves")  # the runs screen
    terminal.keys("i")
    terminal.wait_for("conv1.weight", "frozen")  # the checkpoint's tensor table, in unit order
    terminal.keys("C-End")  # the head is the last unit
    screen = terminal.wait_for("fc.weight", "trained")
    terminal.keys("C-q")
    after = terminal.wait_for("ftui exited 0")
    # Nothing but the shell's line: no traceback, no report from a library at exit.
    assert [line for line in after.splitlines() if line.strip()] == ["ftui exited 0"], after

    (run,) = (tmp_path / "checkpoints").glob("tiny-*")
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert json.loads((run / "experiment.json").read_text())["trainable"] == ["fc"]


def test_leave_it_training_quit_close_the_terminal_reopen_and_see_it_finish(tmp_path):
    (tmp_path / "experiments.toml").write_text(CATALOG)
    gate = tmp_path / "gate"  # the run waits there after its first epoch (tests/child_hooks)
    gate.mkdir()
    hooks = f"PYTHONPATH={HOOKS}:{REPO} FTUI_TEST_GATE={gate}"
    first, second = Terminal(f"ftui-leave-{os.getpid()}"), Terminal(f"ftui-reopen-{os.getpid()}")
    try:
        first.tmux("new-session", "-d", "-s", first.session, "-x", "80", "-y", "24", ftui_command(tmp_path, hooks))
        first.wait_for("tiny-fc", "Launch")
        first.keys("l")
        first.wait_for("tiny · cpu", "running", "epoch 1: test acc")  # the gate holds it after epoch 1
        first.keys("q")
        dialog = first.wait_for("Stop it and quit", "Leave it training and quit", "Cancel")
        first.keys("l")
        after = first.wait_for("ftui exited 0")
        (run_dir,) = (tmp_path / "checkpoints").glob("tiny-*")
        status = json.loads((run_dir / "status.json").read_text())
        child = status["pid"]
        text = "".join(after.splitlines())
        assert f"tiny goes on training in its own process ({child}); closing ftui did not stop it." in text, after
        assert "`ftui` shows it live again (v)" in text and "Traceback" not in text, after
        first.tmux("kill-session", "-t", first.session)  # the terminal closes, as an SSH session would
        assert status["state"] == "running" and os.kill(child, 0) is None  # still there, still training

        second.tmux("new-session", "-d", "-s", second.session, "-x", "80", "-y", "24", ftui_command(tmp_path))
        second.wait_for("tiny-fc", "Launch")
        second.keys("v")  # the run of another process, live
        second.wait_for("tiny · cpu", "· running", "epoch 1: test acc")
        (gate / "go").touch()
        shown = second.wait_for("· finished", "epoch 2: test acc")
        assert "could not" not in shown and "Traceback" not in shown, shown
        assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    finally:
        (gate / "go").touch()
        for term in (first, second):
            term.tmux("kill-session", "-t", term.session)
    assert "is still training" in dialog


def test_queue_three_runs_quit_leaving_them_reopen_and_see_the_queue_progress(tmp_path):
    from tests.tui.conftest import stop_queue_runner

    (tmp_path / "experiments.toml").write_text(CATALOG)
    gate = tmp_path / "gate"  # each run waits there after its first epoch, until the test opens it
    gate.mkdir()
    hooks = f"PYTHONPATH={HOOKS}:{REPO} FTUI_TEST_GATE={gate}"
    first, second = Terminal(f"ftui-queue-{os.getpid()}"), Terminal(f"ftui-queue-again-{os.getpid()}")
    try:
        first.tmux("new-session", "-d", "-s", first.session, "-x", "80", "-y", "24", ftui_command(tmp_path, hooks))
        first.wait_for("tiny-fc", "Launch")
        first.keys("Space", "Space", "a")  # tiny and tiny-fc marked, then queued
        first.keys("Up", "Up", "a")  # and tiny once more
        first.wait_for("Queue: 3", "1. tiny - training", "2. tiny-fc - next", "3. tiny - waiting")
        first.keys("q")  # nothing of this session trains: no question
        after = "".join(first.wait_for("ftui exited 0").splitlines())
        assert "The queue goes on: 3 runs, one after another, in the queue runner's own process" in after, after
        first.tmux("kill-session", "-t", first.session)  # the terminal closes, as an SSH session would

        second.tmux("new-session", "-d", "-s", second.session, "-x", "80", "-y", "24", ftui_command(tmp_path))
        second.wait_for("tiny-fc", "Launch", "Queue: 3", "1. tiny - training")
        (gate / "go").touch()
        second.wait_for("Queue: 2 · last: tiny finished", "1. tiny-fc - training")
        second.keys("u")
        screen = second.wait_for("added/ended", "The queue is empty")  # all three have run: how each ended
        done = [line.split()[1] for line in screen.splitlines() if "finished, best" in line]
        assert done == ["tiny", "tiny-fc", "tiny"] and "Traceback" not in screen, screen  # newest first
    finally:
        (gate / "go").touch()
        for term in (first, second):
            term.tmux("kill-session", "-t", term.session)
        stop_queue_runner(tmp_path / "checkpoints")


def test_first_contact_offline_with_the_shipped_catalog(tmp_path):
    """A new user's first launch of a Table 1 row on a machine without CIFAR-10 or the ImageNet weights."""
    shutil.copy(REPO / "experiments.toml", tmp_path / "experiments.toml")
    env = f"FTUI_DATA_DIR={tmp_path / 'no-data'} TORCH_HOME={tmp_path / 'no-torch-home'} FTUI_TEST_OFFLINE=1"
    hooks = f"PYTHONPATH={HOOKS}:{REPO} {env}"
    term = Terminal(f"ftui-first-{os.getpid()}")
    try:
        term.tmux("new-session", "-d", "-s", term.session, "-x", "80", "-y", "24", ftui_command(tmp_path, hooks))
        term.wait_for("quickstart", "resnet18-fc", "Launch")
        term.keys("Down", "Down", "Down", "l")  # resnet18-fc: full CIFAR-10 and ImageNet weights
        # The footer is redrawn a frame after the title (Textual recomposes it on the next refresh):
        # wait for it to begin with "esc Back", then nothing on the screen may offer a stop.
        shown = term.wait_for("could not start", "Nothing was trained", "\n esc Back")
        assert "Traceback" not in shown and "s Stop run" not in shown, shown
        term.keys("s")  # once crashed the app
        term.keys("Escape")
        term.wait_for("quickstart", "Launch")
        term.keys("C-q")
        after = term.wait_for("ftui exited 0")
        assert "Traceback" not in after, after
    finally:
        term.tmux("kill-session", "-t", term.session)
    assert not [p for p in (tmp_path / "checkpoints").glob("*") if not p.name.startswith(".")]  # no run folder


def test_a_resume_from_the_cli_is_seen_live_by_an_open_run_screen(tmp_path):
    (tmp_path / "experiments.toml").write_text(CATALOG)
    runs = tmp_path / "checkpoints"
    # A run stopped by Ctrl-C after its first epoch, as a person leaves one; the gate holds it there.
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{HOOKS}:{REPO}", "FTUI_TEST_GATE": str(gate)}
    cli = subprocess.Popen(
        [sys.executable, "-m", "ftui", "run", "tiny", "--runs", str(runs), "--epochs", "3"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    term = Terminal(f"ftui-resume-{os.getpid()}")
    try:
        deadline = time.monotonic() + 300
        while not (gate / "paused").exists():  # its first epoch is saved; it waits at the gate
            assert time.monotonic() < deadline and cli.poll() is None
            time.sleep(0.1)
        cli.send_signal(2)  # Ctrl-C: stopped after its current step
        (gate / "go").touch()
        assert cli.wait(300) == 130
        (run_dir,) = runs.glob("tiny-*")

        term.tmux("new-session", "-d", "-s", term.session, "-x", "80", "-y", "24", ftui_command(tmp_path))
        term.wait_for("tiny-fc", "Launch")
        term.keys("r")
        term.wait_for("stopped", "Curves")
        term.keys("Enter")  # the stopped run's screen, left open
        term.wait_for("tiny · cpu", "· stopped")
        resumed = subprocess.run(
            [sys.executable, "-m", "ftui", "resume", str(run_dir)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        # seen by the open screen: the run's end, and the plots' mark where the resume began
        shown = term.wait_for("· finished", "epoch 3: test acc", "│resume")
        assert "Traceback" not in shown, shown
    finally:
        (gate / "go").touch()
        if cli.poll() is None:
            cli.kill()
        term.tmux("kill-session", "-t", term.session)
