"""The experiment editor: which layer units train and at what learning rate, plus the run's settings.

The screen holds the experiment being edited and the keys; its parts are widgets that post messages
(UnitTable, SettingsForm, StatusLine, in tui/widgets/) and its questions are modal screens
(PromptScreen for a learning rate, a weights file or a name to save as; a ConfirmScreen before
dropping edits) that dismiss with their answer.
"""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from ...engine.catalog import experiment_from_dict, save_experiment
from ...engine.experiment import SETTINGS, Experiment, UnitMode, describe_changes
from ...engine.model_facts import ModelInfo, describe
from ...errors import FtuiError
from ...formatting import param_count, share
from ..footer import SteadyFooter
from ..widgets.edit_field import range_checks
from ..widgets.settings_form import SettingsForm, shown
from ..widgets.status_line import Notice, StatusLine
from ..widgets.unit_table import UnitTable, lr_text
from .confirm import ConfirmScreen
from .prompt import PromptScreen

# Single-letter keys reach the screen only from the table: a focused Input eats them.
_TABLE_ACTIONS = {"toggle", "edit_lr", "all_trainable", "head_only", "reset", "save"}
_HINT = "space: train → LoRA → frozen · enter: the unit's learning rate · tab: settings"
# What space makes of a unit's mode (a unit with no layer LoRA can adapt skips LoRA).
_NEXT_MODE = {UnitMode.TRAIN: UnitMode.LORA, UnitMode.LORA: UnitMode.FROZEN, UnitMode.FROZEN: UnitMode.TRAIN}
_SAID = {UnitMode.TRAIN: "trains all its weights", UnitMode.LORA: "gets LoRA updates", UnitMode.FROZEN: "is frozen"}


class EditorScreen(Screen):
    DEFAULT_CSS = """
    EditorScreen #summary { height: 1; padding: 0 1; }
    EditorScreen #model { width: 1fr; }
    EditorScreen #totals { width: auto; text-style: bold; }
    EditorScreen #units { height: 1fr; }
    """
    BINDINGS = [
        Binding("space", "toggle", "Toggle"),
        Binding("e", "edit_lr", "LR"),
        Binding("a", "all_trainable", "All"),
        Binding("h", "head_only", "Head only"),
        Binding("r", "reset", "Reset"),
        Binding("s", "save", "Save as"),
        # A focused Input hides "l" from the footer (it types it), and then "F5" shows in its place.
        Binding("l", "launch", "Launch", key_display="l/F5"),
        Binding("f5", "launch", "Launch", key_display="F5"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, exp: Experiment):
        super().__init__()
        self.original = exp  # the catalog entry "r" returns to
        self._exp = exp
        self.launched: Experiment | None = None  # the last experiment launched from here: its run folder keeps it
        self.info: ModelInfo = describe(exp.model, exp.cifar_stem)

    @property
    def experiment(self) -> Experiment:
        return self._exp

    # -- layout -------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="summary"):
            yield Static(id="model")
            yield Static(id="totals")
        yield UnitTable(self.info, id="units")
        yield StatusLine(_HINT, id="message")
        yield SettingsForm(self._exp, self.original, id="settings")
        # The palette (ctrl+p) stays reachable; its footer entry would push "esc Back" off an 80-column screen.
        yield SteadyFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(UnitTable).focus()
        self._refresh()

    # -- what is shown --------------------------------------------------------

    def totals_text(self) -> str:
        exp, total = self._exp, self.info.total_params
        trained = sum(u.params for u in self.info.units if u.name in exp.trainable)
        if not exp.uses_lora:
            return f"trainable {param_count(trained)} of {param_count(total)} parameters ({share(trained, total)})"
        lora = sum(self.info.lora_params(exp.lora, exp.lora_layers, exp.lora_rank).values())
        return (
            f"LoRA {param_count(lora)} + trained {param_count(trained)} of {param_count(total)} "
            f"({share(lora + trained, total)})"
        )

    def _refresh(self) -> None:
        self.query_one(UnitTable).show(self._exp)
        self.query_one(SettingsForm).exp = self._exp  # what a refused value is put back to
        exp, edited = self._exp, self._exp != self.original
        model = Text.assemble((exp.model, "bold"), " · CIFAR stem" * exp.cifar_stem)
        self.query_one("#model", Static).update(model)
        self.query_one("#totals", Static).update(self.totals_text())
        self.sub_title = f"edit {exp.name}" + (" (edited)" if edited else "")

    def _say(self, text: str, error: bool = False) -> None:
        self.query_one(StatusLine).say(text, error)

    @on(Notice)
    def _notice(self, notice: Notice) -> None:
        self.query_one(StatusLine).take(notice)

    def _sync_settings(self) -> None:
        self.query_one(SettingsForm).show(self._exp, self.original)

    # -- keys -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _TABLE_ACTIONS:
            return self.focused is None or isinstance(self.focused, UnitTable)
        return True

    def _set_modes(self, modes: dict[str, UnitMode]) -> None:
        self._exp = self._exp.with_modes(modes, self.info.unit_names)
        self._refresh()

    def action_toggle(self) -> None:
        self._cycle(self.query_one(UnitTable).cursor_unit)

    @on(UnitTable.ModeClicked)
    def _mode_clicked(self, event: UnitTable.ModeClicked) -> None:
        self._cycle(event.unit)

    def _cycle(self, unit: str) -> None:
        mode = _NEXT_MODE[self._exp.mode_of(unit)]
        if mode is UnitMode.LORA and not self.info.lora_targets((unit,), self._exp.lora_layers):
            mode = _NEXT_MODE[mode]  # nothing in this unit for LoRA to adapt (a norm, bare embeddings)
        self._set_modes({unit: mode})
        self._say(f"{unit} {_SAID[mode]}")

    def action_all_trainable(self) -> None:
        self._set_modes(dict.fromkeys(self.info.unit_names, UnitMode.TRAIN))
        self._say("every unit trains")

    def action_head_only(self) -> None:
        head = self.info.head_unit
        self._set_modes({u: UnitMode.TRAIN if u == head else UnitMode.FROZEN for u in self.info.unit_names})
        self._say(f"only the head ({head}) trains")

    def action_reset(self) -> None:
        self._exp = self.original
        self._sync_settings()
        self._refresh()
        self._say(f"reset to the catalog entry {self.original.name}")

    def action_launch(self) -> None:
        if not self._exp.trainable and not self._exp.lora:
            self._say("Nothing would train: toggle a unit with space, or press a for all.", error=True)
            self.app.notify("Nothing would train; select at least one unit.", severity="warning")
            return
        self.launched = self._exp
        self.app.launch(self._exp)

    def action_back(self) -> None:
        if not (self.focused is None or isinstance(self.focused, UnitTable)):
            self._sync_settings()  # escape from a field drops what was typed there
            self.query_one(UnitTable).focus()
        elif self._exp != self.original:
            question = f"Leave the editor and drop your edits to {self._exp.name}? (s saves them as a new entry)"
            self.app.push_screen(ConfirmScreen(question, "Drop edits", "Stay"), self._leave)
        else:
            self.app.pop_screen()

    def _leave(self, drop: bool | None) -> None:
        if drop:
            self.app.pop_screen()

    # -- questions: a unit's LR, a weights file, a name to save as ---------------------------

    def action_edit_lr(self) -> None:
        unit = self.query_one(UnitTable).cursor_unit
        old = self._exp.lr_for(unit)

        def check(value: str, failure: str | None) -> str | None:
            return f"{value or 'empty'}: {failure}; {unit} keeps learning rate {lr_text(old)}" if failure else None

        checks = range_checks(SETTINGS["lr"].range)  # a unit's rate is allowed what the base rate is
        prompt = PromptScreen(f"learning rate of {unit}:", lr_text(old), check, "number", checks)
        self.app.push_screen(prompt, lambda value: self._set_lr(unit, value))

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_edit_lr()

    def _set_lr(self, unit: str, value: str | None) -> None:
        if value is None:
            return
        lr, rates = float(value), dict(self._exp.unit_lr)
        rates[unit] = lr
        if lr == self._exp.lr:
            del rates[unit]  # the base rate: no override, so it follows later base-rate changes
        self._exp = dataclasses.replace(self._exp, unit_lr=rates)
        self._refresh()
        self._say(f"{unit} learns at {lr_text(lr)}")

    @on(SettingsForm.PickFile)
    def _pick_weights_file(self) -> None:
        def check(value: str, failure: str | None) -> str | None:
            return self._apply("weights", value.strip())

        prompt = PromptScreen("weights file (.safetensors/.pth):", "", check)
        self.app.push_screen(prompt, lambda path: self._sync_settings() if path is not None else None)

    def action_save(self) -> None:
        prompt = PromptScreen("save as a new catalog entry named:", self._free_name(), self._save)
        self.app.push_screen(prompt, lambda name: self._saved(name.strip()) if name is not None else None)

    def _free_name(self) -> str:
        taken = set(self.app.catalog.names) if self.app.catalog else set()
        base = self._exp.name
        return next(f"{base}-{i}" for i in range(2, 10_000) if f"{base}-{i}" not in taken)

    def _variant(self, name: str) -> Experiment:
        """The edited experiment as a new entry: it names the entry it came from and does not take that
        recipe's reference accuracy (the report measured the other recipe)."""
        origin = self.original.origin or self.original.name
        exp = dataclasses.replace(self._exp, name=name, origin=origin, reference_acc=None)
        if exp.description == self.original.description:
            changes = describe_changes(self.original.to_dict(), exp.to_dict())
            exp = dataclasses.replace(exp, description=f"variant of {origin}" + (f": {changes}" if changes else ""))
        return exp

    def _save(self, name: str, failure: str | None) -> str | None:
        exp = self._variant(name.strip())
        try:
            save_experiment(self.app.catalog_path, exp)
        except (FtuiError, OSError) as exc:
            return f"Not saved: {exc}"
        return None

    def _saved(self, name: str) -> None:
        self.app.reload_catalog()
        # What the file now says is the entry "r" returns to.
        self.original = self._exp = self.app.catalog.get(name) if self.app.catalog else self._exp
        self._sync_settings()
        self._refresh()
        self._say(f"saved as {name} in {self.app.catalog_path}")
        self.app.notify(f"Saved {name} to {self.app.catalog_path}")

    # -- settings ----------------------------------------------------------------------

    def _validated(self, key: str, value: object) -> Experiment:
        data = {**self._exp.to_dict(), key: value}
        # Nothing trainable is a fine state to edit through (launch and save refuse it):
        # check the rest as if every unit trained.
        if not data["trainable"] and not data["lora"]:
            data["trainable"] = "all"
        exp = experiment_from_dict(data, where="refused", base_dir=self.app.catalog_path.absolute().parent)
        return dataclasses.replace(exp, trainable=self._exp.trainable, lora=self._exp.lora)

    def _apply(self, key: str, value: object) -> str | None:
        """Rebuild the experiment with one setting changed; a value the catalog would refuse is refused here
        (the returned reason)."""
        if value == getattr(self._exp, key):
            return None
        try:
            self._exp = self._validated(key, value)
        except FtuiError as exc:
            return str(exc)
        self._refresh()
        self._say(f"{key} = {shown(getattr(self._exp, key))}")
        return None

    @on(SettingsForm.Changed)
    def _setting_changed(self, event: SettingsForm.Changed) -> None:
        refusal = self._apply(event.key, event.value)
        if refusal is not None:
            self._say(refusal, error=True)
            self.query_one(SettingsForm).refused(event.key, event.leaving)
