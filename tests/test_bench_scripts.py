"""The benchmark scripts in bench/, as a person runs them: offline, small, no network."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    # bench/ is a folder of scripts, not a package.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def throughput():
    return load_script("throughput")


@pytest.fixture(scope="module")
def tta():
    return load_script("time_to_accuracy")


# -- throughput.py ----------------------------------------------------------------


def test_resnet18_forward_flops_match_torchvision(throughput):
    # torchvision lists 1.81 "GFLOPS" for resnet18, counting a multiply-add once; peaks count it twice.
    counted = throughput.forward_flops("resnet18", 224) / 1e9
    assert counted / 2 == pytest.approx(1.8, rel=0.1)
    assert counted / 2 == pytest.approx(throughput.torchvision_gmacs("resnet18"), rel=0.01)
    assert throughput.training_gflops("resnet18", 224) == pytest.approx(3 * counted)


def test_the_cifar_stem_network_is_counted_at_32(throughput):
    # Stride 1 and no maxpool keep 32x32 feature maps: about 0.56 G multiply-adds, not 1.81/49.
    assert throughput.forward_flops("resnet18", 32) / 2e9 == pytest.approx(0.56, rel=0.05)


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA GeForce RTX 4090", 165.2),
        ("NVIDIA L40", None),
        ("Some Future GPU", None),
    ],
)
def test_peak_lookup_by_device_name(throughput, name, peak):
    assert throughput.peak_tflops(name) == peak


def test_share_of_peak_is_a_dash_on_cpu_and_unknown_on_an_unlisted_gpu(throughput):
    row = throughput.add_flops({"model": "resnet18", "size": 224, "ftui": 100.0, "bare": 110.0}, None)
    assert row["ftui_mfu"] is None and row["ftui_tflops"] == pytest.approx(100 * row["gflops_per_image"] / 1e3)
    assert throughput.share(None, torch.device("cpu")) == "-"
    assert throughput.share(None, torch.device("cuda")) == "unknown"
    with_peak = throughput.add_flops({"model": "resnet18", "size": 224, "ftui": 100.0, "bare": 110.0}, 989.4)
    assert with_peak["bare_mfu"] == pytest.approx(with_peak["bare_tflops"] / 989.4)


def test_batch224_takes_one_size_or_one_per_model(throughput):
    models = ["resnet18", "vgg16", "vit_b_16"]
    assert throughput.parse_batches("32", models) == dict.fromkeys(models, 32)
    assert throughput.parse_batches("64,vit_b_16=16", models) == {"resnet18": 64, "vgg16": 64, "vit_b_16": 16}
    with pytest.raises(ValueError, match="vgg16"):
        throughput.parse_batches("resnet18=256", ["resnet18", "vgg16"])
    with pytest.raises(ValueError, match="unknown model"):
        throughput.parse_batches("resnet50=8", models)


def test_vgg_and_vit_run_only_at_224_and_32_is_the_cifar_resnet(throughput):
    models = ["resnet18", "vgg16", "vit_b_16"]
    assert throughput.jobs([32, 224], models) == [
        ("resnet18", 32),
        ("resnet18", 224),
        ("vgg16", 224),
        ("vit_b_16", 224),
    ]
    assert throughput.jobs([64], models) == [("resnet18", 64), ("vgg16", 64)]


# -- time_to_accuracy.py ------------------------------------------------------------


def test_the_seed_loop_is_written_as_a_person_writes_it(throughput, monkeypatch):
    # ftui's layout (channels_last) and backend settings are ftui's gain, not the plain loop's.
    cpu = torch.device("cpu")
    plain = throughput.make_model("resnet18", 32, cpu, tuned=False)
    tuned = throughput.make_model("resnet18", 32, cpu)
    assert plain.conv1.weight.is_contiguous()
    assert tuned.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    # Both flags as ftui sets them on CUDA; monkeypatch gives the process its own values back after the test.
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    with throughput.default_backends():
        assert not torch.backends.cudnn.benchmark and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32  # restored for ftui's loops


def test_missing_cifar10_and_weights_are_named_with_where_to_put_them(tmp_path):
    # Where ftui looks for CIFAR-10 and torch for pretrained weights: empty folders.
    env = {**os.environ, "FTUI_DATA_DIR": str(tmp_path / "data"), "TORCH_HOME": str(tmp_path / "torch")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "time_to_accuracy.py"), "--json", str(tmp_path / "out.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("missing (")]
    assert len(lines) == 4  # CIFAR-10 and the weights of resnet18, vgg16 and vit_b_16
    assert any("cifar-10-python.tar.gz" in line and str(tmp_path / "data") in line for line in lines)
    for filename in ("resnet18-f37072fd.pth", "vgg16-397923af.pth", "vit_b_16-c867db91.pth"):
        assert any(filename in line and str(tmp_path / "torch" / "hub" / "checkpoints") in line for line in lines)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, no JSON written


def test_only_names_an_unknown_recipe(tta, tmp_path, capsys):
    assert tta.main(["--only", "resnet18-fft,nonesuch", "--json", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert "nonesuch" in err and "resnet18-fft" in err.split("those it has are:")[1]


TINY_CATALOG = """
[defaults]
model = "resnet18"
weights = "none"
dataset = "cifar10-sample"
input_size = 16
cifar_stem = true
batch_size = 8
epochs = 2
max_steps_per_epoch = 1
max_test_images = 32
device = "cpu"

[[experiment]]
name = "tiny-easy"
reference_acc = 1.0

[[experiment]]
name = "tiny-hard"
reference_acc = 100.0
"""


@pytest.fixture
def reference_catalog(tmp_path: Path) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(TINY_CATALOG)
    return path


def test_a_run_stops_once_it_reaches_the_report(tta, reference_catalog, tmp_path, capsys):
    out = tmp_path / "tta.json"
    assert tta.main(["--catalog", str(reference_catalog), "--runs", str(tmp_path / "runs"), "--json", str(out)]) == 0
    easy, hard = json.loads(out.read_text())["recipes"]
    assert (easy["reached"], easy["epoch"], easy["epochs_done"], easy["status"]) == (True, 1, 1, "stopped")
    assert 0 < easy["seconds"] <= easy["total_seconds"]
    assert (hard["reached"], hard["epoch"], hard["epochs_done"], hard["status"]) == (False, None, 2, "finished")
    assert hard["best_acc"] is not None
    table = capsys.readouterr().out.split("\n\n", 1)[1]
    assert "tiny-easy" in table and "tiny-hard" in table and " yes " in table and " no " in table


def test_full_trains_every_epoch_and_keeps_the_first_that_reached(tta, reference_catalog, tmp_path):
    out = tmp_path / "tta.json"
    assert tta.main(["--catalog", str(reference_catalog), "--only", "tiny-easy", "--full", "--json", str(out)]) == 0
    (easy,) = json.loads(out.read_text())["recipes"]
    assert (easy["reached"], easy["epoch"], easy["epochs_done"], easy["status"]) == (True, 1, 2, "finished")


# -- lora.py ----------------------------------------------------------------------


def test_lora_bench_measures_each_way_of_training():
    lora = load_script("lora")
    rows = {way: lora.one("resnet18", 16, 4, way, steps=1) for way in ("head", "lora", "full")}
    assert rows["head"]["trainable"] < rows["lora"]["trainable"] < rows["full"]["trainable"]
    # the LoRA checkpoint holds only what trains; a non-LoRA run saves the whole model
    assert rows["lora"]["checkpoint_mib"] * 20 < rows["full"]["checkpoint_mib"] == rows["head"]["checkpoint_mib"]
    assert rows["lora"]["optimizer_mib"] * 20 < rows["full"]["optimizer_mib"]
    assert all(r["step_s"] > 0 and r["peak_rss_mib"] > 0 for r in rows.values())
