"""Real tiny training runs through the one training function."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

from ftui.engine import events as ev
from ftui.engine.loop import Diverged
from ftui.engine.runs import RunFolder
from ftui.engine.stop import StopRequest
from ftui.engine.train import resume, train
from ftui.errors import FtuiError
from tests.conftest import epoch_records


class Recorder(list):
    """An on_event callback that keeps every event, optionally acting on some."""

    def __init__(self, act=None):
        super().__init__()
        self.act = act

    def __call__(self, event):
        self.append(event)
        if self.act:
            self.act(event)

    def of(self, kind):
        return [e for e in self if isinstance(e, kind)]


def test_tiny_run_finishes_with_events_metrics_and_checkpoints(make_exp, runs_root):
    events = Recorder()
    result = train(make_exp(), events, threading.Event(), runs_root=runs_root)
    assert result.status == "finished", result.reason
    assert [type(e) for e in (events[0], events[-1])] == [ev.RunStarted, ev.Finished]
    started = events.of(ev.RunStarted)[0]
    assert started.trainable_params == started.total_params > 11_000_000
    assert started.steps_per_epoch == 2 and started.test_images == 32
    ends = events.of(ev.EpochEnd)
    assert [e.epoch for e in ends] == [0, 1]
    assert all(0 <= e.test_acc <= 100 and e.test_loss > 0 for e in ends)
    steps = [loss for e in events.of(ev.Step) for loss in e.losses]
    assert len(steps) == 4  # every step's loss is reported exactly once
    saved = events.of(ev.CheckpointSaved)
    assert {s.kind for s in saved} >= {"last", "best"}

    folder = RunFolder(result.run_dir)
    assert folder.read_status()["state"] == "finished"
    assert folder.read_experiment()["name"] == "tiny"
    # The log holds the very events the callback got, in the same order: one format for both.
    assert folder.read_events() == list(events)
    for name in ("last.safetensors", "best.safetensors", "resume.safetensors"):
        assert (result.run_dir / name).is_file()
    assert result.best_acc == max(e.test_acc for e in ends)


def test_frozen_units_do_not_change(make_exp, runs_root):
    exp = make_exp(trainable=["layer3", "fc"], frozen_bn="freeze", epochs=1)
    from ftui.engine.models import build_model

    torch.manual_seed(exp.seed)
    initial = build_model(exp, 10).state_dict()
    result = train(exp, runs_root=runs_root)
    final = load_file(result.run_dir / "last.safetensors")
    for name, tensor in final.items():
        changed = not torch.equal(tensor, initial[name])
        trains = name.startswith(("layer3.", "fc."))
        if name.endswith("num_batches_tracked"):
            continue
        assert changed == trains, name


def test_stop_before_the_first_step_keeps_nothing_and_says_stopped(make_exp, runs_root):
    stop = threading.Event()
    events = Recorder(lambda e: stop.set() if isinstance(e, ev.RunStarted) else None)
    result = train(make_exp(), events, stop, runs_root=runs_root)
    assert result.status == "stopped" and result.epochs_done == 0
    assert not events.of(ev.Step)
    assert events.of(ev.Stopped)[0].last_checkpoint is None
    assert RunFolder(result.run_dir).read_status()["state"] == "stopped"


def test_stop_mid_run_keeps_the_last_good_checkpoint(make_exp, runs_root):
    stop = threading.Event()
    events = Recorder(lambda e: stop.set() if isinstance(e, ev.Step) and e.epoch == 1 else None)
    result = train(make_exp(epochs=3, max_steps_per_epoch=4), events, stop, runs_root=runs_root)
    assert result.status == "stopped" and result.epochs_done == 1
    # Nothing ran after the report that saw the stop: it is the only one of epoch 2, and the log agrees.
    assert [e.epoch for e in events.of(ev.Step)].count(1) == 1 and events.of(ev.Step)[-1].epoch == 1
    assert [e for e in RunFolder(result.run_dir).read_events() if isinstance(e, ev.Step)] == events.of(ev.Step)
    stopped = events.of(ev.Stopped)[0]
    assert stopped.last_checkpoint == result.run_dir / "last.safetensors"
    status = RunFolder(result.run_dir).read_status()
    assert status["state"] == "stopped" and status["epochs_done"] == 1
    assert status["reason"] == "by request after 1 of 3 epochs"  # a plain Event says nothing more


def test_a_stop_request_says_who_asked(make_exp, runs_root):
    stop = StopRequest()
    events = Recorder(lambda e: stop.request("by SIGTERM") if isinstance(e, ev.Step) else None)
    result = train(make_exp(epochs=2, max_steps_per_epoch=2), events, stop, runs_root=runs_root)
    stop.request("by a second, later request")  # the first reason is the one kept
    assert result.reason == "by SIGTERM after 0 of 2 epochs" == RunFolder(result.run_dir).read_status()["reason"]
    assert stop.why == "by SIGTERM"


def test_nan_loss_fails_the_run_with_a_reason(make_exp, runs_root):
    import dataclasses

    exp = dataclasses.replace(make_exp(), lr=1e30)  # beyond what the catalog allows, as a buggy caller might
    events = Recorder()
    result = train(exp, events, runs_root=runs_root)
    assert result.status == "failed"
    assert "nan" in result.reason.lower() or "inf" in result.reason.lower()
    assert "learning rate" in result.reason
    assert issubclass(Diverged, FtuiError)  # handled, and worded, like every error a person can act on
    assert events.of(ev.Failed)[0].reason == result.reason
    assert RunFolder(result.run_dir).read_status()["state"] == "failed"


def test_setup_errors_fail_before_a_run_folder_exists(make_exp, runs_root, tmp_path):
    events = Recorder()
    result = train(make_exp(dataset="imagefolder", data_dir=str(tmp_path / "missing")), events, runs_root=runs_root)
    assert result.status == "failed" and result.run_dir is None
    assert "missing" in result.reason
    assert events.of(ev.Failed)[0].run_dir is None
    assert not runs_root.exists() or not any(runs_root.iterdir())


def test_batch_larger_than_dataset_is_explained(make_exp, runs_root):
    result = train(make_exp(batch_size=60000), runs_root=runs_root)
    assert result.status == "failed" and "batch_size" in result.reason


def test_a_failing_callback_does_not_stop_training_and_is_logged_once(make_exp, runs_root):
    def broken(event):
        raise RuntimeError("the UI went away")

    result = train(make_exp(epochs=1), broken, runs_root=runs_root)
    assert result.status == "finished"
    log = (result.run_dir / "error.log").read_text()
    assert log.count("the on_event callback failed") == 1  # it failed on every event: written once
    assert "failed on RunStarted" in log and "RuntimeError: the UI went away" in log and "Traceback" in log


def test_resume_trains_a_partial_epoch_again_and_says_so(make_exp, runs_root):
    stop = threading.Event()
    first = train(
        make_exp(epochs=2, max_steps_per_epoch=4),
        Recorder(lambda e: stop.set() if isinstance(e, ev.Step) and e.epoch == 1 else None),
        stop,
        runs_root=runs_root,
    )
    assert first.status == "stopped" and first.epochs_done == 1
    events = Recorder()
    assert resume(first.run_dir, events).status == "finished"
    warnings = events.of(ev.RunWarning)
    assert len(warnings) == 1 and warnings[0].message.startswith("Epoch 2 had not completed")
    logged = RunFolder(first.run_dir).read_events()
    assert warnings[0] in logged
    # The dropped steps are gone from the log: each of the run's 8 steps is there once.
    steps = [s for e in logged if isinstance(e, ev.Step) for s in range(e.global_step, e.last_global_step + 1)]
    assert steps == list(range(8))


def test_training_and_ftui_eval_evaluate_in_batches_of_the_same_size(make_exp, runs_root, monkeypatch):
    import ftui.engine.evaluation as evaluation_module
    import ftui.engine.loop as loop_module

    sizes = []

    def spy(real):
        def evaluate(model, images, labels, augment, batch_size, *args, **kwargs):
            sizes.append(batch_size)
            return real(model, images, labels, augment, batch_size, *args, **kwargs)

        return evaluate

    monkeypatch.setattr(loop_module, "evaluate", spy(loop_module.evaluate))
    monkeypatch.setattr(evaluation_module, "evaluate", spy(evaluation_module.evaluate))
    result = train(make_exp(epochs=1, batch_size=8), runs_root=runs_root)
    evaluation_module.evaluate_checkpoint(result.run_dir / "best.safetensors", "cpu")
    assert sizes == [16, 16]  # the epoch's evaluation, then ftui eval's


def test_resume_ends_exactly_like_an_uninterrupted_run(make_exp, runs_root):
    exp = make_exp(epochs=3, optimizer="adamw", lr=1e-3, rotation=10, crop_padding=2)
    full = train(exp, runs_root=runs_root / "full")
    assert full.status == "finished"

    stop = threading.Event()
    first = train(
        exp,
        Recorder(lambda e: stop.set() if isinstance(e, ev.EpochEnd) and e.epoch == 0 else None),
        stop,
        runs_root=runs_root / "interrupted",
    )
    assert first.status == "stopped" and first.epochs_done == 1
    events = Recorder()
    resumed = resume(first.run_dir, events)
    assert resumed.status == "finished", resumed.reason
    assert events.of(ev.RunStarted)[0].start_epoch == 1

    a = load_file(full.run_dir / "last.safetensors")
    b = load_file(resumed.run_dir / "last.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"
    assert epoch_records(full.run_dir) == epoch_records(resumed.run_dir)


def test_resume_refuses_a_finished_run(make_exp, runs_root):
    done = train(make_exp(epochs=1), runs_root=runs_root)
    result = resume(done.run_dir)
    assert result.status == "failed" and "nothing to resume" in result.reason
    assert RunFolder(done.run_dir).read_status()["state"] == "finished"


def test_resume_without_any_checkpoint_says_start_again(make_exp, runs_root):
    stop = threading.Event()
    stop.set()
    stopped = train(make_exp(), stop=stop, runs_root=runs_root)
    result = resume(stopped.run_dir)
    assert result.status == "failed" and "ftui run tiny" in result.reason


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    result = resume(tmp_path)
    assert result.status == "failed" and "not an ftui run folder" in result.reason


def test_training_really_learns_on_real_images(make_exp, runs_root):
    # The whole embedded sample for 2 epochs at 24x24 with ResNet18's own fast stem: real
    # CIFAR-10 images, so accuracy far above the 10% of chance means it learns (33-35% over
    # seeds 1 and 5 on this CPU; 3 epochs at 32x32 gave the same margin in 1.7x the time).
    exp = make_exp(
        input_size=24,
        cifar_stem=False,
        batch_size=128,
        max_steps_per_epoch=0,
        max_test_images=0,
        epochs=2,
        lr=0.05,
        crop_padding=4,
        flip=True,
    )
    result = train(exp, runs_root=runs_root)
    assert result.status == "finished"
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.best_acc > 25, result.best_acc


def test_out_of_memory_fails_with_a_hint(make_exp, runs_root, monkeypatch):
    import ftui.engine.loop as loop_module

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop_module.F, "cross_entropy", oom)
    result = train(make_exp(), runs_root=runs_root)
    assert result.status == "failed"
    assert "Out of memory" in result.reason and "batch_size" in result.reason
    assert RunFolder(result.run_dir).read_status()["state"] == "failed"


def test_an_unexpected_error_is_recorded_then_raised(make_exp, runs_root, monkeypatch):
    import ftui.engine.loop as loop_module

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(loop_module.F, "cross_entropy", bug)
    events = Recorder()
    with pytest.raises(ZeroDivisionError):
        train(make_exp(), events, runs_root=runs_root)
    run_dir = next(p for p in runs_root.iterdir() if p.is_dir())
    assert RunFolder(run_dir).read_status()["state"] == "failed"
    assert "ZeroDivisionError" in (run_dir / "error.log").read_text()
    assert "Internal error" in events.of(ev.Failed)[0].reason


@pytest.mark.parametrize(
    "model,size,trainable",
    [("vgg16", 32, ["block5", "classifier"]), ("vit_b_16", 224, ["encoder_layer_11", "ln", "heads"])],
)
def test_vgg16_and_vit_b_16_train_through_the_same_function(make_exp, runs_root, model, size, trainable):
    exp = make_exp(
        model=model,
        input_size=size,
        cifar_stem=False,
        trainable=trainable,
        batch_size=2,
        max_steps_per_epoch=1,
        max_test_images=2,
        epochs=1,
        crop_padding=0,
        rotation=10,
    )
    events = Recorder()
    result = train(exp, events, runs_root=runs_root)
    assert result.status == "finished", result.reason
    started = events.of(ev.RunStarted)[0]
    assert started.trainable_units == tuple(trainable)
    assert 0 < started.trainable_params < started.total_params


def test_compile_runs_the_steps_through_torch_compile_and_keeps_plain_checkpoint_names(
    make_exp, runs_root, monkeypatch
):
    calls = []

    class Compiled(torch.nn.Module):  # stands in for torch.compile's wrapper (same "_orig_mod" attribute)
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, x):
            calls.append(x.shape[0])
            return self._orig_mod(x)

    monkeypatch.setattr(torch, "compile", lambda model: Compiled(model))
    result = train(make_exp(compile=True, epochs=1), runs_root=runs_root)
    assert result.status == "finished", result.reason
    assert calls, "the steps did not go through the compiled module"
    names = load_file(result.run_dir / "last.safetensors").keys()
    assert "fc.weight" in names and not any(n.startswith("_orig_mod") for n in names)


@pytest.mark.parametrize(
    "precision, native, shown, dtype",
    [
        ("bf16", True, "cpu, bf16", torch.bfloat16),
        ("bf16", False, "cpu, float32", torch.float32),
        ("auto", True, "cpu, float32", torch.float32),
    ],
)
def test_a_run_trains_and_says_in_the_precision_it_uses(
    make_exp, runs_root, monkeypatch, precision, native, shown, dtype
):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    seen = set()
    real_conv = torch.nn.Conv2d.forward
    monkeypatch.setattr(torch.nn.Conv2d, "forward", lambda self, x: seen.add(r := real_conv(self, x)) or r)
    events = Recorder()
    result = train(make_exp(precision=precision, epochs=1, max_steps_per_epoch=1), events, runs_root=runs_root)
    assert result.status == "finished", result.reason
    assert events.of(ev.RunStarted)[0].device == shown
    # Asked for bf16 and given float32: the run says so, in its log as well.
    warnings = events.of(ev.RunWarning)
    if precision == "bf16" and not native:
        assert len(warnings) == 1 and warnings[0].message.startswith('precision = "bf16", but cpu has no native bf16')
        assert "trains in float32" in warnings[0].message
        assert warnings[0] in RunFolder(result.run_dir).read_events()
    else:
        assert warnings == []
    assert {t.dtype for t in seen} == {dtype}  # the training steps and the evaluation alike
