"""The workbench trains in a detached child process: shown live, stopped, left training on quit, seen again.

Runs launched here pause at a gate after their first epoch (tests/child_hooks), so each test
decides when a run goes on instead of racing it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ftui.engine.runs import RunFolder, process_alive
from ftui.tui.app import make_app
from ftui.tui.screens.confirm import ConfirmScreen
from ftui.tui.screens.quit import QuitScreen
from ftui.tui.screens.run import RunScreen
from tests.conftest import epoch_records
from tests.tui.conftest import without_hooks
from tests.tui.test_catalog_and_run import title_of, wait_for

PATIENCE = 300.0  # a bound on waits that end on an event; generous for a loaded machine


def progress_of(screen) -> str:
    return str(screen.query_one("#progress-text").render())


def log_of(screen) -> str:
    return "\n".join(str(line.text) for line in screen.query_one("RichLog").lines)


def status_of(run_dir: Path) -> dict:
    return RunFolder(run_dir).read_status()


def wait_until(condition, timeout: float = PATIENCE) -> None:
    """For conditions outside any app (a process, a file), once the app has closed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def reference_run(catalog: Path, runs: Path) -> Path:
    """The same experiment trained by `ftui run` in the shell (no test hooks), to its end."""
    done = subprocess.run(
        [sys.executable, "-m", "ftui", "run", "tiny", "--catalog", str(catalog), "--runs", str(runs)],
        env=without_hooks(),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    return run_dir


async def test_a_launch_trains_in_a_child_process_that_the_run_screen_shows_live(app, gate):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")  # "tiny", as the catalog has it
        live = app.screen
        assert isinstance(live, RunScreen)
        await wait_for(pilot, lambda: gate.paused, timeout=PATIENCE)  # epoch 1 of 2 is saved; the child waits
        await wait_for(pilot, lambda: "epoch 1: test acc" in log_of(live))  # read from the run folder
        assert title_of(live).endswith("· running") and "img/s" in progress_of(live)
        await wait_for(pilot, lambda: "CPU " in progress_of(live))  # the child's CPU use, from /proc
        run_dir, child = app.controller.run_dir, app.controller.pid
        assert child != os.getpid() and status_of(run_dir)["pid"] == child  # the child writes the run folder
        assert os.getsid(child) == child != os.getsid(0)  # in a session of its own: our terminal's SIGHUP misses it
        gate.open()
        await wait_for(pilot, lambda: title_of(live).endswith("· finished"), timeout=PATIENCE)
        app.controller.wait(PATIENCE)
        assert app.controller.result.status == "finished" and not app.controller.busy
    assert "run folder:" in (run_dir / "output.log").read_text()  # the child's own output, kept with the run
    assert not list(app.runs_root.glob(".launch/*"))  # the hand-over files are gone


async def test_stop_from_the_run_screen_stops_the_child_and_the_screen_says_so(app, gate):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        live = app.screen
        await wait_for(pilot, lambda: gate.paused, timeout=PATIENCE)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen) and "last completed epoch (1)" in app.screen.question
        await pilot.press("y")
        assert app.controller.stopping
        gate.open()  # the child takes the SIGTERM at its next step
        await wait_for(pilot, lambda: title_of(live).endswith("· stopped"), timeout=PATIENCE)
        app.controller.wait(PATIENCE)
        status = status_of(app.controller.run_dir)
        assert status["state"] == "stopped" and status["reason"] == "from the workbench after 1 of 2 epochs"
        await pilot.press("s")
        assert not isinstance(app.screen, ConfirmScreen)  # nothing left to stop


async def test_leave_it_training_and_quit_then_reopen_it_ends_as_an_uninterrupted_run(
    app, gate, tui_catalog, tui_runs, tmp_path
):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        await wait_for(pilot, lambda: gate.paused, timeout=PATIENCE)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        assert "Leaving it: it trains on to its end after ftui has closed" in app.screen.question
        await pilot.press("l")
    assert app.left_training and not app.stopped_run_on_exit
    run_dir, child = app.controller.run_dir, app.controller.pid
    assert process_alive(status_of(run_dir)) and status_of(run_dir)["state"] == "running"  # not stopped

    reopened = make_app(tui_catalog, tui_runs)  # a new ftui: the run is shown live, and can be stopped
    async with reopened.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("v")
        screen = reopened.screen
        assert isinstance(screen, RunScreen) and screen.run_dir == run_dir
        await wait_for(pilot, lambda: title_of(screen).endswith("· running"))
        await pilot.press("s")
        assert isinstance(reopened.screen, ConfirmScreen) and f"belongs to process {child}" in reopened.screen.question
        await pilot.press("n")  # keep it training
        gate.open()
        await wait_for(pilot, lambda: title_of(screen).endswith("· finished"), timeout=PATIENCE)

    reference = reference_run(tui_catalog, tmp_path / "reference")
    a, b = load_file(reference / "last.safetensors"), load_file(run_dir / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "the weights differ"
    assert epoch_records(reference) == epoch_records(run_dir)


async def test_enter_in_the_quit_question_cancels(app, gate):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        await wait_for(pilot, lambda: app.controller.busy)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("enter")  # the focused answer is the safe one
        assert isinstance(app.screen, RunScreen) and app.is_running and app.controller.busy
        await pilot.press("q", "escape")
        assert isinstance(app.screen, RunScreen) and not app.controller.stopping


async def test_a_two_process_run_is_launched_shown_stopped_and_leaves_no_process(tmp_path):
    from ftui.engine.launcher import descendants

    catalog = tmp_path / "two.toml"
    catalog.write_text(
        '[[experiment]]\nname = "two"\ndataset = "cifar10-sample"\nweights = "none"\ndevice = "cpu"\n'
        "input_size = 16\ncifar_stem = true\nbatch_size = 8\nmax_steps_per_epoch = 2\nmax_test_images = 16\n"
        "epochs = 200\nnproc = 2\n"
    )
    app = make_app(catalog, tmp_path / "checkpoints")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        live = app.screen
        assert isinstance(live, RunScreen)
        await wait_for(pilot, lambda: app.controller.run_dir is not None, timeout=PATIENCE)
        run_dir = app.controller.run_dir
        await wait_for(pilot, lambda: status_of(run_dir).get("epochs_done", 0) >= 1, timeout=PATIENCE)
        await wait_for(pilot, lambda: "epoch 1: test acc" in log_of(live))  # live, from the run folder
        workers = descendants(app.controller.pid)  # ftui's launcher below the child: torchrun and its 2 ranks
        assert len(workers) >= 3 and status_of(run_dir)["pid"] in workers
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: title_of(live).endswith("· stopped"), timeout=PATIENCE)
        app.controller.wait(PATIENCE)
    assert status_of(run_dir)["state"] == "stopped"
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers))  # no worker left behind
