"""Fixtures for driving the real app with App.run_test() and the Pilot."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import TINY

CATALOG = """# a tiny catalog for the TUI tests
[defaults]
dataset = "cifar10-sample"
weights = "none"
device = "cpu"
input_size = 16
batch_size = 8
max_test_images = 32
seed = 1

[[experiment]]
name = "tiny"
description = "ResNet18, CIFAR stem, 2 steps an epoch"
cifar_stem = true
epochs = 2
max_steps_per_epoch = 2
lr = 0.05

[[experiment]]
name = "tiny-fc"
description = "only the head trains"
reference_acc = 80.9
trainable = ["fc"]
epochs = 3
max_steps_per_epoch = 3
"""


@pytest.fixture
def tui_catalog(tmp_path: Path) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(CATALOG)
    return path


@pytest.fixture
def tui_runs(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints"


@pytest.fixture
def app(tui_catalog, tui_runs):
    from ftui.tui.app import make_app

    app = make_app(tui_catalog, tui_runs)
    yield app
    app.controller.request_stop("by the test")
    app.controller.wait(60)
    stop_queue_runner(tui_runs)


def stop_queue_runner(runs: Path) -> None:
    """A queue runner a test started stops its run and ends (the queue stays as it is)."""
    import signal
    import time

    from ftui.engine.queue import RunQueue, runner_pid

    if not runs.exists():
        return
    RunQueue(runs).set_paused(True)
    pid = runner_pid(runs)
    if pid is not None and pid > 0:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while runner_pid(runs) is not None and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture
def finished_run(tui_runs):
    """A real, finished tiny run in tui_runs."""
    from ftui.engine.catalog import experiment_from_dict
    from ftui.engine.train import train

    exp = experiment_from_dict({**TINY, "name": "tiny"}, where="test")
    result = train(exp, stop=threading.Event(), runs_root=tui_runs)
    assert result.status == "finished", result.reason
    return result.run_dir


# -- the training processes the workbench starts --------------------------------------------------

HOOKS = Path(__file__).resolve().parents[1] / "child_hooks"


def hook_children(monkeypatch, **env: str) -> None:
    """Training processes started after this run with tests/child_hooks (env says which hooks)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(HOOKS), os.environ.get("PYTHONPATH", "")) if p))
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# A stand-in for the training command (training_process.training_command builds it): it makes a
# run folder as ftui does, then misbehaves as the test asks.
STAND_IN = """
import json, os, signal, socket, sys, time
from pathlib import Path

mode, args = sys.argv[1], sys.argv[2:]
runs = Path(args[args.index("--runs") + 1])
folder = runs / "fake-20260101-000000"
folder.mkdir(parents=True)
(folder / "experiment.json").write_text(json.dumps({"name": "fake"}))
status = {"state": "running", "pid": os.getpid(), "host": socket.gethostname(), "epochs": 3, "epochs_done": 1}
if mode == "lingers":
    status.update(state="finished", epochs_done=3)
(folder / "status.json").write_text(json.dumps(status))
print("training epoch 2 of 3")
if mode in ("sleeps", "ignores-sigterm", "lingers"):
    if mode == "ignores-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM")
    (folder / "ready").touch()
    while True:
        time.sleep(1)
print("some last words")
sys.exit(3)
"""


@pytest.fixture
def stand_in(monkeypatch):
    """Runs launched after stand_in(mode) start STAND_IN instead of training: "sleeps" until a signal ends
    it, "ignores-sigterm" too but SIGTERM does not, "lingers" has closed its run (finished) but its process
    has not exited yet, "dies" at once with exit code 3 and some last words."""

    from ftui.tui import training_process

    def use(mode: str) -> None:
        monkeypatch.setattr(
            training_process, "training_command", lambda args: [sys.executable, "-c", STAND_IN, mode, *args]
        )

    return use


class Gate:
    """Where a hooked training process waits after its first epoch, until the test opens it."""

    def __init__(self, folder: Path):
        self.folder = folder

    @property
    def paused(self) -> bool:
        return (self.folder / "paused").exists()

    def open(self) -> None:
        (self.folder / "go").touch()


@pytest.fixture
def gate(tmp_path, monkeypatch):
    """Runs launched in the test pause once their first epoch is saved (list it after `app`)."""
    folder = tmp_path / "gate"
    folder.mkdir()
    hook_children(monkeypatch, FTUI_TEST_GATE=str(folder))
    gate = Gate(folder)
    yield gate
    gate.open()  # a paused process never outlives the test


def without_hooks() -> dict[str, str]:
    """The environment for a process the test hooks must not touch (a reference run)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FTUI_TEST_")}
