"""A few hundred mutated run-folder JSON files (experiment.json, status.json) through `ftui resume` and the
runs list (seeded, bounded in time).

Whatever a run folder's files hold, resume either continues or refuses with a message, never ends as an
internal error, and its message never carries a control character a terminal would act on.
"""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from ftui.cli import main
from ftui.engine import events as ev
from ftui.engine.runs import list_runs
from ftui.engine.train import resume, train
from ftui.engine.validation import experiment_from_dict
from tests.conftest import TINY
from tests.reliability.test_fuzz_checkpoints import CONTROL, random_value

BUDGET_S = 30.0  # a slow machine runs fewer cases; it never fails for being slow
FILES = ("experiment.json", "status.json")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    stop = threading.Event()
    result = train(
        experiment_from_dict({**TINY, "epochs": 2}, "test"),
        lambda e: stop.set() if isinstance(e, ev.EpochEnd) else None,
        stop,
        runs_root=tmp_path_factory.mktemp("fuzz"),
    )
    assert result.status == "stopped"
    return result.run_dir


def mutated(text: str, rng: random.Random) -> str:
    data = json.loads(text)
    how = rng.choice(["replace", "drop", "garbage", "type"])
    if how == "garbage":
        return rng.choice(["", "[]", "null", "{", '"x"', "\x1b[2J", text[: rng.randint(0, len(text))]])
    key = rng.choice(sorted(data))
    if how == "drop":
        del data[key]
    elif how == "type":
        data = [data] if rng.random() < 0.5 else {k: str(v) for k, v in data.items()}
    else:
        data[key] = random_value(rng)
    return json.dumps(data)


def test_resume_never_ends_as_an_internal_error(stopped, capsys):
    originals = {name: (stopped / name).read_text() for name in FILES}
    rng, started, cases = random.Random(1234), time.monotonic(), 0
    always_stop = threading.Event()
    always_stop.set()  # a case that would train stops before its first step: no case spends time training
    while cases < 300 and time.monotonic() - started < BUDGET_S:
        name = rng.choice(FILES)
        (stopped / name).write_text(mutated(originals[name], rng))
        try:
            result = resume(stopped, stop=always_stop)
            list_runs(stopped.parent)  # the runs screen reads the same files
            if result.status == "failed":  # refused: what `ftui resume` prints of it (it trains nothing)
                capsys.readouterr()
                code = main(["resume", str(stopped)])
                printed = capsys.readouterr()
                assert code in (1, 2), (code, printed)
                assert not CONTROL.search(printed.out + printed.err), printed
        finally:
            for file, text in originals.items():
                (stopped / file).write_text(text)
        assert result.status in ("failed", "stopped", "finished"), result
        cases += 1
    assert cases >= 20


RESUME_FIELDS = ("epoch", "param_groups", "optimizer_plain_state", "scheduler", "format")


def test_resume_with_a_mutated_resume_state_header_never_ends_as_an_internal_error(stopped):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from tests.reliability.test_fuzz_checkpoints import NASTY

    path = stopped / "resume.safetensors"
    original = path.read_bytes()
    with safe_open(path, framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(path)
    (stopped / "resume.prev.safetensors").unlink(missing_ok=True)  # the mutated file is the only state
    rng, started, cases = random.Random(99), time.monotonic(), 0
    always_stop = threading.Event()
    always_stop.set()
    while cases < 60 and time.monotonic() - started < BUDGET_S:
        field = rng.choice(RESUME_FIELDS)
        value = rng.choice([json.dumps(random_value(rng)), rng.choice(NASTY), meta[field][: rng.randint(0, 12)]])
        save_file(tensors, path, metadata={**meta, field: value})
        try:
            result = resume(stopped, stop=always_stop)
        finally:
            path.write_bytes(original)
        assert result.status in ("failed", "stopped", "finished"), result
        assert "Internal error" not in (result.reason or ""), (field, value, result.reason)
        cases += 1
    assert cases >= 10
