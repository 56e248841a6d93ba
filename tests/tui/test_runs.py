"""The runs screen, the checkpoint screen and the comparison, driven through the real app."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from textual.widgets import DataTable, Static

from ftui.engine import checkpoints as checkpoints_module
from ftui.engine import history
from ftui.engine.catalog import experiment_from_dict
from ftui.tui.app import make_app
from ftui.tui.screens.checkpoint import CheckpointScreen
from ftui.tui.screens.compare import CompareScreen
from ftui.tui.screens.runs import RunsScreen
from tests.conftest import TINY

OOM = (
    "Out of memory on cpu with batch_size = 8. Lower batch_size (or input_size) and resume or start again. "
    "This reason is long on purpose, so only the detail line shows all of it."
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One real tiny finished run, trained once and copied into each test's runs folder."""
    from ftui.engine.train import train

    exp = experiment_from_dict({**TINY, "name": "tiny"}, where="test")
    result = train(exp, stop=threading.Event(), runs_root=tmp_path_factory.mktemp("trained"))
    assert result.status == "finished", result.reason
    return result.run_dir


def _link_checkpoints(src: str, dst: str) -> None:
    # Checkpoints are large and only read: hard links make a copy instant. Small files are copied.
    if src.endswith(".safetensors"):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_run(source: Path, root: Path, name: str, **status) -> Path:
    path = root / name
    shutil.copytree(source, path, copy_function=_link_checkpoints)
    if status:
        data = json.loads((path / "status.json").read_text())
        (path / "status.json").write_text(json.dumps({**data, **status}))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def three_runs(trained, tui_runs) -> dict[str, Path]:
    """finished, failed (with a long reason) and interrupted (said running, its process is gone)."""
    return {
        "finished": copy_run(trained, tui_runs, "tiny-20240103-000000"),
        "failed": copy_run(trained, tui_runs, "tiny-20240102-000000", state="failed", reason=OOM),
        "interrupted": copy_run(
            trained,
            tui_runs,
            "tiny-20240101-000000",
            state="running",
            seconds=None,
            pid=dead_pid(),
            host=socket.gethostname(),
        ),
    }


def rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def open_runs(app, pilot):
    app.push_screen(RunsScreen())
    await pilot.pause()
    return app.screen


# -- runs screen ---------------------------------------------------------------------


async def test_lists_runs_with_state_and_failure_reason(app, three_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_runs(app, pilot)
        table = screen.query_one(DataTable)
        assert [r[3] for r in rows(table)] == ["finished", "failed", "interrupted"]
        finished, failed, _ = rows(table)
        assert finished[5] == "2/2" and finished[4] != "-" and finished[6] != "-"
        assert failed[7].startswith("Out of memory") and failed[7].endswith("…")
        assert "tiny-20240103-000000" in text_of(screen, "#detail")
        await pilot.press("down")
        assert "tiny-20240102-000000" in text_of(screen, "#detail")
        assert "only the detail line shows all of it" in text_of(screen, "#detail")


async def test_refresh_picks_up_a_new_run(app, three_runs, trained, tui_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_runs(app, pilot)
        await pilot.press("down")
        copy_run(trained, tui_runs, "tiny-20240104-000000", state="stopped", reason="stopped by request")
        screen.refresh_runs()
        await pilot.pause()
        assert [r[3] for r in rows(screen.query_one(DataTable))] == ["stopped", "finished", "failed", "interrupted"]
        assert "tiny-20240102-000000" in text_of(screen, "#detail")  # the cursor stayed on its run


async def test_empty_runs_folder_says_so(app, tui_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_runs(app, pilot)
        assert not screen.query_one(DataTable).display
        assert f"No runs yet in {tui_runs}: launch one from the catalog" in text_of(screen, "#empty")


async def test_enter_opens_the_curves(app, three_runs, monkeypatch):
    opened = []
    monkeypatch.setattr(app, "open_run", opened.append)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_runs(app, pilot)
        await pilot.press("down", "enter")
        assert opened == [three_runs["failed"]]


async def test_resume(app, three_runs, monkeypatch):
    resumed = []
    monkeypatch.setattr(app, "resume_run", resumed.append)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_runs(app, pilot)
        await pilot.press("r")  # finished: nothing to resume
        assert resumed == [] and "nothing to resume" in list(app._notifications)[-1].message
        await pilot.press("down", "down", "r")
        assert resumed == [three_runs["interrupted"]]


async def test_evaluate_shows_the_accuracy(app, three_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_runs(app, pilot)
        await pilot.press("e")
        await app.workers.wait_for_complete()
        await pilot.pause()
        detail = text_of(screen, "#detail")
        assert "best.safetensors:" in detail and "% test accuracy" in detail and "on 32 images" in detail
        assert "% test accuracy" in list(app._notifications)[-1].message


async def test_evaluate_error_is_readable(app, three_runs):
    best = three_runs["finished"] / "best.safetensors"
    best.unlink()  # a hard link to the shared trained run: replace it, don't write through it
    best.write_bytes(b"not a checkpoint")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_runs(app, pilot)
        await pilot.press("e")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "evaluation failed:" in text_of(screen, "#detail")
        assert "corrupt" in text_of(screen, "#detail")


async def test_mark_two_and_compare(app, three_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_runs(app, pilot)
        await pilot.press("c")
        assert isinstance(app.screen, RunsScreen)  # nothing marked yet
        await pilot.press("space", "space")
        assert [r[0] for r in rows(screen.query_one(DataTable))] == ["●", "●", ""]
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        legend = text_of(app.screen, "#legend")
        assert "tiny-20240103-000000" in legend and "tiny-20240102-000000" in legend
        await pilot.press("escape")
        assert app.screen is screen


# -- checkpoint screen -------------------------------------------------------------------


async def test_inspect_shows_the_tensor_table(app, three_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        await open_runs(app, pilot)
        await pilot.press("i")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, CheckpointScreen) and screen.path.name == "best.safetensors"
        table = rows(screen.query_one("#tensors", DataTable))
        fc = next(r for r in table if r[0] == "fc.weight")
        assert fc == ["fc.weight", "10×512", "F32", "fc", "trained"]
        summary = text_of(screen, "#summary")
        assert "best.safetensors · resnet18 · epoch 1 of 2" in summary  # epoch 2 was no better
        assert "trains all · from random weights" in summary


async def test_corrupt_checkpoint_is_a_message(app, tmp_path):
    bad = tmp_path / "best.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CheckpointScreen(bad))
        await pilot.pause()
        assert "could not be read" in text_of(app.screen, "#message")
        assert not app.screen.query_one("#tensors").display
        await pilot.press("m", "e")  # nothing to act on: no crash


async def test_movement_from_random_weights_explains(app, three_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CheckpointScreen(three_runs["finished"] / "best.safetensors"))
        await pilot.pause()
        await pilot.press("m")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "random weights" in text_of(app.screen, "#note")


async def test_movement_table_from_local_weights(app, tmp_path, tui_runs):
    from ftui.engine.train import train

    start = tmp_path / "start.safetensors"
    save_file({k: v.contiguous() for k, v in torchvision.models.resnet18().state_dict().items()}, start)
    exp = experiment_from_dict(
        {
            **TINY,
            "weights": str(start),
            "trainable": ["layer4", "fc"],
            "cifar_stem": False,
            "epochs": 1,
            "max_steps_per_epoch": 1,
            "max_test_images": 8,
        },
        where="test",
    )
    run = train(exp, stop=threading.Event(), runs_root=tui_runs)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CheckpointScreen(run.run_dir / "best.safetensors"))
        await pilot.pause()
        await pilot.press("m")
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = {r[0]: r for r in rows(app.screen.query_one("#movement", DataTable))}
        assert table["layer1"][2:4] == ["frozen", "0%"]
        assert table["layer4"][2] == "trained" and table["layer4"][4].strip()
        assert table["fc"][3] == "new"
        await pilot.press("t")
        assert app.screen.query_one("#tensors").display


# -- snapshots ------------------------------------------------------------------------


def fake_run(
    root: Path,
    name: str,
    state: str,
    accs: list[float],
    epochs: int = 3,
    reason: str = "",
    seconds: float | None = 125.0,
    pid: int = 999999,
    lr: float = 0.05,
) -> Path:
    """A run folder written by hand, so the screens that show it are the same every time."""
    path = root / name
    path.mkdir(parents=True)
    experiment = name.rsplit("-", 2)[0]
    (path / "experiment.json").write_text(json.dumps({"name": experiment, "model": "resnet18", "device": "cpu"}))
    day, clock = name.split("-")[-2:]
    started = f"{day[:4]}-{day[4:6]}-{day[6:]}T{clock[:2]}:{clock[2:4]}:{clock[4:]}+0000"
    status = {
        "state": state,
        "reason": reason,
        "started_at": started,
        "epochs": epochs,
        "epochs_done": len(accs),
        "best_acc": max(accs, default=None),
        "seconds": seconds,
        "pid": pid,
        "host": socket.gethostname(),
    }
    (path / "status.json").write_text(json.dumps(status))
    records = [{"type": "start", "experiment": experiment, "epochs": epochs, "start_epoch": 0, "steps_per_epoch": 8}]
    loss = 2.4
    for e, acc in enumerate(accs):
        for s in range(8):
            loss *= 1 - lr
            records.append({"type": "steps", "epoch": e, "step": s, "global_step": e * 8 + s, "losses": [loss]})
        records.append({"type": "epoch", "epoch": e, "train_loss": loss, "test_loss": loss + 0.2, "test_acc": acc})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def snapshot_runs(tmp_path, monkeypatch) -> Path:
    # A relative runs folder: the detail line shows the path, and it must not be a temporary one.
    monkeypatch.chdir(tmp_path)
    root = Path("checkpoints")
    fake_run(root, "resnet18-fc-20260103-101500", "finished", [61.2, 70.4, 72.9], seconds=3725.0)
    # Resumed: 300 s before, and (seconds_since below) 11 s since its resume.
    running = fake_run(root, "resnet18-all-20260102-090000", "running", [80.1], seconds=300.0, pid=os.getpid())
    status = json.loads((running / "status.json").read_text())
    (running / "status.json").write_text(json.dumps({**status, "resumed_at": "2026-01-02T10:00:00+0000"}))
    monkeypatch.setattr(history, "seconds_since", lambda stamp: 11.0 if stamp else None)  # a still clock
    fake_run(root, "vgg16-20260101-120000", "failed", [40.5], reason=OOM, lr=0.02)
    fake_run(root, "vit-b16-20251231-230000", "running", [], seconds=None, pid=dead_pid())
    return root


def test_runs_screen_snapshot(snap_compare, tui_catalog, snapshot_runs):
    async def run_before(pilot):
        pilot.app.push_screen(RunsScreen())
        await pilot.pause()
        await pilot.press("down", "down", "space")

    assert snap_compare(make_app(tui_catalog, snapshot_runs), terminal_size=(80, 24), run_before=run_before)


def test_compare_screen_snapshot(snap_compare, tui_catalog, snapshot_runs):
    paths = [
        snapshot_runs / "resnet18-fc-20260103-101500",
        snapshot_runs / "vgg16-20260101-120000",
        snapshot_runs / "resnet18-all-20260102-090000",
    ]

    async def run_before(pilot):
        pilot.app.push_screen(CompareScreen(paths))
        await pilot.pause(0.3)

    assert snap_compare(make_app(tui_catalog, snapshot_runs), terminal_size=(80, 24), run_before=run_before)


FIXED_VERSIONS = {"ftui": "0.0.0", "torch": "9.9.9", "torchvision": "0.99.9", "safetensors": "0.9", "python": "3.99.0"}


@pytest.fixture
def crafted_checkpoint(tmp_path, monkeypatch) -> Path:
    """A checkpoint whose units moved by known amounts from a local start file: layer3 1%, layer4 5%."""
    from ftui.engine.checkpoints import save_model_checkpoint

    monkeypatch.chdir(tmp_path)  # relative paths on screen, not temporary ones
    # The screen shows the versions a checkpoint was written with; the snapshot must not change with them.
    monkeypatch.setattr(checkpoints_module, "versions", lambda: FIXED_VERSIONS)
    torch.manual_seed(0)
    start = {k: v.contiguous() for k, v in torchvision.models.resnet18().state_dict().items()}
    save_file(start, "start.safetensors")
    exp = experiment_from_dict(
        {
            **TINY,
            "name": "resnet18-top",
            "weights": "start.safetensors",
            "cifar_stem": False,
            "trainable": ["layer3", "layer4", "fc"],
            "epochs": 3,
        },
        where="test",
    )
    moved = {k: v * {"layer3": 1.01, "layer4": 1.05}.get(k.split(".")[0], 1.0) for k, v in start.items()}
    moved.update({k: v for k, v in start.items() if not v.is_floating_point()})
    moved.update({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)})
    path = Path("checkpoints/resnet18-top-20260101-000000/best.safetensors")
    path.parent.mkdir(parents=True)
    metrics = {"type": "epoch", "epoch": 2, "train_loss": 0.4123, "test_loss": 0.5234, "test_acc": 81.25}
    save_model_checkpoint(
        path,
        moved,
        kind="best",
        epoch=2,
        experiment=exp,
        metrics=metrics,
        classes=tuple(f"class{i}" for i in range(10)),
    )
    return path


def test_checkpoint_screen_snapshot(snap_compare, tui_catalog, crafted_checkpoint):
    async def run_before(pilot):
        pilot.app.push_screen(CheckpointScreen(crafted_checkpoint))
        await pilot.pause()

    assert snap_compare(make_app(tui_catalog, "checkpoints"), terminal_size=(80, 24), run_before=run_before)


def test_checkpoint_movement_snapshot(snap_compare, tui_catalog, crafted_checkpoint):
    async def run_before(pilot):
        pilot.app.push_screen(CheckpointScreen(crafted_checkpoint))
        await pilot.pause()
        await pilot.press("m")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(make_app(tui_catalog, "checkpoints"), terminal_size=(80, 24), run_before=run_before)


async def test_the_footer_offers_stop_only_while_the_run_shown_is_running(tmp_path, tui_catalog):
    root = tmp_path / "checkpoints"
    finished = fake_run(root, "resnet18-fc-20260103-101500", "finished", [61.2, 70.4, 72.9])
    running = fake_run(root, "resnet18-all-20260102-090000", "running", [80.1], pid=os.getpid())
    app = make_app(tui_catalog, root)
    async with app.run_test(size=(80, 24)) as pilot:
        for path, offered in ((finished, False), (running, True)):
            app.open_run(path)
            await pilot.pause(0.3)
            keys = {b.binding.action for b in app.screen.active_bindings.values() if b.binding.show and b.enabled}
            assert ("stop" in keys) is offered, (path.name, keys)
            await pilot.press("escape")
            await pilot.pause()


async def test_compare_names_the_settings_that_differ(app, tui_runs):
    paths = [
        fake_run(tui_runs, "tiny-20260101-000000", "finished", [40.0, 50.0]),
        fake_run(tui_runs, "tiny-20260102-000000", "finished", [45.0, 55.0]),
    ]
    changes = ({"lr": 0.01, "trainable": ["fc"]}, {"lr": 0.001, "trainable": ["layer4", "fc"]})
    for path, extra in zip(paths, changes, strict=True):
        stored = json.loads((path / "experiment.json").read_text())
        (path / "experiment.json").write_text(json.dumps({**stored, **extra, "description": f"run {path.name}"}))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(CompareScreen(paths))
        await pilot.pause()
        differs = text_of(app.screen, "#differs")
    # in the catalog's order of settings, each run's value in its colour; description is not a setting that trains
    assert differs.splitlines() == ['trainable  ["fc"]  ["layer4", "fc"]', "lr         0.01  0.001"]


def test_differing_settings_leave_names_out():
    from ftui.engine.experiment import differing_settings

    same = {"name": "a", "lr": 0.1, "epochs": 3}
    assert differing_settings([same, {**same, "name": "b", "description": "x"}]) == {}
    assert differing_settings([same, {**same, "epochs": 5}, same]) == {"epochs": [3, 5, 3]}
