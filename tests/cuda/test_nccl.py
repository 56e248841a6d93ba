"""The multi-process path on one GPU: torchrun starts the run, it trains on cuda:LOCAL_RANK, rank 0 writes.

One process has no process group (engine/distributed.py: a single process runs no collective), so
NCCL's collectives themselves need a machine with two GPUs: `ftui run NAME --nproc 2` there (the
commands are in BENCHMARKS.md, section 8). The GPU check's machine has one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ftui.engine.runs import list_runs
from tests.conftest import REPO, TINY

pytestmark = pytest.mark.cuda


def test_a_run_started_by_torchrun_trains_on_its_local_gpu(tmp_path):
    entry = {**TINY, "name": "nccl", "device": "cuda", "epochs": 2}
    lines = ["[[experiment]]"] + [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
    (tmp_path / "experiments.toml").write_text("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]
    done = subprocess.run(
        [*command, "-m", "ftui", "run", "nccl"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = list_runs(tmp_path / "checkpoints")
    assert run.state == "finished" and run.epochs_done == 2
