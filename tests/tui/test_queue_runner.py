"""The queue runner with no UI: `ftui queue-run` trains the queued runs in order, one at a time, to their end."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from ftui.engine.queue import RunQueue, runner_pid
from ftui.engine.runs import RunFolder, list_runs
from ftui.queue_runner import start_runner
from ftui.tui.training_process import child_environment, training_command
from tests.conftest import TINY


def tiny(name: str, epochs: int = 1) -> dict:
    from ftui.engine.catalog import experiment_from_dict

    return experiment_from_dict(
        {**TINY, "name": name, "epochs": epochs, "max_steps_per_epoch": 1}, where="test"
    ).to_dict()


def runner(runs) -> subprocess.Popen:
    """The runner in the foreground, as start_runner starts it (this ftui first on its path, the test hooks kept)."""
    return subprocess.Popen(training_command(["queue-run", "--runs", str(runs)]), env=child_environment())


def states(runs) -> list[tuple[str, str]]:
    """(experiment, state) of each run, oldest first."""
    return [(r.experiment, r.state) for r in reversed(list_runs(runs))]


def until(condition, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.1)


def test_three_queued_runs_train_in_order_to_their_end(tmp_path):
    runs = tmp_path / "checkpoints"
    RunQueue(runs).add_runs([tiny("a"), tiny("b"), tiny("c")])
    assert runner(runs).wait(600) == 0
    assert states(runs) == [("a", "finished"), ("b", "finished"), ("c", "finished")]
    queue = RunQueue(runs).read()
    assert queue.entries == [] and runner_pid(runs) is None
    assert [(d.name, d.outcome.split(",")[0]) for d in queue.done] == [(n, "finished") for n in "abc"]
    assert [d.run_dir for d in queue.done] == [str(r.path) for r in reversed(list_runs(runs))]
    for run in list_runs(runs):  # each run's output is in its folder, as for a run the workbench launched
        assert "epoch" in (run.path / "output.log").read_text()
    assert not list((runs / ".launch").iterdir())  # nothing of the hand-over is left


@pytest.mark.parametrize("paused", [False, True], ids=["goes-on", "queue-paused"])
def test_a_stop_of_the_current_run_ends_only_it_unless_the_queue_is_paused(tmp_path, gate, paused):
    runs = tmp_path / "checkpoints"
    queue = RunQueue(runs)
    queue.add_runs([tiny("a", epochs=2), tiny("b"), tiny("c")])
    process = runner(runs)
    until(lambda: gate.paused or process.poll() is not None)  # a has saved its first epoch
    assert process.poll() is None, "the runner ended before its first run's first epoch"
    [current] = [e for e in queue.read().entries if e.current]
    assert current.name == "a" and current.pid == int((gate.folder / "paused").read_text())
    if paused:
        queue.set_paused(True)
    os.kill(current.pid, signal.SIGTERM)  # what s on its run screen does
    gate.open()
    assert process.wait(600) == 0
    assert queue.read().done[0].outcome.startswith("stopped by SIGTERM")
    if paused:
        assert states(runs) == [("a", "stopped")]
        assert [e.name for e in queue.read().entries] == ["b", "c"]
    else:
        assert states(runs) == [("a", "stopped"), ("b", "finished"), ("c", "finished")]
        assert queue.read().entries == []
    assert "SIGTERM" in RunFolder(list_runs(runs)[-1].path).read_status()["reason"]


def test_the_workbench_starts_one_detached_runner_only(tmp_path):
    runs = tmp_path / "checkpoints"
    RunQueue(runs).add_runs([tiny("a")])
    pid = start_runner(runs)
    assert pid is not None and os.getsid(pid) == pid  # a session of its own: the UI's terminal never reaches it
    until(lambda: runner_pid(runs) is not None or not RunQueue(runs).read().entries)
    assert start_runner(runs) is None or not RunQueue(runs).read().entries
    until(lambda: runner_pid(runs) is None)
    assert states(runs) == [("a", "finished")]


def test_an_entry_that_cannot_start_says_why_and_the_queue_goes_on(tmp_path):
    runs = tmp_path / "checkpoints"
    RunQueue(runs).add_runs([{**tiny("a"), "dataset": "no-such-dataset"}, tiny("b")])
    assert runner(runs).wait(600) == 0
    first, second = RunQueue(runs).read().done
    assert first.outcome.startswith("could not start: ") and "no-such-dataset" in first.outcome
    assert first.run_dir is None and second.outcome.startswith("finished")


def test_stopping_the_runner_stops_its_run_and_leaves_the_rest_queued(tmp_path, gate):
    runs = tmp_path / "checkpoints"
    queue = RunQueue(runs)
    queue.add_runs([tiny("a", epochs=2), tiny("b")])
    process = runner(runs)
    until(lambda: gate.paused or process.poll() is not None)
    process.send_signal(signal.SIGTERM)
    gate.open()
    assert process.wait(600) == 0
    assert states(runs) == [("a", "stopped")]
    assert queue.read().done[0].outcome == "stopped because the queue runner was stopped after 1 of 2 epochs"
    assert [e.name for e in queue.read().entries] == ["b"] and runner_pid(runs) is None


@pytest.mark.parametrize("run_killed_too", [True, False], ids=["run-killed-too", "run-outlived-it"])
def test_after_a_killed_runner_the_next_one_goes_on_with_its_run_instead_of_training_it_again(
    tmp_path, gate, run_killed_too
):
    runs = tmp_path / "checkpoints"
    queue = RunQueue(runs)
    queue.add_runs([tiny("a", epochs=2), tiny("b")])
    first = runner(runs)
    until(lambda: gate.paused or first.poll() is not None)
    first.kill()  # SIGKILL: the runner says nothing and leaves "a" first in the queue
    first.wait(60)
    if run_killed_too:  # as when the machine goes down
        os.kill(queue.read().entries[0].pid, signal.SIGKILL)
        until(lambda: states(runs) == [("a", "interrupted")])
    gate.open()
    assert runner(runs).wait(600) == 0
    assert states(runs) == [("a", "finished"), ("b", "finished")]  # one folder for "a": not trained again
    run_a = list_runs(runs)[-1]
    assert RunFolder(run_a.path).read_status()["epochs_done"] == 2
    assert "epoch 2" in (run_a.path / "output.log").read_text()  # its output, both halves, beside it
    first = queue.read().done[0]
    assert (first.name, first.outcome.split(",")[0], first.run_dir) == ("a", "finished", str(run_a.path))
    assert queue.read().entries == [] and not list((runs / ".launch").iterdir())
