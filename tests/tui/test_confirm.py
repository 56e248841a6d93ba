"""Every question's default answer is the safe one: Enter never stops a run or drops edits."""

from __future__ import annotations

import pytest
from textual.app import App

from ftui.tui.screens.confirm import ConfirmScreen


class Asker(App):
    def __init__(self):
        super().__init__()
        self.answers: list[bool | None] = []

    def on_mount(self) -> None:
        self.push_screen(ConfirmScreen("Stop the run?", "Stop", "Keep training"), self.answers.append)


@pytest.mark.parametrize(("keys", "answer"), [(["enter"], False), (["escape"], False), (["n"], False), (["y"], True)])
async def test_enter_takes_the_safe_answer(keys, answer):
    app = Asker()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.screen.focused is not None and app.screen.focused.id == "no"
        await pilot.press(*keys)
        await pilot.pause()
        assert app.answers == [answer]


async def test_the_risky_answer_is_still_one_tab_away():
    app = Asker()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("shift+tab", "enter")
        await pilot.pause()
        assert app.answers == [True]
