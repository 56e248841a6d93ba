"""safetensors checkpoints: round trips, plain-torchvision loading, corrupt files."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from ftui.engine.checkpoints import load_checkpoint_model, read_checkpoint
from ftui.engine.evaluation import evaluate_checkpoint
from ftui.engine.train import train
from ftui.errors import CheckpointError


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from ftui.engine.catalog import experiment_from_dict
    from tests.conftest import TINY

    exp = experiment_from_dict({**TINY, "trainable": ["conv1", "layer4", "fc"], "epochs": 1}, where="test")
    result = train(exp, runs_root=tmp_path_factory.mktemp("runs"))
    assert result.status == "finished", result.reason
    return result


def test_metadata_and_tensor_table(finished_run):
    info = read_checkpoint(finished_run.run_dir / "last.safetensors")
    assert info.kind == "last" and info.epoch == 0
    assert info.experiment["name"] == "tiny" and info.experiment["model"] == "resnet18"
    assert info.trainable_units == ("conv1", "layer4", "fc")
    assert len(info.classes) == 10 and info.classes[0] == "airplane"
    assert {"torch", "torchvision", "safetensors", "ftui"} <= info.versions.keys()
    assert info.metrics["test_acc"] == finished_run.best_acc
    table = {t.name: t for t in info.tensors}
    assert table["fc.weight"].shape == (10, 512) and table["fc.weight"].trained
    assert table["conv1.weight"].shape == (64, 3, 3, 3) and table["conv1.weight"].trained
    assert table["layer2.0.conv1.weight"].unit == "layer2" and not table["layer2.0.conv1.weight"].trained
    assert table["bn1.running_mean"].unit == "bn1"


def test_same_predictions_after_reload_in_a_plain_torchvision_process(finished_run, tmp_path):
    path = finished_run.run_dir / "best.safetensors"
    model, _, _ = load_checkpoint_model(path)
    model.eval()
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(x)
    # The README's few lines: only torchvision and safetensors, no ftui.
    code = f"""
import sys, torch, torchvision
from safetensors.torch import load_file
model = torchvision.models.resnet18(num_classes=10)
model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
model.maxpool = torch.nn.Identity()
model.load_state_dict(load_file({str(path)!r}))
model.eval()
with torch.no_grad():
    torch.save(model(torch.load({str(tmp_path / "x.pt")!r})), {str(tmp_path / "y.pt")!r})
assert not any(m.startswith("ftui") for m in sys.modules)
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)


def test_eval_of_a_checkpoint_matches_the_run(finished_run):
    result, _exp = evaluate_checkpoint(finished_run.run_dir / "best.safetensors", "cpu")
    assert result.images == 32
    assert result.accuracy == pytest.approx(finished_run.best_acc)


def _corrupt_files(src, tmp_path):
    data = src.read_bytes()
    header_len = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_len])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 10**9  # claims far more bytes than the file has
    lying = json.dumps(header).encode()
    files = {
        "truncated": data[: len(data) // 2],
        "random": bytes(range(256)) * 64,
        "empty": b"",
        "header-only": data[: 8 + header_len],
        "lying-header": struct.pack("<Q", len(lying)) + lying + data[8 + header_len :],
        "huge-header-length": struct.pack("<Q", 2**60) + data[8:],
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.safetensors"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "header-only", "lying-header", "huge-header-length"])
def test_corrupt_checkpoints_give_a_clear_error(finished_run, tmp_path, kind):
    path = _corrupt_files(finished_run.run_dir / "last.safetensors", tmp_path)[kind]
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint_model(path)


def test_plain_safetensors_without_ftui_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an ftui checkpoint"):
        read_checkpoint(path)


def test_checkpoint_whose_tensors_do_not_fit_its_model(finished_run, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    src = finished_run.run_dir / "last.safetensors"
    with safe_open(src, "pt") as f:
        meta = f.metadata()
    tensors = load_file(src)
    tensors["fc.weight"] = torch.zeros(3, 512)
    path = tmp_path / "mismatch.safetensors"
    save_file(tensors, path, metadata=meta)
    with pytest.raises(CheckpointError, match=r"fc\.weight"):
        load_checkpoint_model(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.safetensors")
