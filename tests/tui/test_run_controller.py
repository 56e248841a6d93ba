"""The run controller: each run a child process, the exact experiment handed over, stops that always end.

The failure modes use a stand-in for the training command (training_process.training_command is
the one place it is built): a script that makes a run folder as ftui does, then misbehaves.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pytest

from ftui.engine.catalog import experiment_from_dict
from ftui.engine.runs import INTERRUPTED, RunFolder, list_runs
from ftui.tui import training_process
from ftui.tui.run_controller import RunController
from ftui.tui.training_process import training_command
from tests.conftest import TINY

PATIENCE = 300.0


def ready(controller: RunController) -> bool:
    """The stand-in ignores SIGTERM now (or has ended: then the test fails at once, with why)."""
    assert controller.busy, controller.failure
    return controller.run_dir is not None and (controller.run_dir / "ready").exists()


def wait_for(condition) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def test_the_training_command_is_the_cli_run_by_this_python():
    assert training_command(["run", "--experiment-json", "e.json"]) == [
        sys.executable,
        "-P",
        "-m",
        "ftui",
        "run",
        "--experiment-json",
        "e.json",
    ]


def test_the_edited_experiment_reaches_the_child_exactly(tmp_path):
    catalog_entry = experiment_from_dict({**TINY, "epochs": 1}, where="test")
    # What an editor makes of it, unsaved: units frozen, per-unit rates, other settings.
    edited = dataclasses.replace(
        catalog_entry,
        trainable=("layer4", "fc"),
        unit_lr={"fc": 1e-3},
        lr=1.25e-4,
        momentum=0.8,
        label_smoothing=0.1,
        seed=7,
    )
    controller = RunController(tmp_path / "runs")
    controller.start(edited)
    controller.wait(PATIENCE)
    assert controller.result is not None and controller.result.status == "finished", controller.failure
    recorded = RunFolder(controller.run_dir).read_experiment()
    assert recorded == json.loads(json.dumps(edited.to_dict()))
    assert experiment_from_dict(recorded, where="test") == edited


def test_a_child_that_ignores_the_stop_is_killed_and_its_run_says_so(tmp_path, stand_in):
    stand_in("ignores-sigterm")
    controller = RunController(tmp_path / "runs")
    controller.stop_grace = 0.5  # seconds after SIGTERM; 120 in the workbench
    controller.start(experiment_from_dict(TINY, where="test"))
    wait_for(lambda: ready(controller))
    controller.request_stop("from the workbench")
    controller.wait(PATIENCE)
    assert not controller.busy
    (run,) = list_runs(tmp_path / "runs")
    assert run.state == INTERRUPTED == controller.result.status
    assert "did not stop within 0.5 s of being asked, so it was killed (SIGKILL)" in run.reason
    assert "ignoring SIGTERM" in run.reason  # the end of its log
    assert controller.failure == run.reason


def test_a_child_that_dies_without_closing_its_run_shows_how_and_its_last_words(tmp_path, stand_in):
    stand_in("dies")
    controller = RunController(tmp_path / "runs")
    controller.start(experiment_from_dict(TINY, where="test"))
    controller.wait(PATIENCE)
    (run,) = list_runs(tmp_path / "runs")
    assert run.state == INTERRUPTED and not controller.could_not_start
    assert run.reason == (
        "its training process exited with code 3 without closing the run; "
        "the end of its log: training epoch 2 of 3 / some last words; resume it"
    )
    assert (run.path / "output.log").read_text().endswith("some last words\n")  # moved into its run folder
    assert not list((tmp_path / "runs" / ".launch").iterdir())  # the hand-over files are gone


def test_a_process_that_cannot_be_started_is_a_message_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(training_process, "training_command", lambda args: [str(tmp_path / "no-such-python")])
    controller = RunController(tmp_path / "runs")
    controller.start(experiment_from_dict(TINY, where="test"))
    assert controller.could_not_start and not controller.busy
    assert controller.failure.startswith("The training process could not be started:")


def test_a_second_start_while_one_trains_is_refused(tmp_path, stand_in):
    stand_in("ignores-sigterm")
    controller = RunController(tmp_path / "runs")
    controller.stop_grace = 0.0
    controller.start(experiment_from_dict(TINY, where="test"))
    with pytest.raises(RuntimeError):
        controller.start(experiment_from_dict(TINY, where="test"))
    wait_for(lambda: ready(controller))
    controller.request_stop("by the test")
    controller.wait(PATIENCE)
