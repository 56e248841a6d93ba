"""The experiment schema: each setting declared once, and read by the validator, the editor and README."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Optional, Union

import pytest

from ftui.engine.experiment import FIELD_NAMES, SETTINGS, Experiment, UnitMode
from ftui.engine.schema import Kind, Range, declare, key_table, kind_of, setting, settings_of
from ftui.engine.validation import CATALOG_DEFAULTS, Invalid, _typed, experiment_from_dict
from ftui.errors import CatalogError
from tests.conftest import REPO, TINY

# --- kinds come from the type, not from how the annotation is spelled ------------------------


@pytest.mark.parametrize(
    "hint, kind",
    [
        (int, Kind(int)),
        (bool, Kind(bool)),
        (str, Kind(str)),
        (float, Kind(float)),
        (float | None, Kind(float, optional=True)),
        (None | float, Kind(float, optional=True)),
        (Optional[float], Kind(float, optional=True)),  # noqa: UP045 - the old spelling on purpose
        (Union[None, float], Kind(float, optional=True)),  # noqa: UP007
        (tuple[str, ...], Kind(tuple)),
        (dict[str, float], Kind(dict)),
    ],
    ids=lambda v: str(v),
)
def test_kind_of_resolves_every_spelling(hint, kind):
    assert kind_of(hint) == kind


@pytest.mark.parametrize("hint", [list[int], int | str, float | int | None, dict[str, int], tuple[int, ...], bytes])
def test_kind_of_refuses_what_the_validator_cannot_check(hint):
    with pytest.raises(TypeError, match="cannot be of type"):
        kind_of(hint)


# A dataclass declared the way Experiment is, with string annotations (from __future__ import annotations)
# spelled in ways the old string dispatch ("float | None") did not know.
@dataclass(frozen=True)
class _Spelled:
    name: str = field(metadata=declare("its name"))
    score: Optional[float] = setting(None, "a score", range=Range(0, 1))  # noqa: UP045
    count: int = setting(3, "a count", label="n")


def test_settings_of_reads_declarations_and_resolves_string_annotations():
    settings = settings_of(_Spelled)
    assert list(settings) == ["name", "score", "count"]
    assert settings["name"].required and settings["name"].label == "name"
    assert settings["score"].kind == Kind(float, optional=True) and settings["score"].default is None
    assert settings["count"].kind == Kind(int) and settings["count"].default == 3 and settings["count"].label == "n"


def test_an_undeclared_field_is_an_error():
    @dataclass
    class Bare:
        x: int = 1

    with pytest.raises(TypeError, match=r"Bare\.x has no declaration"):
        settings_of(Bare)


def test_typed_dispatches_on_the_declared_kind():
    optional = kind_of(Optional[float])  # noqa: UP045
    assert _typed(optional, None) is None
    assert _typed(optional, 3) == 3.0 and isinstance(_typed(optional, 3), float)
    assert _typed(Kind(int), 3) == 3
    for kind, value, message in (
        (Kind(int), True, "expected an integer, got a boolean"),
        (Kind(int), 3.0, "expected an integer, got a float"),
        (Kind(float), True, "expected a number, got a boolean"),
        (Kind(float), None, "expected a number, got null"),
        (Kind(float), float("inf"), "expected a finite number"),
        (Kind(bool), 1, "expected true or false, got an integer"),
        (Kind(str), 1, "expected a string, got an integer"),
    ):
        with pytest.raises(Invalid, match=message):
            _typed(kind, value)


# --- the Experiment's declarations -----------------------------------------------------------


def test_every_experiment_field_is_declared_with_help():
    assert tuple(SETTINGS) == FIELD_NAMES == tuple(f.name for f in dataclasses.fields(Experiment))
    assert all(s.help and "\n" not in s.help for s in SETTINGS.values())
    assert SETTINGS["reference_acc"].kind == Kind(float, optional=True)
    assert SETTINGS["trainable"].kind == Kind(tuple) and SETTINGS["unit_lr"].kind == Kind(dict)
    assert SETTINGS["optimizer"].choices == ("sgd", "adamw", "adam")
    assert 10 in SETTINGS["lr"].range and 0 not in SETTINGS["lr"].range


def test_catalog_defaults_are_the_declared_defaults():
    assert set(CATALOG_DEFAULTS) == set(FIELD_NAMES) - {"name"}
    assert CATALOG_DEFAULTS["trainable"] == "all"  # a catalog entry that does not say trains every unit
    assert CATALOG_DEFAULTS["unit_lr"] == {} and CATALOG_DEFAULTS["reference_acc"] is None
    plain = Experiment(name="x")
    for key, value in CATALOG_DEFAULTS.items():
        if key != "trainable":
            assert getattr(plain, key) == value, key


def test_the_validator_reads_ranges_and_choices_from_the_declarations(monkeypatch):
    monkeypatch.setitem(SETTINGS, "epochs", dataclasses.replace(SETTINGS["epochs"], range=Range(1, 3)))
    monkeypatch.setitem(SETTINGS, "optimizer", dataclasses.replace(SETTINGS["optimizer"], choices=("sgd",)))
    with pytest.raises(CatalogError) as info:
        experiment_from_dict({**TINY, "epochs": 4, "optimizer": "adam"}, "test")
    assert str(info.value).splitlines() == [
        'test: optimizer = "adam": allowed: sgd',  # in field order
        "test: epochs = 4: out of range; allowed 1 <= epochs <= 3",
    ]


def test_optional_reference_accuracy_round_trips():
    exp = experiment_from_dict({**TINY, "reference_acc": 95}, "test")
    assert exp.reference_acc == 95.0 and isinstance(exp.reference_acc, float)
    assert experiment_from_dict(json.loads(json.dumps(exp.to_dict())), "test") == exp
    assert experiment_from_dict({**TINY, "reference_acc": None}, "test").reference_acc is None


# --- README's key table is the schema's ------------------------------------------------------


def test_readme_key_table_matches_the_schema():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = key_table(SETTINGS)
    assert table in readme, f"README.md's key table differs from the schema; replace it with:\n\n{table}"


def test_key_table_states_names_defaults_and_what_is_allowed():
    rows = {row.split(" | ")[0].strip("| `"): row.split(" | ") for row in key_table(SETTINGS).splitlines()[2:]}
    assert list(rows) == list(FIELD_NAMES)
    assert rows["name"][2] == "required"
    assert rows["lr"][1:3] == ["(0, 10]", "`0.01`"]
    assert rows["epochs"][1:3] == ["1–10000", "`10`"]
    assert rows["momentum"][1] == "[0, 1)" and rows["warmup_epochs"][1] == "≥ 0"
    assert rows["optimizer"][1:3] == ["`sgd`, `adamw`, `adam`", '`"sgd"`']
    assert rows["trainable"][2] == '`"all"`' and rows["reference_acc"][2] == "none"


# --- validating stored JSON does not need the TOML code --------------------------------------


def test_modules_that_only_validate_json_do_not_import_toml():
    code = (
        "import sys\n"
        "import ftui.engine.validation, ftui.engine.train, ftui.engine.checkpoints, ftui.engine.compare\n"
        "print(sorted(m for m in ('tomllib', 'tomlkit', 'ftui.engine.catalog') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# --- a unit's mode is a value ---------------------------------------------------------------


def test_unit_modes_are_values_kept_in_the_model_order():
    exp = experiment_from_dict({**TINY, "trainable": ["layer4", "fc"]}, "test")
    assert exp.mode_of("fc") is UnitMode.TRAIN and exp.mode_of("conv1") is UnitMode.FROZEN
    order = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")
    both = exp.with_modes({"fc": UnitMode.FROZEN, "conv1": UnitMode.TRAIN}, order)
    assert both.trainable == ("conv1", "layer4")  # the model's order, whatever order the change came in
    assert both.with_modes({"conv1": UnitMode.FROZEN, "fc": UnitMode.TRAIN}, order) == exp
