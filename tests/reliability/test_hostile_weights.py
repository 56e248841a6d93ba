"""Weights files from elsewhere: whatever a file holds, the person gets a message that names it and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ftui.cli import main
from ftui.engine.weights import load_local_weights
from ftui.errors import WeightsError
from tests.conftest import TINY

LFS = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 46830571\n"
)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_git_lfs_pointer_is_called_what_it_is(tmp_path, suffix):
    path = tmp_path / f"resnet18{suffix}"
    path.write_text(LFS)
    with pytest.raises(WeightsError, match="Git LFS pointer") as caught:
        load_local_weights(path)
    assert "pickled" not in str(caught.value) and "git lfs pull" in str(caught.value)


@pytest.mark.parametrize("content", ["hello\nthis is text\n", "{}", "PK but not a zip"])
def test_a_text_file_is_not_a_pytorch_weights_file(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_text(content)
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        load_local_weights(path)


def test_an_empty_file_is_called_empty(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.touch()
    with pytest.raises(WeightsError, match="is empty"):
        load_local_weights(path)


def test_a_pickle_whose_loader_fails_in_an_unexpected_way_still_gets_a_message(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, path)

    def odd_failure(*args, **kwargs):
        raise KeyError(101)  # what torch's weights-only unpickler raised for some text

    monkeypatch.setattr(torch, "load", odd_failure)
    with pytest.raises(WeightsError, match=r"is not a readable weights file \(KeyError: 101\)"):
        load_local_weights(path)


def test_both_torch_save_formats_still_load(tmp_path):
    for zip_format in (True, False):
        path = tmp_path / f"w{zip_format}.pth"
        torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=zip_format)
        assert torch.equal(load_local_weights(path)["w"], torch.ones(3))


def test_a_run_from_a_text_file_is_refused_before_its_folder_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("notes.pth").write_text("these are my notes, not weights\n")
    entry = {**TINY, "name": "w", "weights": "notes.pth"}
    del entry["trainable"]
    Path("experiments.toml").write_text(
        "[[experiment]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    )
    assert main(["run", "w"]) != 0
    err = capsys.readouterr().err
    assert "notes.pth is not a PyTorch weights file" in " ".join(err.split()) and "internal error" not in err
    assert not Path("checkpoints").exists() or not any(Path("checkpoints").iterdir())
