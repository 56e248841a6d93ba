"""Checkpoints come from other people: every metadata field is checked before use.

Each case takes a good checkpoint of a small torchvision model, changes one metadata field
the way a hand edit or a hostile file would, and expects a message naming the field, from
the engine and from `ftui inspect` / `ftui eval` (exit 2, never an internal error).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ftui.cli import main
from ftui.engine.checkpoints import RESUME_FORMAT, read_checkpoint
from ftui.errors import CheckpointError
from tests.reliability.conftest import SMALL


@pytest.fixture(scope="module")
def good(good_checkpoint) -> Path:
    return good_checkpoint


def edited(good: Path, folder: Path, **fields: str) -> Path:
    with safe_open(good, framework="pt") as f:
        meta = dict(f.metadata())
    path = folder / "edited.safetensors"
    save_file(load_file(good), path, metadata={**meta, **fields})
    return path


def test_the_good_checkpoint_reads(good):
    info = read_checkpoint(good)
    assert (info.kind, info.epoch, len(info.classes), info.metrics["test_acc"]) == ("best", 1, 10, 50.0)


CASES = {
    "epoch": ["three", "-1", "1.5", "٣"],  # a word, a negative, a float, a non-ASCII digit
    "classes": ["5", '"c0"', '{"a": 1}', "[1, 2]"],
    "trainable_units": ['"classifier"', "7", "[null]"],
    "experiment": ["[1, 2]", '"resnet18"', json.dumps({**SMALL, "model": 5}), json.dumps({**SMALL, "epochs": "x"})],
    "metrics": ["[]", '{"test_acc": "high"}', '{"test_loss": true}'],
    "versions": ["[]", '{"torch": 2}'],
    "kind": ["evil", ""],
}


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, values in CASES.items() for v in values])
def test_a_field_of_the_wrong_kind_is_refused_by_name(good, tmp_path, capsys, field, value):
    path = edited(good, tmp_path, **{field: value})
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value)
    assert f"'{field}'" in str(caught.value) or f"its {field} metadata" in str(caught.value)
    for command in (["inspect", str(path)], ["eval", str(path), "--device", "cpu"]):
        assert main(command) == 2
        out = capsys.readouterr()
        assert "internal error" not in out.err and "Traceback" not in out.err
        assert out.out == ""  # nothing half-printed before the refusal


def test_a_missing_field_is_refused(good, tmp_path):
    with safe_open(good, framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "classes"}
    path = tmp_path / "no-classes.safetensors"
    save_file(load_file(good), path, metadata=meta)
    with pytest.raises(CheckpointError, match="'classes' is missing"):
        read_checkpoint(path)


def test_a_resume_state_file_says_what_it_is_and_what_to_do(tmp_path):
    path = tmp_path / "run" / "resume.safetensors"
    path.parent.mkdir()
    save_file({"rng.cpu": _tensor()}, path, metadata={"format": RESUME_FORMAT, "epoch": "0"})
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    text = str(caught.value)
    assert "resume state" in text and "last.safetensors" in text and f"ftui resume {path.parent}" in text
    assert "not an ftui checkpoint" not in text


def test_a_foreign_safetensors_file_names_itself_not_a_placeholder(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": _tensor()}, path)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert f'weights = "{path}"' in str(caught.value) and "{path}" not in str(caught.value)


def _tensor():
    import torch

    return torch.zeros(2)


HOSTILE_VERSIONS = json.dumps({"torch": "2.0\x1b]0;owned\x07", "ftui": "[/]", "python": "3\x9b2J"})


def test_names_and_metadata_are_printed_as_plain_text(good, tmp_path, capsys):
    folder = tmp_path / "[bold]run[red]"
    folder.mkdir()
    path = edited(good, folder, versions=HOSTILE_VERSIONS)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert str(path) in out  # brackets shown as they are, not read as markup
    assert "torch 2.0\\x1b]0;owned\\x07" in out and "ftui [/]" in out and "3\\x9b2J" in out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out


def test_the_checkpoint_screen_shows_hostile_metadata_as_plain_text(good, tmp_path):
    from ftui.tui.screens.checkpoint import summary_text

    path = edited(good, tmp_path, versions=HOSTILE_VERSIONS)
    shown = summary_text(read_checkpoint(path)).plain
    assert "torch 2.0\\x1b]0;owned\\x07" in shown and "\x1b" not in shown and "\x9b" not in shown
