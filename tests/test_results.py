"""Results: the report's accuracies beside ftui's best finished runs, and their export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ftui.engine.catalog import load_catalog
from ftui.engine.events import RunStarted, to_record
from ftui.engine.results import (
    CSV_HEADER,
    export_results,
    results_table,
    short_trainable,
    summary,
    to_csv,
    to_markdown,
)
from ftui.engine.runs import list_runs
from ftui.formatting import duration
from tests.conftest import REPO

TABLE_1 = [80.9, 68.2, 88.4, 89.3, 89.8, 89.0, 92.7, 92.5, 89.3, 90.9, 93.7, 94.1, 96.3, 90.5, 95.1, 98.4]

CATALOG = """
[defaults]
dataset = "cifar10-sample"
weights = "none"

[[experiment]]
name = "fc"
reference_acc = 80.9
trainable = ["fc"]

[[experiment]]
name = "fft"
reference_acc = 93.7

[[experiment]]
name = "all-but-bn1"
reference_acc = 94.1
trainable = ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"]

[[experiment]]
name = "no-reference"
input_size = 64
"""


def make_run(
    root: Path,
    folder: str,
    experiment: str,
    state: str,
    best_acc=None,
    seconds=None,
    started_at="2025-01-01T10:00:00",
    test_images=None,
    **exp,
) -> Path:
    """A run folder written by hand, as the trainer leaves it."""
    path = root / folder
    path.mkdir(parents=True)
    (path / "experiment.json").write_text(json.dumps({"name": experiment, **exp}))
    status = {
        "state": state,
        "best_acc": best_acc,
        "seconds": seconds,
        "started_at": started_at,
        "epochs": 3,
        "epochs_done": 3 if state == "finished" else 1,
    }
    (path / "status.json").write_text(json.dumps(status))
    if test_images is not None:
        start = RunStarted(path, experiment, "cpu", 1, 1, (), 3, 0, 1, 8, 100, test_images)
        (path / "metrics.jsonl").write_text(json.dumps(to_record(start)) + "\n")
    return path


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(CATALOG)
    return load_catalog(path)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "checkpoints"
    make_run(root, "fc-1", "fc", "finished", 79.5, 100.0, "2025-01-01T10:00:00")
    make_run(root, "fc-2", "fc", "finished", 82.25, 3725.4, "2025-01-02T10:00:00", 10_000, dataset="cifar10")
    make_run(root, "fc-3", "fc", "stopped", 99.0, 50.0, "2025-01-03T10:00:00")  # better, but not finished
    make_run(root, "fc-4", "fc", "failed", None, 5.0, "2025-01-04T10:00:00")
    make_run(root, "fft-1", "fft", "finished", 90.0, 600.0, test_images=1017, dataset="cifar10-sample")
    make_run(root, "fft-2", "fft", "failed", 95.0, 60.0)
    make_run(root, "nr-1", "no-reference", "finished", 50.0, 7.0)
    make_run(root, "gone-1", "gone", "finished", 70.0, 8.0, model="resnet18", input_size=32, trainable=["fc"])
    make_run(root, "gone-failed", "also-gone", "failed", None, 1.0)
    return list_runs(root)


def by_name(rows):
    return {r.experiment: r for r in rows}


def test_best_of_finished_runs_only(catalog, runs):
    rows = by_name(results_table(catalog, runs))
    fc = rows["fc"]
    assert (fc.measured, fc.runs, fc.seconds, fc.run) == (82.25, 2, 3725.4, "fc-2")
    assert rows["fft"].measured == 90.0 and rows["fft"].runs == 1  # the failed 95.0 does not count


def test_difference_sign_and_missing_values(catalog, runs):
    rows = by_name(results_table(catalog, runs))
    assert rows["fc"].difference == pytest.approx(1.35)
    assert rows["fft"].difference == pytest.approx(-3.7)
    unmeasured = rows["all-but-bn1"]
    assert (unmeasured.measured, unmeasured.difference, unmeasured.seconds, unmeasured.run, unmeasured.runs) == (
        None,
        None,
        None,
        "",
        0,
    )
    no_ref = rows["no-reference"]
    assert (no_ref.reference, no_ref.measured, no_ref.difference) == (None, 50.0, None)


def test_rows_follow_the_catalog_then_removed_experiments(catalog, runs):
    rows = results_table(catalog, runs)
    assert [r.experiment for r in rows] == ["fc", "fft", "all-but-bn1", "no-reference", "gone"]
    gone = rows[-1]
    assert not gone.in_catalog and (gone.model, gone.input_size, gone.trains, gone.measured) == (
        "resnet18",
        32,
        "fc",
        70.0,
    )
    assert all(r.in_catalog for r in rows[:-1])  # "also-gone" has no finished run: left out


def test_trainable_in_short(catalog):
    rows = by_name(results_table(catalog, []))
    assert (rows["fc"].trains, rows["fft"].trains, rows["all-but-bn1"].trains) == ("fc", "all", "all but bn1")
    assert short_trainable("resnet18", True, ["conv1", "layer1", "fc"]) == "conv1, layer1, fc"
    assert short_trainable("no-such-model", False, ["a", "b"]) == "a, b"
    assert short_trainable("resnet18", True, ["conv1", "fc"], ["layer1", "layer2", "layer3", "layer4"]) == (
        "conv1, fc + LoRA all others"
    )
    assert short_trainable("resnet18", True, ["fc"], ["layer4"]) == "fc + LoRA layer4"
    assert short_trainable("resnet18", True, [], ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"]) == "LoRA all"


def test_run_time_as_h_mm_ss():
    assert duration(3725.4) == "1h02m" and duration(None) == "" and duration(59.6) == "1m00s" and duration(7.2) == "7s"
    assert duration(float("nan")) == "" and duration(-1.0) == ""  # a duration that went backwards has no duration


def test_summary_counts_report_rows(catalog, runs):
    rows = results_table(catalog, runs)
    # fft was measured on the embedded sample: not comparable, so not in the mean difference
    assert summary(rows) == "2 of 3 report rows measured, 1 on the full CIFAR-10 test set; mean difference +1.4 points"
    assert summary(results_table(catalog, [])) == "0 of 3 report rows measured"


def test_markdown(catalog, runs):
    text = to_markdown(results_table(catalog, runs))
    lines = text.splitlines()
    assert lines[0].startswith("| experiment | model | input | trainable | report % | ftui % | diff |")
    assert set(lines[1]) <= set("|-")
    fc = [c.strip() for c in lines[2].strip("|").split("|")]
    assert fc == [
        "fc",
        "resnet18",
        "32x32",
        "fc",
        "80.9",
        "82.25",
        "+1.35",
        "1h02m",
        "2",
        "fc-2",
        "cifar10, 10000 test images, 3/3 epochs, weights ?",
    ]
    fft = [c.strip() for c in lines[3].strip("|").split("|")]
    assert fft[4:8] == ["93.7", "90.00†", "-3.70†", "10m00s"]  # on the sample: marked
    assert fft[10] == "cifar10-sample, 1017 test images, 3/3 epochs, weights ?"
    unmeasured = [c.strip() for c in lines[4].strip("|").split("|")]
    assert unmeasured[5:] == ["", "", "", "0", "", ""]
    assert "† measured on the embedded sample or a subset of the test set" in text
    assert "gone (not in catalog)" in text
    assert "best test accuracy over the experiment's finished runs" in text


def test_csv_parses_back(catalog, runs):
    parsed = list(csv.reader(io.StringIO(to_csv(results_table(catalog, runs)))))
    assert tuple(parsed[0]) == CSV_HEADER
    rows = {r[0]: dict(zip(CSV_HEADER, r, strict=True)) for r in parsed[1:]}
    fc = rows["fc"]
    assert (float(fc["report_acc"]), float(fc["ftui_acc"]), float(fc["difference"]), float(fc["seconds"])) == (
        80.9,
        82.25,
        1.35,
        3725.4,
    )
    assert (fc["finished_runs"], fc["run"], fc["trainable"], fc["input_size"]) == ("2", "fc-2", "fc", "32")
    empty = rows["all-but-bn1"]
    assert [empty[k] for k in ("ftui_acc", "difference", "seconds", "run")] == ["", "", "", ""]
    assert rows["no-reference"]["report_acc"] == "" and rows["no-reference"]["input_size"] == "64"
    assert (fc["dataset"], fc["test_images"], fc["epochs_done"], fc["comparable"]) == ("cifar10", "10000", "3", "True")
    assert (rows["fft"]["dataset"], rows["fft"]["comparable"]) == ("cifar10-sample", "False")


def test_export_writes_both_files_atomically(catalog, runs, tmp_path):
    rows = results_table(catalog, runs)
    folder = tmp_path / "new" / "checkpoints"  # created if missing
    md, table = export_results(rows, folder)
    assert (md, table) == (folder / "results.md", folder / "results.csv")
    assert md.read_text() == to_markdown(rows) and table.read_text() == to_csv(rows)
    export_results(rows[:1], folder)  # overwrites in place, leaves no temp files
    assert sorted(p.name for p in folder.iterdir()) == ["results.csv", "results.md"]
    assert len(table.read_text().splitlines()) == 2


def test_the_shipped_catalog_has_table_1():
    rows = results_table(load_catalog(REPO / "experiments.toml"), [])
    assert len(rows) == 37  # with quickstart, the three LoRA rows (the report gives no figure) and the miniature
    assert (
        by_name(rows)["resnet18-lora"].trains == "conv1, fc + LoRA all others"
        and not by_name(rows)["resnet18-lora"].reference
    )
    referenced = [r for r in rows if r.reference is not None]
    assert len(referenced) == 18  # Table 1's 16 rows and §3.1's two from-scratch runs
    descriptions = {e.name: e.description for e in load_catalog(REPO / "experiments.toml").experiments}
    table_1 = [r.reference for r in referenced if descriptions[r.experiment].startswith("Table 1")]
    assert table_1 == TABLE_1
    assert by_name(rows)["resnet18-fft-lr"].trains == "all but bn1"
    assert summary(rows) == "0 of 18 report rows measured"


def test_variants_are_listed_under_their_origin_with_what_they_change(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(
        CATALOG
        + '\n[[experiment]]\nname = "fc-lr"\norigin = "fc"\ntrainable = ["fc"]\nlr = 0.001\n'
        + '\n[[experiment]]\nname = "orphan-variant"\norigin = "removed"\n'
    )
    rows = results_table(load_catalog(path), [])
    assert [r.experiment for r in rows] == ["fc", "fc-lr", "fft", "all-but-bn1", "no-reference", "orphan-variant"]
    variant = rows[1]
    assert (variant.origin, variant.changes, variant.reference) == ("fc", "lr 0.01 → 0.001", None)
    assert rows[-1].origin == ""  # its origin is gone from the catalog: an ordinary row
    assert "| ↳ fc-lr (variant of fc: lr 0.01 → 0.001) |" in to_markdown(rows)
