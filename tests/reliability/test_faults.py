"""Faults: each leaves the previous good checkpoint loadable and the run's status true.

Process kills and signals run the real CLI (or the TUI in tmux) in a subprocess;
disk-full comes from the real writers: safetensors under a file-size limit, or
the error safetensors raised when CI's disk really filled up.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ftui.engine import checkpoints as checkpoints_module
from ftui.engine.catalog import experiment_from_dict
from ftui.engine.checkpoints import load_checkpoint_model, read_checkpoint
from ftui.engine.runs import MetricsLog, RunFolder, create_run_dir, list_runs
from ftui.engine.train import resume, train
from tests.conftest import TINY, epoch_records

REPO = Path(__file__).resolve().parents[2]
# Long enough to be interrupted, short enough for the suite: ~0.2 s an epoch.
LONG = {**TINY, "name": "long", "epochs": 200, "max_steps_per_epoch": 2}


def catalog_file(folder: Path, **overrides) -> Path:
    entry = {**LONG, **overrides}
    lines = ["[[experiment]]"] + [f"{k} = {json.dumps(v)}" for k, v in entry.items() if k != "trainable"]
    path = folder / "experiments.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO)}


def start_cli(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ftui", *args],
        cwd=folder,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# Waits end on an event (a status state, a process gone); this bound only decides when to give up. It is
# generous because a suite on 2 shared cores ran ~3x slower than on quiet ones, and a waiter that gives
# up early fails a run that was only slow.
PATIENCE = 300.0


def wait_for_epochs(run_root: Path, n: int, timeout: float = PATIENCE) -> Path:
    """The run folder, once n epochs are checkpointed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in list_runs(run_root):
            if run.epochs_done >= n:
                return run.path
        time.sleep(0.05)
    raise AssertionError(f"no run reached {n} epochs under {run_root}")


def assert_last_checkpoint_good(run_dir: Path, at_least: int) -> int:
    info = read_checkpoint(run_dir / "last.safetensors")
    load_checkpoint_model(run_dir / "last.safetensors")  # every tensor reads and fits
    assert info.epoch + 1 >= at_least
    return info.epoch


# -- kill -9 ------------------------------------------------------------------

KILLED_MID_WRITE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from safetensors.torch import save_file as real_save
    import ftui.engine.checkpoints as c
    from ftui.engine.catalog import experiment_from_dict
    from ftui.engine.train import train
    from tests.conftest import TINY

    calls = []
    def stalls_mid_write(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == int(sys.argv[3]):  # write half a file, then hang until killed
            with open(path, "wb") as f:
                f.write(b"\\0" * 4096)
            Path(sys.argv[2]).write_text(str(path))
            time.sleep(600)
        real_save(tensors, path, metadata=metadata)
    c.save_file = stalls_mid_write
    exp = experiment_from_dict({**TINY, "name": "killed", "epochs": 4}, where="test")
    train(exp, runs_root=sys.argv[1])
""")


# Writes per epoch: resume state, last, best. Call 4 is epoch 2's resume state; call 5 is
# epoch 2's last.safetensors, after its resume state is on disk: the pair must still match.
@pytest.mark.parametrize("write", [4, 5])
def test_kill_9_in_the_middle_of_writing_a_checkpoint(tmp_path, write):
    marker = tmp_path / "writing"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "runs"), str(marker), str(write)], cwd=REPO, env=env()
    )
    deadline = time.monotonic() + PATIENCE
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the write never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    run = list_runs(tmp_path / "runs")[0]
    assert run.state == "interrupted"  # said running, its process is gone: the truth
    assert Path(marker.read_text()).name.endswith(".tmp")  # the half file never had the real name
    assert assert_last_checkpoint_good(run.path, at_least=1) == 0
    result = resume(run.path)
    assert result.status == "finished", result.reason
    assert not list(run.path.glob(".*.tmp"))  # resume cleared what the killed writer left
    assert_last_checkpoint_good(run.path, at_least=4)


@pytest.mark.parametrize("delay", [0.3, 0.9, 1.7])
def test_kill_9_at_any_moment_leaves_a_loadable_checkpoint(tmp_path, delay):
    catalog = catalog_file(tmp_path)
    proc = start_cli(tmp_path, "run", "long", "--catalog", str(catalog))
    run_dir = wait_for_epochs(tmp_path / "checkpoints", 1)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    epoch = assert_last_checkpoint_good(run_dir, at_least=1)
    assert list_runs(tmp_path / "checkpoints")[0].state == "interrupted"
    # the lock died with the process: a new run may take the device at once
    proc = start_cli(tmp_path, "resume", str(run_dir))
    wait_for_epochs_after(run_dir, epoch + 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM  # 143: stopped by SIGTERM


def wait_for_epochs_after(run_dir: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads((run_dir / "status.json").read_text())
        if status.get("epochs_done", 0) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the resumed run made no progress")


def test_kill_9_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path):
    exp = experiment_from_dict({**TINY, "name": "exact", "epochs": 6, "max_steps_per_epoch": 3}, where="test")
    reference = train(exp, runs_root=tmp_path / "reference")
    catalog = catalog_file(tmp_path, name="exact", epochs=6, max_steps_per_epoch=3)
    proc = start_cli(tmp_path, "run", "exact", "--catalog", str(catalog))
    run_dir = wait_for_epochs(tmp_path / "checkpoints", 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert resume(run_dir).status == "finished"
    a, b = load_file(reference.run_dir / "last.safetensors"), load_file(run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run's weights differ"
    assert epoch_records(reference.run_dir) == epoch_records(run_dir)


# -- disk full ----------------------------------------------------------------


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG in the OS, the way a full disk fails them with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_disk_full_while_writing_a_checkpoint(monkeypatch, tmp_path):
    real, calls = checkpoints_module.save_file, []

    def fills_up(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) < 4:
            return real(tensors, path, metadata=metadata)
        with file_size_limit(1024):  # epoch 2: the real safetensors write fails in the OS
            real(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoints_module, "save_file", fills_up)
    exp = experiment_from_dict({**TINY, "epochs": 3}, where="test")
    result = train(exp, runs_root=tmp_path)
    assert result.status == "failed", result.reason
    assert "File too large" in result.reason and "Free disk space" in result.reason and "ftui resume" in result.reason
    assert RunFolder(result.run_dir).read_status()["state"] == "failed"
    assert not (result.run_dir / "error.log").exists()  # a full disk is not an internal error
    assert assert_last_checkpoint_good(result.run_dir, at_least=1) == 0
    assert not list(result.run_dir.glob(".*tmp*"))  # the partial write was removed
    monkeypatch.setattr(checkpoints_module, "save_file", real)  # space was freed
    assert resume(result.run_dir).status == "finished"


def test_disk_full_while_writing_the_metrics_log(monkeypatch, tmp_path):
    real, calls = MetricsLog.write, []

    def fills_up(self, record):
        calls.append(record)
        if record.get("type") == "epoch" and record["epoch"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, record)

    monkeypatch.setattr(MetricsLog, "write", fills_up)
    result = train(experiment_from_dict({**TINY, "epochs": 3}, where="test"), runs_root=tmp_path)
    assert result.status == "failed" and "No space left" in result.reason
    assert RunFolder(result.run_dir).read_status()["state"] == "failed"
    assert assert_last_checkpoint_good(result.run_dir, at_least=1) == 0


def test_disk_full_everywhere_still_ends_without_an_exception(monkeypatch, tmp_path):
    import ftui.engine.runs as runs_module

    exp = experiment_from_dict({**TINY, "epochs": 3}, where="test")
    calls = []

    def full(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # experiment.json and the first status got through
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_text(*args, **kwargs)

    real_text = runs_module.atomic_write_text
    monkeypatch.setattr(runs_module, "atomic_write_text", full)
    # What safetensors raised when CI's disk filled up.
    full_disk = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(checkpoints_module, "save_file", lambda *a, **k: (_ for _ in ()).throw(full_disk))
    result = train(exp, runs_root=tmp_path)
    assert result.status == "failed" and "No space left on device" in result.reason


# -- signals --------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig, why",
    [
        (signal.SIGINT, "by SIGINT (Ctrl-C)"),
        (signal.SIGTERM, "by SIGTERM"),
        (signal.SIGHUP, "because the terminal closed (SIGHUP)"),
    ],
)
def test_signals_stop_a_cli_run_cleanly(tmp_path, sig, why):
    catalog = catalog_file(tmp_path)
    proc = start_cli(tmp_path, "run", "long", "--catalog", str(catalog))
    run_dir = wait_for_epochs(tmp_path / "checkpoints", 1)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 128 + sig and "Traceback" not in out  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    status = RunFolder(run_dir).read_status()
    assert status["state"] == "stopped" and 1 <= status["epochs_done"] < 200
    assert status["reason"].startswith(f"{why} after ")  # the run folder says what stopped it
    assert_last_checkpoint_good(run_dir, at_least=1)


TMUX = shutil.which("tmux")


def start_tui(tmp_path: Path, session: str) -> int:
    command = f"cd {tmp_path} && exec {sys.executable} -m ftui"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True, env=env())
    pid = int(
        subprocess.run(
            ["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True, text=True
        ).stdout.strip()
    )
    deadline = time.monotonic() + PATIENCE
    while (
        "long"
        not in subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
    ):
        assert time.monotonic() < deadline, "the catalog never appeared"
        time.sleep(0.1)
    subprocess.run(["tmux", "send-keys", "-t", session, "l"])
    return pid


def wait_for_state(run_dir: Path, states: tuple[str, ...], timeout: float = PATIENCE) -> dict:
    """The run's status once its state is one of states (status.json is replaced atomically)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = RunFolder(run_dir).read_status()
        if status.get("state") in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{run_dir} never reached {states}: {RunFolder(run_dir).read_status()}")


def wait_gone(pid: int, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not end")


@pytest.mark.skipif(TMUX is None, reason="needs tmux")
@pytest.mark.parametrize(
    "sig,expected", [(signal.SIGTERM, "stopped"), (signal.SIGINT, "stopped"), (signal.SIGHUP, "finished")]
)
def test_signals_during_a_tui_run(tmp_path, sig, expected):
    session = f"ftui-fault-{os.getpid()}-{sig}"
    epochs = 200 if expected == "stopped" else 3  # SIGHUP: the UI closes and the run goes on to its end
    catalog_file(tmp_path, epochs=epochs)
    try:
        pid = start_tui(tmp_path, session)
        run_dir = wait_for_epochs(tmp_path / "checkpoints", 1)
        os.kill(pid, sig)
        status = wait_for_state(run_dir, ("stopped", "finished", "failed"))
        wait_gone(pid)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert status["state"] == expected, status
    if expected == "stopped":
        assert f"by {sig.name}" in status["reason"], status  # kill -INT, not a key: Ctrl-C is a key in the TUI
    assert_last_checkpoint_good(run_dir, at_least=1)


# -- two processes ----------------------------------------------------------------


def test_a_second_process_is_refused_the_device_and_writes_nothing(tmp_path):
    catalog = catalog_file(tmp_path)
    first = start_cli(tmp_path, "run", "long", "--catalog", str(catalog))
    try:
        run_dir = wait_for_epochs(tmp_path / "checkpoints", 1)
        second = subprocess.run(
            [sys.executable, "-m", "ftui", "run", "long", "--catalog", str(catalog)],
            cwd=tmp_path,
            env=env(),
            capture_output=True,
            text=True,
            timeout=PATIENCE,
        )
        assert second.returncode != 0
        assert (
            "in use by another ftui run" in second.stdout + second.stderr
            and run_dir.name in second.stdout + second.stderr
        )
        assert [r.path for r in list_runs(tmp_path / "checkpoints")] == [run_dir]  # nothing new written
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)


def test_run_folders_never_clash(tmp_path):
    made, lock = [], threading.Lock()

    def make():
        path = create_run_dir(tmp_path, "same")
        with lock:
            made.append(path)

    threads = [threading.Thread(target=make) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16


# -- an exception inside the training process, in the TUI ----------------------------


async def test_an_exception_in_the_training_process_is_shown_and_the_tui_stays_usable(
    tui_catalog, tui_runs, monkeypatch
):
    from ftui.tui.app import make_app
    from ftui.tui.screens.catalog import CatalogScreen
    from tests.tui.conftest import hook_children

    hook_children(monkeypatch, FTUI_TEST_BUG="1")  # the loss function of the training process raises
    app = make_app(tui_catalog, tui_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        screen = app.screen
        app.controller.wait(PATIENCE)
        deadline = time.monotonic() + PATIENCE
        while screen.history.state != "failed":  # the screen reads the run folder 4 times a second
            assert time.monotonic() < deadline, "the run screen never showed the failure"
            await pilot.pause(0.05)
        assert "ZeroDivisionError" in app.controller.failure
        assert app.controller.result.status == "failed"
        await pilot.press("escape")
        assert isinstance(app.screen, CatalogScreen)
        await pilot.press("down", "up")  # still answers keys
    run = list_runs(tui_runs)[0]
    assert run.state == "failed" and (run.path / "error.log").exists()
    assert "ZeroDivisionError" in (run.path / "output.log").read_text()  # the child's own report, kept
