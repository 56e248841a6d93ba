"""A run's state comes from its folder: every screen follows a stop and a resume, whoever made them."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog

from ftui.engine import events as ev
from ftui.engine.runs import ISO_FORMAT, RunFolder
from ftui.tui.app import LIVE_RUN
from ftui.tui.screens.confirm import ConfirmScreen
from ftui.tui.screens.run import RunScreen
from ftui.tui.screens.runs import RunsScreen
from tests.tui.test_catalog_and_run import fake_run, title_of, wait_for


@pytest.fixture
def other_process():
    """A live process that stands for another ftui or the CLI: a status.json with its pid reads as running."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc.pid
    proc.stdin.close()
    proc.wait(30)


def iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).strftime(ISO_FORMAT)


def resume_elsewhere(path: Path, pid: int, start_epoch: int) -> None:
    """What `ftui resume` in another process does to a run folder: rewrite the log, say running, go on."""
    folder = RunFolder(path)
    folder.keep_events(lambda e: not isinstance(e, ev.Step | ev.EpochEnd) or e.epoch < start_epoch)
    folder.write_status("running", resumed_at=iso(30), reason="")
    status = folder.read_status()
    (path / "status.json").write_text(json.dumps({**status, "pid": pid, "host": socket.gethostname()}))
    started = ev.RunStarted(path, "tiny", "cpu", 11_173_962, 11_173_962, (), 3, start_epoch, 4, 128, 512, 256, iso(30))
    step = ev.Step(start_epoch, 0, start_epoch * 4, (1.2, 1.1), 0.05, 321.0)
    with open(path / "metrics.jsonl", "a") as f:
        f.write("".join(json.dumps(ev.to_record(e)) + "\n" for e in (started, step)))


def log_text(screen) -> str:
    return "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)


async def test_an_open_run_screen_follows_a_resume_by_another_process(app, tui_runs, other_process):
    path = fake_run(tui_runs, state="stopped", epochs=2)  # 2 of 3 epochs, 125 s recorded
    lines = (path / "metrics.jsonl").read_text().splitlines(keepends=True)
    partial = json.dumps(ev.to_record(ev.Step(2, 0, 8, (9.0, 9.0, 9.0), 0.05, 200.0))) + "\n"
    (path / "metrics.jsonl").write_text("".join([*lines[:-1], partial, lines[-1]]))  # stopped within epoch 3
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_run(path)
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: title_of(screen).endswith("· stopped"))
        resume_elsewhere(path, other_process, start_epoch=2)
        await wait_for(pilot, lambda: title_of(screen).endswith("· running"), timeout=5)
        progress = str(screen.query_one("#progress-text").render())
        assert "321 img/s" in progress and "ETA" in progress
        assert "elapsed 2m" in progress  # the 125 s before the resume count, not only the 30 s since
        assert "── resumed at epoch 3" in log_text(screen)
        assert [e.test_acc for e in screen.history.epochs] == [31.5, 42.25] and screen.history.resumes == [2]
        # One continuous history: 2 epochs, then the resumed steps; the dropped partial epoch is gone.
        assert len(screen.history.loss) == 8 + 2 and max(screen.history.loss.points()[1]) < 9
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)  # ask the other process to stop
        assert f"belongs to process {other_process}" in app.screen.question


async def test_the_live_screen_shows_the_resumed_run_after_stop_and_resume_from_runs(app):
    """The steps of the issue: launch, stop, r, resume (r), back to the catalog, v."""
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.launch(dataclasses.replace(app.catalog.get("tiny-fc"), epochs=500))  # far longer than the test
        await pilot.pause()
        live = app.screen
        await wait_for(pilot, lambda: live.history.epochs != [])  # a checkpoint to resume from
        await pilot.press("s", "y")
        app.controller.wait(60)
        await wait_for(pilot, lambda: title_of(live).endswith("· stopped"), timeout=5)
        await pilot.press("r")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("r")  # resume the stopped run: a new live screen opens on it
        await wait_for(pilot, lambda: app.controller.busy and app.controller.run_dir is not None)
        while app.screen_stack[-1] is not app.screen_stack[1]:  # back to the catalog
            await pilot.press("escape")
        await pilot.press("v")
        shown = app.screen
        assert shown is app.get_screen(LIVE_RUN)
        await wait_for(
            pilot,
            lambda: title_of(shown).endswith("· running") and "ETA" in str(shown.query_one("#progress-text").render()),
            timeout=30,
        )
        # status.json says running before the resumed run's first event is in its log: wait for the mark too
        await wait_for(pilot, lambda: "── resumed at epoch" in log_text(shown), timeout=30)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)  # it is running: stopping it is right
        await pilot.press("y")
        app.controller.wait(60)
        await wait_for(pilot, lambda: title_of(shown).endswith("· stopped"), timeout=5)
        await pilot.press("s")
        assert not isinstance(app.screen, ConfirmScreen)  # stopped: nothing to stop


async def test_the_time_of_a_resumed_run_goes_on_in_the_runs_table(app, tui_runs, other_process):
    path = fake_run(tui_runs, state="stopped", epochs=2)
    resume_elsewhere(path, other_process, start_epoch=2)  # 125 s before, resumed 30 s ago
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RunsScreen())
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        row = [str(c) for c in table.get_row_at(0)]
        assert row[3] == "running" and row[6].startswith("2m3")  # 125 + 30 s: not frozen at 2m05s


async def test_the_live_screen_follows_a_later_run_of_this_session(app, tui_runs):
    """`v` opens the one installed live screen, also when a later run was shown in a fresh one."""
    first = fake_run(tui_runs, state="finished")
    later = fake_run(tui_runs, name="tiny-20260102-000000", state="stopped", epochs=1)
    async with app.run_test(size=(80, 24)) as pilot:
        app.controller.run_dir = first  # as the controller sets it when a run starts
        app.push_screen(RunScreen(live=True))
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: title_of(screen).endswith("· finished"), timeout=5)
        app.controller.run_dir = later
        await wait_for(pilot, lambda: title_of(screen).endswith("· stopped"), timeout=5)
        assert screen.run_dir == later and [e.test_acc for e in screen.history.epochs] == [31.5]
        assert log_text(screen).count("started") == 1  # the first run's log went with it
