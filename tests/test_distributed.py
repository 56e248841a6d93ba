"""Training on several processes: torchrun, DDP and gloo, two processes on the CPU.

The recipe trains conv1 and fc with every BatchNorm frozen in eval mode: BatchNorm in training mode
normalises each process's half batch by its own statistics, which by design differ from the whole
batch's (sync_bn is the NCCL option), so only this recipe can match a single process closely. Its
gradients still flow back through the whole network to conv1.

Every run here is tiny (ResNet18 at 16x16, 2 steps of 8 images an epoch); waits end on events and
their bounds only decide when to give up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftui.cli import main
from ftui.engine import events as ev
from ftui.engine.augment import Augment
from ftui.engine.catalog import experiment_from_dict
from ftui.engine.distributed import Group, World, per_process_batch
from ftui.engine.launcher import descendants
from ftui.engine.runs import RunFolder, list_runs
from ftui.engine.train import resume, train
from ftui.errors import EXIT_FAILED, EXIT_USAGE, FtuiError
from tests.conftest import REPO, TINY, epoch_records
from tests.reliability.test_faults import PATIENCE, assert_last_checkpoint_good, wait_for_epochs

DDP = {**TINY, "name": "ddp", "trainable": ["conv1", "fc"], "frozen_bn": "freeze", "lr": 0.01, "epochs": 4}
# What 1 and 2 processes may differ by after 8 steps: the order of float32 sums (DDP averages two
# half-batch gradients, not one batch's; convolutions of 4 images, not 8) moved conv1 by 2.3e-5 when
# measured. Images, augmentation or schedule that differ move it by far more: another crop padding
# by 4e-3, another seed by 0.7.
TOLERANCE = 5e-4


@contextlib.contextmanager
def compute_threads(n: int):
    """torch's compute threads set to n for a block: a run compared with a worker's computes as the worker does."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- the shares of each process, without any process group -------------------------------------


def test_the_processes_slices_are_the_global_batches_of_one_process():
    n, batch, seed, epoch, cpu = 103, 8, 5, 3, torch.device("cpu")
    alone = Group(World(), "").epoch_order(n, seed, epoch, cpu)
    halves = [Group(World(rank, rank, 2), "gloo").epoch_order(n, seed, epoch, cpu) for rank in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == n // 2  # the same count: the processes step in lockstep
    for step in range(n // batch):
        # Step k of rank r holds the global batch's images r, r + 2, ...
        together = torch.stack([h[step * 4 : (step + 1) * 4] for h in halves], dim=1).flatten()
        assert torch.equal(together, alone[step * batch : (step + 1) * batch])
    assert not torch.equal(alone, Group(World(), "").epoch_order(n, seed, epoch + 1, cpu))  # a new order each epoch


def test_each_process_augments_its_rows_of_the_global_batch_as_one_process_would():
    augment = Augment(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_padding=4, flip=True, rotation=10)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    one = torch.Generator().manual_seed(3)
    alone = augment.train(images, one)
    for rank in (0, 1):
        generator = torch.Generator().manual_seed(3)
        assert torch.equal(augment.train(images[rank::2], generator, share=(rank, 2)), alone[rank::2])
        assert torch.equal(generator.get_state(), one.get_state())  # every process's generator stays in step


@pytest.mark.parametrize("n", [0, 1, 5, 1017])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_the_test_set_is_shared_out_whole_and_without_duplicates(n, size):
    shares = [Group(World(rank, rank, size), "gloo").eval_share(n) for rank in range(size)]
    assert [i for share in shares for i in range(n)[share]] == list(range(n))


def test_a_batch_that_does_not_divide_among_the_processes_is_refused():
    assert per_process_batch(128, 4) == 32
    with pytest.raises(FtuiError, match=r"batch_size = 10 does not divide among 4 processes.*\(such as 8 or 12\)"):
        per_process_batch(10, 4)


# -- real runs ------------------------------------------------------------------------------------


def env() -> dict:
    # One thread a process, whoever starts torchrun, so that runs compared bit for bit compute alike.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def write_catalog(folder: Path, **overrides) -> Path:
    lines = ["[[experiment]]"] + [f"{k} = {json.dumps(v)}" for k, v in {**DDP, **overrides}.items()]
    path = folder / "experiments.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_ftui(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ftui", *args], cwd=folder, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def torchrun_two(folder: Path, **overrides) -> tuple[Path, Path]:
    """(run folder, folder of each rank's final weights) of a 2-process run of DDP with overrides, started by
    torchrun directly as a person would (`torchrun --nproc-per-node 2 -m ftui run NAME`)."""
    write_catalog(folder, **overrides)
    name = {**DDP, **overrides}["name"]
    weights = folder / "weights"
    weights.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    proc = subprocess.run(
        [*command, str(REPO / "tests" / "ddp_worker.py"), str(weights), "run", name],
        cwd=folder,
        env=env(),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = list_runs(folder / "checkpoints")
    return run.path, weights


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted 2-process run of the DDP recipe: its run folder and each rank's final weights."""
    return torchrun_two(tmp_path_factory.mktemp("two"))


def test_two_processes_reach_the_weights_of_one_and_agree_with_each_other(two_processes, tmp_path):
    run_dir, weights = two_processes
    rank0, rank1 = load_file(weights / "rank0.safetensors"), load_file(weights / "rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "the processes' weights differ"
    assert all(torch.equal(rank0[k], v) for k, v in load_file(run_dir / "last.safetensors").items())

    with compute_threads(1):  # as each worker computes (one thread; two move conv1 by another ~3e-5)
        alone = train(experiment_from_dict(DDP, where="test"), runs_root=tmp_path)
    assert alone.status == "finished", alone.reason
    one = load_file(alone.run_dir / "last.safetensors")
    moved = max((one[k] - rank0[k]).abs().max().item() for k in one if one[k].is_floating_point())
    assert moved < TOLERANCE, moved
    start = next(e for e in RunFolder(alone.run_dir).read_events() if isinstance(e, ev.RunStarted))
    assert start.batch_size == 8 and "processes" not in start.device  # one process says nothing of processes


def test_only_rank_0_writes_and_each_step_is_logged_once(two_processes):
    run_dir, _ = two_processes
    runs_root = run_dir.parent
    assert [p.name for p in runs_root.iterdir() if not p.name.startswith(".device-")] == [run_dir.name]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".run.lock",  # rank 0's: the run folder's own lock (engine/runs.py RunLock)
        "best.safetensors",
        "experiment.json",
        "last.safetensors",
        "metrics.jsonl",
        "resume.prev.safetensors",
        "resume.safetensors",
        "status.json",
    ]
    folder = RunFolder(run_dir)
    events = folder.read_events()
    steps = [e.global_step + i for e in events if isinstance(e, ev.Step) for i in range(len(e.losses))]
    assert steps == list(range(8))  # 4 epochs of 2 steps, each once, in order
    assert [type(e) for e in events].count(ev.RunStarted) == 1 and isinstance(events[-1], ev.Finished)
    started = events[0]
    assert isinstance(started, ev.RunStarted) and started.device == "cpu, float32, 2 processes (gloo)"
    assert folder.read_experiment()["nproc"] == 2 and folder.read_status()["state"] == "finished"


def process_tree(launcher: subprocess.Popen) -> list[int]:
    """The launcher and every process under it, once torchrun's two workers are there."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        tree = [launcher.pid, *descendants(launcher.pid)]
        if len([pid for pid in tree if rank_of(pid) is not None]) == 2:
            return tree
        time.sleep(0.05)
    raise AssertionError("torchrun's two workers never appeared under the launcher")


def rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((int(v[5:]) for v in environ if v.startswith(b"RANK=")), None)


def assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes left behind: {alive}")


def test_sigterm_stops_the_run_and_resume_ends_exactly_like_an_uninterrupted_run(two_processes, tmp_path):
    reference, _ = two_processes
    write_catalog(tmp_path)
    launcher = start_ftui(tmp_path, "run", "ddp", "--nproc", "2")
    tree = process_tree(launcher)
    run_dir = wait_for_epochs(tmp_path / "checkpoints", 1)
    launcher.send_signal(signal.SIGTERM)
    out = launcher.communicate(timeout=PATIENCE)[0].decode()
    assert launcher.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out and "SignalException" not in out and "torch/distributed" not in out
    assert out.count("SIGTERM: stopping after the current step") == 1  # rank 0 speaks for both
    assert_all_gone(tree)
    status = RunFolder(run_dir).read_status()
    assert status["state"] == "stopped" and status["reason"].startswith("by SIGTERM after "), status
    assert 1 <= status["epochs_done"] < 4
    assert_last_checkpoint_good(run_dir, at_least=1)

    finished = subprocess.run(
        [sys.executable, "-m", "ftui", "resume", str(run_dir)], cwd=tmp_path, env=env(), timeout=PATIENCE
    )
    assert finished.returncode == 0
    a, b = load_file(reference / "last.safetensors"), load_file(run_dir / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run's weights differ"
    assert epoch_records(reference) == epoch_records(run_dir)


@pytest.mark.parametrize("rank", [1, 0])
def test_a_killed_worker_fails_the_run_with_a_reason_and_leaves_no_process(tmp_path, rank):
    write_catalog(tmp_path, epochs=200)
    launcher = start_ftui(tmp_path, "run", "ddp", "--nproc", "2")
    tree = process_tree(launcher)
    run_dir = wait_for_epochs(tmp_path / "checkpoints", 1)
    os.kill(next(pid for pid in tree if rank_of(pid) == rank), signal.SIGKILL)
    out = launcher.communicate(timeout=PATIENCE)[0].decode()
    assert launcher.returncode == EXIT_FAILED, out
    assert_all_gone(tree)
    status = RunFolder(run_dir).read_status()
    assert status["state"] == "failed", status
    reason = status["reason"]
    said = " ".join(out.split())
    if rank == 1:  # rank 0 saw its peer go, and closed the run saying so; ftui adds which process torchrun lost
        assert "Another of this run's 2 processes ended or stopped answering" in reason, reason
        assert "torchrun: process 1 (pid" in said and "was killed by SIGKILL" in said, said
    else:  # the ftui that started torchrun closed the run, with what torchrun said
        assert "The run's processes ended without closing it (process 0 (pid" in reason, reason
        assert "was killed by SIGKILL" in reason and "failed: The run's processes ended" in said
    assert f"ftui resume checkpoints/{run_dir.name}" in reason
    assert isinstance(RunFolder(run_dir).read_events()[-1], ev.Failed)
    assert_last_checkpoint_good(run_dir, at_least=1)


def test_a_batch_that_does_not_divide_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_catalog(tmp_path)
    assert main(["run", "ddp", "--nproc", "3"]) == EXIT_USAGE
    text = " ".join(capsys.readouterr().err.split())
    assert "batch_size = 8 does not divide among 3 processes" in text and "(such as 6 or 9)" in text
    assert not (tmp_path / "checkpoints").exists()


def test_a_run_resumes_only_on_the_processes_it_was_trained_on(two_processes, tmp_path, capsys):
    reference, _ = two_processes
    run_dir = tmp_path / reference.name
    subprocess.run(["cp", "-r", str(reference), str(run_dir)], check=True)
    RunFolder(run_dir).write_status("stopped", reason="by SIGTERM after 4 of 4 epochs")  # resumable, as far as it says
    assert main(["resume", str(run_dir), "--nproc", "3"]) == EXIT_USAGE  # refused before torchrun starts
    text = "".join(capsys.readouterr().err.split())  # as printed, less the terminal's line breaks
    assert "wastrainedon2processesandresumesonlyon2,not3" in text
    assert f"ftuiresume{run_dir}" in text and f"torchrun--nproc-per-node2-mftuiresume{run_dir}" in text
    result = resume(run_dir)  # one process, as under a torchrun of another size: the engine refuses too
    assert result.status == "failed" and "resumes only on 2, not 1" in result.reason
    assert RunFolder(run_dir).read_status()["state"] == "stopped"


# -- LoRA on several processes ------------------------------------------------------------------------


def test_a_lora_run_trains_on_two_processes_like_on_one(tmp_path):
    lora = {"name": "ddp-lora", "trainable": ["fc"], "lora": ["layer4"], "lora_layers": ["conv"], "epochs": 2}
    folder = tmp_path / "two"
    folder.mkdir()
    run_dir, weights = torchrun_two(folder, **lora)
    rank0, rank1 = load_file(weights / "rank0.safetensors"), load_file(weights / "rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "the processes' weights differ"
    saved = load_file(run_dir / "last.safetensors")  # a LoRA checkpoint: the updates and the head only
    assert saved and all(".lora_" in k or k.startswith("fc.") for k in saved)
    assert all(torch.equal(rank0[k], v) for k, v in saved.items())

    with compute_threads(1):
        alone = train(experiment_from_dict({**DDP, **lora}, where="test"), runs_root=tmp_path / "one")
    assert alone.status == "finished", alone.reason
    one = load_file(alone.run_dir / "last.safetensors")
    assert one.keys() == saved.keys()
    moved = max((one[k] - saved[k]).abs().max().item() for k in one)
    assert moved < TOLERANCE, moved
