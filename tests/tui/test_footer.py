"""The key footer: the right keys on every screen, and no rebuild when they stay the same."""

from __future__ import annotations

from textual.widgets._footer import FooterKey

from ftui.tui.footer import SteadyFooter
from ftui.tui.screens.catalog import CatalogScreen
from ftui.tui.screens.editor import EditorScreen


def keys(screen) -> list[FooterKey]:
    return list(screen.query_one(SteadyFooter).query(FooterKey))


def labels(screen) -> set[str]:
    return {key.description for key in keys(screen)}


async def test_going_back_to_a_screen_keeps_its_footer_and_focus_changes_still_show(app):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        catalog = app.screen
        assert isinstance(catalog, CatalogScreen) and {"Edit", "Launch", "Quit"} <= labels(catalog)
        before = keys(catalog)
        await pilot.press("enter")  # the editor
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, EditorScreen) and {"Toggle", "LR", "Save as"} <= labels(editor)
        await pilot.press("tab")  # into the settings: the unit table's keys leave the footer
        await pilot.pause()
        assert "Toggle" not in labels(editor) and "Back" in labels(editor)
        await pilot.press("escape")  # back to the table: they return
        await pilot.pause()
        assert "Toggle" in labels(editor)
        await pilot.press("escape")  # back to the catalog
        await pilot.pause()
        assert app.screen is catalog
        after = keys(catalog)
        assert [k.description for k in after] == [k.description for k in before]
        assert all(a is b for a, b in zip(after, before, strict=True))  # the same widgets: nothing was rebuilt
