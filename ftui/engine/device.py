"""Which device a run uses, and the precision/layout settings that go with it."""

from __future__ import annotations

import contextlib

import torch

from ..errors import FtuiError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit device that is missing is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FtuiError(f"device = {name!r} but no CUDA GPU is visible to PyTorch here. Use device = \"auto\" or \"cpu\".")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise FtuiError(f"device = {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise FtuiError("device = \"mps\" but Apple's Metal backend is not available here. Use device = \"cpu\".")
    return torch.device(name)


def device_key(device: torch.device) -> str:
    """A name per physical device, for the one-run-per-device lock ("cuda" means the current GPU)."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def autocast(device: torch.device):
    """bf16 autocast on CUDA (tensor cores, no loss scaling needed); full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def uses_channels_last(device: torch.device) -> bool:
    # NHWC is what cuDNN's and oneDNN's fastest convolution kernels want: a ResNet18
    # training step on 2 CPU cores ran 58-60 img/s channels_last against 46-48 NCHW.
    return device.type in ("cuda", "cpu")


def tune_for(device: torch.device) -> None:
    """Process-wide settings that make training on this device faster.

    On CUDA, cuDNN times its convolution algorithms once per input shape and keeps the
    fastest: a run's shapes never change (the last partial batch of an epoch is dropped).
    Its choice, like cuDNN's default algorithms, is not bit-reproducible from run to run.
    TF32 speeds up the float32 matmuls left outside bf16 autocast.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
