"""One process of a test's torchrun: `ftui ARGS` as `torchrun -m ftui ARGS` runs it, then this process's
model saved to OUT/rank{RANK}.safetensors, so a test can compare the processes' weights.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py OUT ARGS...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

import ftui.engine.train as train_module
from ftui.cli import main
from ftui.engine.checkpoints import cpu_state

made = []
real_prepare = train_module.prepare


def keep(*args, **kwargs):
    made.append(real_prepare(*args, **kwargs))
    return made[-1]


train_module.prepare = keep
code = main(sys.argv[2:])
save_file(cpu_state(made[-1].model), Path(sys.argv[1]) / f"rank{os.environ['RANK']}.safetensors")
sys.exit(code)
