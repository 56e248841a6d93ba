"""Reading a run folder as a viewer does: incremental tail, bounded curves, run summaries."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from ftui.engine import events as ev
from ftui.engine.history import BoundedSeries, MetricsFollower, RunHistory, training_seconds
from ftui.engine.runs import MetricsTail, RunFolder, list_runs, now_iso, parse_iso, run_state, seconds_since


def test_bounded_series_never_exceeds_its_size_and_keeps_the_mean():
    series = BoundedSeries(max_points=64)
    for i in range(100_000):
        series.append(i, 1.0 if i % 2 else 3.0)
    xs, ys = series.points()
    assert len(xs) <= 64
    assert all(abs(y - 2.0) < 1e-9 for y in ys[:-1])  # merged neighbours average out
    assert xs == sorted(xs) and xs[-1] > 90_000


def test_metrics_tail_never_returns_half_a_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == []  # no file yet
    warning = ev.RunWarning("a", time="t")
    step = ev.Step(0, 0, 0, (2.5,), 0.1, 50.0)
    with open(path, "w") as f:
        f.write(json.dumps(ev.to_record(warning)) + "\n" + json.dumps(ev.to_record(step))[:12])
    assert tail.read() == [warning]
    with open(path, "a") as f:
        f.write(json.dumps(ev.to_record(step))[12:] + "\n")
    assert tail.read() == [step]
    assert tail.read() == []


def test_run_history_folds_records_and_forgets_a_retrained_epoch():
    h = RunHistory()
    records = [
        {"type": "start", "epochs": 3, "steps_per_epoch": 2, "start_epoch": 0},
        {
            "type": "steps",
            "epoch": 0,
            "step": 0,
            "global_step": 0,
            "losses": [2.0, 1.8],
            "lr": 0.1,
            "images_per_sec": 50,
        },
        {"type": "epoch", "epoch": 0, "test_acc": 30.0, "test_loss": 1.9, "train_loss": 1.9},
        {
            "type": "steps",
            "epoch": 1,
            "step": 0,
            "global_step": 2,
            "losses": [1.7],
            "lr": 0.1,
            "images_per_sec": 50,
        },
        {"type": "stopped", "reason": "stopped by request"},
    ]
    h.feed([ev.from_record(r) for r in records])
    assert (h.epoch, h.step, h.global_step, h.state, h.reason) == (1, 0, 2, "stopped", "stopped by request")
    assert h.best_acc == 30.0 and len(h.loss) == 3
    h.feed([ev.from_record({"type": "start", "epochs": 3, "steps_per_epoch": 2, "start_epoch": 1})])
    assert h.state == "running" and len(h.epochs) == 1
    # The resumed session has not trained yet: its progress starts at its epoch, no stale throughput.
    assert (h.epoch, h.step, h.global_step, h.images_per_sec) == (1, -1, 1, None)
    assert h.resumes == [1]


def step_record(epoch: int, global_step: int) -> dict:
    step = ev.Step(epoch, global_step % 2, global_step, (2.0,), 0.1, 50.0)
    return ev.to_record(step)


def test_the_follower_reads_a_metrics_file_again_after_a_resume_rewrote_it(tmp_path):
    """A resume (here, another process or the CLI) drops the partial epoch's steps by rewriting the file."""
    folder = RunFolder(tmp_path)
    start = {"type": "start", "epochs": 3, "steps_per_epoch": 2, "start_epoch": 0}
    epoch0 = {"type": "epoch", "epoch": 0, "test_acc": 30.0}
    lines = [start, step_record(0, 0), step_record(0, 1), epoch0, step_record(1, 2), {"type": "stopped"}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    follower = MetricsFollower(tmp_path / "metrics.jsonl")
    events, restarted = follower.read()
    assert len(events) == 6 and not restarted
    assert follower.read() == ([], False)

    folder.keep_events(lambda e: not isinstance(e, ev.Step) or e.epoch < 1)  # as resume does
    resumed = ev.RunStarted(tmp_path, "x", "cpu", 1, 1, (), 3, 1, 2, 8, 16, 8)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps(ev.to_record(resumed)) + "\n" + json.dumps(step_record(1, 2)) + "\n")
    events, restarted = follower.read()
    kinds = [ev.RunStarted, ev.Step, ev.Step, ev.EpochEnd, ev.Stopped, ev.RunStarted, ev.Step]
    assert restarted and [type(e) for e in events] == kinds
    h = RunHistory()
    h.feed(events)  # one continuous history: steps 0, 1 and the resumed 2, no dropped step
    assert h.loss.points()[0] == [0, 1, 2] and h.state == "running" and h.resumes == [1]
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps(step_record(1, 3)) + "\n")
    assert follower.read() == ([ev.from_record(step_record(1, 3))], False)  # then it follows as before


def test_training_seconds_go_on_from_what_earlier_sessions_recorded():
    earlier = "2026-01-01T00:00:00+0000"
    assert training_seconds({"state": "stopped", "seconds": 60.0}) == 60.0
    assert training_seconds({"state": "running", "started_at": now_iso()}) == pytest.approx(0, abs=2)
    resumed = {"state": "running", "started_at": earlier, "seconds": 60.0, "resumed_at": now_iso()}
    assert training_seconds(resumed) == pytest.approx(60, abs=2)  # not frozen at 60, not counted from the start
    assert training_seconds({"state": "running"}) is None
    first = {"state": "running", "started_at": now_iso(), "seconds": 999.0}  # a first session records none
    assert training_seconds(first) == pytest.approx(0, abs=2)


def test_list_runs_reports_a_dead_running_run_as_interrupted(tmp_path):
    for name, state, pid in (("a-1", "finished", 1), ("b-1", "running", 999_999_999), ("c-1", "running", os.getpid())):
        folder = RunFolder(tmp_path / name)
        folder.path.mkdir()
        folder.write_experiment({"name": name[0]})
        folder.write_status(state, started_at=name)
        status = folder.read_status()
        status["pid"] = pid
        (folder.path / "status.json").write_text(json.dumps(status))
    (tmp_path / "not-a-run").mkdir()
    runs = {r.name: r for r in list_runs(tmp_path)}
    assert set(runs) == {"a-1", "b-1", "c-1"}
    assert runs["b-1"].state == "interrupted" and "resume" in runs["b-1"].reason
    assert runs["c-1"].state == "running"
    assert [r.name for r in list_runs(tmp_path)] == ["c-1", "b-1", "a-1"]  # newest first


def test_interrupted_is_decided_by_one_function():
    alive = {"state": "running", "pid": os.getpid(), "host": socket.gethostname(), "reason": ""}
    assert run_state(alive) == ("running", "")
    assert run_state({**alive, "pid": 999_999_999})[0] == "interrupted"
    assert (
        run_state({**alive, "host": "another-machine"})[0] == "interrupted"
    )  # another machine: its process is out of sight
    assert run_state({**alive, "state": "failed", "pid": 999_999_999, "reason": "oom"}) == ("failed", "oom")


def test_iso_stamps_are_read_back_as_written():
    before = time.time()
    assert parse_iso(now_iso()) == pytest.approx(before, abs=2)
    assert parse_iso("2026-01-01T00:00:00+0000") == 1767225600.0
    assert parse_iso("") is None and parse_iso(None) is None and parse_iso("yesterday") is None
    assert seconds_since("2026-01-01T00:00:00+0100") == pytest.approx(time.time() - 1767222000.0, abs=2)
    assert seconds_since("") is None
