"""A few hundred mutated checkpoint headers through `ftui inspect` and `ftui eval` (seeded, bounded).

Whatever a shared checkpoint's metadata holds, the command either works or refuses with a
message (exit 2), never ends as an internal error, and never prints a control character
that a terminal would act on (clear the screen, retitle the window).
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ftui.cli import main
from ftui.engine import evaluation
from ftui.engine.checkpoints import load_checkpoint_model, read_checkpoint
from ftui.errors import FtuiError

FIELDS = ("kind", "epoch", "experiment", "metrics", "trainable_units", "classes", "versions")
NASTY = ["[/]", "[bold red]x", "\x1b[2J", "\x1b]0;owned\x07", "\x9b31m", "a\rb", "\x7f", "é", "", "0", "-1", "1e309"]
# C0 controls but newline, DEL, and the C1 range a terminal may read as escape sequences
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
BUDGET_S = 20.0  # a slow machine runs fewer cases; it never fails for being slow


@pytest.fixture(scope="module")
def good(good_checkpoint) -> tuple[dict, dict]:
    with safe_open(good_checkpoint, framework="pt") as f:
        meta = dict(f.metadata())
    return meta, load_file(good_checkpoint)


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["int", "float", "str", "list", "dict", "null", "bool"] if depth < 2 else ["int", "str"])
    if kind == "int":
        return rng.choice([0, -1, 1, 2**70, 10])
    if kind == "float":
        return rng.choice([0.5, -3.25, 1e308])
    if kind == "str":
        return rng.choice(NASTY)
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        return {rng.choice(NASTY + ["model", "name", "test_acc"]): random_value(rng, depth + 1) for _ in range(2)}
    return None if kind == "null" else rng.choice([True, False])


def mutate(meta: dict, rng: random.Random) -> dict:
    meta = dict(meta)
    field = rng.choice(FIELDS)
    how = rng.choice(["replace", "inside", "text"])
    if how == "text":  # not JSON at all, or raw text where a number is expected
        meta[field] = rng.choice(NASTY) + meta[field][: rng.randint(0, 8)]
        return meta
    value = json.loads(meta[field]) if field not in ("kind", "epoch") else meta[field]
    if how == "inside" and isinstance(value, dict) and value:
        value[rng.choice(list(value))] = random_value(rng)
    elif how == "inside" and isinstance(value, list) and value:
        value[rng.randrange(len(value))] = random_value(rng)
    else:
        value = random_value(rng)
    meta[field] = value if isinstance(value, str) and field in ("kind", "epoch") else json.dumps(value)
    return meta


def fuzzed_files(good, folder: Path, seed: int, cases: int):
    """Write each mutated checkpoint in turn to one path and yield it, within the time budget."""
    meta, tensors = good
    rng = random.Random(seed)
    path = folder / "fuzzed.safetensors"
    started = time.monotonic()
    for _ in range(cases):
        if time.monotonic() - started > BUDGET_S:
            return
        save_file(tensors, path, metadata=mutate(meta, rng))
        yield path


def test_mutated_headers_are_read_or_refused_by_the_engine(good, tmp_path):
    outcomes = {"read": 0, "refused": 0}
    for path in fuzzed_files(good, tmp_path, seed=1, cases=200):
        try:
            read_checkpoint(path)
            load_checkpoint_model(path)
            outcomes["read"] += 1
        except FtuiError:
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 60 and outcomes["read"] >= 5, outcomes


def test_mutated_headers_never_crash_inspect_or_eval(good, tmp_path, capsys, monkeypatch):
    # What is fuzzed is the metadata path up to the model; evaluating the test set each time that
    # metadata is accepted would cost seconds a case, and is tested on its own in test_checkpoints.
    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: evaluation.Evaluation(0.0, 0.0, 8))
    outcomes = {0: 0, 2: 0}
    for path in fuzzed_files(good, tmp_path, seed=2, cases=60):
        for command in (["inspect", str(path)], ["eval", str(path), "--device", "cpu"]):
            code = main(command)
            out = capsys.readouterr()
            text = out.out + out.err
            assert code in outcomes and "internal error" not in text, (command, text)
            assert not CONTROL.search(text), (command, repr(text))
            outcomes[code] += 1
    assert outcomes[2] >= 40 and outcomes[0] >= 4, outcomes  # both refusals and files that still work were seen
