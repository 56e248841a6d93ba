"""How a setting of the Experiment is declared, once, and read by everything that needs it.

Each Experiment field states its type and default as a dataclass field does, and beside them, in the
field's metadata, its allowed range or choices and a one-line help (``setting(...)``). ``settings_of``
reads those declarations back as ``Setting`` objects, with the kind of value resolved from the type
hint itself (``typing.get_type_hints``), not from the annotation's text. The validator
(engine/validation.py), the editor's settings form and README's key table (``key_table``, kept
equal to the README by a test) all read them, so a setting is described in one place.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

_METADATA_KEY = "ftui.setting"
_FIELD_DEFAULT = object()  # catalog_default: the same as the field's own default


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval of numbers; hi None means no upper bound."""

    lo: float
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return above and below

    def describe(self, key: str) -> str:
        """As the validator says it: ``0 < lr <= 10``."""
        text = f"{self.lo} {'<' if self.lo_open else '<='} {key}"
        return text if self.hi is None else f"{text} {'<' if self.hi_open else '<='} {self.hi}"

    def markdown(self) -> str:
        """As README's key table says it: 1 to 10000 with an en dash, ``≥ 0``, ``(0, 10]``, ``[0, 1)``."""
        if self.hi is None:
            return f"{'>' if self.lo_open else '≥'} {self.lo}"
        if not (self.lo_open or self.hi_open):
            return f"{self.lo}–{self.hi}"
        return f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"


@dataclass(frozen=True)
class Pattern:
    """A string setting's shape, and what the validator says to a value that does not have it."""

    regex: str
    refusal: str


@dataclass(frozen=True)
class Kind:
    """What a setting's value is: bool, int, float or str, a tuple of names, or a dict of name to float."""

    base: type
    optional: bool = False  # None is allowed too (TOML: the key is absent)


_SCALARS = (bool, int, float, str)


def kind_of(hint: object) -> Kind:
    """The Kind of a resolved type hint (``float | None`` and ``Optional[float]`` alike); others are a TypeError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        inner = kind_of(next(a for a in args if a is not type(None)))
        return dataclasses.replace(inner, optional=True)
    if hint in _SCALARS:
        return Kind(typing.cast(type, hint))
    if origin is tuple and args == (str, Ellipsis):
        return Kind(tuple)
    if origin is dict and args == (str, float):
        return Kind(dict)
    raise TypeError(f"a setting cannot be of type {hint!r}")


@dataclass(frozen=True)
class _Declared:
    help: str
    range: Range | None = None
    choices: tuple[str, ...] = ()
    pattern: Pattern | None = None
    label: str = ""
    values: str = ""
    catalog_default: object = _FIELD_DEFAULT


def declare(
    help: str,
    *,
    range: Range | None = None,
    choices: tuple[str, ...] = (),
    pattern: Pattern | None = None,
    label: str = "",
    values: str = "",
    catalog_default: object = _FIELD_DEFAULT,
) -> dict[str, object]:
    """A field's metadata: help is one line; label is the short name a form shows (the key if empty);
    values says in README what neither range nor choices say; catalog_default is what a catalog entry
    that leaves the key out means, where that differs from the field's own default."""
    return {_METADATA_KEY: _Declared(help, range, choices, pattern, label, values, catalog_default)}


def setting(default: object, help: str, **declared: Any) -> Any:
    """A dataclass field with its default and its declaration (for a required field or a default factory,
    write ``field(metadata=declare(...))``)."""
    return dataclasses.field(default=default, metadata=declare(help, **declared))


@dataclass(frozen=True)
class Setting:
    """One declared setting, as the validator, the editor and README's table read it."""

    name: str
    kind: Kind
    default: object  # what a catalog entry that leaves the key out gets; MISSING where the key is required
    help: str
    range: Range | None
    choices: tuple[str, ...]
    pattern: Pattern | None
    label: str
    values: str

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def values_text(self) -> str:
        """README's values column."""
        if self.values:
            return self.values
        if self.choices:
            return ", ".join(f"`{c}`" for c in self.choices)
        if self.range is not None:
            return self.range.markdown()
        return {bool: "bool", int: "integer", float: "number", str: "text"}[self.kind.base]


def settings_of(cls: type) -> dict[str, Setting]:
    """The declared settings of a dataclass, in field order; an undeclared field or an unknown type is an error."""
    hints = typing.get_type_hints(cls)
    settings = {}
    for f in dataclasses.fields(cls):
        declared = f.metadata.get(_METADATA_KEY)
        if not isinstance(declared, _Declared):
            raise TypeError(f"{cls.__name__}.{f.name} has no declaration: define it with setting(...)")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if declared.catalog_default is not _FIELD_DEFAULT:
            default = declared.catalog_default
        settings[f.name] = Setting(
            f.name,
            kind_of(hints[f.name]),
            default,
            declared.help,
            declared.range,
            declared.choices,
            declared.pattern,
            declared.label or f.name,
            declared.values,
        )
    return settings


def toml_value(value: object) -> str:
    """A value as it would be written in TOML, so a message quotes the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return "null" if value is None else repr(value)


def key_table(settings: dict[str, Setting]) -> str:
    """README's table of catalog keys (Markdown), one row a setting."""
    rows = ["| key | values | default | meaning |", "| --- | --- | --- | --- |"]
    for s in settings.values():
        if s.required:
            default = "required"
        elif s.default is None or s.default == {}:
            default = "none"
        else:
            default = f"`{toml_value(s.default)}`"
        rows.append(f"| `{s.name}` | {s.values_text()} | {default} | {s.help} |")
    return "\n".join(rows) + "\n"
