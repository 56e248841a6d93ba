"""LoRA: parameter counts, validation, exact attention updates, small adapter checkpoints, exports, resume."""

from __future__ import annotations

import copy
import dataclasses
import threading

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn

from ftui.engine import events as ev
from ftui.engine.checkpoints import load_checkpoint_model, read_checkpoint
from ftui.engine.evaluation import evaluate_checkpoint
from ftui.engine.export import export_merged, export_peft
from ftui.engine.lora import adapted_modules, attach_lora, base_name, is_lora_tensor, merged_state
from ftui.engine.model_facts import describe
from ftui.engine.models import apply_cifar_stem, build_model, layer_units, meta_model
from ftui.engine.train import resume, train
from ftui.engine.validation import experiment_from_dict
from ftui.errors import CatalogError, CheckpointError, FtuiError
from tests.conftest import TINY

KINDS = ("attention", "linear", "conv")


def _lora_counts(model: nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for unit in layer_units(model):
        n = sum(p.numel() for name, p in model.named_parameters() if unit.owns(name) and is_lora_tensor(name))
        if n:
            counts[unit.name] = n
    return counts


@pytest.mark.parametrize(
    "model,extra", [("resnet18", {"cifar_stem": True}), ("vgg16", {}), ("vit_b_16", {"input_size": 224})]
)
def test_lora_parameter_counts_equal_the_formula_without_weights(model, extra):
    exp = experiment_from_dict(
        {"name": "x", "model": model, "weights": "none", "trainable": [], "lora": "all", "lora_rank": 4, **extra}, "t"
    )
    info = describe(model, exp.cifar_stem)
    built = meta_model(exp, 10)  # PEFT's own layers, on the meta device
    assert info.lora_params(exp.lora, KINDS, 4) == _lora_counts(built)
    # r·(in+out) per Linear, the conv equivalent per Conv2d, in+3·in and 2·in per attention
    if model == "vit_b_16":
        per_layer = 4 * ((768 + 3 * 768) + (768 + 768)) + 4 * ((768 + 3072) + (3072 + 768))
        assert info.lora_params(exp.lora, KINDS, 4)["encoder_layer_0"] == per_layer
    if model == "resnet18":
        assert info.lora_params(("fc",), KINDS, 4) == {"fc": 4 * (512 + 10)}
        assert info.lora_params(("conv1",), KINDS, 4) == {"conv1": 4 * (3 * 3 * 3 + 64)}


def test_targets_are_matched_by_whole_name(make_exp):
    # PEFT matches a list of names by suffix: "conv1" would also adapt every block's conv1.
    exp = make_exp(trainable=["fc"], lora=["conv1"])
    assert adapted_modules(meta_model(exp, 10)) == ("conv1",)


def test_lora_all_means_every_adaptable_unit_not_trained(make_exp):
    exp = make_exp(trainable=["fc"], lora="all")
    assert exp.lora == ("conv1", "layer1", "layer2", "layer3", "layer4")  # bn1 has nothing to adapt
    assert exp.mode_of("fc").value == "train" and exp.mode_of("bn1").value == "frozen"
    assert exp.mode_of("layer2").value == "lora" and exp.alpha == 2 * exp.lora_rank


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"trainable": "all", "lora": ["layer1"]}, "'layer1' is also in trainable"),
        ({"trainable": ["fc"], "lora": ["bn1"]}, "'bn1' has no layer LoRA can adapt"),
        ({"trainable": ["fc"], "lora": ["layr1"]}, "did you mean 'layer1'"),
        ({"trainable": ["fc"], "lora": "all", "lora_layers": ["atention"]}, "did you mean 'attention'"),
        ({"trainable": ["fc"], "lora": ["layer1"], "lora_rank": 0}, "lora_rank = 0: out of range"),
        ({"trainable": ["fc"], "lora": ["layer1"], "lora_alpha": -1}, "lora_alpha = -1: out of range"),
    ],
)
def test_bad_lora_settings_are_named(overrides, message):
    with pytest.raises(CatalogError, match=message):
        experiment_from_dict({**TINY, **overrides}, "test")


def test_lora_settings_round_trip_through_stored_json(make_exp):
    exp = make_exp(trainable=["fc"], lora=["layer4"], lora_rank=4, lora_alpha=3.0, lora_layers=["conv"])
    assert experiment_from_dict(exp.to_dict(), "stored") == exp


# --- attention: exactly W + ΔW, and no drift of the base -----------------------------------------


def _small_vit() -> nn.Module:
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10
    )
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts the head at zero: nothing below it would learn
    return vit


def test_attention_updates_are_exact_and_the_base_never_drifts(make_exp):
    model = _small_vit()
    exp = dataclasses.replace(
        make_exp(), lora=("encoder_layer_0", "encoder_layer_1"), lora_layers=("attention", "linear")
    )
    attach_lora(model, exp, layer_units(model))
    with torch.no_grad():  # B starts at zero: give the update a value
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    attention = model.encoder.layers.encoder_layer_0.self_attention.get_base_layer()
    before = {n: p for n, p in model.named_parameters() if not is_lora_tensor(n)}
    start = {n: p.detach().clone() for n, p in before.items()}

    plain = _small_vit()
    plain.load_state_dict(merged_state(model))  # torchvision names, W + ΔW
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-5)

    lora = [p for n, p in model.named_parameters() if is_lora_tensor(n)]
    for p in model.parameters():
        p.requires_grad_(any(p is q for q in lora))
    opt = torch.optim.SGD(lora, lr=0.5)
    for _ in range(30):  # torchvision's encoder calls its attention with keyword arguments
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.arange(4)).backward()
        opt.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    after = dict(model.named_parameters())  # the parameters now in the model, not the objects held before
    assert after.keys() >= before.keys()
    for name in before:
        assert torch.equal(after[name], start[name]), f"{name} drifted"
    assert isinstance(attention.in_proj_weight, nn.Parameter)


# --- a real LoRA run: small checkpoints, the base untouched, exports, resume -----------------------


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory):
    """A ResNet18 (CIFAR stem) trained a few steps on the sample: a network trained earlier, as a file."""
    root = tmp_path_factory.mktemp("base")
    pre = experiment_from_dict({**TINY, "epochs": 1, "max_steps_per_epoch": 10}, "test")
    result = train(pre, runs_root=root / "runs")
    assert result.status == "finished", result.reason
    return result.run_dir / "best.safetensors"


def _lora_exp(base, **overrides):
    return experiment_from_dict(
        {
            **TINY,
            "name": "tiny-lora",
            "weights": str(base),
            "trainable": ["fc"],
            "lora": ["layer3", "layer4"],
            "lora_rank": 4,
            "optimizer": "adamw",  # as the catalog's LoRA rows: SGD at 0.01 diverged on one data order
            "lr": 1e-3,
            **overrides,
        },
        "test",
    )


@pytest.fixture(scope="module")
def lora_run(base_weights, tmp_path_factory):
    exp = _lora_exp(base_weights, epochs=3, max_steps_per_epoch=4)
    result = train(exp, runs_root=tmp_path_factory.mktemp("lora"))
    assert result.status == "finished", result.reason
    return exp, result


def test_a_lora_run_learns_and_keeps_only_what_trains(lora_run, base_weights):
    exp, result = lora_run
    losses = [e.train_loss for e in _epoch_ends(result.run_dir)]
    assert losses[-1] < losses[0], losses
    last = result.run_dir / "last.safetensors"
    held = load_file(last)
    assert held and all(is_lora_tensor(k) or k.startswith("fc.") for k in held), sorted(held)[:5]
    assert last.stat().st_size * 20 < base_weights.stat().st_size
    info = read_checkpoint(last)
    assert info.lora_base is not None and info.lora_base["weights"] == str(base_weights)
    assert {t.unit for t in info.tensors if t.trained} == {"layer3", "layer4", "fc"}
    assert info.adapters().startswith("LoRA rank 4, α 8, on attention, linear, conv layers: layer3 ")

    model, _, _ = load_checkpoint_model(last)
    start = build_model(dataclasses.replace(exp, lora=()), 10).state_dict()
    for name, tensor in model.state_dict().items():
        if not is_lora_tensor(name) and not name.startswith("fc."):
            assert torch.equal(tensor, start[base_name(name)]), f"base tensor {name} moved"


def _epoch_ends(run_dir):
    from ftui.engine.runs import RunFolder

    return [e for e in RunFolder(run_dir).read_events() if isinstance(e, ev.EpochEnd)]


def test_lora_checkpoint_with_other_base_weights_is_refused(lora_run, tmp_path):
    exp, result = lora_run
    other = tmp_path / "other.safetensors"
    state = load_file(exp.weights)
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"] + 1e-3
    save_file(state, other)
    stored = dict(read_checkpoint(result.run_dir / "best.safetensors").experiment, weights=str(other))
    moved = tmp_path / "moved.safetensors"
    _rewrite_experiment(result.run_dir / "best.safetensors", moved, stored)
    with pytest.raises(CheckpointError, match="other base weights"):
        evaluate_checkpoint(moved, "cpu")
    stored["weights"] = str(tmp_path / "gone.safetensors")
    _rewrite_experiment(result.run_dir / "best.safetensors", moved, stored)
    with pytest.raises(CheckpointError, match="needs the base weights"):
        evaluate_checkpoint(moved, "cpu")


def _rewrite_experiment(src, dst, experiment: dict) -> None:
    import json

    from safetensors import safe_open

    with safe_open(src, framework="pt") as f:
        meta = dict(f.metadata())
    meta["experiment"] = json.dumps(experiment)
    save_file(load_file(src), dst, metadata=meta)


def test_a_corrupt_adapter_file_is_a_clear_error(lora_run, tmp_path):
    _, result = lora_run
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((result.run_dir / "last.safetensors").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        evaluate_checkpoint(broken, "cpu")


def test_merged_export_loads_in_plain_torchvision_with_the_same_predictions(lora_run, tmp_path):
    _, result = lora_run
    out = tmp_path / "merged.safetensors"
    export_merged(result.run_dir / "best.safetensors", out)
    plain = torchvision.models.resnet18(num_classes=10)
    apply_cifar_stem(plain)
    plain.load_state_dict(load_file(out))  # strict: torchvision's own names, nothing more
    model, _, _ = load_checkpoint_model(result.run_dir / "best.safetensors")
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_peft_loads_the_peft_export_onto_plain_torchvision(lora_run, tmp_path):
    from peft import PeftModel

    exp, result = lora_run
    out = tmp_path / "adapter"
    assert export_peft(result.run_dir / "best.safetensors", out) == ["fc"]
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    plain = torchvision.models.resnet18(num_classes=10)
    apply_cifar_stem(plain)
    plain.load_state_dict(load_file(exp.weights))  # the base weights the run started from
    peft_model = PeftModel.from_pretrained(plain, str(out))
    model, _, _ = load_checkpoint_model(result.run_dir / "best.safetensors")
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(peft_model.eval()(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_peft_export_refuses_what_its_format_cannot_hold(base_weights, tmp_path):
    # The stem's conv1 trains: PEFT's modules_to_save would also take every block's conv1.
    exp = _lora_exp(base_weights, trainable=["conv1", "fc"], epochs=1, max_steps_per_epoch=1)
    result = train(exp, runs_root=tmp_path)
    with pytest.raises(FtuiError, match=r"also selects layer1\.0\.conv1"):
        export_peft(result.run_dir / "last.safetensors", tmp_path / "adapter")
    export_merged(result.run_dir / "last.safetensors", tmp_path / "merged.safetensors")  # merged always works


def test_a_lora_run_resumes_exactly(base_weights, lora_run, tmp_path):
    exp, full = lora_run
    stop = threading.Event()

    def stop_after_first_epoch(event):
        if isinstance(event, ev.EpochEnd) and event.epoch == 0:
            stop.set()

    first = train(exp, stop_after_first_epoch, stop, runs_root=tmp_path)
    assert first.status == "stopped" and first.epochs_done == 1
    resumed = resume(first.run_dir)
    assert resumed.status == "finished", resumed.reason
    a, b = load_file(full.run_dir / "last.safetensors"), load_file(resumed.run_dir / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed LoRA weights differ"


def test_a_diverging_lora_run_fails_like_any_run(base_weights, tmp_path):
    exp = dataclasses.replace(_lora_exp(base_weights, epochs=1), lr=1e30)  # beyond what the catalog allows
    result = train(exp, runs_root=tmp_path)
    assert result.status == "failed" and "learning rate" in result.reason


def test_non_lora_checkpoints_export_merged_as_the_whole_model(base_weights, tmp_path):
    out = tmp_path / "copy.safetensors"
    export_merged(base_weights, out)
    a, b = load_file(base_weights), load_file(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FtuiError, match="not a LoRA checkpoint"):
        export_peft(base_weights, tmp_path / "adapter")


def test_copy_of_a_lora_model_keeps_exact_attention(make_exp):
    # deepcopy (used by torch.compile and by some exports) must not lose the hooks' effect
    model = _small_vit()
    attach_lora(model, dataclasses.replace(make_exp(), lora=("encoder_layer_0",)), layer_units(model))
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x))


def test_movement_of_a_lora_unit_is_its_update_over_its_weights(lora_run):
    from ftui.engine.compare import unit_movement
    from ftui.engine.lora import lora_deltas

    _, result = lora_run
    moved = {m.unit: m for m in unit_movement(result.run_dir / "best.safetensors")}
    assert moved["layer1"].relative_change == 0.0 and not moved["layer1"].trained
    model, _, _ = load_checkpoint_model(result.run_dir / "best.safetensors")
    base = {base_name(k): v for k, v in model.state_dict().items()}
    deltas = {k: d for k, d in lora_deltas(model).items() if k.startswith("layer4.")}
    weights = [base[k] for k, v in base.items() if k.startswith("layer4.") and k in _params(model)]
    expected = sum(float(d.double().pow(2).sum()) for d in deltas.values()) ** 0.5 / (
        sum(float(w.double().pow(2).sum()) for w in weights) ** 0.5
    )
    assert moved["layer4"].lora and not moved["fc"].lora
    assert moved["layer4"].trained and moved["layer4"].relative_change == pytest.approx(expected, rel=1e-6)
    assert expected > 0


def _params(model) -> set[str]:
    return {base_name(n) for n, _ in model.named_parameters() if not is_lora_tensor(n)}


def test_cli_inspect_and_export_of_a_lora_checkpoint(lora_run, tmp_path, capsys):
    from ftui.cli import main

    _, result = lora_run
    best = str(result.run_dir / "best.safetensors")
    assert main(["inspect", best]) == 0
    shown = capsys.readouterr().out
    assert "LoRA rank 4, α 8" in shown and "base weights (not in this file)" in shown
    out = tmp_path / "merged.safetensors"
    assert main(["export", best, "--merged", str(out)]) == 0
    assert "LoRA updates merged" in capsys.readouterr().out
    assert main(["export", best, "--merged", str(out)]) == 2  # never overwrites unasked
    assert "already exists" in capsys.readouterr().err
    assert main(["export", best, "--merged", str(out), "--force"]) == 0
    assert main(["export", best, "--peft", str(tmp_path / "adapter")]) == 0
    assert "carried whole: fc" in capsys.readouterr().out.replace("\n", " ")
