"""Stop and resume on CUDA: the resumed run goes on as the run that was never stopped did.

Within a tolerance, not bit-exact. ftui does not turn on torch.use_deterministic_algorithms: it turns
on cuDNN's autotuner (device.tune_for), whose choice of algorithms is not reproducible, and ResNet's
adaptive average pool has no deterministic CUDA backward (it adds with atomics), so even two
uninterrupted runs differ in the last bits. The tolerance, 1% on every step's loss and on each
epoch's losses, one test image on accuracy, and 1% (or 1e-3) on every weight, is far below what a
resume that lost the CUDA RNG state (other batches, other augmentations) or the optimizer's state
would change. On a CPU the same comparison is bit-exact (tests/test_train.py).
"""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

from ftui.engine import events as ev
from ftui.engine.train import resume, train
from tests.conftest import TINY, epoch_records
from tests.cuda.conftest import step_losses

pytestmark = pytest.mark.cuda

TOLERANCE = 0.01
ONE_TEST_IMAGE = 100 / TINY["max_test_images"]  # percent


def test_a_stopped_cuda_run_resumes_as_if_it_had_never_stopped(cuda_exp, runs_root):
    # Random crops, flips and rotations on the GPU, drawn from the run's CUDA generator.
    exp = cuda_exp(epochs=2, max_steps_per_epoch=4, rotation=10, crop_padding=2)
    full = train(exp, runs_root=runs_root / "full")
    assert full.status == "finished", full.reason

    stop = threading.Event()
    first = train(
        exp,
        lambda e: stop.set() if isinstance(e, ev.EpochEnd) and e.epoch == 0 else None,
        stop,
        runs_root=runs_root / "interrupted",
    )
    assert first.status == "stopped" and first.epochs_done == 1
    resumed = resume(first.run_dir)
    assert resumed.status == "finished", resumed.reason

    assert len(step_losses(resumed.run_dir)) == 8
    assert step_losses(resumed.run_dir) == pytest.approx(step_losses(full.run_dir), rel=TOLERANCE)
    for (epoch_a, acc_a, test_a, train_a), (epoch_b, acc_b, test_b, train_b) in zip(
        epoch_records(full.run_dir), epoch_records(resumed.run_dir), strict=True
    ):
        assert epoch_a == epoch_b and abs(acc_a - acc_b) <= ONE_TEST_IMAGE + 1e-9
        assert (test_b, train_b) == pytest.approx((test_a, train_a), rel=TOLERANCE)
    a, b = load_file(full.run_dir / "last.safetensors"), load_file(resumed.run_dir / "last.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=TOLERANCE, atol=1e-3, msg=f"{name} differs")
