"""The experiment editor, driven for real with the Pilot at 80x24."""

from __future__ import annotations

from textual.events import Key
from textual.widgets import Input, Select

from ftui.engine.catalog import load_catalog
from ftui.engine.experiment import SETTINGS
from ftui.engine.schema import Range
from ftui.tui.screens.confirm import ConfirmScreen
from ftui.tui.screens.editor import EditorScreen, UnitTable
from ftui.tui.screens.prompt import PromptScreen
from ftui.tui.widgets.edit_field import range_checks
from ftui.tui.widgets.settings_form import ROWS

RESNET_UNITS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


async def open_editor(app, pilot, name="tiny") -> EditorScreen:
    await pilot.pause()
    screen = EditorScreen(app.catalog.get(name))
    await app.push_screen(screen)
    await pilot.pause()
    return screen


async def type_into(pilot, text: str) -> None:
    await pilot.press("ctrl+a", "ctrl+k", *text, "enter")  # clear the field, type, submit
    await pilot.pause()


def message(screen: EditorScreen) -> str:
    return str(screen.query_one("#message").render())


def prompt_message(app) -> str:
    """The open question's own message line (a refused answer says why there)."""
    return str(app.screen.query_one("#prompt-message").render())


async def test_space_cycles_a_unit_train_lora_frozen_and_the_totals(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        assert screen.experiment.trainable == RESNET_UNITS
        assert str(screen.query_one("#totals").render()) == "trainable 11.17M of 11.17M parameters (100%)"
        table = screen.query_one(UnitTable)
        await pilot.press("down", "down", "down", "down", "down", "space")  # layer4
        assert screen.experiment.lora == ("layer4",) and "layer4" not in screen.experiment.trainable
        # rank 8 on layer4's convolutions: 8 · Σ (in·k² + out), exactly PEFT's count
        assert str(screen.query_one("#totals").render()) == "LoRA 151.6k + trained 2.78M of 11.17M (26.2%)"
        assert str(table.get_row("layer4")[0]) == "lora"  # a mode, shown as a word
        assert str(table.get_row("layer4")[2]) == "8.39M +151.6k"  # the unit's own weights, and its update
        assert "gets LoRA updates" in message(screen)
        await pilot.press("space")
        assert str(table.get_row("layer4")[0]) == "frozen" and not screen.experiment.lora
        assert str(screen.query_one("#totals").render()) == "trainable 2.78M of 11.17M parameters (24.9%)"
        assert str(table.get_row("layer3")[0]) == "train"
        await pilot.press("space")
        assert screen.experiment.trainable == RESNET_UNITS
        await pilot.press("up", "up", "up", "up", "up", "space", "space", "down", "space")  # conv1 frozen, bn1 …
        assert str(table.get_row("bn1")[0]) == "frozen"  # … skips LoRA: a norm has nothing for it to adapt
        assert screen.experiment.trainable == RESNET_UNITS[2:]
        assert str(screen.query_one("#totals").render()) == "trainable 11.17M of 11.17M parameters (99.98%)"


async def test_head_only_all_and_reset(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("h")
        assert screen.experiment.trainable == ("fc",)
        assert "(0.05%)" in str(screen.query_one("#totals").render())  # not rounded to none
        await pilot.press("a")
        assert screen.experiment.trainable == RESNET_UNITS
        await pilot.press("h", "e", "ctrl+a", "ctrl+k", *"0.002", "enter")
        assert screen.experiment != screen.original and "edited" in screen.sub_title
        await pilot.press("r")
        assert screen.experiment == app.catalog.get("tiny")


async def test_a_click_on_the_box_toggles_the_unit(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.click(UnitTable, offset=(2, 2))  # header row, then conv1, bn1
        assert screen.experiment.trainable == tuple(u for u in RESNET_UNITS if u != "bn1")


async def test_editing_a_learning_rate(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("end", "enter")  # fc
        assert isinstance(app.screen, PromptScreen)
        field = app.screen.query_one("#prompt-input", Input)
        assert app.screen.focused is field and field.value == "0.05"
        await type_into(pilot, "0.002")
        assert screen.experiment.unit_lr == {"fc": 0.002}
        assert app.screen is screen and isinstance(screen.focused, UnitTable)
        assert str(screen.query_one(UnitTable).get_row("fc")[3]) == "0.002"


async def test_a_bad_learning_rate_is_refused_in_place(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("e")  # conv1
        field = app.screen.query_one("#prompt-input", Input)
        for bad, why in (
            ("abc", "valid number"),
            ("-1", "greater than 0"),
            ("0", "greater than 0"),
            ("11", "less than or equal to 10"),
        ):
            await type_into(pilot, bad)
            assert why in prompt_message(app) and "keeps learning rate 0.05" in prompt_message(app)
            assert app.screen.focused is field and field.has_class("-invalid")
            assert screen.experiment.unit_lr == {}
        await pilot.press("escape")
        assert app.screen is screen and isinstance(screen.focused, UnitTable)


async def test_settings_change_the_experiment_or_are_refused(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        epochs = screen.query_one("#set-epochs", Input)
        epochs.focus()
        await type_into(pilot, "5")
        assert screen.experiment.epochs == 5
        await type_into(pilot, "0")
        assert screen.experiment.epochs == 5
        assert "epochs = 0: out of range" in message(screen) and epochs.has_class("-invalid")
        await pilot.press("escape")  # drops the refused text, back to the table
        assert epochs.value == "5" and isinstance(screen.focused, UnitTable)
        screen.query_one("#set-optimizer", Select).value = "adamw"
        await pilot.pause()
        assert screen.experiment.optimizer == "adamw"
        screen.query_one("#set-weights", Select).value = "DEFAULT"
        await pilot.pause()
        assert screen.experiment.weights == "DEFAULT"


async def test_precision_is_picked_from_the_keyboard(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        assert screen.experiment.precision == "auto"
        screen.query_one("#set-precision", Select).focus()
        await pilot.press("enter", "down", "enter")  # open the list, auto -> bf16, pick it
        await pilot.pause()
        assert screen.experiment.precision == "bf16"
        assert "bf16-capable CPUs" in str(screen.query_one("#precision-help").render())


async def test_save_as_a_new_catalog_entry_keeps_comments(app, tui_catalog):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("h", "end", "e")
        await type_into(pilot, "0.002")
        await pilot.press("s")
        assert app.screen.query_one("#prompt-input", Input).value == "tiny-2"
        before = tui_catalog.read_text()
        await type_into(pilot, "bad name!")
        assert "Not saved" in prompt_message(app) and "not a valid name" in prompt_message(app)
        assert tui_catalog.read_text() == before
        await type_into(pilot, "tiny-head")
        assert screen.experiment.name == "tiny-head" and screen.original == screen.experiment
    text = tui_catalog.read_text()
    assert text.startswith(before) and "# a tiny catalog for the TUI tests" in text
    saved = load_catalog(tui_catalog).get("tiny-head")
    assert saved.trainable == ("fc",) and saved.unit_lr == {"fc": 0.002} and saved.epochs == 2
    assert saved.origin == "tiny" and saved.description.startswith("variant of tiny: trainable ")


async def test_a_saved_variant_does_not_take_its_origins_reference_accuracy(app, tui_catalog):
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down", "enter")  # tiny-fc, which has the report's 80.9
        screen = app.screen
        assert screen.experiment.reference_acc == 80.9
        screen.query_one("#set-epochs", Input).focus()
        await type_into(pilot, "5")
        screen.query_one(UnitTable).focus()
        await pilot.press("s")
        await type_into(pilot, "tiny-fc-5")
    saved = load_catalog(tui_catalog).get("tiny-fc-5")
    assert saved.reference_acc is None and saved.origin == "tiny-fc"
    assert saved.description == "variant of tiny-fc: epochs 3 → 5"


async def test_launch_hands_the_edited_experiment_to_the_app(app, monkeypatch):
    launched = []
    monkeypatch.setattr(app, "launch", launched.append)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("h", "end", "space", "space")  # head: train → LoRA → frozen; nothing trains now
        await pilot.press("l")
        assert launched == [] and "Nothing would train" in message(screen)
        await pilot.press("a", "l")
        screen.query_one("#set-epochs", Input).focus()
        await pilot.press("f5")  # from a field, where "l" would be typed
        assert [e.trainable for e in launched] == [RESNET_UNITS, RESNET_UNITS]


async def test_escape_with_edits_asks_before_leaving(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("h", "escape")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is screen
        await pilot.press("r", "escape")
        assert not isinstance(app.screen, (EditorScreen, ConfirmScreen))


def test_editor_snapshot(app, snap_compare):
    async def open_it(pilot):
        await open_editor(pilot.app, pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_it, press=["down", "down", "space", "end"])


def shown_rows(table: UnitTable) -> list[str]:
    """The table's lines as the terminal shows them (a cell too narrow for its text is cut short)."""
    return [table.render_line(y).text for y in range(table.size.height)]


async def test_small_learning_rates_are_shown_in_full(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("end", "e")  # fc
        await type_into(pilot, "1e-4")
        lr_field = screen.query_one("#set-lr", Input)
        lr_field.focus()
        await type_into(pilot, "1e-3")
        assert screen.experiment.lr == 1e-3 and screen.experiment.unit_lr == {"fc": 1e-4}
        rows = shown_rows(screen.query_one(UnitTable))
        assert [r.split()[-1] for r in rows if r.split()[1:2] in (["conv1"], ["fc"])] == ["0.001", "0.0001"]


async def until(pilot, condition) -> bool:
    """Lets the app work until condition() holds; False if it went idle many times without."""
    for _ in range(50):
        if condition():
            return True
        await pilot.pause()
    return condition()


async def test_keys_in_one_batch_are_applied_in_order(app):
    # A terminal delivers keys typed quickly in one read; Textual queues them all at once,
    # where pilot.press waits for the app between keys.
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        epochs = screen.query_one("#set-epochs", Input)
        epochs.focus()
        await pilot.pause()
        for key, character in (("ctrl+u", None), ("5", "5"), ("0", "0")):
            app.post_message(Key(key, character))
        assert await until(pilot, lambda: epochs.value == "50"), epochs.value
        for key, character in (("ctrl+u", None), ("7", "7"), ("enter", None)):
            app.post_message(Key(key, character))
        assert await until(pilot, lambda: screen.experiment.epochs == 7), epochs.value


async def test_enter_in_the_leave_dialog_keeps_the_edits(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("h", "escape")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # the default button is the safe one
        assert app.screen is screen and screen.experiment.trainable == ("fc",)


async def test_a_click_outside_a_question_cancels_it(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("e", "ctrl+u", "1")
        assert isinstance(app.screen, PromptScreen)
        await pilot.click(offset=(0, 0))
        assert app.screen is screen and screen.experiment.unit_lr == {}


async def test_a_weights_file_is_asked_for_in_a_question(app, tui_catalog):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        weights = screen.query_one("#set-weights", Select)
        weights.value = "<file>"  # the list's "a file..." entry
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen) and weights.value == "none"
        await type_into(pilot, "w.safetensors")
        assert app.screen is screen
        assert screen.experiment.weights == weights.value == str(tui_catalog.parent / "w.safetensors")
        assert message(screen) == f"weights = {tui_catalog.parent / 'w.safetensors'}"


async def test_the_settings_form_is_built_from_the_schema(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        for key in (k for row in ROWS for k in row):
            setting, widget = SETTINGS[key], screen.query_one(f"#set-{key}")
            if setting.choices:
                assert isinstance(widget, Select) and [v for _, v in widget._options] == list(setting.choices)
            elif setting.kind.base in (int, float):
                assert isinstance(widget, Input)
                assert widget.type == ("integer" if setting.kind.base is int else "number")
        labels = [str(label.render()) for label in screen.query("#settings Label")]
        assert {"batch", "input", "base lr"} <= set(labels)


async def test_a_field_says_its_keys_until_the_focus_goes_back_to_the_units(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        idle = message(screen)
        await pilot.press("tab")
        assert isinstance(screen.focused, Input) and "escape drops the change" in message(screen)
        await pilot.press("escape")
        assert isinstance(screen.focused, UnitTable) and message(screen) == idle


def test_range_checks_follow_the_declared_range():
    def failures(allowed, text):
        return [d for check in range_checks(allowed) for d in check.validate(text).failure_descriptions]

    half_open = Range(0, 1, hi_open=True)
    assert failures(half_open, "0") == [] and failures(half_open, "0.5") == []
    assert failures(half_open, "1") == ["Must be less than 1"]
    assert failures(half_open, "-1") == ["Must be greater than or equal to 0."]
    assert failures(Range(0, 10, lo_open=True), "0") == ["Must be greater than 0"]
    assert failures(Range(0, 10, lo_open=True), "11") == ["Must be less than or equal to 10."]
    assert "valid number" in failures(None, "abc")[0]


async def test_lora_rank_and_alpha_are_settings(app):
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_editor(app, pilot)
        await pilot.press("end", "up", "space")  # layer4: LoRA
        screen.query_one("#set-lora_rank", Input).focus()
        await type_into(pilot, "4")
        assert screen.experiment.lora_rank == 4 and screen.experiment.alpha == 8  # alpha left empty: twice the rank
        assert str(screen.query_one("#totals").render()).startswith("LoRA 75.8k + trained")
        screen.query_one("#set-lora_alpha", Input).focus()
        await type_into(pilot, "32")
        assert screen.experiment.lora_alpha == 32
        await type_into(pilot, "")
        assert screen.experiment.lora_alpha is None
        await type_into(pilot, "-1")
        assert screen.experiment.lora_alpha is None and "out of range" in message(screen)
