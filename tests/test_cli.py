"""The headless command line, as a person uses it: messages, never tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftui.cli import main

REPO = Path(__file__).resolve().parents[1]


def ftui(*args, cwd):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ftui", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_list_shows_the_shipped_catalog():
    proc = ftui("list", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for name in ("quickstart", "resnet18-fc", "resnet18-fft-lr", "vit_b_16-fft-224"):
        assert name in proc.stdout
    assert "98.4" in proc.stdout


def test_run_inspect_eval_resume_end_to_end(tiny_catalog, tmp_path):
    proc = ftui("run", "tiny", "--catalog", str(tiny_catalog), "--epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and "run folder:" in proc.stdout
    run_dirs = [p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()]
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("tiny-")
    last = run_dirs[0] / "last.safetensors"

    proc = ftui("inspect", str(last), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "fc.weight" in proc.stdout and "10x512" in proc.stdout and "trained" in proc.stdout

    proc = ftui("eval", str(last), "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and "32 cifar10-sample test images" in proc.stdout

    proc = ftui("resume", str(run_dirs[0]), cwd=tmp_path)
    assert proc.returncode != 0 and "nothing to resume" in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "args,expected",
    [
        (["run", "nope"], "No experiment named 'nope'"),
        (["inspect", "missing.safetensors"], "does not exist"),
        (["eval", "missing.safetensors"], "does not exist"),
        (["resume", "not-a-run"], "not an ftui run folder"),
    ],
)
def test_errors_are_messages_with_a_nonzero_exit(tiny_catalog, tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    if args[0] == "run":
        args = args + ["--catalog", str(tiny_catalog)]
    code = main(args)
    captured = capsys.readouterr()
    assert code != 0
    assert expected in captured.err + captured.out
    assert "Traceback" not in captured.err + captured.out


def test_bad_catalog_shows_file_line_and_column(tmp_path):
    bad = tmp_path / "experiments.toml"
    bad.write_text('[[experiment]]\nname = "x"\nepochs = = 3\n')
    proc = ftui("list", cwd=tmp_path)
    assert proc.returncode == 2
    assert "line 3" in proc.stderr and "Traceback" not in proc.stderr


def test_no_catalog_in_the_folder(tmp_path):
    proc = ftui("list", cwd=tmp_path)
    assert proc.returncode == 2 and "--catalog" in proc.stderr


def test_corrupt_checkpoint_in_the_cli(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 100)
    proc = ftui("inspect", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "broken.safetensors" in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_stops_a_cli_run_cleanly(tiny_catalog, tmp_path):
    import json
    import signal
    import time

    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ftui", "run", "tiny", "--catalog", str(tiny_catalog), "--epochs", "50"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    for line in proc.stdout:  # wait until the first epoch has been checkpointed
        output.append(line)
        if "epoch 1/50: test accuracy" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=300)
    text = "".join(output) + rest
    assert proc.returncode == 130, text
    assert "stopped" in text and "Traceback" not in text
    run_dir = next(p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "stopped" and status["epochs_done"] >= 1
    assert (run_dir / "last.safetensors").is_file()
