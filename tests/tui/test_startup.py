"""The workbench draws its catalog without waiting for torch, loads torch behind it, and launches at once.

Each test runs the app in a fresh Python process: this one has imported torch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ftui.engine.catalog import load_catalog

REPO = Path(__file__).resolve().parents[2]
TORCH_SIDE = ("torch", "torchvision", "numpy", "PIL", "safetensors")
HEAVY = (*TORCH_SIDE, "plotext", "textual_plotext")

# Started with: catalog path, runs folder, what to do ("draw" or "launch"). Prints one line of JSON.
PROBE = """
import asyncio, json, sys

from ftui.tui import run_controller
from ftui.tui.app import make_app

HEAVY = {heavy!r}
ENGINE = run_controller.ENGINE
catalog, runs, what = sys.argv[1:]
app = make_app(catalog, runs)
seen = {{}}
real_start = ENGINE.start


def start(then=None):
    # The app asks for the engine once the catalog is painted: what was there at that moment.
    if "heavy_when_drawn" not in seen:
        seen["screen_when_drawn"] = type(app.screen).__name__
        seen["rows_when_drawn"] = app.screen.query_one("DataTable").row_count
        seen["heavy_when_drawn"] = sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
    real_start(then)


ENGINE.start = start


async def main():
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        if what == "launch":
            seen["loaded_before_launch"] = ENGINE.loaded.is_set()
            await pilot.press("l")
            seen["screen_after_launch"] = type(app.screen).__name__
            await asyncio.to_thread(app.controller.wait, 240)
            await pilot.pause(0.6)  # the run screen reads the run folder 4 times a second
            result = app.controller.result
            seen["status"] = result.status if result else app.controller.failure
            seen["screen_state"] = app.screen.history.state
        seen["loaded"] = await asyncio.to_thread(ENGINE.loaded.wait, 240)
        seen["error"] = repr(ENGINE.error) if ENGINE.error else None
        seen["engine_modules"] = all(name in sys.modules for name in ENGINE.modules)


asyncio.run(main())
print("SEEN " + json.dumps(seen))
"""


def probe(catalog: Path, runs: Path, what: str) -> dict:
    # The model facts of the catalog are computed here, once (conftest keeps them in this session's cache).
    load_catalog(catalog)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), str(catalog), str(runs), what],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("SEEN "))
    return json.loads(line[len("SEEN ") :])


def test_the_catalog_is_drawn_before_torch_is_imported_and_torch_follows(tui_catalog, tui_runs):
    seen = probe(tui_catalog, tui_runs, "draw")
    assert seen["screen_when_drawn"] == "CatalogScreen" and seen["rows_when_drawn"] == 2
    assert seen["heavy_when_drawn"] == []  # no torch, numpy, PIL, safetensors or plotext yet
    assert seen["loaded"] and seen["error"] is None and seen["engine_modules"]  # then in the background


def test_a_run_launched_right_after_start_trains_to_its_end(tui_catalog, tui_runs):
    seen = probe(tui_catalog, tui_runs, "launch")
    assert seen["loaded_before_launch"] is False  # launched while torch was still loading
    assert seen["screen_after_launch"] == "RunScreen"  # the run screen came at once
    assert seen["status"] == "finished" and seen["screen_state"] == "finished"
    assert seen["loaded"] and seen["error"] is None


def test_no_screen_imports_torch_until_it_is_used():
    # A screen opened while torch still loads (runs, a past run's curves, results) opens at once: the
    # engine modules that import torch are imported inside the functions that use them.
    screens = ("catalog", "editor", "runs", "run", "checkpoint", "results", "compare", "confirm", "prompt")
    code = (
        "import sys\n"
        "import ftui.tui.workbench\n"
        + "".join(f"import ftui.tui.screens.{name}\n" for name in screens)
        + f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(TORCH_SIDE)!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "[]\n"


def test_the_engine_loader_imports_once_reports_a_failure_and_calls_back():
    from ftui.tui.run_controller import EngineLoader

    called = []
    loader = EngineLoader(("json", "ftui_no_such_module"))
    assert not loader.started
    loader.start(then=lambda: called.append("first"))
    assert loader.wait(60) and loader.started
    assert isinstance(loader.error, ModuleNotFoundError)  # whoever needs the module meets the error again
    loader.start(then=lambda: called.append("after"))  # already loaded: called at once, nothing imported again
    assert called == ["first", "after"]
