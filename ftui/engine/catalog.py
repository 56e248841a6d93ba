"""The experiment catalog: experiments.toml read into validated Experiments, and appended to.

A catalog has a ``[defaults]`` table and ``[[experiment]]`` entries. Each entry
is the Experiment's declared defaults, overlaid by ``[defaults]``, overlaid by
the entry, and checked by engine/validation.py. Every problem in the file is
reported at once, one line each, so a person fixes the file in one pass instead
of one error per run. This module is the file's reading and writing (tomllib,
tomlkit); code that only re-checks stored experiment JSON imports validation.py.
"""

from __future__ import annotations

import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomlkit

from ..errors import CatalogError
from .atomic import atomic_write_text
from .experiment import FIELD_NAMES, SETTINGS, Experiment
from .model_facts import describe
from .schema import toml_value
from .validation import (
    CATALOG_DEFAULTS,
    Invalid,
    Problem,
    check_value,
    closest,
    experiment_from_dict,
    hint,
    validate,
)

__all__ = ["Catalog", "experiment_from_dict", "load_catalog", "save_experiment"]

_TOP_LEVEL = ("defaults", "experiment")


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
        close = closest(name, self.names)
        hint = f"Did you mean {close!r}?" if close else f"It has: {', '.join(self.names)}."
        raise CatalogError(f"No experiment named {name!r} in {self.path}. {hint}")


# --- the catalog file --------------------------------------------------------------


def _read_toml(path: Path) -> dict:
    try:
        # utf-8-sig: editors on Windows save a byte-order mark, which TOML does not allow as a statement.
        text = path.read_text(encoding="utf-8-sig")
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
                if key in SETTINGS
                else "a catalog has only [defaults] and [[experiment]] entries"
            )
            lines.append(f"{path}: unknown top-level key {key!r}{hint(key, _TOP_LEVEL)}; {why}")
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


def _defaults_problems(defaults: dict, base_dir: Path) -> list[Problem]:
    problems = []
    for key, raw in defaults.items():
        try:
            if key == "name":
                raise Invalid("every [[experiment]] names itself; remove name from [defaults]")
            check_value(key, raw, base_dir)
        except Invalid as bad:
            problems.append(Problem(key, f"{key} = {toml_value(raw)}: {bad}"))
    return problems


def _merge(defaults: dict, entry: dict) -> dict:
    return {**{k: v for k, v in defaults.items() if k != "name"}, **entry}


def _entry_where(path: Path, number: int, entry: dict) -> str:
    name = entry.get("name")
    return (
        f"{path}: experiment {toml_value(name)} (entry {number})"
        if isinstance(name, str)
        else f"{path}: experiment entry {number}"
    )


def _origin(key: str, entry: dict, defaults: dict) -> str:
    # A problem on a key the entry does not set comes from elsewhere: say where to fix it.
    if key in entry or key not in CATALOG_DEFAULTS:
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
    experiments: list[Experiment] = []
    first_entry: dict[str, int] = {}  # name -> the entry that first used it
    for number, entry in enumerate(entries, 1):
        where = _entry_where(path, number, entry)
        exp, problems = validate(_merge(defaults, entry), base_dir)
        lines += [
            f"{where}: {p.text}{_origin(p.key, entry, defaults)}"
            for p in problems
            if p.key in entry or p.key not in reported
        ]
        name = entry.get("name")
        if isinstance(name, str) and name in first_entry:
            lines.append(
                f"{where}: name = {toml_value(name)}: duplicate; entry {first_entry[name]} already uses this name"
            )
        elif isinstance(name, str):
            first_entry[name] = number
        if exp is not None:
            experiments.append(exp)
    lines += _mirror_problems(path, experiments)
    if lines:
        raise CatalogError("\n".join(lines))
    return Catalog(path, defaults, tuple(experiments))


def _mirror_problems(path: Path, experiments: list[Experiment]) -> list[str]:
    names = [e.name for e in experiments]
    return [
        f"{path}: {e.name}: mirrors = {toml_value(e.mirrors)}: no experiment of the catalog has that name"
        f"{hint(e.mirrors, names)}"
        for e in experiments
        if e.mirrors and e.mirrors not in names
    ]


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
            and validate(_merge(defaults, trial), base_dir)[0] == exp
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
    wanted = experiment_from_dict(exp.to_dict(), f"experiment {toml_value(exp.name)}", base_dir)
    catalog = load_catalog(path)
    if exp.name in catalog.names:
        raise CatalogError(f"{path} already has an experiment named {exp.name!r}; choose another name.")
    # Appending to the text (not re-dumping a parsed document) keeps the file byte for byte: its
    # byte-order mark and line endings (read undecoded: read_text would turn CRLF into LF) included.
    text = path.read_bytes().decode("utf-8")
    eol = "\r\n" if "\r\n" in text else "\n"
    separator = "" if text.endswith(eol * 2) else eol if text.endswith(eol) else eol * 2
    new_text = text + separator + _render(_entry_for(wanted, catalog.defaults, base_dir)).replace("\n", eol)

    def reads_back(tmp: Path) -> None:
        if load_catalog(tmp).get(exp.name) != wanted:
            raise CatalogError(f"Experiment {exp.name!r} cannot be written to {path} so that it reads back unchanged.")

    try:
        atomic_write_text(path, new_text, newline="", mode=stat.S_IMODE(path.stat().st_mode), check=reads_back)
    except OSError as exc:
        raise CatalogError(f"Cannot write {path}: {exc.strerror or exc}. The file is unchanged.") from exc
