"""The workbench as a process and its runs' lifecycle: a run that never started, crashes, signals, quitting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import ProgressBar, RichLog

from ftui.errors import EXIT_INTERNAL, EXIT_OK
from ftui.tui import workbench
from ftui.tui.app import FtuiApp, make_app
from ftui.tui.screens.catalog import CatalogScreen
from ftui.tui.screens.run import RunScreen
from tests.tui.conftest import hook_children
from tests.tui.test_tmux import Terminal

PATIENCE = 300.0  # a bound on waits that end on an event; generous for a loaded machine

NEVER_STARTS = {
    # Offline, with no CIFAR-10 on disk (the download is refused below).
    "no-cifar10": ('dataset = "cifar10"\ndata_dir = "data"\n', "cifar-10-python.tar.gz"),
    # A weights file chosen in the editor or the catalog that does not exist.
    "missing-weights": ('dataset = "cifar10-sample"\nweights = "nowhere/w.pth"\n', "w.pth"),
}


async def wait_until(pilot, condition, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await pilot.pause(0.05)


def shown_keys(screen) -> set[str]:
    return {
        binding.key for _node, binding, enabled, _tip in screen.active_bindings.values() if binding.show and enabled
    }


@pytest.mark.parametrize("case", list(NEVER_STARTS), ids=list(NEVER_STARTS))
async def test_a_run_that_never_started_says_why_offers_no_stop_and_nothing_crashes(tmp_path, monkeypatch, case):
    hook_children(monkeypatch, FTUI_TEST_OFFLINE="1")  # the training process's downloads fail, as offline
    settings, why = NEVER_STARTS[case]
    catalog = tmp_path / "experiments.toml"
    catalog.write_text(f'[[experiment]]\nname = "offline"\ndevice = "cpu"\n{settings}')
    app = make_app(catalog, tmp_path / "checkpoints")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_until(pilot, lambda: screen.shown_end)
        assert app.controller.failure and app.controller.run_dir is None  # never started
        assert "offline: could not start" in str(screen.query_one("#title").render())
        log = "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)
        assert why in log
        assert "try again" in str(screen.query_one("#progress-text").render())  # what to do
        assert not screen.query_one(ProgressBar).display  # no bar animating for a run that is not running
        assert not screen.query_one("#plots").display  # nor empty plot frames: the log says why
        assert "s" not in shown_keys(screen) and "escape" in shown_keys(screen)  # no "Stop run"
        await pilot.press("s")  # crashed the app with RunFolder(path=None)
        await pilot.pause()
        assert app.screen is screen and app.is_running
        await pilot.press("escape")
        assert isinstance(app.screen, CatalogScreen)
    assert not app.return_code
    runs = tmp_path / "checkpoints"
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]  # no run folder
    assert not list(runs.glob(".launch/*"))  # the launch's hand-over files and log are gone too


@pytest.fixture
def signals_restored():
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield handlers
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_a_crash_in_the_workbench_never_exits_0(tui_catalog, tui_runs, monkeypatch, signals_restored):
    def bug(self):
        raise ZeroDivisionError("a bug in a screen")

    monkeypatch.setattr(FtuiApp, "on_mount", bug)
    assert workbench.run(make_app(tui_catalog, tui_runs), headless=True) == EXIT_INTERNAL
    # and the process's signal handlers are its own again
    assert {sig: signal.getsignal(sig) for sig in signals_restored} == signals_restored


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_ends_the_workbench_with_128_plus_its_number(
    tui_catalog, tui_runs, monkeypatch, signals_restored, sig
):
    def signalled(self):
        self.call_after_refresh(os.kill, os.getpid(), sig)

    monkeypatch.setattr(FtuiApp, "on_mount", signalled)
    assert workbench.run(make_app(tui_catalog, tui_runs), headless=True) == 128 + sig


def test_quitting_the_workbench_normally_exits_0(tui_catalog, tui_runs, monkeypatch, signals_restored):
    monkeypatch.setattr(FtuiApp, "on_mount", lambda self: self.call_after_refresh(self.exit))
    assert workbench.run(make_app(tui_catalog, tui_runs), headless=True) == EXIT_OK


# -- what the terminal says after the workbench closed (tmux) ---------------------------------------

LONG = """[[experiment]]
name = "long"
dataset = "cifar10-sample"
weights = "none"
device = "cpu"
input_size = 16
cifar_stem = true
batch_size = 8
epochs = {epochs}
max_steps_per_epoch = 2
max_test_images = 32
"""


@pytest.fixture
def terminal_with_a_run(tmp_path):
    """ftui in tmux (80x24) with a run launched and one epoch saved; the shell stays to show what ftui left."""
    if subprocess.run(["which", "tmux"], capture_output=True).returncode:
        pytest.skip("needs tmux")
    term = Terminal(f"ftui-lifecycle-{os.getpid()}")
    repo = Path(__file__).resolve().parents[2]

    def start(epochs: int) -> Terminal:
        (tmp_path / "experiments.toml").write_text(LONG.format(epochs=epochs))
        # PYTHONPATH: this checkout's ftui, whatever the tmux server's environment holds.
        command = f"cd {tmp_path} && PYTHONPATH={repo} {sys.executable} -m ftui; echo ftui exited $?; sleep 120"
        term.tmux("new-session", "-d", "-s", term.session, "-x", "80", "-y", "24", command)
        term.wait_for("long", "Launch")
        term.keys("l")
        runs = tmp_path / "checkpoints"
        deadline = time.monotonic() + PATIENCE
        while not (list(runs.glob("*/last.safetensors")) if runs.exists() else []):  # an epoch is saved
            assert time.monotonic() < deadline, term.screen()
            time.sleep(0.1)
        return term

    yield start
    term.tmux("kill-session", "-t", term.session)


def the_run(tmp_path: Path) -> tuple[Path, dict]:
    (run_dir,) = (tmp_path / "checkpoints").glob("long-*")
    return run_dir, json.loads((run_dir / "status.json").read_text())


def test_stop_and_quit_says_the_run_stopped_and_where_it_is(terminal_with_a_run, tmp_path):
    term = terminal_with_a_run(epochs=200)
    term.keys("Escape", "q")  # back to the catalog, quit
    term.wait_for("Stop it and quit", "Leave it training")
    term.keys("s")
    after = term.wait_for("ftui exited")
    run_dir, status = the_run(tmp_path)
    assert status["state"] == "stopped" and status["reason"].startswith("because ftui was quit")
    text = "".join(after.splitlines())  # the terminal wraps long lines at 80 columns
    assert "goes on training" not in text and "Ctrl-C stops it" not in text, after
    assert "long stopped because ftui was quit after" in text, after
    folder = run_dir.relative_to(tmp_path)  # as given: the default ./checkpoints
    assert f"Its run folder is {folder}" in text and f"ftui resume {folder}" in text, after
    assert "ftui exited 0" in text and "Traceback" not in text, after


def test_a_dropped_terminal_closes_the_workbench_at_once_and_the_run_trains_on(terminal_with_a_run, tmp_path):
    term = terminal_with_a_run(epochs=200)  # far longer than the test: it is going on when the workbench ends
    shell = int(term.tmux("list-panes", "-t", term.session, "-F", "#{pane_pid}").strip())
    (ftui,) = map(int, Path(f"/proc/{shell}/task/{shell}/children").read_text().split())
    os.kill(ftui, signal.SIGHUP)  # what the terminal sends when the SSH session drops
    after = term.wait_for("ftui exited")
    run_dir, status = the_run(tmp_path)
    text = "".join(after.splitlines())
    folder = run_dir.relative_to(tmp_path)
    child = status["pid"]
    assert status["state"] == "running" and os.getsid(child) == child  # its own session: the hang-up missed it
    assert f"long goes on training in its own process ({child}); closing ftui did not stop it." in text, after
    assert f"Its run folder is {folder}; `ftui` shows it live again (v)" in text, after
    assert "ftui exited 129" in text and "Traceback" not in text, after  # 128 + SIGHUP
    os.kill(child, signal.SIGTERM)  # as a person would, from the shell
    deadline = time.monotonic() + PATIENCE
    while json.loads((run_dir / "status.json").read_text())["state"] == "running":
        assert time.monotonic() < deadline, "the run never stopped"
        time.sleep(0.1)
    assert json.loads((run_dir / "status.json").read_text())["reason"].startswith("by SIGTERM after ")
