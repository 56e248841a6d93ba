"""One experiment checked against the schema: a catalog entry, or the experiment JSON stored with a run or checkpoint.

Validation is strict and reports every problem at once, one line each, so a person fixes a file in
one pass. What each setting allows is declared once, on the Experiment (engine/experiment.py); this
module reads those declarations and adds the checks that need more than one value or the model.
It imports no TOML code: modules that only re-check stored JSON import this, not catalog.py.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CatalogError, ModelError
from .experiment import FIELD_NAMES, KNOWN_CLASSES, LORA_KINDS, RUN_WEIGHTS, SETTINGS, WEIGHTS_NONE, Experiment
from .model_facts import ModelInfo, check_model_name, describe, weight_names
from .schema import Kind, toml_value
from .weights import is_local_weights

# What a catalog entry that leaves a key out gets.
CATALOG_DEFAULTS = {key: s.default for key, s in SETTINGS.items() if not s.required}
_WANTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


class Invalid(Exception):
    """One value is wrong; the message says why and what is allowed."""


@dataclass(frozen=True)
class Problem:
    key: str
    text: str


# --- small helpers -------------------------------------------------------------


def closest(word: object, options: Iterable[str]) -> str | None:
    # Case-insensitive, so "default" still finds "DEFAULT".
    lowered = {o.lower(): o for o in options}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1)
    return lowered[close[0]] if close else None


def hint(word: object, options: Iterable[str]) -> str:
    close = closest(word, options)
    return f"; did you mean {close!r}?" if close else ""


def _type_name(value: object) -> str:
    for kind, word in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "a list"),
        (tuple, "a list"),
        (dict, "a table"),
    ):
        if isinstance(value, kind):
            return word
    return "null" if value is None else type(value).__name__


def _resolve_path(value: str, base_dir: Path | None) -> str:
    # Relative paths mean "next to the catalog", wherever ftui is started from.
    if not value:
        return value
    path = Path(value).expanduser()
    if path.is_absolute() or base_dir is None:
        return str(path)
    return os.path.normpath(base_dir / path)


# --- one value on its own --------------------------------------------------------


def _typed(kind: Kind, value: object) -> object:
    """value as the kind declares it (an int is a fine float; a bool is not a number)."""
    if value is None and kind.optional:
        return None
    if isinstance(value, bool):  # checked first: a bool is an int to Python, never a number here
        if kind.base is bool:
            return value
    elif kind.base is float and isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise Invalid("expected a finite number")
        return float(value)
    elif (kind.base is int and isinstance(value, int)) or (kind.base is str and isinstance(value, str)):
        return value
    raise Invalid(f"expected {_WANTED[kind.base]}, got {_type_name(value)}")


def _trainable(value: object) -> object:
    if value == "all":
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Invalid('expected "all" or a list of layer unit names, e.g. ["layer4", "fc"]')


def _class_list(value: object) -> tuple[str, ...]:
    if value == "all":
        return ()
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in value
    ):
        return tuple(str(v) for v in value)
    raise Invalid('expected a list of class names or indices, e.g. ["cat", "dog"] or [3, 5]')


def _unit_lr(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise Invalid("expected a table of unit = learning rate, e.g. { fc = 0.01 }")
    rates = {}
    for unit, lr in value.items():
        try:
            rates[unit] = float(_declared("lr", lr))  # each is a learning rate, with lr's type and range
        except Invalid as bad:
            raise Invalid(f"{unit} = {toml_value(lr)}: {bad}") from None
    return rates


def _declared(key: str, raw: object) -> Any:
    """raw converted to the setting's kind and checked against its range, choices and pattern."""
    setting = SETTINGS[key]
    value = _typed(setting.kind, raw)
    if value is None:
        return value
    if setting.range is not None and isinstance(value, (int, float)) and value not in setting.range:
        raise Invalid(f"out of range; allowed {setting.range.describe(key)}")
    if setting.choices and value not in setting.choices:
        raise Invalid(f"allowed: {', '.join(setting.choices)}{hint(value, setting.choices)}")
    if setting.pattern is not None and isinstance(value, str) and not re.fullmatch(setting.pattern.regex, value):
        raise Invalid(setting.pattern.refusal)
    return value


# What a value that is not a plain scalar becomes, by its declared kind.
_COMPOUND: dict[type, Callable[[object], object]] = {tuple: _trainable, dict: _unit_lr}


def check_value(key: str, value: object, base_dir: Path | None) -> object:
    """The value converted for the Experiment, checked on its own (no other keys needed)."""
    if key not in SETTINGS:
        close = closest(key, FIELD_NAMES)
        raise Invalid(
            f"unknown setting; did you mean {close!r}?"
            if close
            else f"unknown setting; the settings are: {', '.join(FIELD_NAMES)}"
        )
    compound = _class_list if key == "classes" else _COMPOUND.get(SETTINGS[key].kind.base)
    if compound is not None:
        return compound(value)
    checked = _declared(key, value)
    if key == "model":
        try:
            check_model_name(checked)
        except ModelError as exc:
            raise Invalid(str(exc)) from None
    if key == "data_dir" or (key == "weights" and is_local_weights(checked)):
        return _resolve_path(checked, base_dir)
    return checked


# --- values that depend on each other ---------------------------------------------


def _unit_names(requested, info: ModelInfo) -> tuple[str, ...]:
    units = info.unit_names
    if requested == "all":
        return units
    unknown = [u for u in requested if u not in units]
    if unknown:
        hints = "; ".join(f"{u!r} is not a layer unit of {info.name}{hint(u, units)}" for u in unknown)
        raise Invalid(f"{hints} (its units: {', '.join(units)})")
    return tuple(u for u in units if u in requested)


def _model_info(values: dict) -> tuple[ModelInfo | None, list[Problem]]:
    model = values["model"]
    try:
        info = describe(model)
    except ModelError as exc:
        return None, [Problem("model", f"model = {toml_value(model)}: {exc}")]
    if not values.get("cifar_stem"):
        return info, []
    if info.has_resnet_stem:
        return describe(model, True), []
    return info, [
        Problem(
            "cifar_stem",
            (
                f"cifar_stem = true: cifar_stem applies to ResNet-style models (conv1 + maxpool); {model} has "
                "none. Set cifar_stem = false."
            ),
        )
    ]


def _unit_problems(values: dict, info: ModelInfo) -> list[Problem]:
    """Checks trainable, lora and unit_lr against the model's units; resolves trainable and lora to unit names."""
    problems = []
    for key in ("trainable", "lora_layers", "lora"):  # lora = "all" means every unit that trainable leaves
        if key in values:
            try:
                values[key] = _RESOLVE[key](values, info)
            except Invalid as bad:
                problems.append(Problem(key, f"{key} = {toml_value(values[key])}: {bad}"))
    if "unit_lr" in values:
        try:
            _unit_names(tuple(values["unit_lr"]), info)
        except Invalid as bad:
            problems.append(Problem("unit_lr", f"unit_lr = {toml_value(values['unit_lr'])}: {bad}"))
    return problems


def _resolved_trainable(values: dict, info: ModelInfo) -> tuple[str, ...]:
    units = _unit_names(values["trainable"], info)
    if not units and not values.get("lora"):
        raise Invalid('no layer unit would train; list at least one or use "all" (or give units to lora)')
    return units


def _resolved_kinds(values: dict, _info: ModelInfo) -> tuple[str, ...]:
    kinds = values["lora_layers"]
    if kinds == "all":
        return LORA_KINDS
    unknown = [k for k in kinds if k not in LORA_KINDS]
    if unknown or not kinds:
        wrong = "; ".join(f"{k!r} is not a kind of layer{hint(k, LORA_KINDS)}" for k in unknown) or "empty"
        raise Invalid(f"{wrong} (allowed: {', '.join(LORA_KINDS)})")
    return tuple(k for k in LORA_KINDS if k in kinds)


def _resolved_lora(values: dict, info: ModelInfo) -> tuple[str, ...]:
    trainable = values.get("trainable")
    trained = trainable if isinstance(trainable, tuple) and all(t in info.unit_names for t in trainable) else ()
    kinds = values.get("lora_layers", LORA_KINDS)
    kinds = kinds if isinstance(kinds, tuple) else LORA_KINDS
    adaptable = {a.unit for a in info.adaptable if a.kind in kinds}
    if values["lora"] == "all":
        return tuple(u for u in info.unit_names if u in adaptable and u not in trained)
    units = _unit_names(values["lora"], info)
    both = [u for u in units if u in trained]
    if both:
        raise Invalid(
            f"{', '.join(repr(u) for u in both)} {'is' if len(both) == 1 else 'are'} also in trainable; "
            "a unit either trains all its weights or gets "
            'LoRA: take it out of one of them (a catalog\'s trainable defaults to "all", so an entry with LoRA '
            'names the units that train fully, e.g. trainable = ["fc"])'
        )
    bare = [u for u in units if u not in adaptable]
    if bare:
        raise Invalid(
            f"{', '.join(repr(u) for u in bare)} has no layer LoRA can adapt of the kinds {', '.join(kinds)} "
            f"(units that have: {', '.join(u for u in info.unit_names if u in adaptable)})"
        )
    return units


_RESOLVE: dict[str, Callable[[dict, ModelInfo], tuple[str, ...]]] = {
    "trainable": _resolved_trainable,
    "lora_layers": _resolved_kinds,
    "lora": _resolved_lora,
}


def _input_and_weights_problems(values: dict, info: ModelInfo) -> list[Problem]:
    problems = []
    fixed, size = info.fixed_input_size, values.get("input_size")
    if fixed is not None and size is not None and size != fixed:
        problems.append(
            Problem(
                "input_size",
                f"input_size = {size}: {info.name} only accepts {fixed}x{fixed} inputs; set input_size = {fixed}",
            )
        )
    weights, offered = values.get("weights"), weight_names(info.name)
    if isinstance(weights, str) and weights.startswith(RUN_WEIGHTS):
        if not re.fullmatch(SETTINGS["name"].pattern.regex, weights[len(RUN_WEIGHTS) :]):  # type: ignore[union-attr]
            problems.append(
                Problem(
                    "weights", f"weights = {toml_value(weights)}: {RUN_WEIGHTS} must be followed by an experiment name"
                )
            )
        return problems
    if weights is not None and weights != WEIGHTS_NONE and not is_local_weights(weights) and weights not in offered:
        problems.append(
            Problem(
                "weights",
                (
                    f"weights = {toml_value(weights)}: {info.name} has no pretrained weights of that "
                    f"name{hint(weights, offered)} "
                    f"(torchvision offers: {', '.join(offered) or 'none'}); "
                    'or use "none" or a path to a .safetensors/.pth file'
                ),
            )
        )
    return problems


def _model_problems(values: dict) -> list[Problem]:
    """Checks that need the model's units (skipped when the model itself is invalid)."""
    if "model" not in values:
        return []
    info, problems = _model_info(values)
    if info is None:
        return problems
    return problems + _unit_problems(values, info) + _input_and_weights_problems(values, info)


def _class_problems(values: dict) -> list[Problem]:
    known, wanted = KNOWN_CLASSES.get(values.get("dataset", "")), values.get("classes")
    if not known or not wanted:
        return []
    for item in wanted:
        if item not in known and not (item.isdigit() and int(item) < len(known)):
            text = (
                f"{item!r} is not a class of {values['dataset']}{hint(item, known)} (its classes: {', '.join(known)})"
            )
            return [Problem("classes", f"classes = {toml_value(list(wanted))}: {text}")]
    resolved = [known[int(i)] if i.isdigit() else i for i in wanted]
    if len(set(resolved)) != len(resolved):
        return [Problem("classes", f"classes = {toml_value(list(wanted))}: a class is named twice")]
    if len(resolved) < 2:
        return [Problem("classes", f"classes = {toml_value(list(wanted))}: a classifier needs at least two classes")]
    return []


def _other_problems(values: dict) -> list[Problem]:
    problems = _class_problems(values)
    warmup, epochs = values.get("warmup_epochs"), values.get("epochs")
    if warmup is not None and epochs is not None and warmup >= epochs:
        problems.append(
            Problem("warmup_epochs", f"warmup_epochs = {toml_value(warmup)}: must be less than epochs ({epochs})")
        )
    if values.get("dataset") == "imagefolder" and values.get("data_dir") == "":
        problems.append(
            Problem("data_dir", 'data_dir = "": dataset "imagefolder" needs data_dir, the folder that holds its images')
        )
    return problems


def validate(data: dict, base_dir: Path | None) -> tuple[Experiment | None, list[Problem]]:
    problems = (
        []
        if "name" in data
        else [Problem("name", 'name: missing; every experiment needs name = "..." (it names its run folder)')]
    )
    values: dict[str, Any] = {}  # each checked against its declared kind in check_value
    for key, raw in {**CATALOG_DEFAULTS, **data}.items():
        try:
            values[key] = check_value(key, raw, base_dir)
        except Invalid as bad:
            problems.append(Problem(key, f"{key} = {toml_value(raw)}: {bad}"))
    problems += _model_problems(values) + _other_problems(values)
    return (None, problems) if problems else (Experiment(**values), [])


def experiment_from_dict(data: dict, where: str, base_dir: Path | None = None) -> Experiment:
    """Validate one merged experiment dict (a catalog entry or stored JSON); every problem is raised at once."""
    exp, problems = validate(data, base_dir)
    if exp is None:
        raise CatalogError("\n".join(f"{where}: {p.text}" for p in problems))
    return exp
