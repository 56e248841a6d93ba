"""Going between screens: the catalog is home, esc heads there, the stack stays bounded, q quits anywhere."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from ftui.tui.screens.catalog import CatalogScreen
from ftui.tui.screens.checkpoint import CheckpointScreen
from ftui.tui.screens.compare import CompareScreen
from ftui.tui.screens.confirm import ConfirmScreen
from ftui.tui.screens.editor import EditorScreen
from ftui.tui.screens.quit import QuitScreen
from ftui.tui.screens.results import ResultsScreen
from ftui.tui.screens.run import RunScreen
from ftui.tui.screens.runs import RunsScreen
from tests.tui.test_catalog_and_run import fake_run, wait_for
from tests.tui.test_runs import copy_run, trained  # noqa: F401  (a fixture)

# The keys from the catalog to each screen, with two runs on disk (the real one first: it is newer).
SCREENS = {
    "catalog": ([], CatalogScreen),
    "editor": (["enter"], EditorScreen),
    "runs": (["r"], RunsScreen),
    "run": (["r", "enter"], RunScreen),
    "checkpoint": (["r", "i"], CheckpointScreen),
    "compare": (["r", "space", "space", "c"], CompareScreen),
    "results": (["t"], ResultsScreen),
}


@pytest.fixture
def two_runs(request, tui_runs):
    """A copy of a real run (it has checkpoints), and an older one written by hand."""
    real = request.getfixturevalue("trained")  # test_runs.py's: one real tiny run per module
    return copy_run(real, tui_runs, real.name), fake_run(tui_runs, "tiny-20200101-000000", state="stopped", epochs=1)


def record_exits(app) -> list[bool]:
    exits: list[bool] = []
    app.exit = lambda *args, **kwargs: exits.append(True)  # the app stays, to be asked what it did
    return exits


async def go(pilot, screen: str) -> None:
    keys, kind = SCREENS[screen]
    await pilot.pause()
    for key in keys:
        await pilot.press(key)
        await pilot.pause()
    assert isinstance(pilot.app.screen, kind)


async def test_runs_and_a_run_in_circles_never_pile_up(app, two_runs):
    async with app.run_test(size=(80, 24)) as pilot:
        await go(pilot, "runs")
        depths = []
        for _ in range(6):
            await pilot.press("enter")  # a run's curves
            assert isinstance(app.screen, RunScreen)
            await pilot.press("r")  # the runs again: back to the one open, not another
            assert isinstance(app.screen, RunsScreen)
            depths.append(len(app.screen_stack))
        assert depths == [3] * 6  # Textual's base screen, the catalog, the runs
        await pilot.press("escape")
        assert isinstance(app.screen, CatalogScreen)


async def test_esc_from_deep_screens_reaches_the_catalog_and_stays(app, two_runs, stand_in):
    stand_in("sleeps")  # a run that trains as long as the test needs
    async with app.run_test(size=(80, 24)) as pilot:
        await go(pilot, "editor")
        await pilot.press("l", "r")  # launch from the editor, then the runs
        await pilot.press("enter", "r", "i")  # a run's curves, the runs again, its checkpoint
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointScreen))
        kinds = []
        while not isinstance(app.screen, CatalogScreen):
            await pilot.press("escape")
            kinds.append(type(app.screen).__name__)
        assert kinds == ["RunsScreen", "RunScreen", "EditorScreen", "CatalogScreen"]
        await pilot.press("escape")  # home: nowhere further to go, and nothing closes
        assert isinstance(app.screen, CatalogScreen) and app.is_running and app.controller.busy


@pytest.mark.parametrize("screen", list(SCREENS))
async def test_q_quits_from_every_screen(app, two_runs, screen):
    exits = record_exits(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await go(pilot, screen)
        await pilot.press("q")
        assert exits == [True]


@pytest.mark.parametrize("screen", list(SCREENS))
async def test_q_asks_first_on_every_screen_while_a_run_trains(app, two_runs, stand_in, screen):
    stand_in("sleeps")
    exits = record_exits(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.controller.start(app.catalog.get("tiny"))  # started, not shown: the screen stays where it is
        await go(pilot, screen)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen) and exits == []
        await pilot.press("q")  # not one of its answers: nothing happens
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, SCREENS[screen][1]) and app.controller.busy and not app.controller.stopping


async def test_q_in_a_text_field_types_a_q_and_quits_nothing(app):
    exits = record_exits(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await go(pilot, "editor")
        await pilot.press("s")  # save as: a name to type
        name = app.screen.query_one(Input)
        assert name.has_focus
        await pilot.press("end", "q")
        assert name.value.endswith("q") and exits == []
        await pilot.press("escape")
        for _ in range(20):  # from the unit table to the first field of the settings (a number)
            await pilot.press("tab")
            if isinstance(app.focused, Input):
                break
        field, value = app.focused, app.focused.value
        await pilot.press("end", "q")
        assert app.focused is field and field.value == value and exits == []  # not a digit: refused, nothing else


async def test_q_with_unsaved_edits_asks_and_stays_by_default(app):
    exits = record_exits(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await go(pilot, "editor")
        await pilot.press("h")  # only the head trains: an edit
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen) and "drop your edits to tiny" in app.screen.question
        await pilot.press("enter")  # the safe answer: stay
        assert isinstance(app.screen, EditorScreen) and exits == []
        await pilot.press("q", "y")
        assert exits == [True]


async def test_q_after_launching_the_edits_does_not_ask_about_them(app, stand_in):
    stand_in("lingers")  # the launch, as good as ended: only the edits could be asked about
    exits = record_exits(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await go(pilot, "editor")
        await pilot.press("h", "l")  # launched: its run folder keeps the edited experiment
        await wait_for(pilot, lambda: app.controller.run_dir is not None)
        await pilot.press("escape")
        assert isinstance(app.screen, EditorScreen)
        await pilot.press("q")
        assert exits == [True]


async def test_a_run_that_has_ended_but_whose_process_is_exiting_is_not_asked_about(app, stand_in):
    stand_in("lingers")  # its folder says finished; its process is still exiting
    exits = record_exits(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        controller = app.controller
        await wait_for(pilot, lambda: controller.run_dir is not None and (controller.run_dir / "ready").exists())
        assert app.controller.busy and not app.controller.training
        await pilot.press("escape", "down", "l")  # another launch: not "queue it after a run that trains"
        assert not isinstance(app.screen, ConfirmScreen)
        assert [e.name for e in app.queue.read().entries] == ["tiny-fc"]  # the queue starts it once it is gone
        app.queue.set_paused(True)  # the test ends here: nothing of the queue trains
        await pilot.press("q")
        assert exits == [True]  # no question: nothing is training
