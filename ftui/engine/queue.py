"""The run queue: a file in the runs folder that outlives every UI, worked through by one runner process.

``<runs>/.queue.json`` holds the entries in order, each a run of a resolved experiment
(``kind: "run"``, the experiment's dict as the run will train it) or a resume of a run folder
(``kind: "resume"``), and whether the queue is paused. Every change is a read-modify-write
under an fcntl lock on ``<runs>/.queue.lock`` and an atomic replace of the file, so the
workbench, a second workbench and the runner never lose each other's changes, and a reader
never sees half a file. A file that cannot be read is set aside (``.queue.json.damaged``) at
the next change and reported, never a crash.

The runner (ftui/queue_runner.py) holds an fcntl lock on ``<runs>/.queue-runner.lock`` for as
long as it lives: that lock, not a pid that may be reused, says whether one is running.
No torch and no Textual here.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from ..errors import FtuiError
from .atomic import atomic_write_text
from .runs import now_iso

QUEUE_FILE = ".queue.json"
QUEUE_LOCK = ".queue.lock"
RUNNER_LOCK = ".queue-runner.lock"
RUNNER_LOG = ".queue-runner.log"
RUN, RESUME = "run", "resume"
KEEP_DONE = 20  # entries run to their end that the queue still lists, newest last

T = TypeVar("T")


class QueueError(FtuiError):
    """A queue change that cannot be made (the entry is gone, or it is the one training)."""


@dataclass
class QueueEntry:
    id: str
    kind: str  # RUN or RESUME
    name: str  # the experiment's name, for the screens
    added_at: str
    experiment: dict | None = None  # RUN: the resolved experiment, as trained
    run_dir: str | None = None  # RESUME: the run folder to continue
    started_at: str | None = None  # set by the runner when it starts this entry (the first one)
    pid: int | None = None  # the training process the runner started for it

    @property
    def current(self) -> bool:
        return self.started_at is not None


@dataclass
class DoneEntry:
    """An entry the runner has run: how it ended, in words, and where to look."""

    name: str
    kind: str
    ended_at: str
    outcome: str  # "finished: best 61.2%", "stopped by SIGTERM ...", "could not start: no data ..."
    run_dir: str | None = None


@dataclass
class QueueState:
    entries: list[QueueEntry] = field(default_factory=list)
    paused: bool = False  # the runner starts no further entry
    problem: str | None = None  # why the file could not be read (then entries is empty)
    done: list[DoneEntry] = field(default_factory=list)  # the last KEEP_DONE entries run, oldest first


def _entry(raw: object) -> QueueEntry:
    if not isinstance(raw, dict) or raw.get("kind") not in (RUN, RESUME):
        raise ValueError(f"not a queue entry: {raw!r:.80}")
    known = {k: raw[k] for k in QueueEntry.__dataclass_fields__ if k in raw}
    entry = QueueEntry(**known)
    if not isinstance(entry.id, str) or not isinstance(entry.name, str):
        raise ValueError("an entry without id or name")
    if entry.kind == RUN and not isinstance(entry.experiment, dict):
        raise ValueError(f"run entry {entry.name} has no experiment")
    if entry.kind == RESUME and not isinstance(entry.run_dir, str):
        raise ValueError(f"resume entry {entry.name} has no run folder")
    return entry


def _done(raw: object) -> DoneEntry:
    texts = ("name", "kind", "ended_at", "outcome")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in texts):
        raise ValueError(f"not a done entry: {raw!r:.80}")
    run_dir = raw.get("run_dir")
    where = run_dir if isinstance(run_dir, str) else None
    return DoneEntry(raw["name"], raw["kind"], raw["ended_at"], raw["outcome"], run_dir=where)


def _parse(text: str) -> QueueState:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError("no list of entries")
    done = [_done(d) for d in data.get("done", [])]
    return QueueState([_entry(e) for e in data["entries"]], paused=bool(data.get("paused", False)), done=done)


class RunQueue:
    """The queue of one runs folder. Cheap to make: it holds only paths."""

    def __init__(self, runs_root: Path | str):
        self.root = Path(runs_root)
        self.path = self.root / QUEUE_FILE

    # -- reading (no lock: the file is only ever replaced whole) --------------------------

    def read(self) -> QueueState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return QueueState()
        except OSError as exc:
            return QueueState(problem=f"The queue file {self.path} could not be read ({exc.strerror}).")
        try:
            return _parse(text)
        except (ValueError, TypeError) as exc:
            return QueueState(
                problem=f"The queue file {self.path} is damaged ({exc}); it is set aside as "
                f"{self.path.name}.damaged at the next change, and the queue starts empty."
            )

    # -- changing (under the lock) -----------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[QueueState]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / QUEUE_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            if state.problem is not None and self.path.exists():
                os.replace(self.path, self.path.with_name(self.path.name + ".damaged"))  # kept for a person to read
            yield state
            data = {
                "paused": state.paused,
                "entries": [asdict(e) for e in state.entries],
                "done": [asdict(d) for d in state.done[-KEEP_DONE:]],
            }
            atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")

    def change(self, edit: Callable[[QueueState], T]) -> T:
        """edit(state) under the lock; what it leaves in state is written back."""
        with self._locked() as state:
            return edit(state)

    def add_runs(self, experiments: list[dict]) -> list[QueueEntry]:
        """Queue each resolved experiment (its to_dict()) at the end, in the order given."""
        entries = [QueueEntry(_new_id(), RUN, str(e.get("name", "?")), now_iso(), experiment=e) for e in experiments]
        self.change(lambda s: s.entries.extend(entries))
        return entries

    def add_resume(self, run_dir: Path, name: str) -> QueueEntry:
        entry = QueueEntry(_new_id(), RESUME, name, now_iso(), run_dir=str(run_dir))

        def add(state: QueueState) -> None:
            if any(e.run_dir == str(run_dir) for e in state.entries):
                raise QueueError(f"{run_dir.name} is queued already.")
            state.entries.append(entry)

        self.change(add)
        return entry

    def remove(self, entry_id: str) -> QueueEntry:
        """Take a waiting entry off the queue; the one training is stopped on its run screen instead."""

        def take(state: QueueState) -> QueueEntry:
            entry = _find(state, entry_id)
            if entry.current:
                raise QueueError(f"{entry.name} is training: stop it on its run screen (s), and the queue goes on.")
            state.entries.remove(entry)
            return entry

        return self.change(take)

    def move(self, entry_id: str, by: int) -> None:
        """Move a waiting entry up (by < 0) or down; never above the one training."""

        def shift(state: QueueState) -> None:
            entry = _find(state, entry_id)
            first = 1 if state.entries and state.entries[0].current else 0
            if entry.current:
                raise QueueError(f"{entry.name} is training already: it cannot move.")
            at = state.entries.index(entry)
            to = max(first, min(len(state.entries) - 1, at + by))
            state.entries.insert(to, state.entries.pop(at))

        self.change(shift)

    def set_paused(self, paused: bool) -> None:
        def pause(state: QueueState) -> None:
            state.paused = paused

        self.change(pause)

    # -- the runner's side ---------------------------------------------------------------------

    def take_next(self, on_empty: Callable[[], None]) -> QueueEntry | None:
        """The first entry, marked as started; None when the queue is empty or paused.

        on_empty runs under the queue lock when there is nothing to start: the runner lets go of
        its own lock there, so that whoever adds an entry after this sees no runner and starts one.
        """

        def take(state: QueueState) -> QueueEntry | None:
            if state.paused or not state.entries:
                on_empty()
                return None
            state.entries[0].started_at = now_iso()
            return state.entries[0]

        return self.change(take)

    def set_pid(self, entry_id: str, pid: int) -> None:
        def mark(state: QueueState) -> None:
            for entry in state.entries:
                if entry.id == entry_id:
                    entry.pid = pid

        self.change(mark)

    def done(self, entry_id: str, outcome: str, run_dir: Path | None) -> None:
        """The entry has been run (to whatever end): off the queue, into its list of what was run."""

        def drop(state: QueueState) -> None:
            for entry in [e for e in state.entries if e.id == entry_id]:
                state.entries.remove(entry)
                where = str(run_dir) if run_dir is not None else None
                state.done.append(DoneEntry(entry.name, entry.kind, now_iso(), outcome, where))

        self.change(drop)


def _find(state: QueueState, entry_id: str) -> QueueEntry:
    for entry in state.entries:
        if entry.id == entry_id:
            return entry
    raise QueueError("That entry has left the queue (it started or was removed).")


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


# -- is a runner alive? ------------------------------------------------------------------------


def runner_pid(runs_root: Path | str) -> int | None:
    """The pid of the runner working through this folder's queue, or None if none runs."""
    path = Path(runs_root) / RUNNER_LOCK
    try:
        with open(path) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = lock.read().strip()
                return int(text) if text.isdigit() else -1
            return None
    except FileNotFoundError:
        return None


class RunnerLock:
    """Held by the one runner of a runs folder for its life; released by the OS if it dies."""

    def __init__(self, runs_root: Path):
        self.path = Path(runs_root) / RUNNER_LOCK
        self._file: TextIO | None = None

    def acquire(self) -> bool:
        """True if this process is now the runner; False if another one is."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the runner's whole life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
