"""safetensors checkpoints: model weights with their experiment, and resume state.

A model checkpoint holds the model's state dict under its plain torchvision
names, so ``model.load_state_dict(safetensors.torch.load_file(path))`` works
with torchvision alone. Its string metadata carries the resolved experiment,
epoch, metrics, trainable units, classes and library versions as JSON.

The optimizer, scheduler and RNG state needed to resume live in a separate
``resume.safetensors`` next to ``last.safetensors`` and name the epoch they
belong to, so a mismatch is detected instead of resuming from mixed states.
Every write goes to a temporary file that is fsynced and renamed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import safetensors
import torch
import torchvision
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..errors import CheckpointError, FtuiError
from ..formatting import param_count
from .atomic import atomic_write
from .experiment import Experiment
from .lora import is_lora_tensor
from .model_facts import LayerUnit, describe
from .models import build_model, expected_shapes, layer_units, meta_model, unit_of
from .params import stats_fixed, trains
from .validation import experiment_from_dict
from .weights import mismatch_report, shape_mismatch, state_fits

FORMAT = "ftui-checkpoint/1"
RESUME_FORMAT = "ftui-resume/1"
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    unit: str
    trained: bool

    @property
    def numel(self) -> int:
        return _numel(self.shape)


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    kind: str
    epoch: int  # 0-based index of the last completed epoch
    experiment: dict
    metrics: dict
    trainable_units: tuple[str, ...]
    classes: tuple[str, ...]
    versions: dict
    tensors: tuple[TensorInfo, ...]
    lora_base: dict | None = None  # a LoRA run's file holds no base weights: {"weights": ..., "sha256": ...}

    @property
    def param_count(self) -> int:
        return sum(_numel(t.shape) for t in self.tensors)

    def adapters(self) -> str:
        """A LoRA checkpoint's updates in a line: rank, α, kinds of layer, parameters per unit ("" for others)."""
        if self.lora_base is None:
            return ""
        per_unit: dict[str, int] = {}
        for t in self.tensors:
            if is_lora_tensor(t.name):
                per_unit[t.unit] = per_unit.get(t.unit, 0) + t.numel
        exp = self.experiment
        alpha = exp.get("lora_alpha") or 2 * exp.get("lora_rank", 0)
        units = ", ".join(f"{u} {param_count(n)}" for u, n in per_unit.items())
        return (
            f"LoRA rank {exp.get('lora_rank')}, α {alpha:g}, on {', '.join(exp.get('lora_layers', []))} layers: {units}"
        )


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def versions() -> dict:
    return {
        "ftui": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    atomic_write(path, lambda tmp: _save_file(tensors, tmp, metadata))


def _save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    # safetensors reports a failed write (disk full, file too large, no permission) as SafetensorError with
    # the OS error in its message. The engine treats every failed write as OSError, so a full disk fails
    # the run with "free disk space, then resume" instead of an internal error.
    try:
        save_file(tensors, path, metadata=metadata)
    except SafetensorError as exc:
        found = _OS_ERROR.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from exc


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}


def _kept(model: nn.Module, units: tuple[LayerUnit, ...], exp: Experiment) -> set[str]:
    """What a LoRA run's checkpoint holds: what learns (updates, trained units) and statistics that move."""
    kept = {n for n, _ in model.named_parameters() if trains(exp, unit_of(units, n).name, n)}
    return kept | {n for n, _ in model.named_buffers() if not stats_fixed(exp, unit_of(units, n).name)}


def checkpoint_state(model: nn.Module, units: tuple[LayerUnit, ...], exp: Experiment) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint of this run holds: the whole model, or for LoRA only what is not the base."""
    state = cpu_state(model)
    if not exp.uses_lora:
        return state
    kept = _kept(model, units, exp)
    return {k: v for k, v in state.items() if k in kept}


def base_digest(model: nn.Module, units: tuple[LayerUnit, ...], exp: Experiment) -> str:
    """SHA-256 of the base tensors a LoRA checkpoint leaves out, by name, shape, dtype and value."""
    kept = _kept(model, units, exp)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name not in kept:
            value = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}|{tuple(value.shape)}|{value.dtype}|".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_model_checkpoint(
    path: Path,
    tensors: dict[str, torch.Tensor],
    *,
    kind: str,
    epoch: int,
    experiment: Experiment,
    metrics: dict,
    classes: tuple[str, ...],
    base_sha256: str | None = None,
) -> None:
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "epoch": str(epoch),
        "experiment": json.dumps(experiment.to_dict()),
        "metrics": json.dumps(metrics),
        "trainable_units": json.dumps(list(experiment.trainable)),
        "classes": json.dumps(list(classes)),
        "versions": json.dumps(versions()),
    }
    if base_sha256 is not None:
        metadata["lora_base"] = json.dumps({"weights": experiment.weights, "sha256": base_sha256})
    _atomic_save(tensors, path, metadata)


def _open_error(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable safetensors checkpoint ({exc}). It may be truncated or corrupt.")


def _read_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[tuple[int, ...], str]]]:
    if path.is_dir():
        files = sorted(p.name for p in path.glob("*.safetensors") if not p.name.startswith("resume"))
        hint = f" Pass one of its checkpoint files: {', '.join(files)}." if files else " It holds no checkpoint."
        raise CheckpointError(f"{path} is a folder, not a checkpoint file.{hint}")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            table = {}
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                sl = f.get_slice(key)
                table[key] = (tuple(sl.get_shape()), str(sl.get_dtype()))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _open_error(path, exc) from exc
    return meta, table


def _json_field(meta: dict[str, str], key: str, path: Path):
    try:
        return json.loads(meta[key])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: its metadata field {key!r} is missing or not valid JSON.") from exc


# Checkpoints are shared between people: every field read from one is checked before use, so a
# hand-edited or hostile file is refused with a message instead of failing half-way through a screen.
def _bad_field(path: Path, key: str, wanted: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: its metadata field {key!r} is not {wanted}. The file was not written by ftui "
        "as it is, or has been edited; use a checkpoint from the run folder."
    )


def _strings(meta: dict[str, str], key: str, path: Path) -> tuple[str, ...]:
    value = _json_field(meta, key, path)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad_field(path, key, "a list of names")
    return tuple(value)


def _versions(meta: dict[str, str], path: Path) -> dict[str, str]:
    value = _json_field(meta, "versions", path)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad_field(path, "versions", "a table of library versions")
    return value


_MEASURED = ("test_acc", "test_loss", "train_loss")  # what the screens and `ftui inspect` show


def _metrics(meta: dict[str, str], path: Path) -> dict:
    value = _json_field(meta, "metrics", path)
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k, 0.0), (int, float)) and not isinstance(value.get(k), bool) for k in _MEASURED
    ):
        raise _bad_field(path, "metrics", "a table of the epoch's measurements")
    return value


def _epoch(meta: dict[str, str], path: Path) -> int:
    text = meta.get("epoch", "")
    if not text.isascii() or not text.isdigit():
        raise _bad_field(path, "epoch", "an epoch number")
    return int(text)


def _experiment(meta: dict[str, str], path: Path) -> dict:
    """The stored experiment, validated like a catalog entry; returned as plain JSON data."""
    data = _json_field(meta, "experiment", path)
    if not isinstance(data, dict):
        raise _bad_field(path, "experiment", "a table of settings")
    try:
        return experiment_from_dict(data, where="experiment").to_dict()
    except FtuiError as exc:
        raise CheckpointError(f"{path}: its experiment metadata is not a valid experiment:\n{exc}") from exc


def _expected(exp: dict, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes the file must hold: the whole model, or a LoRA run's kept tensors."""
    if not exp.get("lora"):
        return expected_shapes(exp["model"], bool(exp.get("cifar_stem")), num_classes)
    resolved = experiment_from_dict(exp, where="experiment")
    model = meta_model(resolved, num_classes)
    kept = _kept(model, layer_units(model), resolved)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k in kept}


def _lora_base(meta: dict[str, str], path: Path) -> dict:
    value = _json_field(meta, "lora_base", path)
    if not (isinstance(value, dict) and isinstance(value.get("weights"), str) and isinstance(value.get("sha256"), str)):
        raise _bad_field(path, "lora_base", "the base weights' name and SHA-256")
    return value


def read_checkpoint(path: Path) -> CheckpointInfo:
    """Metadata and tensor table from the header alone (no tensor data is read)."""
    path = Path(path)
    meta, table = _read_header(path)
    if meta.get("format") == RESUME_FORMAT:
        run = path.parent
        raise CheckpointError(
            f"{path} is a run's resume state (its optimizer, scheduler and random-number state), not a model "
            f"checkpoint. The run's model is in {run / 'last.safetensors'} (and {run / 'best.safetensors'}): "
            f"pass one of those, or continue the run with: ftui resume {run}"
        )
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not an ftui checkpoint (no ftui metadata). "
            f'If it holds model weights, use it as `weights = "{path}"` in an experiment.'
        )
    exp = _experiment(meta, path)
    trainable = _strings(meta, "trainable_units", path)
    classes = _strings(meta, "classes", path)
    kind = meta.get("kind", "")
    if kind not in ("last", "best"):
        raise _bad_field(path, "kind", '"last" or "best"')
    try:
        units = describe(exp["model"], bool(exp.get("cifar_stem")), len(classes)).units
        expected = _expected(exp, len(classes))
    except (FtuiError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: its experiment metadata does not describe a known model ({exc}).") from exc
    given = {name: shape for name, (shape, _) in table.items()}
    if given != expected:
        raise CheckpointError(
            f"{path} does not fit the {exp['model']} it says it holds: {shape_mismatch(expected, given)}"
        )
    owner = {name: unit_of(units, name).name for name in table}
    # The file stores names sorted; show them in the model's unit order (conv1 before layer1 ...).
    order = {u.name: i for i, u in enumerate(units)}
    tensors = tuple(
        TensorInfo(name, shape, dtype, owner[name], owner[name] in trainable or is_lora_tensor(name))
        for name, (shape, dtype) in sorted(table.items(), key=lambda item: (order[owner[item[0]]], item[0]))
    )
    return CheckpointInfo(
        path=path,
        kind=kind,
        epoch=_epoch(meta, path),
        experiment=exp,
        metrics=_metrics(meta, path),
        trainable_units=trainable,
        classes=classes,
        versions=_versions(meta, path),
        tensors=tensors,
        lora_base=_lora_base(meta, path) if exp.get("lora") else None,
    )


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _open_error(path, exc) from exc


def load_checkpoint_model(path: Path) -> tuple[nn.Module, CheckpointInfo, Experiment]:
    """Rebuild the checkpoint's model on the CPU and load its weights (strictly)."""
    info = read_checkpoint(path)
    exp = experiment_from_dict(info.experiment, where=str(path))
    if info.lora_base is not None:
        return _load_lora_model(Path(path), info, exp), info, exp
    model = build_model(dataclasses.replace(exp, weights="none"), num_classes=len(info.classes))
    state = load_tensors(Path(path))
    if not state_fits(model, state):
        raise CheckpointError(f"{path} does not fit the {exp.model} it says it holds: {mismatch_report(model, state)}")
    model.load_state_dict(state)
    return model, info, exp


def _load_lora_model(path: Path, info: CheckpointInfo, exp: Experiment) -> nn.Module:
    """The base model from the weights the run started from, checked against the digest, then the file's tensors."""
    assert info.lora_base is not None
    torch.manual_seed(exp.seed)  # random base weights (weights = "none") are those of the run's seed
    try:
        model = build_model(exp, num_classes=len(info.classes))
    except FtuiError as exc:
        raise CheckpointError(
            f"{path} holds LoRA updates, not a whole model: it needs the base weights its run started from "
            f"({exp.weights}), and they cannot be loaded: {exc}"
        ) from exc
    units = layer_units(model)
    if base_digest(model, units, exp) != info.lora_base["sha256"]:
        raise CheckpointError(
            f"{path} holds LoRA updates trained on other base weights than those now at {exp.weights} "
            f"(SHA-256 {info.lora_base['sha256'][:12]}… expected). Put back the weights the run started from, "
            "or use the merged export of this checkpoint made where they were."
        )
    model.load_state_dict(load_tensors(path), strict=False)  # the names were checked by read_checkpoint
    return model


def save_resume_state(
    path: Path, optimizer: torch.optim.Optimizer, scheduler, rng: dict[str, torch.Tensor], epoch: int
) -> None:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                plain.setdefault(str(idx), {})[key] = value
    tensors.update({f"rng.{k}": v.contiguous() for k, v in rng.items()})
    metadata = {
        "format": RESUME_FORMAT,
        "epoch": str(epoch),
        "param_groups": json.dumps(sd["param_groups"]),
        "optimizer_plain_state": json.dumps(plain),
        "scheduler": json.dumps(scheduler.state_dict()),
    }
    _atomic_save(tensors, path, metadata)


def resume_epoch(path: Path) -> int:
    """The epoch a resume-state file belongs to, from its header alone (-1: none it could be)."""
    meta, _ = _read_header(path)
    if meta.get("format") != RESUME_FORMAT:
        return -1
    try:
        return _epoch(meta, path)
    except CheckpointError:
        return -1  # an edited epoch matches no checkpoint: resume says no state matches


def load_resume_state(path: Path, optimizer: torch.optim.Optimizer, scheduler) -> tuple[int, dict[str, torch.Tensor]]:
    """Restore optimizer and scheduler in place; return (epoch, rng states)."""
    meta, _ = _read_header(path)
    if meta.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not an ftui resume-state file.")
    tensors = load_tensors(path)
    # Everything below reads an edited or foreign file as well as ftui's own: any mismatch is this one message.
    try:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        for idx, extra in _json_field(meta, "optimizer_plain_state", path).items():
            state.setdefault(int(idx), {}).update(extra)
        optimizer.load_state_dict({"state": state, "param_groups": _json_field(meta, "param_groups", path)})
        scheduler.load_state_dict(_json_field(meta, "scheduler", path))
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"{path} does not match this run's optimizer ({exc}).") from exc
    rng = {key[len("rng.") :]: value for key, value in tensors.items() if key.startswith("rng.")}
    return _epoch(meta, path), rng
