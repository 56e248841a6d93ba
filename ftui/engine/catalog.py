"""The experiment catalog: experiments.toml read into validated Experiments, and appended to.

A catalog has a ``[defaults]`` table and ``[[experiment]]`` entries. Each entry
is the Experiment dataclass defaults, overlaid by ``[defaults]``, overlaid by
the entry. Validation is strict and reports every problem in the file at once,
one line each, so a person fixes the file in one pass instead of one error per
run.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from ..errors import CatalogError, ModelError
from .atomic import atomic_write_text
from .experiment import (
    DATASETS,
    FIELD_NAMES,
    FROZEN_BN,
    NORMALIZATIONS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULERS,
    WEIGHTS_NONE,
    Experiment,
)
from .models import ModelInfo, check_model_name, describe
from .weights import is_local_weights, weight_names

# With `from __future__ import annotations` the field types are strings such as "int" or "float | None".
_KINDS = {f.name: f.type for f in dataclasses.fields(Experiment)}
_BUILTIN_DEFAULTS = {
    f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    for f in dataclasses.fields(Experiment)
    if f.name != "name"
}
# An Experiment lists unit names, which depend on the model; in a catalog, not saying means every unit trains.
_BUILTIN_DEFAULTS["trainable"] = "all"
_TOP_LEVEL = ("defaults", "experiment")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_CHOICES = {
    "dataset": DATASETS,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "frozen_bn": FROZEN_BN,
    "precision": PRECISIONS,
    "normalize": tuple(NORMALIZATIONS),
}
_TYPE_WANTED = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


@dataclass(frozen=True)
class _Range:
    lo: float
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def describe(self, key: str) -> str:
        text = f"{self.lo} {'<' if self.lo_open else '<='} {key}"
        return text if self.hi is None else f"{text} {'<' if self.hi_open else '<='} {self.hi}"


_RANGES = {
    "lr": _Range(0, 10, lo_open=True),
    "epochs": _Range(1, 10000),
    "batch_size": _Range(1, 65536),
    "input_size": _Range(8, 1024),
    "crop_padding": _Range(0, 64),
    "rotation": _Range(0, 180),
    "momentum": _Range(0, 1, hi_open=True),
    "weight_decay": _Range(0, 1),
    "label_smoothing": _Range(0, 1, hi_open=True),
    "warmup_epochs": _Range(0),
    "seed": _Range(0, 2**63 - 1),
    "max_steps_per_epoch": _Range(0),
    "max_test_images": _Range(0),
    "reference_acc": _Range(0, 100),
}


class _Invalid(Exception):
    """One value is wrong; the message says why and what is allowed."""


@dataclass(frozen=True)
class _Problem:
    key: str
    text: str


@dataclass(frozen=True)
class Catalog:
    path: Path
    defaults: dict
    experiments: tuple[Experiment, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.experiments)

    def get(self, name: str) -> Experiment:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        close = _closest(name, self.names)
        hint = f"Did you mean {close!r}?" if close else f"It has: {', '.join(self.names)}."
        raise CatalogError(f"No experiment named {name!r} in {self.path}. {hint}")


# --- small helpers -------------------------------------------------------------


def _closest(word: object, options) -> str | None:
    # Case-insensitive, so "default" still finds "DEFAULT".
    lowered = {o.lower(): o for o in options}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1)
    return lowered[close[0]] if close else None


def _hint(word: object, options) -> str:
    close = _closest(word, options)
    return f"; did you mean {close!r}?" if close else ""


def _show(value: object) -> str:
    """A value as it would be written in TOML, so the message quotes the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + " }"
    return "null" if value is None else repr(value)


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


def _typed(kind: str, value: object) -> object:
    if kind == "float | None" and value is None:
        return None
    base = kind.removesuffix(" | None")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base == "float" and is_number:
        if not math.isfinite(value):
            raise _Invalid("expected a finite number")
        return float(value)
    if (
        (base == "bool" and isinstance(value, bool))
        or (base == "int" and is_number and isinstance(value, int))
        or (base == "str" and isinstance(value, str))
    ):
        return value
    raise _Invalid(f"expected {_TYPE_WANTED[base]}, got {_type_name(value)}")


def _trainable(value: object) -> object:
    if value == "all":
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _Invalid('expected "all" or a list of layer unit names, e.g. ["layer4", "fc"]')


def _unit_lr(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _Invalid("expected a table of unit = learning rate, e.g. { fc = 0.01 }")
    rates = {}
    for unit, lr in value.items():
        try:
            rates[unit] = _in_range("lr", _typed("float", lr))
        except _Invalid as bad:
            raise _Invalid(f"{unit} = {_show(lr)}: {bad}") from None
    return rates


def _in_range(key: str, value):
    if key in _RANGES and value is not None and value not in _RANGES[key]:
        raise _Invalid(f"out of range; allowed {_RANGES[key].describe(key)}")
    return value


def _check_domain(key: str, value) -> None:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise _Invalid(f"allowed: {', '.join(_CHOICES[key])}{_hint(value, _CHOICES[key])}")
    if key == "name" and not _NAME_RE.fullmatch(value):
        raise _Invalid(
            "not a valid name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it becomes the run's folder name)"
        )
    if key == "device" and not _DEVICE_RE.fullmatch(value):
        raise _Invalid("allowed: auto, cpu, mps, cuda or cuda:N")
    if key == "model":
        try:
            check_model_name(value)
        except ModelError as exc:
            raise _Invalid(str(exc)) from None


def _check_value(key: str, value: object, base_dir: Path | None) -> object:
    """The value converted for the Experiment, checked on its own (no other keys needed)."""
    if key not in _KINDS:
        close = _closest(key, FIELD_NAMES)
        raise _Invalid(
            f"unknown setting; did you mean {close!r}?"
            if close
            else f"unknown setting; the settings are: {', '.join(FIELD_NAMES)}"
        )
    if key == "trainable":
        return _trainable(value)
    if key == "unit_lr":
        return _unit_lr(value)
    value = _in_range(key, _typed(_KINDS[key], value))
    _check_domain(key, value)
    if key == "data_dir" or (key == "weights" and is_local_weights(value)):
        return _resolve_path(value, base_dir)
    return value


# --- values that depend on each other ---------------------------------------------


def _unit_names(requested, info: ModelInfo) -> tuple[str, ...]:
    units = info.unit_names
    if requested == "all":
        return units
    unknown = [u for u in requested if u not in units]
    if unknown:
        hints = "; ".join(f"{u!r} is not a layer unit of {info.name}{_hint(u, units)}" for u in unknown)
        raise _Invalid(f"{hints} (its units: {', '.join(units)})")
    return tuple(u for u in units if u in requested)


def _model_info(values: dict) -> tuple[ModelInfo | None, list[_Problem]]:
    model = values["model"]
    try:
        info = describe(model)
    except ModelError as exc:
        return None, [_Problem("model", f"model = {_show(model)}: {exc}")]
    if not values.get("cifar_stem"):
        return info, []
    if info.has_resnet_stem:
        return describe(model, True), []
    return info, [
        _Problem(
            "cifar_stem",
            (
                f"cifar_stem = true: cifar_stem applies to ResNet-style models (conv1 + maxpool); {model} has "
                "none. Set cifar_stem = false."
            ),
        )
    ]


def _unit_problems(values: dict, info: ModelInfo) -> list[_Problem]:
    """Checks trainable and unit_lr against the model's units; resolves values["trainable"] to unit names."""
    problems = []
    if "trainable" in values:
        try:
            values["trainable"] = _unit_names(values["trainable"], info)
            if not values["trainable"]:
                raise _Invalid('no layer unit would train; list at least one or use "all"')
        except _Invalid as bad:
            problems.append(_Problem("trainable", f"trainable = {_show(values['trainable'])}: {bad}"))
    if "unit_lr" in values:
        try:
            _unit_names(tuple(values["unit_lr"]), info)
        except _Invalid as bad:
            problems.append(_Problem("unit_lr", f"unit_lr = {_show(values['unit_lr'])}: {bad}"))
    return problems


def _input_and_weights_problems(values: dict, info: ModelInfo) -> list[_Problem]:
    problems = []
    fixed, size = info.fixed_input_size, values.get("input_size")
    if fixed is not None and size is not None and size != fixed:
        problems.append(
            _Problem(
                "input_size",
                f"input_size = {size}: {info.name} only accepts {fixed}x{fixed} inputs; set input_size = {fixed}",
            )
        )
    weights, offered = values.get("weights"), weight_names(info.name)
    if weights is not None and weights != WEIGHTS_NONE and not is_local_weights(weights) and weights not in offered:
        problems.append(
            _Problem(
                "weights",
                (
                    f"weights = {_show(weights)}: {info.name} has no pretrained weights of that "
                    f"name{_hint(weights, offered)} "
                    f"(torchvision offers: {', '.join(offered) or 'none'}); "
                    'or use "none" or a path to a .safetensors/.pth file'
                ),
            )
        )
    return problems


def _model_problems(values: dict) -> list[_Problem]:
    """Checks that need the model's units (skipped when the model itself is invalid)."""
    if "model" not in values:
        return []
    info, problems = _model_info(values)
    if info is None:
        return problems
    return problems + _unit_problems(values, info) + _input_and_weights_problems(values, info)


def _other_problems(values: dict) -> list[_Problem]:
    problems = []
    warmup, epochs = values.get("warmup_epochs"), values.get("epochs")
    if warmup is not None and epochs is not None and warmup >= epochs:
        problems.append(
            _Problem("warmup_epochs", f"warmup_epochs = {_show(warmup)}: must be less than epochs ({epochs})")
        )
    if values.get("dataset") == "imagefolder" and values.get("data_dir") == "":
        problems.append(
            _Problem(
                "data_dir", 'data_dir = "": dataset "imagefolder" needs data_dir, the folder that holds its images'
            )
        )
    return problems


def _validate(data: dict, base_dir: Path | None) -> tuple[Experiment | None, list[_Problem]]:
    problems = (
        []
        if "name" in data
        else [_Problem("name", 'name: missing; every experiment needs name = "..." (it names its run folder)')]
    )
    values = {}
    for key, raw in {**_BUILTIN_DEFAULTS, **data}.items():
        try:
            values[key] = _check_value(key, raw, base_dir)
        except _Invalid as bad:
            problems.append(_Problem(key, f"{key} = {_show(raw)}: {bad}"))
    problems += _model_problems(values) + _other_problems(values)
    return (None, problems) if problems else (Experiment(**values), [])


def experiment_from_dict(data: dict, where: str, base_dir: Path | None = None) -> Experiment:
    """Validate one merged experiment dict (a catalog entry or stored JSON); every problem is raised at once."""
    exp, problems = _validate(data, base_dir)
    if problems:
        raise CatalogError("\n".join(f"{where}: {p.text}" for p in problems))
    return exp


# --- the catalog file --------------------------------------------------------------


def _read_toml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(f"Catalog file {path} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path} is not UTF-8 text ({exc}).") from None
    except OSError as exc:
        raise CatalogError(f"Catalog file {path} cannot be read ({exc.strerror}).") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with "(at line L, column C)" or "(at end of document)".
        match = re.fullmatch(r"(.*?)\s*\(at (?:line (\d+), column (\d+)|end of document)\)", str(exc), re.S)
        message, line, column = match.groups() if match else (str(exc), None, None)
        place = f"line {line}, column {column}" if line else "end of file"
        raise CatalogError(f"{path}, {place}: {message}") from None


def _split_document(doc: dict, path: Path) -> tuple[dict, list, list[str]]:
    lines = []
    for key in doc:
        if key not in _TOP_LEVEL:
            why = (
                "settings go under [defaults] or an [[experiment]]"
                if key in _KINDS
                else "a catalog has only [defaults] and [[experiment]] entries"
            )
            lines.append(f"{path}: unknown top-level key {key!r}{_hint(key, _TOP_LEVEL)}; {why}")
    defaults, entries = doc.get("defaults", {}), doc.get("experiment", [])
    if not isinstance(defaults, dict):
        lines.append(f"{path}: defaults must be a table: write [defaults] and its settings below it")
        defaults = {}
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        lines.append(
            f"{path}: experiment must be an array of tables: start each one with [[experiment]] (double brackets)"
        )
        entries = []
    elif not entries:
        lines.append(f'{path}: no experiments; add at least one [[experiment]] entry with a name = "..."')
    return defaults, entries, lines


def _defaults_problems(defaults: dict, base_dir: Path) -> list[_Problem]:
    problems = []
    for key, raw in defaults.items():
        try:
            if key == "name":
                raise _Invalid("every [[experiment]] names itself; remove name from [defaults]")
            _check_value(key, raw, base_dir)
        except _Invalid as bad:
            problems.append(_Problem(key, f"{key} = {_show(raw)}: {bad}"))
    return problems


def _merge(defaults: dict, entry: dict) -> dict:
    return {**{k: v for k, v in defaults.items() if k != "name"}, **entry}


def _entry_where(path: Path, number: int, entry: dict) -> str:
    name = entry.get("name")
    return (
        f"{path}: experiment {_show(name)} (entry {number})"
        if isinstance(name, str)
        else f"{path}: experiment entry {number}"
    )


def _origin(key: str, entry: dict, defaults: dict) -> str:
    # A problem on a key the entry does not set comes from elsewhere: say where to fix it.
    if key in entry or key not in _BUILTIN_DEFAULTS:
        return ""
    return (
        " (inherited from [defaults])"
        if key in defaults
        else " (the built-in default; set it in [defaults] or the entry)"
    )


def load_catalog(path: str | Path) -> Catalog:
    path = Path(path)
    base_dir = path.absolute().parent
    defaults, entries, lines = _split_document(_read_toml(path), path)
    default_problems = _defaults_problems(defaults, base_dir)
    lines += [f"{path}: [defaults]: {p.text}" for p in default_problems]
    reported = {p.key for p in default_problems}  # a bad default is reported once, not per entry
    experiments, first_entry = [], {}
    for number, entry in enumerate(entries, 1):
        where = _entry_where(path, number, entry)
        exp, problems = _validate(_merge(defaults, entry), base_dir)
        lines += [
            f"{where}: {p.text}{_origin(p.key, entry, defaults)}"
            for p in problems
            if p.key in entry or p.key not in reported
        ]
        name = entry.get("name")
        if isinstance(name, str) and name in first_entry:
            lines.append(f"{where}: name = {_show(name)}: duplicate; entry {first_entry[name]} already uses this name")
        elif isinstance(name, str):
            first_entry[name] = number
        if exp is not None:
            experiments.append(exp)
    if lines:
        raise CatalogError("\n".join(lines))
    return Catalog(path, defaults, tuple(experiments))


# --- appending an experiment -----------------------------------------------------------


def _toml_values(exp: Experiment) -> dict:
    values = {k: v for k, v in exp.to_dict().items() if v is not None}  # TOML has no null: None is "absent"
    if exp.trainable == describe(exp.model, exp.cifar_stem).unit_names:
        values["trainable"] = "all"
    values["unit_lr"] = tomlkit.inline_table()
    values["unit_lr"].update(exp.unit_lr)
    return values


def _entry_for(exp: Experiment, defaults: dict, base_dir: Path) -> dict:
    """The keys to write: a key stays only if leaving it out would change the experiment read back."""
    entry = _toml_values(exp)
    for key in FIELD_NAMES:
        trial = {k: v for k, v in entry.items() if k != key}
        if (
            key not in ("name", "description")
            and key in entry
            and _validate(_merge(defaults, trial), base_dir)[0] == exp
        ):
            entry = trial
    return entry


def _render(entry: dict) -> str:
    table = tomlkit.table()
    table.update(entry)
    doc = tomlkit.document()
    doc.append("experiment", tomlkit.aot())
    doc["experiment"].append(table)
    return tomlkit.dumps(doc)


def save_experiment(path: str | Path, exp: Experiment) -> None:
    """Append exp to the catalog as a new [[experiment]], keeping every comment and the layout."""
    path = Path(path)
    base_dir = path.absolute().parent
    wanted = experiment_from_dict(exp.to_dict(), f"experiment {_show(exp.name)}", base_dir)
    catalog = load_catalog(path)
    if exp.name in catalog.names:
        raise CatalogError(f"{path} already has an experiment named {exp.name!r}; choose another name.")
    text = path.read_text(encoding="utf-8")
    # Appending to the text (not re-dumping a parsed document) keeps the file byte for byte.
    separator = "" if text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
    new_text = text + separator + _render(_entry_for(wanted, catalog.defaults, base_dir))

    def reads_back(tmp: Path) -> None:
        if load_catalog(tmp).get(exp.name) != wanted:
            raise CatalogError(f"Experiment {exp.name!r} cannot be written to {path} so that it reads back unchanged.")

    try:
        atomic_write_text(path, new_text, mode=stat.S_IMODE(path.stat().st_mode), check=reads_back)
    except OSError as exc:
        raise CatalogError(f"Cannot write {path}: {exc.strerror or exc}. The file is unchanged.") from exc
