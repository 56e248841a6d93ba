"""Test hooks for training processes the workbench starts (it trains in child processes, out of the tests' reach).

A test puts this folder on PYTHONPATH; Python imports this module as each process starts. It does
nothing unless one of these is set:

- FTUI_TEST_GATE=DIR: once its first epoch is saved (status.json says epochs_done 1), the run
  writes DIR/paused and waits for DIR/go to exist. A test decides when the run goes on, instead
  of racing it.
- FTUI_TEST_BUG=1: the loss function raises ZeroDivisionError, a bug inside the training loop.
- FTUI_TEST_OFFLINE=1: every download fails as it does with no network (tests never use the network).
"""

import os
import time
from pathlib import Path


def _bug(*args, **kwargs):
    raise ZeroDivisionError("a bug in a loss function")


def _no_network(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("no network (blocked by the test)")


def _gate(folder: Path) -> None:
    import ftui.engine.runs as runs

    write_status = runs.RunFolder.write_status

    def gated(self, state, **fields):
        write_status(self, state, **fields)
        if state == "running" and fields.get("epochs_done") == 1:
            (folder / "paused").write_text(str(os.getpid()))
            while not (folder / "go").exists():
                time.sleep(0.05)

    runs.RunFolder.write_status = gated


if os.environ.get("FTUI_TEST_BUG"):
    import ftui.engine.loop

    ftui.engine.loop.F.cross_entropy = _bug
if os.environ.get("FTUI_TEST_GATE"):
    _gate(Path(os.environ["FTUI_TEST_GATE"]))
if os.environ.get("FTUI_TEST_OFFLINE"):
    import torchvision.datasets.utils

    torchvision.datasets.utils.download_url = _no_network
