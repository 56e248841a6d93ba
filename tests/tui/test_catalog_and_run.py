"""The catalog screen and the run screen, driven for real with the Pilot."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from textual.widgets import DataTable, RichLog, Static

from ftui.engine.queue import runner_pid
from ftui.tui.app import make_app
from ftui.tui.screens.catalog import CatalogScreen
from ftui.tui.screens.confirm import ConfirmScreen
from ftui.tui.screens.quit import QuitScreen
from ftui.tui.screens.run import RunScreen


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Let the app run until condition holds (at once if it does), for at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await pilot.pause(0.05)


def title_of(screen) -> str:
    return str(screen.query_one("#title").render())


def fake_run(root: Path, name="tiny-20260101-000000", state="finished", epochs=3, trainable=11_173_962) -> Path:
    """A run folder written by hand, so screens that show it are the same every time."""
    path = root / name
    path.mkdir(parents=True)
    (path / "experiment.json").write_text(json.dumps({"name": "tiny", "model": "resnet18", "device": "cpu"}))
    accs = [31.5, 42.25, 47.0][:epochs]
    status = {
        "state": state,
        "reason": "",
        "started_at": "2026-01-01T00:00:00+0000",
        "epochs": 3,
        "epochs_done": len(accs),
        "best_acc": max(accs),
        "seconds": 125.0,
        "pid": 999999,
        "host": "elsewhere",
    }
    (path / "status.json").write_text(json.dumps(status))
    records = [
        {
            "type": "start",
            "time": "2026-01-01T00:00:00+0000",
            "experiment": "tiny",
            "device": "cpu",
            "trainable_params": trainable,
            "total_params": 11_173_962,
            "epochs": 3,
            "start_epoch": 0,
            "steps_per_epoch": 4,
            "batch_size": 128,
            "train_images": 512,
            "test_images": 256,
        }
    ]
    loss = 2.4
    for e, acc in enumerate(accs):
        for s in range(4):
            records.append(
                {
                    "type": "steps",
                    "epoch": e,
                    "step": s,
                    "global_step": e * 4 + s,
                    "losses": [loss],
                    "lr": 0.05,
                    "images_per_sec": 200.0,
                }
            )
            loss *= 0.93
        records.append(
            {
                "type": "epoch",
                "epoch": e,
                "train_loss": loss + 0.1,
                "test_loss": loss + 0.2,
                "test_acc": acc,
                "lr": 0.05,
                "seconds": 40.0,
                "images_per_sec": 200.0,
            }
        )
    records.append({"type": state, "time": "2026-01-01T00:02:05+0000", "reason": "", "epochs_done": len(accs)})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


async def test_catalog_lists_experiments_with_measured_accuracy(app, tui_runs):
    fake_run(tui_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, CatalogScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        tiny = [str(c) for c in table.get_row("tiny")]
        assert tiny[0] == "tiny" and tiny[-1] == "47.0"
        assert [str(c) for c in table.get_row("tiny-fc")][-2:] == ["80.9", "-"]
        await pilot.press("down")
        assert "only the head trains" in str(app.screen.query_one("#description", Static).render())


async def test_a_broken_catalog_is_a_message_on_screen(tui_catalog, tui_runs):
    tui_catalog.write_text('[[experiment]]\nname = "x"\nepochs = "many"\n')
    app = make_app(tui_catalog, tui_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        error = app.screen.query_one("#error", Static)
        assert error.display and "epochs" in str(error.render()) and "many" in str(error.render())
        tui_catalog.write_text('[[experiment]]\nname = "x"\nepochs = 2\n\n[[experiment]]\nname = "y"\nepochs = 3\n')
        await pilot.press("f5")
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        await pilot.press("down")  # the arrows move the cursor again, as enter always did
        assert table.cursor_row == 1 and table.has_focus
        await pilot.press("up")
        assert table.cursor_row == 0


async def test_arrows_work_after_f5_recovers_from_a_catalog_error(app, tui_catalog):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        await pilot.press("down")
        good = tui_catalog.read_text()
        tui_catalog.write_text(good.replace("epochs = 2", 'epochs = "many"'))
        await pilot.press("f5")
        assert app.screen.query_one("#error", Static).display and not table.display
        tui_catalog.write_text(good)
        await pilot.press("f5")
        assert table.display and table.row_count == 2
        await pilot.press("up")
        assert table.cursor_row == 0
        await pilot.press("down")
        assert table.cursor_row == 1 and table.has_focus
        assert "only the head trains" in str(app.screen.query_one("#description", Static).render())


async def test_launch_a_tiny_run_and_watch_it_finish(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")  # launch "tiny" as it is
        assert isinstance(app.screen, RunScreen)
        app.controller.wait(120)
        screen = app.screen
        await wait_for(pilot, lambda: title_of(screen).endswith("· finished"), timeout=5)  # read 4 times a second
        assert app.controller.result.status == "finished"
        assert len(screen.history.epochs) == 2 and screen.history.state == "finished"
        assert len(screen.history.loss) == 4 and screen.redraws >= 1
        log = "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)
        assert "epoch 2: test acc" in log and "finished" in log
        assert "best" in str(screen.query_one("#progress-text").render())
        await pilot.press("escape")
        assert isinstance(app.screen, CatalogScreen)
        assert str(app.screen.query_one(DataTable).get_row("tiny")[-1]) != "-"  # the measured accuracy appears


async def test_stop_asks_then_stops_within_a_step(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.launch(dataclasses.replace(app.catalog.get("tiny-fc"), epochs=500))  # far longer than the test
        await pilot.pause()
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        app.controller.wait(60)
        assert app.controller.result.status == "stopped"
        status = json.loads((app.controller.run_dir / "status.json").read_text())
        assert status["state"] == "stopped" and status["epochs_done"] < 500
        assert status["reason"].startswith("from the workbench after ")


async def test_a_second_launch_is_queued(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.launch(dataclasses.replace(app.catalog.get("tiny-fc"), epochs=500))
        await pilot.pause()
        await pilot.press("escape")  # back to the catalog while it trains
        await pilot.press("l")
        assert not isinstance(app.screen, ConfirmScreen)
        assert [e.name for e in app.queue.read().entries] == ["tiny"]
        assert runner_pid(app.runs_root) is None  # it starts once this session's run has ended
        app.queue.set_paused(True)  # the test ends here: nothing of the queue trains
        app.controller.request_stop("by the test")


async def test_quitting_during_a_run_asks_first(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.launch(dataclasses.replace(app.catalog.get("tiny-fc"), epochs=500))
        await pilot.pause()
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("n")
        assert app.controller.busy and isinstance(app.screen, RunScreen)
        app.controller.request_stop("by the test")


async def test_the_curves_of_a_finished_run(app, tui_runs):
    path = fake_run(tui_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_run(path)
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: title_of(screen).endswith("· finished"), timeout=5)
        assert [e.test_acc for e in screen.history.epochs] == [31.5, 42.25, 47.0]
        assert "best 47.00%" in str(screen.query_one("#progress-text").render())
        assert "11.17M of 11.17M parameters train (100%) · finished" in str(screen.query_one("#title").render())
        await pilot.press("s")  # nothing to stop: says so
        assert not isinstance(app.screen, ConfirmScreen)


def test_catalog_snapshot(snap_compare, tui_catalog, tui_runs):
    fake_run(tui_runs)
    assert snap_compare(make_app(tui_catalog, tui_runs), terminal_size=(80, 24))


def test_run_screen_snapshot(snap_compare, tui_catalog, tui_runs):
    path = fake_run(tui_runs)

    async def open_run(pilot):
        pilot.app.open_run(path)
        await pilot.pause()
        screen = pilot.app.screen
        await wait_for(pilot, lambda: title_of(screen).endswith("· finished") and screen.redraws > 0, timeout=5)
        await pilot.pause()

    assert snap_compare(make_app(tui_catalog, tui_runs), terminal_size=(80, 24), run_before=open_run)


async def test_catalog_counts_only_finished_runs_as_the_results_screen_does(app, tui_runs):
    fake_run(tui_runs)
    better = fake_run(tui_runs, name="tiny-20260102-000000", state="stopped")
    status = json.loads((better / "status.json").read_text())
    (better / "status.json").write_text(json.dumps({**status, "best_acc": 99.0}))  # better, but not to the end
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert str(table.get_row("tiny")[-1]) == "47.0"
        description = str(app.screen.query_one("#description", Static).render())
        assert "ftui: best of 1 finished run: tiny-20260101-000000" in description
        await pilot.press("down")
        assert "ftui: no finished run yet" in str(app.screen.query_one("#description", Static).render())


async def test_the_run_screen_tells_an_interrupted_run_and_shows_warnings(app, tui_runs):
    path = fake_run(tui_runs, state="running", epochs=1)
    lines = (path / "metrics.jsonl").read_text().splitlines()[:-1]  # no ending: it said running when it died
    warning = {"type": "warning", "message": "epoch 2 is trained again", "time": "2026-01-01T00:01:00+0000"}
    (path / "metrics.jsonl").write_text("\n".join(lines + [json.dumps(warning)]) + "\n")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_run(path)
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: "interrupted (its process is gone" in title_of(screen), timeout=5)
        log = "\n".join(str(line.text) for line in screen.query_one(RichLog).lines)
        assert "warning: epoch 2 is trained again" in log
        # status.json closed the run, but its last log line could not be written: the folder's status wins.
        status = json.loads((path / "status.json").read_text())
        (path / "status.json").write_text(json.dumps({**status, "state": "failed"}))
        await wait_for(pilot, lambda: str(screen.query_one("#title").render()).endswith("· failed"), timeout=5)


async def test_the_run_screen_never_rounds_a_frozen_stem_to_all_parameters(app, tui_runs):
    path = fake_run(tui_runs, trainable=11_173_962 - 1_856)  # conv1 and bn1 frozen
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_run(path)
        await pilot.pause()
        screen = app.screen
        await wait_for(pilot, lambda: "parameters train (99.98%)" in title_of(screen), timeout=5)
