"""Where a model's starting weights come from: torchvision's weights API or a local file.

Nothing here ever unpickles arbitrary objects: ``.safetensors`` files hold only
tensors, and ``.pth`` files are read with ``torch.load(weights_only=True)``,
which refuses pickled code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..errors import WeightsError
from .experiment import WEIGHTS_NONE
from .model_facts import weight_names

# torch is imported where weights are loaded: the catalog asks is_local_weights without paying for it.
if TYPE_CHECKING:
    import torch
    from torch import nn

LOCAL_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def is_local_weights(weights: str) -> bool:
    return weights.lower().endswith(LOCAL_SUFFIXES) or "/" in weights or os.sep in weights


def hub_checkpoint_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(entry) -> Path:
    """Where torchvision keeps (or would download) a pretrained weights entry's file."""
    return hub_checkpoint_dir() / os.path.basename(urlparse(entry.url).path)


def _pretrained(model_name: str, weights: str):
    names = weight_names(model_name)
    if weights not in names:
        offered = ", ".join(names) if names else "none"
        raise WeightsError(
            f"{model_name} has no pretrained weights named {weights!r}. torchvision offers: {offered}; "
            f'or use weights = "none" or a path to a .safetensors/.pth file.'
        )
    import torchvision

    return torchvision.models.get_model_weights(model_name)[weights]


def _download(model_name: str, weights: str) -> dict[str, torch.Tensor]:
    entry = _pretrained(model_name, weights)
    cached = cached_weights_path(entry)
    folder, filename = cached.parent, cached.name
    try:
        # torchvision's own loader: uses the hub cache, downloads on a miss, checks the hash.
        return entry.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except Exception as exc:  # network errors come in many types (URLError, socket, SSL, HTTP)
        if (folder / filename).is_file():
            raise WeightsError(
                f"The cached weights file {folder / filename} could not be read ({exc}). Delete it and try again."
            ) from exc
        raise WeightsError(
            f"Pretrained weights {model_name} {weights} are not downloaded and the download failed ({exc}).\n"
            f"Put the file {filename} into {folder}/ (get it from {entry.url} on a machine with internet), "
            f'or set weights to a local .safetensors/.pth file, or weights = "none" to train from scratch.'
        ) from exc


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    import torch

    # Training scripts often save {"state_dict": ...} or {"model": ...}.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return obj


LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def _not_weights(path: Path) -> WeightsError | None:
    """What a file that cannot be weights is, from its first bytes, before any loader reads it."""
    with open(path, "rb") as f:
        head = f.read(len(LFS_POINTER))
    if not head:
        return WeightsError(f"{path} is empty, not a weights file. Copy the real file there again.")
    if head == LFS_POINTER:
        return WeightsError(
            f"{path} is a Git LFS pointer, not the weights: the repository holds only a reference to them. "
            "Fetch the real file (git lfs pull, or download it), then start again."
        )
    # torch.save writes a zip archive, or (before torch 1.6) a pickle, which starts with its PROTO opcode.
    if path.suffix != ".safetensors" and not (zipfile.is_zipfile(path) or head.startswith(b"\x80")):
        return WeightsError(
            f"{path} is not a PyTorch weights file (neither a torch.save archive nor a pickle). "
            "Use a .safetensors file or a .pth saved with torch.save(model.state_dict(), ...)."
        )
    return None


def load_local_weights(path: Path) -> dict[str, torch.Tensor]:
    import torch
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    try:
        problem = _not_weights(path)
        if problem is not None:
            raise problem
        if path.suffix == ".safetensors":
            return load_file(path)
        return _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"Refused to load {path}: it contains pickled objects other than tensors, which could run code. "
            "Convert it to .safetensors, or save only the model's state_dict."
        ) from exc
    except Exception as exc:  # a file from elsewhere can make a loader raise anything (KeyError for text, ...)
        raise WeightsError(
            f"{path} is not a readable weights file ({type(exc).__name__}: {exc}). "
            "Use a .safetensors file or a .pth saved with torch.save(model.state_dict(), ...)."
        ) from exc


def load_weights_state(weights: str, model_name: str) -> dict[str, torch.Tensor] | None:
    """The state dict to start from, or None for random initialisation."""
    if weights == WEIGHTS_NONE:
        return None
    if is_local_weights(weights):
        return load_local_weights(Path(weights).expanduser())
    return _download(model_name, weights)


def state_fits(model: nn.Module, state: dict[str, torch.Tensor], allow_missing: frozenset[str] = frozenset()) -> bool:
    """Every tensor of the model is in state (but those allowed to be missing), with its shape, and no other."""
    own = model.state_dict()
    needed = own.keys() - allow_missing
    return needed <= state.keys() <= own.keys() and all(own[k].shape == state[k].shape for k in state)


def mismatch_report(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    return shape_mismatch(
        {k: tuple(v.shape) for k, v in model.state_dict().items()}, {k: tuple(v.shape) for k, v in state.items()}
    )


def shape_mismatch(expected: dict[str, tuple], given: dict[str, tuple], limit: int = 4) -> str:
    """What differs between the tensors a model has and those a file holds, in a line a person can read."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    shapes = [
        f"{k} is {given[k]} in the file, {expected[k]} in the model"
        for k in expected
        if k in given and tuple(expected[k]) != tuple(given[k])
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    hint = (
        " The file was saved for a different model"
        + (" or a different number of classes" if shapes and not missing else "")
        + ": use weights made for this model and dataset."
    )
    return "; ".join(parts) + "." + hint
