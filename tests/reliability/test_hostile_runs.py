"""Run folders edited by hand or damaged: wrong-typed status fields, a missing last checkpoint, an edited experiment."""

from __future__ import annotations

import json
import os
import threading

import pytest

from ftui.engine import events as ev
from ftui.engine.runs import RunLock, list_runs, run_state
from ftui.engine.train import resume, train


@pytest.fixture
def stopped_run(make_exp, runs_root):
    stop = threading.Event()

    def after_first_epoch(event):
        if isinstance(event, ev.EpochEnd):
            stop.set()

    result = train(make_exp(epochs=2), after_first_epoch, stop, runs_root=runs_root)
    assert result.status == "stopped" and result.epochs_done == 1
    return result.run_dir


@pytest.mark.parametrize(
    "edit",
    [
        {"pid": ["x"], "state": "running"},
        {"pid": 10**30, "state": "running"},
        {"state": 7, "reason": {"a": 1}},
        {"epochs_done": "two", "best_acc": "high", "seconds": None, "started_at": 5, "epochs": [2]},
    ],
)
def test_wrong_typed_status_fields_never_stop_the_runs_list(stopped_run, edit):
    status_file = stopped_run / "status.json"
    status = json.loads(status_file.read_text())
    status_file.write_text(json.dumps({**status, **edit}))
    [summary] = list_runs(stopped_run.parent)
    assert summary.state in ("stopped", "interrupted", "?")
    assert isinstance(summary.reason, str) and isinstance(summary.epochs_done, int)
    state, reason = run_state({**status, **edit})
    assert isinstance(state, str) and isinstance(reason, str)


def test_a_deleted_last_checkpoint_is_named_not_called_never_started(stopped_run):
    (stopped_run / "last.safetensors").unlink()
    result = resume(stopped_run)
    assert result.status == "failed"
    assert "last.safetensors is missing" in result.reason and "ended before its first checkpoint" not in result.reason


def test_an_edited_experiment_json_is_refused_naming_what_changed(stopped_run):
    path = stopped_run / "experiment.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "lr": 0.5, "epochs": 3}))
    result = resume(stopped_run)
    assert result.status == "failed"
    assert "differs from the experiment its last checkpoint was trained with (epochs, lr)" in result.reason


# -- liveness: the run folder's own lock, not a bare pid ------------------------------------------


def _says_running_as(run_dir, pid: int) -> None:
    status_file = run_dir / "status.json"
    status = json.loads(status_file.read_text())
    status_file.write_text(json.dumps({**status, "state": "running", "pid": pid}))


def test_a_reused_pid_does_not_block_resume_forever(stopped_run):
    # After a reboot another process has the old pid: here, this very test process, alive for sure.
    _says_running_as(stopped_run, os.getpid())
    [summary] = list_runs(stopped_run.parent)
    assert summary.state == "interrupted"  # nobody holds the run folder's lock
    result = resume(stopped_run)
    assert result.status == "finished", result.reason


def test_two_resumes_of_one_run_cannot_both_train(stopped_run):
    holder = RunLock(stopped_run)
    assert holder.acquire()  # as a first resume would, in its process
    try:
        _says_running_as(stopped_run, os.getpid())
        assert list_runs(stopped_run.parent)[0].state == "running"
        second = resume(stopped_run, share_device=True)  # even sharing the device
        assert second.status == "failed" and "another process trains into it" in second.reason
    finally:
        holder.release()
    assert resume(stopped_run).status == "finished"  # once the first has gone, it resumes


# -- inputs that were accepted silently or failed late -------------------------------------------


def test_a_batch_of_one_for_batchnorm_is_refused_before_a_run_folder(make_exp, runs_root):
    result = train(make_exp(batch_size=1), runs_root=runs_root)
    assert result.status == "failed" and "BatchNorm layers cannot compute statistics from one image" in result.reason
    assert result.run_dir is None and not list_runs(runs_root)


def test_a_learning_rate_for_a_frozen_unit_is_said_not_to_be_used(make_exp, runs_root):
    events = []
    result = train(make_exp(trainable=["fc"], unit_lr={"layer1": 0.5}, epochs=1), events.append, runs_root=runs_root)
    assert result.status == "finished", result.reason
    warnings = [e.message for e in events if isinstance(e, ev.RunWarning)]
    assert warnings == ["unit_lr sets a learning rate for layer1, but it is frozen in this run: the rate is not used."]


def test_an_unwritable_run_folder_on_resume_is_a_clear_failure(stopped_run, monkeypatch):
    # The tests run as root, whom a read-only folder does not stop: the folder's writes fail as they would.
    import ftui.engine.runs as runs

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(runs, "atomic_write_text", refuse)
    result = resume(stopped_run)
    assert result.status == "failed", result.reason
    assert "Permission denied" in result.reason and str(stopped_run) in result.reason
