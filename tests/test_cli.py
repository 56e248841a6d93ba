"""The headless command line, as a person uses it: messages, never tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ftui import cli
from ftui.cli import main
from ftui.engine.runs import list_runs
from ftui.errors import EXIT_FAILED, EXIT_INTERNAL, EXIT_USAGE

PATIENCE = 300.0  # a bound on waits that end on an event; generous for a loaded machine

REPO = Path(__file__).resolve().parents[1]


def env() -> dict:
    # PYTHONPATH: `python -m ftui` from another folder must run this checkout, not an installed ftui.
    return {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}


def ftui(*args, cwd, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "ftui", *args], cwd=cwd, env=env(), capture_output=True, text=True, **kwargs
    )


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
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr + proc.stdout  # refused: nothing ran


@pytest.mark.parametrize(
    "args,expected",
    [
        (["run", "nope"], "No experiment named 'nope'"),
        (["inspect", "missing.safetensors"], "does not exist"),
        (["eval", "missing.safetensors"], "does not exist"),
        (["resume", "not-a-run"], "not an ftui run folder"),
        (["eval", "missing.safetensors", "--max-images", "-5"], "--max-images -5: give a number of test images"),
    ],
)
def test_errors_are_messages_with_a_nonzero_exit(tiny_catalog, tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    if args[0] == "run":
        args = args + ["--catalog", str(tiny_catalog)]
    code = main(args)
    captured = capsys.readouterr()
    assert code == EXIT_USAGE  # bad input: nothing was done
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

    proc = subprocess.Popen(
        [sys.executable, "-m", "ftui", "run", "tiny", "--catalog", str(tiny_catalog), "--epochs", "50"],
        cwd=tmp_path,
        env={**env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + PATIENCE
    while not any(r.epochs_done >= 1 for r in list_runs(tmp_path / "checkpoints")):  # the first epoch is saved
        assert time.monotonic() < deadline and proc.poll() is None, "no epoch was checkpointed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 130, text
    assert "stopped" in text and "Traceback" not in text
    run_dir = next(p for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "stopped" and status["epochs_done"] >= 1
    assert (run_dir / "last.safetensors").is_file()


# -- exit codes: one per kind of ending (the README's table) --------------------------


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working folder without an experiments.toml, and with its own temporary folder."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_run_that_fails_while_training_exits_1(tiny_catalog, elsewhere, capsys, monkeypatch):
    import ftui.engine.loop as loop_module

    def nan_loss(logits, *args, **kwargs):
        return logits.sum() * float("nan")  # the run diverges: ftui stops it as failed

    monkeypatch.setattr(loop_module.F, "cross_entropy", nan_loss)

    code = main(["run", "tiny", "--catalog", str(tiny_catalog), "--runs", str(elsewhere / "runs")])
    text = capsys.readouterr()
    assert code == EXIT_FAILED, text
    assert "failed:" in text.err and "run folder:" in text.out
    assert list_runs(elsewhere / "runs")[0].state == "failed"


def test_a_bug_in_the_training_loop_exits_70(tiny_catalog, elsewhere, capsys, monkeypatch):
    import ftui.engine.loop as loop_module

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug in a loss function")

    monkeypatch.setattr(loop_module.F, "cross_entropy", bug)
    code = main(["run", "tiny", "--catalog", str(tiny_catalog), "--runs", str(elsewhere / "runs")])
    assert code == EXIT_INTERNAL and "internal error" in capsys.readouterr().err
    assert list_runs(elsewhere / "runs")[0].state == "failed"


def test_a_run_whose_set_up_is_refused_exits_2(tmp_path, elsewhere, capsys):
    catalog = tmp_path / "missing-weights.toml"
    catalog.write_text('[[experiment]]\nname = "w"\ndataset = "cifar10-sample"\nweights = "nowhere/w.pth"\n')
    code = main(["run", "w", "--catalog", str(catalog), "--runs", str(elsewhere / "runs")])
    text = capsys.readouterr()
    assert code == EXIT_USAGE, text
    assert "failed:" in text.err and "w.pth" in text.err and "Traceback" not in text.err + text.out
    assert not (elsewhere / "runs").exists() or list_runs(elsewhere / "runs") == []


def test_an_internal_error_exits_70_with_a_crash_log(elsewhere, tiny_catalog, capsys, monkeypatch):
    import ftui.engine.catalog

    def bug(path):
        raise ZeroDivisionError("a bug in the catalog reader")

    monkeypatch.setattr(ftui.engine.catalog, "load_catalog", bug)
    code = main(["list", "--catalog", str(tiny_catalog)])
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL == 70
    assert "internal error" in err and "ZeroDivisionError" in err and "Traceback" not in err
    (log,) = elsewhere.glob("ftui-crash-*.log")
    assert "ZeroDivisionError" in log.read_text() and str(log) in err.replace("\n", "")


def test_a_second_ctrl_c_aborts_with_130(elsewhere, tiny_catalog, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_drive", interrupted)
    assert main(["run", "tiny", "--catalog", str(tiny_catalog)]) == 130
    assert "aborted." in capsys.readouterr().err


# -- flags before or after the command ------------------------------------------------


def test_catalog_before_the_command_is_used(tiny_catalog, elsewhere, capsys):
    assert main(["--catalog", str(tiny_catalog), "list"]) == 0
    assert "tiny" in capsys.readouterr().out
    assert main(["list", "--catalog", str(tiny_catalog)]) == 0
    assert "tiny" in capsys.readouterr().out


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_runs_folder_before_or_after_the_command(tiny_catalog, elsewhere, capsys, before):
    flags = ["--runs", str(elsewhere / "mine"), "--catalog", str(tiny_catalog)]
    command = ["run", "tiny", "--epochs", "1"]
    assert main(flags + command if before else command + flags) == 0
    assert [r.experiment for r in list_runs(elsewhere / "mine")] == ["tiny"]
    assert not (elsewhere / "checkpoints").exists()


# -- eval --max-images ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from ftui.engine.catalog import experiment_from_dict
    from ftui.engine.train import train
    from tests.conftest import TINY

    result = train(experiment_from_dict({**TINY, "epochs": 1}, where="test"), runs_root=tmp_path_factory.mktemp("r"))
    assert result.status == "finished", result.reason
    return result.run_dir / "last.safetensors"


@pytest.mark.parametrize(
    "flags, images",
    [([], 32), (["--max-images", "0"], 1017), (["--max-images", "5"], 5)],
    ids=["absent-the-experiment-s-own-32", "zero-all", "five"],
)
def test_eval_max_images(tiny_checkpoint, capsys, monkeypatch, flags, images):
    from ftui.engine import evaluation

    # Which images are evaluated is the point; computing the accuracy of all 1017 is tested elsewhere.
    def count_only(model, images, *args, **kwargs):
        return evaluation.Evaluation(0.0, 0.0, len(images))

    monkeypatch.setattr(evaluation, "evaluate", count_only)
    assert main(["eval", str(tiny_checkpoint), "--device", "cpu", *flags]) == 0
    assert f"on {images} cifar10-sample test images" in capsys.readouterr().out


def test_eval_refuses_a_negative_max_images(tiny_checkpoint, capsys):
    assert main(["eval", str(tiny_checkpoint), "--device", "cpu", "--max-images", "-5"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "--max-images -5" in captured.err and "test accuracy" not in captured.out


# -- inspect ----------------------------------------------------------------------------


def test_inspect_counts_values_as_the_checkpoint_screen_does(tiny_checkpoint, capsys):
    from ftui.formatting import param_count

    assert main(["inspect", str(tiny_checkpoint)]) == 0
    assert param_count(11_175_370) == "11.18M"
    assert capsys.readouterr().out.rstrip().endswith("122 tensors, 11.18M values")


@pytest.mark.parametrize("command", ["inspect", "eval"])
def test_the_resume_state_is_named_with_what_to_do_instead(tiny_checkpoint, capsys, command):
    run = tiny_checkpoint.parent
    code = main([command, str(run / "resume.safetensors")])
    text = " ".join(capsys.readouterr().err.split())  # unwrapped
    assert code == EXIT_USAGE, text
    assert "resume state" in text and "optimizer" in text and "not an ftui checkpoint" not in text
    assert "{path}" not in text
    assert str(run / "last.safetensors") in text and str(run / "best.safetensors") in text
    assert f"ftui resume {run}" in text


# -- list at 80 columns and piped ----------------------------------------------------------


def _listed(monkeypatch, capsys, console) -> list[str]:
    monkeypatch.setattr(cli, "out", console)
    assert main(["list", "--catalog", str(REPO / "experiments.toml")]) == 0
    return capsys.readouterr().out.splitlines()


def test_list_piped_gives_full_lines_whatever_the_width(monkeypatch, capsys):
    from rich.console import Console

    lines = _listed(monkeypatch, capsys, Console(width=80, force_terminal=False, highlight=False))
    assert lines[0].split() == ["name", "model", "input", "stem", "epochs", "report", "trains", "description"]
    row = next(line for line in lines if line.startswith("resnet18-layer1-layer4 "))
    assert row.split()[3:6] == ["cifar", "20", "92.7"]
    assert "conv1, layer1, layer4, fc" in row and "…" not in "".join(lines)
    assert row.endswith(cli._catalog(str(REPO / "experiments.toml")).get("resnet18-layer1-layer4").description)


def test_list_in_an_80_column_terminal_keeps_epochs_and_report(monkeypatch, capsys):
    from rich.console import Console

    piped = _listed(monkeypatch, capsys, Console(width=80, force_terminal=False, highlight=False))
    lines = _listed(monkeypatch, capsys, Console(width=80, force_terminal=True, color_system=None, highlight=False))
    assert len(lines) == len(piped) == 38 and all(len(line) <= 80 for line in lines), lines
    keys = piped[0].index("trains")  # name, model, input, stem, epochs, report: never cut
    assert [line[:keys] for line in lines] == [line[:keys] for line in piped]
    vit = next(line for line in lines if line.startswith("vit_b_16-fft-224 "))
    assert vit.split() == ["vit_b_16-fft-224", "vit_b_16", "224", "10", "98.4", "all"]  # the description dropped


# -- the workbench needs a terminal -----------------------------------------------------------


def test_the_workbench_without_a_terminal_says_so_and_exits_at_once(tiny_catalog, tmp_path):
    # stdin, stdout and stderr are not terminals: cron, `ssh host ftui` without -t. It used to spin a core forever.
    proc = ftui("--catalog", str(tiny_catalog), cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=PATIENCE)
    assert proc.returncode == EXIT_USAGE
    text = " ".join(proc.stderr.split())
    assert "needs an interactive terminal" in text and "ftui run NAME" in text and "Traceback" not in text


def test_list_in_a_wider_terminal_cuts_only_the_description(monkeypatch, capsys):
    from rich.console import Console

    piped = _listed(monkeypatch, capsys, Console(width=80, force_terminal=False, highlight=False))
    lines = _listed(monkeypatch, capsys, Console(width=130, force_terminal=True, color_system=None, highlight=False))
    assert all(len(line) <= 130 for line in lines), lines
    description = piped[0].index("description")
    assert [line[:description] for line in lines] == [line[:description] for line in piped]  # every column but one
    cut = [line for line in lines if line.endswith("…")]
    assert cut
    for line in cut:
        assert next(p for p in piped if p.startswith(line.split()[0] + " ")).startswith(line[:-1])


# -- run --experiment-json: a resolved experiment, as the workbench hands one over ------------------


def test_run_trains_the_experiment_of_a_json_file_exactly(elsewhere, make_exp, capsys):
    exp = make_exp(name="edited", epochs=1, trainable=["layer4", "fc"], unit_lr={"fc": 1e-3}, lr=1.25e-4)
    file = elsewhere / "edited.json"
    file.write_text(json.dumps(exp.to_dict()))
    assert main(["run", "--experiment-json", str(file), "--runs", str(elsewhere / "runs")]) == 0
    (run,) = list_runs(elsewhere / "runs")
    assert run.state == "finished" and json.loads((run.path / "experiment.json").read_text()) == exp.to_dict()


@pytest.mark.parametrize(
    "args, content, said",
    [
        (["tiny"], "{}", "a NAME from the catalog (ftui list names them) or --experiment-json FILE, not both"),
        ([], None, "a NAME from the catalog (ftui list names them) or --experiment-json FILE, not both"),
        ([], "not json", "could not be read"),
        ([], "[1, 2]", "holds no experiment: a JSON object of settings is expected"),
        ([], '{"name": "x", "epochs": "many"}', "epochs"),
    ],
    ids=["name-and-file", "neither", "not-json", "not-an-object", "bad-value"],
)
def test_run_with_a_bad_experiment_json_says_what_is_wrong(elsewhere, capsys, args, content, said):
    file = elsewhere / "e.json"
    if content is not None:
        file.write_text(content)
        args = [*args, "--experiment-json", str(file)]
    assert main(["run", *args]) == EXIT_USAGE
    err = capsys.readouterr().err.replace("\n", "")
    assert said in err and "Traceback" not in err
    assert not (elsewhere / "checkpoints").exists()
