"""The queue in the workbench: marking and queueing in the catalog, the report at once, the queue screen,
a resume queued from the runs screen, and the compact list on the catalog and the run screen."""

from __future__ import annotations

import json

from textual.widgets import DataTable

from ftui.engine.queue import runner_pid
from ftui.tui.screens.catalog import CatalogScreen
from ftui.tui.screens.confirm import ConfirmScreen
from ftui.tui.screens.queue import QueueScreen
from ftui.tui.screens.quit import QuitScreen
from ftui.tui.screens.run import RunScreen
from ftui.tui.screens.runs import RunsScreen
from ftui.tui.widgets.queue_list import QueueList
from tests.test_results import make_run
from tests.tui.test_catalog_and_run import wait_for


def queued(app) -> list[str]:
    return [e.name for e in app.queue.read().entries]


def shown(screen) -> str:
    widget = screen.query_one(QueueList)
    return widget.shown if widget.display else ""


async def test_marked_rows_are_queued_together_in_catalog_order(app):
    app.queue.set_paused(True)  # nothing trains in this test: the runner is not started for a paused queue
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        catalog = app.screen
        assert shown(catalog) == ""  # an empty queue takes no room
        await pilot.press("down", "space")  # tiny-fc marked
        await pilot.press("up", "space")  # then tiny
        assert catalog.marked == {"tiny", "tiny-fc"}
        assert str(catalog.query_one(DataTable).get_cell("tiny", "experiment")) == "* tiny"
        await pilot.press("a")
        assert queued(app) == ["tiny", "tiny-fc"]  # the catalog's order, not the marking's
        assert catalog.marked == set() and str(catalog.query_one(DataTable).get_cell("tiny", "experiment")) == "tiny"
        await pilot.press("a")  # nothing marked: the highlighted row
        assert queued(app) == ["tiny", "tiny-fc", "tiny-fc"]
        catalog.query_one(QueueList).update_queue()
        assert "Queue: 3" in shown(catalog) and "1. tiny - paused" in shown(catalog)
        assert runner_pid(app.runs_root) is None


async def test_the_report_is_queued_with_one_key_after_a_question(app):
    app.queue.set_paused(True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen) and "tiny-fc" in app.screen.question
        await pilot.press("n")
        assert queued(app) == []
        await pilot.press("R", "y")
        assert queued(app) == ["tiny-fc"]  # the one experiment with a reference_acc


async def test_the_queue_screen_reorders_removes_and_pauses(app):
    app.queue.add_runs([{"name": n} for n in ("a", "b", "c")])
    app.queue.set_paused(True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("u")
        assert isinstance(app.screen, QueueScreen)
        await pilot.press("right_square_bracket")  # a one down; the cursor goes with it
        assert queued(app) == ["b", "a", "c"]
        await pilot.press("shift+down")
        assert queued(app) == ["b", "c", "a"]
        await pilot.press("x")
        assert queued(app) == ["b", "c"]
        await pilot.press("left_square_bracket")  # the cursor is on the last row now: c
        assert queued(app) == ["c", "b"]
        await pilot.press("p")
        assert not app.queue.read().paused
        await pilot.press("p")  # paused again before anything trains (the app is not left running)
        assert app.queue.read().paused
        await pilot.press("escape")
        assert isinstance(app.screen, CatalogScreen)


async def test_the_entry_training_cannot_be_removed_and_the_screen_says_why(app):
    app.queue.add_runs([{"name": "a"}, {"name": "b"}])
    app.queue.take_next(on_empty=lambda: None)  # as the runner does: a is training
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("u", "x")
        assert queued(app) == ["a", "b"]
        assert any("stop it on its run screen" in str(n.message) for n in app._notifications)


async def test_a_stopped_run_is_queued_to_resume_from_the_runs_screen(app, finished_run):
    status = json.loads((finished_run / "status.json").read_text())
    status.update(state="stopped", epochs_done=1, reason="by the test")
    (finished_run / "status.json").write_text(json.dumps(status))
    app.queue.set_paused(True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("a")
        [entry] = app.queue.read().entries
        assert (entry.kind, entry.run_dir, entry.name) == ("resume", str(finished_run), "tiny")
        await pilot.press("a")  # once only
        assert len(app.queue.read().entries) == 1


async def test_the_run_screen_shows_the_queue(app, finished_run):
    app.queue.add_runs([{"name": "next-one"}])
    app.queue.set_paused(True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_run(finished_run)
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and "1. next-one - paused" in shown(app.screen)


async def test_a_launch_while_a_run_trains_joins_the_queue_and_quitting_says_the_queue_goes_on(app, stand_in):
    stand_in("sleeps")  # this session's run trains as long as the test needs
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.controller.start(app.catalog.get("tiny"))
        await wait_for(pilot, lambda: app.controller.training and app.controller.run_dir is not None)
        await pilot.press("down", "l")  # tiny-fc: no question, it joins the queue
        assert not isinstance(app.screen, ConfirmScreen) and queued(app) == ["tiny-fc"]
        app.screen.query_one(QueueList).update_queue()
        assert "1. tiny-fc - next" in shown(app.screen)
        assert runner_pid(app.runs_root) is None  # it waits for this session's run to end
        app.queue.set_paused(True)  # (the test ends before anything of the queue trains)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        assert "The queue (1) goes on either way" in app.screen.question
        await pilot.press("escape")


async def test_v_shows_the_queues_run_once_this_sessions_run_has_ended(app, stand_in, tui_runs):
    import socket
    import subprocess
    import sys

    stand_in("dies")  # this session's run ends at once
    other = tui_runs / "queued-20260101-000001"  # a run the queue's runner trains, in another process
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("l")
            await wait_for(pilot, lambda: app.controller.launches == 1 and not app.controller.busy)
            other.mkdir(parents=True)
            (other / "experiment.json").write_text(json.dumps({"name": "queued"}))
            status = {"state": "running", "pid": process.pid, "host": socket.gethostname(), "epochs": 2}
            (other / "status.json").write_text(json.dumps(status))
            await pilot.press("escape", "v")
            assert isinstance(app.screen, RunScreen) and app.screen.run_dir == other
            entry = app.queue.add_runs([{"name": "queued"}])[0]  # as the runner marks the entry it trains
            app.queue.take_next(lambda: None)
            app.queue.set_pid(entry.id, process.pid)
            await pilot.press("s")
            assert isinstance(app.screen, ConfirmScreen)
            assert f"the queue's run of queued (process {process.pid})" in app.screen.question
            assert "The queue goes on with its next entry" in app.screen.question  # and how to hold it
            await pilot.press("n")
    finally:
        process.kill()
        process.wait()


async def test_the_miniature_is_queued_with_one_key_its_pretraining_first(tui_catalog, tui_runs):
    from pathlib import Path

    from ftui.tui.app import make_app

    tui_catalog.write_text((Path(__file__).resolve().parents[2] / "experiments.toml").read_text())
    app = make_app(tui_catalog, tui_runs)
    app.queue.set_paused(True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("M")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Queue the report in miniature: 15 runs, mini-pretrain first" in app.screen.question
        await pilot.press("y")
        await pilot.pause()
        names = queued(app)
        assert names[0] == "mini-pretrain" and len(names) == 15 and all(n.startswith("mini-") for n in names)


async def test_m_again_queues_only_the_rows_without_a_finished_run(tui_catalog, tui_runs):
    from pathlib import Path

    from ftui.tui.app import make_app

    tui_catalog.write_text((Path(__file__).resolve().parents[2] / "experiments.toml").read_text())
    make_run(tui_runs, "mini-pretrain-20260101-100000", "mini-pretrain", "finished", 70.0, 600.0)
    make_run(tui_runs, "mini-fc-20260101-101000", "mini-fc", "finished", 54.0, 6.0)
    make_run(tui_runs, "mini-fc-conv1-20260101-102000", "mini-fc-conv1", "stopped", 30.0, 20.0)  # not done
    app = make_app(tui_catalog, tui_runs)
    app.queue.set_paused(True)
    seen: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.notify = lambda message, **kw: seen.append(message)
        await pilot.pause()
        await pilot.press("M")
        assert "Queue the report in miniature: 13 runs, mini-fc-conv1 first" in app.screen.question
        assert "The other 2 have a finished run already or wait in the queue." in app.screen.question
        await pilot.press("y")
        await pilot.pause()
        assert len(queued(app)) == 13 and "mini-pretrain" not in queued(app) and "mini-fc" not in queued(app)
        await pilot.press("M")  # all queued or finished: nothing to ask
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and len(queued(app)) == 13
        assert "Every run of the report in miniature has finished or waits in the queue" in seen[-1]


async def test_m_says_so_when_the_catalog_has_no_miniature(app):
    seen = []
    app.queue.set_paused(True)
    async with app.run_test(size=(80, 24)) as pilot:
        app.notify = lambda message, **kw: seen.append(message)
        await pilot.pause()
        await pilot.press("M")
        await pilot.pause()
        assert queued(app) == [] and "no miniature to queue" in seen[-1]
