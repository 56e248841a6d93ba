"""ftui driven in a real terminal (tmux, 80x24) as a person would: keys in, screen text out.

catalog -> editor (head only) -> launch -> the run finishes -> runs -> checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.tui.conftest import CATALOG

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
    command = (
        f"cd {tmp_path} && {sys.executable} -m ftui --runs {tmp_path / 'checkpoints'}; echo ftui exited $?; sleep 60"
    )
    term.tmux("new-session", "-d", "-s", term.session, "-x", "80", "-y", "24", command)
    yield term
    term.tmux("kill-session", "-t", term.session)


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

    run = next(p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert json.loads((run / "experiment.json").read_text())["trainable"] == ["fc"]
