"""The Results screen, driven through the real app."""

from __future__ import annotations

import csv
import io

import pytest
from textual.widgets import DataTable, Static

from ftui.engine.catalog import load_catalog
from ftui.engine.results import results_table, to_csv, to_markdown
from ftui.engine.runs import list_runs
from ftui.tui.app import make_app
from ftui.tui.screens.results import ResultsScreen
from tests.test_results import make_run

CATALOG = """
[defaults]
dataset = "cifar10-sample"
weights = "none"
device = "cpu"

[[experiment]]
name = "tiny-fc"
reference_acc = 80.9
trainable = ["fc"]

[[experiment]]
name = "tiny-fft"
reference_acc = 93.7

[[experiment]]
name = "tiny-layer1-layer4"
reference_acc = 92.7
cifar_stem = true
trainable = ["conv1", "layer1", "layer4", "fc"]

[[experiment]]
name = "tiny-scratch"
input_size = 64
"""


@pytest.fixture
def results_app(tui_catalog, tui_runs):
    """The app on a small catalog with runs written by hand: every case of the table, deterministic."""
    tui_catalog.write_text(CATALOG)
    make_run(tui_runs, "tiny-fc-20250101-100000", "tiny-fc", "finished", 82.5, 125.0)
    make_run(tui_runs, "tiny-fft-20250101-110000", "tiny-fft", "finished", 90.25, 3725.0)
    make_run(tui_runs, "tiny-fft-20250102-110000", "tiny-fft", "failed", 95.0, 60.0)
    make_run(tui_runs, "tiny-scratch-20250101-120000", "tiny-scratch", "finished", 50.0, 7.0)
    make_run(
        tui_runs,
        "old-name-20250101-130000",
        "old-name",
        "finished",
        70.0,
        8.0,
        model="resnet18",
        input_size=32,
        trainable=["fc"],
    )
    app = make_app(tui_catalog, tui_runs)
    yield app
    app.controller.request_stop("by the test")


async def open_results(pilot) -> ResultsScreen:
    pilot.app.push_screen(ResultsScreen())
    await pilot.pause()
    assert isinstance(pilot.app.screen, ResultsScreen)
    return pilot.app.screen


def table_text(screen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_table_shows_report_measured_and_diff(results_app):
    async with results_app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        rows = table_text(screen)
        assert [r[0] for r in rows] == ["tiny-fc", "tiny-fft", "tiny-layer1-layer4", "tiny-scratch", "old-name"]
        # † : these hand-written runs do not say they were measured on CIFAR-10's whole test set
        assert rows[0][1:] == ["80.9", "82.50†", "+1.60", "2m05s", "1", "fc"]  # model, input: too narrow
        assert rows[1][1:6] == ["93.7", "90.25†", "-3.45", "1h02m", "1"]  # the failed 95.0 does not count
        assert rows[2][1:7] == ["92.7", "-", "-", "", "0", "conv1, layer1, l…"]
        assert rows[3][1:4] == ["-", "50.00†", "-"]
        diffs = screen.query_one(DataTable).get_column_at(3)
        colours = [str(span.style) for cell in diffs for span in cell.spans]
        assert colours == ["green", "red"]
        summary = str(screen.query_one("#summary", Static).content)
        assert summary.startswith("Results: 2 of 3 report rows measured, 0 on the full CIFAR-10 test set")
        assert "not comparable with the report" in str(screen.query_one("#detail", Static).content)
        await pilot.resize_terminal(120, 24)
        await pilot.pause()
        rows = table_text(screen)
        assert rows[0][6:] == ["fc", "resnet18", "32"]
        assert rows[2][6] == "conv1, layer1, layer4, fc"  # no longer cut


async def test_highlighted_row_is_spelled_out(results_app):
    async with results_app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        await pilot.press("down", "down")
        detail = str(screen.query_one("#detail", Static).content)
        assert detail == "tiny-layer1-layer4: resnet18 at 32x32, trains conv1, layer1, layer4, fc\nno finished run yet"
        await pilot.press("down", "down")
        detail = str(screen.query_one("#detail", Static).content)
        assert detail == (
            "old-name (no longer in the catalog): resnet18 at 32x32, trains fc\n"
            "best of 1 finished run: old-name-20250101-130000\n"
            "on ?, test images unknown, 3/3 epochs, weights ? † not comparable with the report"
        )


async def test_x_exports_markdown_and_csv(results_app, tui_runs):
    seen = []
    async with results_app.run_test(size=(80, 24)) as pilot:
        results_app.notify = lambda message, **kw: seen.append(message)
        await open_results(pilot)
        await pilot.press("x")
        await pilot.pause()
    md, table = tui_runs / "results.md", tui_runs / "results.csv"
    assert seen and str(md) in seen[-1] and str(table) in seen[-1]
    expected = results_table(load_catalog(results_app.catalog_path), list_runs(tui_runs))
    assert md.read_text() == to_markdown(expected) and table.read_text() == to_csv(expected)
    parsed = list(csv.reader(io.StringIO(table.read_text())))
    assert parsed[1][:7] == ["tiny-fc", "resnet18", "32", "fc", "80.9", "82.5", "1.6"]
    assert "| tiny-fft | resnet18 | 32x32 | all | 93.7 | 90.25† | -3.45† | 1h02m | 1 |" in md.read_text()


async def test_x_asks_before_replacing_an_earlier_export(results_app, tui_runs):
    from ftui.tui.screens.confirm import ConfirmScreen

    tui_runs.mkdir(parents=True, exist_ok=True)
    md = tui_runs / "results.md"
    md.write_text("an earlier export, edited by hand\n")
    async with results_app.run_test(size=(80, 24)) as pilot:
        await open_results(pilot)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(results_app.screen, ConfirmScreen) and "results.md" in results_app.screen.question
        await pilot.press("enter")  # the safe answer: keep it
        await pilot.pause()
        assert md.read_text() == "an earlier export, edited by hand\n" and not (tui_runs / "results.csv").exists()
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert md.read_text().startswith("| experiment |") and (tui_runs / "results.csv").exists()


async def test_r_rereads_the_runs_and_escape_goes_back(results_app, tui_runs):
    async with results_app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        make_run(tui_runs, "tiny-layer1-layer4-20250103-100000", "tiny-layer1-layer4", "finished", 93.0, 60.0)
        await pilot.press("r")
        assert table_text(screen)[2][1:5] == ["92.7", "93.00†", "+0.30", "1m00s"]
        await pilot.press("escape")
        assert not isinstance(results_app.screen, ResultsScreen)


async def test_a_broken_catalog_shows_its_error(tui_catalog, tui_runs):
    tui_catalog.write_text("this is [not toml\n")
    app = make_app(tui_catalog, tui_runs)
    assert app.catalog is None and app.catalog_error
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        assert not screen.query_one(DataTable).display
        error = screen.query_one("#error", Static)
        assert screen.query_one("#error-box").display and app.catalog_error in str(error.content)
        await pilot.press("x")  # nothing to export; no crash, no files
        await pilot.pause()
        assert not (tui_runs / "results.md").exists()
        tui_catalog.write_text(CATALOG)  # fixed: r reads it again
        await pilot.press("r")
        assert app.catalog is not None and screen.query_one(DataTable).display
        assert not screen.query_one("#error-box").display
        assert [r[0] for r in table_text(screen)][:2] == ["tiny-fc", "tiny-fft"]


def test_snapshot(results_app, snap_compare):
    async def open_screen(pilot):
        await open_results(pilot)

    assert snap_compare(results_app, terminal_size=(80, 24), run_before=open_screen)


@pytest.fixture
def miniature_app(tui_catalog, tui_runs):
    """The shipped catalog, with four rows of the miniature measured (runs written by hand)."""
    from pathlib import Path

    tui_catalog.write_text((Path(__file__).resolve().parents[2] / "experiments.toml").read_text())
    for name, acc in (("mini-fc", 50.0), ("mini-fc-conv1", 40.0), ("mini-fft", 70.0), ("mini-fft-lr", 72.5)):
        make_run(tui_runs, f"{name}-20260101-100000", name, "finished", acc, 60.0)
    app = make_app(tui_catalog, tui_runs)
    yield app
    app.controller.request_stop("by the test")


async def test_m_sets_the_miniature_beside_table_1_with_its_correlation_and_conclusions(miniature_app, tui_runs):
    async with miniature_app.run_test(size=(100, 30)) as pilot:
        screen = await open_results(pilot)
        await pilot.press("m")
        rows = table_text(screen)
        assert len(rows) == 14
        assert rows[0][:4] == ["resnet18-fc", "80.9", "mini-fc", "50.00"]
        assert rows[2][:4] == ["resnet18-layer1", "88.4", "mini-layer1", "-"]
        summary = str(screen.query_one("#summary", Static).content)
        assert summary == (
            "Miniature: 4 of 14 miniature rows measured; Spearman rho +1.00 over 4 rows; "
            "2 of 2 of the report's conclusions hold"
        )
        detail = str(screen.query_one("#detail", Static).content)
        assert "✓ holds: per-layer learning rates beat one rate (§4.2)" in detail
        assert "· not measured yet: two spread-out layers beat two adjacent ones (§4.1.3)" in detail
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("m")  # and back to Table 1 beside ftui's runs
        assert table_text(screen)[0][0] == "quickstart"
    exported = (tui_runs / "results.md").read_text()
    assert "## The report in miniature" in exported and "| resnet18-fft-lr | 94.1 | mini-fft-lr | 72.50 |" in exported
    assert "- a new conv1 with the rest frozen does worse than the head alone (§4.1.2): holds" in exported
