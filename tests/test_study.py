"""The report in miniature: the shipped study, its order, its comparison with Table 1, and a tiny study
run end to end by `ftui run --all`."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from ftui import cli
from ftui.engine.catalog import load_catalog
from ftui.engine.events import RunResult
from ftui.engine.results import measured_by_experiment
from ftui.engine.runs import RunFolder, list_runs
from ftui.engine.study import (
    CONCLUSIONS,
    StudyRow,
    rank_correlation,
    spearman,
    study_experiments,
    study_markdown,
    study_summary,
    study_table,
    verdicts,
    with_prefix,
)
from ftui.errors import CatalogError
from tests.conftest import TINY

REPO = Path(__file__).resolve().parent.parent
# What a miniature row must share with the report row it mirrors: which units train, and how.
RECIPE = ("model", "trainable", "lora", "cifar_stem", "optimizer", "lr", "unit_lr", "weight_decay")


@pytest.fixture(scope="module")
def shipped():
    return load_catalog(REPO / "experiments.toml")


def test_the_shipped_miniature_queues_its_pretraining_first(shipped):
    study = study_experiments(shipped)
    assert [e.name for e in study] == [e.name for e in shipped.experiments if e.name.startswith("mini-")]
    pretrain, rows = study[0], study[1:]
    assert pretrain.name == "mini-pretrain" and pretrain.weights == "none" and not pretrain.mirrors
    assert len(rows) == 14 and all(e.weights == "run:mini-pretrain" for e in rows)
    assert all(not set(e.classes) & set(pretrain.classes) and len(e.classes) == 5 for e in rows)  # new classes
    assert [e.name for e in with_prefix(shipped, "mini-")] == [e.name for e in study]


def test_each_miniature_row_trains_what_its_report_row_trains(shipped):
    for exp in study_experiments(shipped)[1:]:
        mirrored = shipped.get(exp.mirrors)
        assert exp.mirrors in exp.description
        differ = {k: (getattr(exp, k), getattr(mirrored, k)) for k in RECIPE if getattr(exp, k) != getattr(mirrored, k)}
        assert differ == {}, exp.name
    table_1 = {e.name for e in shipped.experiments if e.reference_acc is not None and e.model == "resnet18"}
    mirrored = {e.mirrors for e in shipped.experiments if e.mirrors}
    assert table_1 - mirrored == {"resnet18-scratch", "resnet18-scratch-imagenet-stem"}  # not transfer: §3.1


def test_the_conclusions_hold_on_the_reports_own_numbers(shipped):
    """The conclusions are declared from the report's text; its Table 1 must bear each of them out."""
    rows = [
        StudyRow(e.mirrors, shipped.get(e.mirrors).reference_acc, e.name, 0.0, "")
        for e in shipped.experiments
        if e.mirrors
    ]
    report = [StudyRow(r.mirrored, r.reference, r.experiment, r.reference, "") for r in rows]
    assert [v for _, v in verdicts(report)] == [True] * len(CONCLUSIONS)
    assert rank_correlation(report) == pytest.approx(1.0)


def test_spearman_ranks_ties_by_their_mean_and_needs_three_pairs():
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / 95**0.5)  # ranks 1 2 3.5 5 3.5
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 2, 3], [7, 7, 7]) is None  # no spread: no correlation to speak of


def test_a_conclusion_is_judged_only_once_all_its_rows_are_measured(shipped, tmp_path):
    from tests.test_results import make_run

    for folder, name, acc in (("a", "mini-fc", 50.0), ("b", "mini-fc-conv1", 55.0), ("c", "mini-fft", 70.0)):
        make_run(tmp_path, folder, name, "finished", acc, 1.0)
    rows = study_table(shipped, measured_by_experiment(list_runs(tmp_path)))
    judged = {c.text: v for c, v in verdicts(rows)}
    assert judged[CONCLUSIONS[0].text] is False  # the new conv1 did better than the head alone here
    assert judged[CONCLUSIONS[4].text] is None  # mini-fft-lr has no run
    assert study_summary(rows) == (
        "3 of 14 miniature rows measured; Spearman rho +0.50 over 3 rows; 0 of 1 of the report's conclusions hold"
    )  # the report ranks fc-conv1 < fc < fft (68.2, 80.9, 93.7); here fc < fc-conv1 < fft
    text = study_markdown(rows)
    assert "| resnet18-fc | 80.9 | mini-fc | 50.00 | best of 1 finished run: a |" in text
    assert "- per-layer learning rates beat one rate (§4.2): not measured yet" in text


def test_a_run_listed_before_its_base_still_trains_after_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[defaults]\nweights = "none"\ndataset = "cifar10-sample"\n'
        '[[experiment]]\nname = "b-fine"\nweights = "run:a-base"\n'
        '[[experiment]]\nname = "a-base"\n'
        '[[experiment]]\nname = "b-loop"\nweights = "run:b-loop"\n'
    )
    catalog = load_catalog(path)
    assert [e.name for e in with_prefix(catalog, "b-")] == [
        "a-base",
        "b-fine",
        "b-loop",
    ]  # a base outside the prefix too


def test_mirrors_must_name_an_experiment_of_the_catalog(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[experiment]]\nname = "a"\nmirrors = "resnet18-fx"\n[[experiment]]\nname = "resnet18-fc"\n')
    with pytest.raises(CatalogError, match=r"a: mirrors = \"resnet18-fx\": no experiment of the catalog.*resnet18-fc"):
        load_catalog(path)


def _tiny_study(tmp_path: Path, base_weights: str = "none") -> Path:
    """Two rows of the study on a handful of steps: a base on two classes, a fine-tune on two others."""
    settings = {k: v for k, v in TINY.items() if k not in ("name", "weights", "epochs")}
    lines = ["[defaults]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()] + ["epochs = 1"]
    lines += ['[[experiment]]\nname = "resnet18-fc"\nreference_acc = 80.9\ntrainable = ["fc"]']
    lines += [f'[[experiment]]\nname = "t-pre"\nclasses = ["airplane", "truck"]\nweights = {json.dumps(base_weights)}']
    lines += [
        '[[experiment]]\nname = "t-fc"\nmirrors = "resnet18-fc"\nclasses = ["dog", "cat"]\n'
        'weights = "run:t-pre"\ntrainable = ["fc"]'
    ]
    path = tmp_path / "study.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_tiny_study_runs_end_to_end_from_one_command(tmp_path, capsys):
    catalog, runs = _tiny_study(tmp_path), tmp_path / "runs"
    assert cli.main(["run", "--all", "t-", "--catalog", str(catalog), "--runs", str(runs)]) == 0
    printed = capsys.readouterr().out
    assert "1/2: t-pre" in printed and "2/2: t-fc" in printed
    assert "the report in miniature: 1 of 1 miniature rows measured" in printed
    by_name = {r.experiment: r for r in list_runs(runs)}
    assert by_name["t-pre"].state == by_name["t-fc"].state == "finished"
    started_from = RunFolder(by_name["t-fc"].path).read_experiment()["weights"]
    assert started_from == str((by_name["t-pre"].path / "best.safetensors").absolute())
    rows = study_table(load_catalog(catalog), measured_by_experiment(list_runs(runs)))
    assert [(r.mirrored, r.reference, r.experiment) for r in rows] == [("resnet18-fc", 80.9, "t-fc")]
    assert rows[0].accuracy == by_name["t-fc"].best_acc


def test_a_failed_base_fails_the_runs_that_start_from_it_and_the_command(tmp_path, capsys):
    catalog, runs = _tiny_study(tmp_path, base_weights="missing.safetensors"), tmp_path / "runs"
    assert cli.main(["run", "--all", "t-", "--catalog", str(catalog), "--runs", str(runs)]) != 0
    captured = capsys.readouterr()
    assert "Train it first: ftui run t-pre" in captured.err.replace("\n", "")
    assert "t-pre" in captured.out and "failed" in captured.out


@pytest.fixture
def signal_handlers_restored():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_ctrl_c_between_two_runs_of_run_all_stops_the_sequence(tmp_path, capsys, monkeypatch, signal_handlers_restored):
    started: list[str] = []

    def train_then_ctrl_c(exp, printer, stop, **_):
        started.append(exp.name)
        signal.raise_signal(signal.SIGINT)  # arrives as the run ends, before the next one starts
        return RunResult("finished", None, best_acc=50.0, final_acc=50.0)

    monkeypatch.setattr("ftui.engine.train.train", train_then_ctrl_c)
    catalog = _tiny_study(tmp_path)
    code = cli.main(["run", "--all", "t-", "--catalog", str(catalog), "--runs", str(tmp_path / "runs")])
    assert started == ["t-pre"] and code == 130
    printed = capsys.readouterr().out
    assert "t-pre" in printed and "50.00%" in printed
    assert "t-fc" in printed and "not started" in printed


def test_run_all_skip_finished_continues_a_study_without_training_its_base_again(tmp_path, capsys):
    catalog, runs = _tiny_study(tmp_path), tmp_path / "runs"
    assert cli.main(["run", "t-pre", "--catalog", str(catalog), "--runs", str(runs)]) == 0
    capsys.readouterr()
    args = ["run", "--all", "t-", "--skip-finished", "--catalog", str(catalog), "--runs", str(runs)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "skipped, a finished run already: t-pre" in printed and "1/1: t-fc" in printed
    assert sorted(r.experiment for r in list_runs(runs)) == ["t-fc", "t-pre"]  # the base trained once
    assert cli.main(args) == 0
    assert "Every experiment starting with 't-' has a finished run" in capsys.readouterr().out
    assert cli.main(["run", "t-fc", "--skip-finished", "--catalog", str(catalog), "--runs", str(runs)]) == 2
    assert "--skip-finished goes with --all" in capsys.readouterr().err


def test_run_all_refuses_a_prefix_that_matches_nothing(tmp_path, capsys):
    catalog = _tiny_study(tmp_path)
    assert cli.main(["run", "--all", "zz", "--catalog", str(catalog), "--runs", str(tmp_path / "r")]) == 2
    assert "No experiment of" in capsys.readouterr().err
