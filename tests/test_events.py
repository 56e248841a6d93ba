"""Run events and their metrics.jsonl lines: one definition, written and read by the same code."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from ftui.engine import events as ev
from ftui.engine.history import RunHistory
from ftui.engine.runs import MetricsLog, MetricsTail, RunFolder

EVERY_EVENT = [
    ev.RunStarted(
        Path("/runs/tiny-1"),
        "tiny",
        "cpu, float32",
        10,
        20,
        ("layer4", "fc"),
        3,
        1,
        2,
        8,
        5170,
        32,
        "2026-01-01T00:00:00+0000",
    ),
    ev.Step(1, 0, 2, (2.25, 1.5), 0.05, 12.5),
    ev.EpochEnd(1, 1.9, 2.1, 31.25, 0.04, 2.5, 8.0),
    ev.CheckpointSaved(Path("/runs/tiny-1/best.safetensors"), "best", 1, 31.25),
    ev.RunWarning("precision = bf16 was not possible", "2026-01-01T00:00:01+0000"),
    ev.Finished(Path("/runs/tiny-1"), 31.25, 30.0, 12.5, 3, "2026-01-01T00:01:00+0000"),
    ev.Stopped(Path("/runs/tiny-1"), 1, None, "by request after 1 of 3 epochs", "2026-01-01T00:01:00+0000"),
    ev.Stopped(Path("/runs/tiny-1"), 1, Path("/runs/tiny-1/last.safetensors")),
    ev.Failed(None, "no data", 0, "2026-01-01T00:01:00+0000"),
]

# metrics.jsonl as the writer before typed records left it (commit 9b3b28c), from a tiny run stopped in its
# second epoch. The first steps line holds two steps, as that writer wrote when both fitted in one report:
# its "step" and "global_step" are those of the first.
TODAYS_FORMAT = """\
{"type": "start", "time": "2026-12-02T14:09:20+0000", "run_dir": "/tmp/ev/oldruns/tiny-20261202-140920", "experiment": "tiny", "device": "cpu, float32", "trainable_params": 11173962, "total_params": 11173962, "trainable_units": ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"], "epochs": 3, "start_epoch": 0, "steps_per_epoch": 2, "batch_size": 8, "train_images": 5170, "test_images": 32}
{"type": "steps", "epoch": 0, "step": 0, "global_step": 0, "losses": [2.2549920082092285, 3.933831214904785], "lr": 0.037500000000000006, "images_per_sec": 12.345179718403276}
{"type": "epoch", "epoch": 0, "train_loss": 3.094411611557007, "test_loss": 7.102889060974121, "test_acc": 9.375, "lr": 0.037500000000000006, "seconds": 2.5516064020002887, "images_per_sec": 8.47388516929856}
{"type": "steps", "epoch": 1, "step": 0, "global_step": 2, "losses": [4.566695213317871], "lr": 0.025, "images_per_sec": 9.259409392438394}
{"type": "stopped", "time": "2026-12-02T14:09:24+0000", "reason": "by request after 1 of 3 epochs", "epochs_done": 1}
"""  # noqa: E501


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_every_event_survives_its_line(event):
    line = json.dumps(ev.to_record(event))
    assert ev.from_record(json.loads(line)) == event


def test_every_event_type_has_a_line_type_of_its_own():
    assert set(ev.RECORD_TYPES) == set(typing.get_args(ev.Event))
    assert len(set(ev.RECORD_TYPES.values())) == len(ev.RECORD_TYPES)
    assert ev.RECORD_TYPES[ev.Step] == "steps" and ev.RECORD_TYPES[ev.EpochEnd] == "epoch"  # on disk: never renamed


def test_a_report_counts_from_its_first_step():
    step = ev.Step(epoch=2, step=3, global_step=23, losses=(1.0, 0.9, 0.8), lr=0.1, images_per_sec=1.0)
    assert (step.last_step, step.last_global_step) == (5, 25)


def test_lines_that_are_no_event_read_as_none_and_wrong_values_raise():
    assert ev.from_record({"type": "something-newer", "x": 1}) is None
    assert ev.from_record([1, 2]) is None and ev.from_record({"no": "type"}) is None
    assert ev.from_record({"type": "epoch", "epoch": 0}) == ev.EpochEnd(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    with pytest.raises((ValueError, TypeError)):
        ev.from_record({"type": "epoch", "epoch": 0, "test_acc": "high"})
    with pytest.raises((ValueError, TypeError)):
        ev.from_record({"type": "steps", "epoch": True, "losses": [1.0]})
    with pytest.raises((ValueError, TypeError)):
        ev.from_record({"type": "steps", "epoch": 1.5, "losses": [1.0]})
    assert ev.from_record({"type": "steps", "epoch": 1.0, "losses": [1]}).losses == (1.0,)


def test_a_run_folder_in_todays_format_still_reads(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(TODAYS_FORMAT)
    events = RunFolder(tmp_path).read_events()
    assert [type(e) for e in events] == [ev.RunStarted, ev.Step, ev.EpochEnd, ev.Step, ev.Stopped]
    started, first, epoch, _, stopped = events
    assert started.run_dir == Path("/tmp/ev/oldruns/tiny-20261202-140920") and started.time.startswith("2026-12-02")
    assert started.trainable_units[-1] == "fc" and started.steps_per_epoch == 2 and started.trainable_params == 11173962
    assert (first.step, first.global_step, first.last_step, len(first.losses)) == (0, 0, 1, 2)
    assert epoch.test_acc == 9.375
    assert stopped.reason == "by request after 1 of 3 epochs" and stopped.epochs_done == 1
    assert stopped.run_dir is None and stopped.last_checkpoint is None  # not in that line

    history = RunHistory()
    history.feed(MetricsTail(tmp_path / "metrics.jsonl").read())  # the live screen's reader agrees
    assert (history.epoch, history.step, history.global_step) == (1, 0, 2)
    assert history.loss.points()[0] == [0, 1, 2]  # each loss at its own step
    assert (history.state, history.best_acc) == ("stopped", 9.375)


def test_a_torn_or_broken_line_is_skipped_and_the_rest_read(tmp_path):
    lines = TODAYS_FORMAT.splitlines()
    lines.insert(2, '{"type": "epoch", "epoch": 0, "test_acc": "not a number"}')
    lines.insert(1, "[1, 2, 3]")
    lines.insert(1, '{"type": "from-a-newer-ftui"}')
    torn = lines[-1][:30]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n" + torn)
    events = RunFolder(tmp_path).read_events()
    assert [type(e) for e in events] == [ev.RunStarted, ev.Step, ev.EpochEnd, ev.Step]
    assert [type(e) for e in MetricsTail(tmp_path / "metrics.jsonl").read()] == [type(e) for e in events]


def test_keep_events_keeps_lines_as_they_were(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(TODAYS_FORMAT.replace("\n", '\n{"type": "newer", "epoch": 9}\n', 1))
    folder = RunFolder(tmp_path)
    folder.keep_events(lambda e: not isinstance(e, ev.Step) or e.epoch < 1)
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in kept] == ["start", "newer", "steps", "epoch", "stopped"]
    assert kept[0] == json.loads(TODAYS_FORMAT.splitlines()[0])  # not rewritten in another format


def test_the_log_writes_what_the_reader_reads(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for event in EVERY_EVENT:
        log.append(event)
    log.close()
    assert RunFolder(tmp_path).read_events() == EVERY_EVENT
