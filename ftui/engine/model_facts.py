"""What the catalog and the screens need to know about a torchvision model, without importing torch.

Checking a catalog needs each model's layer units, its input constraints and the names of the
weights torchvision offers. Computing them imports torch and torchvision (4-5 s on a small
machine), which `ftui list` and the workbench's first screen must not wait for. They are computed
once and kept in a small JSON file per torchvision release and per version of ftui's unit
definitions (models.py, lora.py and this file), so a later start reads them in milliseconds. The file is
only a cache: anything wrong with it (unreadable, edited, another format) means "compute again".
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.metadata
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ModelError
from .atomic import atomic_write_text


@dataclass(frozen=True)
class LayerUnit:
    name: str
    prefixes: tuple[str, ...]
    params: int = 0

    def owns(self, qualified_name: str) -> bool:
        return any(qualified_name == p or qualified_name.startswith(p + ".") for p in self.prefixes)


def owner_of(units: tuple[LayerUnit, ...], qualified_name: str) -> LayerUnit | None:
    """The unit a parameter or module belongs to; None for one no unit holds (the model itself, a container)."""
    return next((u for u in units if u.owns(qualified_name)), None)


@dataclass(frozen=True)
class Adaptable:
    """A layer LoRA can adapt: a Linear, a Conv2d, or a MultiheadAttention (its in- and output projections)."""

    module: str  # qualified name in the adapted torchvision model
    unit: str
    kind: str  # one of experiment.LORA_KINDS
    rank_cost: int  # LoRA parameters per unit of rank: Σ (fan_in + fan_out) over the update's A·B pairs


@dataclass(frozen=True)
class ModelInfo:
    """What the catalog and the UI need to know about a model, without weights."""

    name: str
    units: tuple[LayerUnit, ...]
    head_unit: str
    fixed_input_size: int | None  # ViT only accepts its training resolution
    has_resnet_stem: bool
    adaptable: tuple[Adaptable, ...] = ()

    def lora_targets(self, units: tuple[str, ...], kinds: tuple[str, ...]) -> tuple[Adaptable, ...]:
        """The layers a LoRA run adapts: those of the kinds chosen, in the units chosen."""
        return tuple(a for a in self.adaptable if a.unit in units and a.kind in kinds)

    def lora_params(self, units: tuple[str, ...], kinds: tuple[str, ...], rank: int) -> dict[str, int]:
        """LoRA parameters per unit (only units that get some): rank × Σ (fan_in + fan_out), as PEFT builds them."""
        counts: dict[str, int] = {}
        for a in self.lora_targets(units, kinds):
            counts[a.unit] = counts.get(a.unit, 0) + rank * a.rank_cost
        return counts

    @property
    def unit_names(self) -> tuple[str, ...]:
        return tuple(u.name for u in self.units)

    @property
    def total_params(self) -> int:
        return sum(u.params for u in self.units)


def cache_dir() -> Path:
    base = os.environ.get("FTUI_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "ftui")
    return Path(base).expanduser()


@functools.lru_cache(maxsize=1)
def _cache_file() -> Path:
    here = Path(__file__).parent
    sources = (here / "models.py", here / "lora.py", Path(__file__))
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    try:
        torchvision = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        torchvision = "unknown"
    return cache_dir() / f"model-facts-torchvision-{torchvision}-{code}.json"


class _Cache:
    """The facts file's content, read once per process and written back when a fact is added."""

    def __init__(self) -> None:
        self.data: dict = {}
        try:
            loaded = json.loads(_cache_file().read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.data = loaded
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: computed again below

    def get(self, section: str, key: str):
        table = self.data.get(section)
        return table.get(key) if isinstance(table, dict) else None

    def put(self, section: str, key: str, value) -> None:
        table = self.data.get(section)
        self.data[section] = {**(table if isinstance(table, dict) else {}), key: value}
        try:
            _cache_file().parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(_cache_file(), json.dumps(self.data, indent=1) + "\n")
        except OSError:
            pass  # a read-only home: every start computes the facts, nothing else changes


@functools.lru_cache(maxsize=1)
def _cache() -> _Cache:
    return _Cache()


def _strings(value) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


@functools.lru_cache(maxsize=1)
def classification_models() -> tuple[str, ...]:
    names = _strings(_cache().get("lists", "classification_models"))
    if names is None:
        import torchvision

        names = tuple(torchvision.models.list_models(module=torchvision.models))
        _cache().put("lists", "classification_models", list(names))
    return names


def check_model_name(name: str) -> str:
    known = classification_models()
    if name in known:
        return name
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ModelError(
        f"Unknown model {name!r}: ftui takes torchvision classification models "
        f"(resnet18, vgg16, vit_b_16, and {len(known) - 3} more).{hint}"
    )


@functools.lru_cache(maxsize=64)
def weight_names(model_name: str) -> tuple[str, ...]:
    """Pretrained weight names torchvision offers for a model, DEFAULT first."""
    names = _strings(_cache().get("weights", model_name))
    if names is None:
        import torchvision

        try:
            enum = torchvision.models.get_model_weights(model_name)
            names = ("DEFAULT", *(n for n in enum.__members__ if n != "DEFAULT"))
        except (ValueError, KeyError):
            names = ()
        _cache().put("weights", model_name, list(names))
    return names


def _info_from(data) -> ModelInfo | None:
    try:
        units = tuple(LayerUnit(u["name"], tuple(u["prefixes"]), int(u["params"])) for u in data["units"])
        adaptable = tuple(
            Adaptable(str(a["module"]), str(a["unit"]), str(a["kind"]), int(a["rank_cost"])) for a in data["adaptable"]
        )
        info = ModelInfo(
            data["name"], units, data["head_unit"], data["fixed_input_size"], data["has_resnet_stem"], adaptable
        )
    except (KeyError, TypeError, ValueError):
        return None
    fields_ok = (
        isinstance(info.name, str)
        and isinstance(info.head_unit, str)
        and isinstance(info.has_resnet_stem, bool)
        and (info.fixed_input_size is None or isinstance(info.fixed_input_size, int))
        and all(isinstance(u.name, str) and _strings(list(u.prefixes)) is not None for u in units)
    )
    return info if fields_ok and units else None


@functools.lru_cache(maxsize=64)
def describe(name: str, cifar_stem: bool = False, num_classes: int = 10) -> ModelInfo:
    """Units and constraints of a model: from the facts file, or computed on the meta device and kept there."""
    name = check_model_name(name)
    key = f"{name}|{'cifar' if cifar_stem else 'plain'}|{num_classes}"
    info = _info_from(_cache().get("models", key))
    if info is None:
        from .models import compute_model_info

        info = compute_model_info(name, cifar_stem, num_classes)
        _cache().put("models", key, asdict(info))
    return info
