"""The queue file (engine/queue.py): add, reorder, remove, pause, a damaged file, the lock."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import threading

import pytest

from ftui.engine.queue import KEEP_DONE, QUEUE_FILE, QUEUE_LOCK, QueueError, RunnerLock, RunQueue, runner_pid


def names(queue: RunQueue) -> list[str]:
    return [e.name for e in queue.read().entries]


@pytest.fixture
def queue(tmp_path):
    return RunQueue(tmp_path / "checkpoints")


def test_added_runs_keep_their_order_and_experiment(queue):
    queue.add_runs([{"name": "a", "lr": 0.1}, {"name": "b"}])
    queue.add_runs([{"name": "c"}])
    assert names(queue) == ["a", "b", "c"]
    assert queue.read().entries[0].experiment == {"name": "a", "lr": 0.1}
    assert RunQueue(queue.root).read().entries[2].kind == "run"  # read back from the file, by anyone


def test_a_resume_is_queued_once(queue, tmp_path):
    queue.add_resume(tmp_path / "run-1", "tiny")
    with pytest.raises(QueueError, match="queued already"):
        queue.add_resume(tmp_path / "run-1", "tiny")
    [entry] = queue.read().entries
    assert (entry.kind, entry.run_dir) == ("resume", str(tmp_path / "run-1"))


def test_moving_and_removing_waiting_entries(queue):
    a, b, c = queue.add_runs([{"name": n} for n in "abc"])
    queue.move(c.id, -1)
    assert names(queue) == ["a", "c", "b"]
    queue.move(a.id, +5)  # past the end: last
    assert names(queue) == ["c", "b", "a"]
    assert queue.remove(b.id).name == "b"
    assert names(queue) == ["c", "a"]
    with pytest.raises(QueueError, match="left the queue"):
        queue.remove(b.id)


def test_the_entry_training_neither_moves_nor_is_removed_nor_overtaken(queue):
    a, b = queue.add_runs([{"name": "a"}, {"name": "b"}])
    assert queue.take_next(on_empty=lambda: None).id == a.id
    with pytest.raises(QueueError, match="training"):
        queue.remove(a.id)
    with pytest.raises(QueueError, match="training"):
        queue.move(a.id, 1)
    queue.move(b.id, -1)
    assert names(queue) == ["a", "b"]  # b stays behind the one training
    queue.done(a.id, "finished, best 50.0%", queue.root / "a-1")
    assert names(queue) == ["b"]
    [done] = queue.read().done  # what was run stays listed, with how it ended
    assert (done.name, done.outcome, done.run_dir) == ("a", "finished, best 50.0%", str(queue.root / "a-1"))


def test_only_the_last_done_entries_are_kept(queue):
    entries = queue.add_runs([{"name": str(n)} for n in range(KEEP_DONE + 5)])
    for entry in entries:
        queue.take_next(on_empty=lambda: None)
        queue.done(entry.id, "finished", None)
    assert [d.name for d in queue.read().done] == [str(n) for n in range(5, KEEP_DONE + 5)]


def test_a_paused_or_empty_queue_gives_nothing_and_says_so_under_the_lock(queue):
    told = []
    assert queue.take_next(on_empty=lambda: told.append("empty")) is None
    queue.add_runs([{"name": "a"}])
    queue.set_paused(True)
    assert queue.take_next(on_empty=lambda: told.append("paused")) is None
    assert told == ["empty", "paused"] and names(queue) == ["a"]
    queue.set_paused(False)
    assert queue.take_next(on_empty=lambda: None).name == "a"


@pytest.mark.parametrize(
    "text", ["{not json", '{"entries": [{"kind": "nonsense"}]}', "[1, 2]", "", '{"entries": [], "done": [{"name": 1}]}']
)
def test_a_damaged_file_is_reported_then_set_aside(queue, text):
    queue.root.mkdir(parents=True)
    (queue.root / QUEUE_FILE).write_text(text)
    state = queue.read()
    assert state.entries == [] and "damaged" in state.problem and QUEUE_FILE in state.problem
    queue.add_runs([{"name": "a"}])  # a change starts afresh and keeps the damaged file for a person
    assert names(queue) == ["a"] and queue.read().problem is None
    assert (queue.root / f"{QUEUE_FILE}.damaged").read_text() == text


def test_changes_wait_for_the_lock_and_none_is_lost(queue):
    queue.add_runs([{"name": "first"}])
    adder = threading.Thread(target=lambda: queue.add_runs([{"name": "second"}]))
    with open(queue.root / QUEUE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process is in the middle of a change
        adder.start()
        adder.join(0.5)
        assert adder.is_alive() and names(queue) == ["first"]
    adder.join(30)
    assert names(queue) == ["first", "second"]


def test_many_writers_lose_nothing(queue):
    code = (
        "import sys; from ftui.engine.queue import RunQueue\n"
        "for n in range(10): RunQueue(sys.argv[1]).add_runs([{'name': sys.argv[2] + str(n)}])\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(queue.root), w]) for w in "xy"]
    assert [w.wait(60) for w in writers] == [0, 0]
    assert sorted(names(queue)) == sorted(f"{w}{n}" for w in "xy" for n in range(10))
    json.loads((queue.root / QUEUE_FILE).read_text())


def test_one_runner_per_runs_folder(queue, tmp_path):
    assert runner_pid(queue.root) is None
    first, second = RunnerLock(queue.root), RunnerLock(queue.root)
    assert first.acquire()
    assert not second.acquire()
    assert runner_pid(queue.root) is not None
    first.release()
    assert runner_pid(queue.root) is None and second.acquire()
    second.release()
