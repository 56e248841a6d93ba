"""The CUDA tests: ftui's GPU paths, run for real on a GPU and skipped in milliseconds everywhere else.

Every module here marks its tests `cuda` (pytestmark), and tests/conftest.py skips them where PyTorch
sees no CUDA GPU. bench/gpu_check.py runs them (`pytest -m cuda tests/cuda`) on a GPU machine and
records each one's outcome.

One file per CUDA path. A new path (LoRA on CUDA, a 1-process NCCL run through the multi-process
path) is one more test in a file of its own, built from `cuda_exp` and read back with `step_losses`
like the others. Files run in name order: test_torch_compile.py, the slowest (inductor compiles for
a minute or more), comes last, so that a check stopped at its budget has the results of the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ftui.engine.events import Step
from ftui.engine.runs import RunFolder
from tests.conftest import TINY


@pytest.fixture
def cuda_exp(make_exp):
    """make_exp on the GPU: ResNet18 with the CIFAR stem on 16x16 crops, 2 steps of 8 images an epoch."""

    def make(**overrides):
        return make_exp(**{"device": "cuda", **overrides})

    return make


def cuda_entry(**overrides) -> dict:
    """TINY on the GPU as a plain dict, for what builds its experiment outside a test's fixtures."""
    return {**TINY, "device": "cuda", **overrides}


def step_losses(run_dir: Path) -> list[float]:
    """Every training step's loss, in order, from a run folder's metrics.jsonl."""
    return [loss for e in RunFolder(run_dir).read_events() if isinstance(e, Step) for loss in e.losses]
