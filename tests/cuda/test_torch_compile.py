"""compile = true on CUDA: torch.compile (inductor, Triton kernels) trains and evaluates as the eager run does.

Compiled kernels fuse and round in bf16 differently, so the comparison is within 2%: the steps'
losses, and the evaluation loss of the compiled run against that of its checkpoint evaluated eagerly.
"""

from __future__ import annotations

import math

import pytest
from safetensors.torch import load_file

from ftui.engine.evaluation import evaluate_checkpoint
from ftui.engine.train import train
from tests.conftest import epoch_records
from tests.cuda.conftest import step_losses

pytestmark = pytest.mark.cuda

TOLERANCE = 0.02


def test_compile_trains_as_the_eager_run_does(cuda_exp, runs_root):
    eager = train(cuda_exp(epochs=1, max_steps_per_epoch=3), runs_root=runs_root / "eager")
    compiled = train(cuda_exp(epochs=1, max_steps_per_epoch=3, compile=True), runs_root=runs_root / "compiled")
    assert eager.status == "finished", eager.reason
    assert compiled.status == "finished", compiled.reason

    losses = step_losses(compiled.run_dir)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses == pytest.approx(step_losses(eager.run_dir), rel=TOLERANCE)

    names = load_file(compiled.run_dir / "last.safetensors").keys()
    assert "fc.weight" in names and not any(n.startswith("_orig_mod") for n in names)
    evaluation, _ = evaluate_checkpoint(compiled.run_dir / "last.safetensors", "cuda")
    (_epoch, _acc, compiled_test_loss, _train_loss) = epoch_records(compiled.run_dir)[-1]
    assert evaluation.loss == pytest.approx(compiled_test_loss, rel=TOLERANCE)
