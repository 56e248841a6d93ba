"""Which device a run uses, and the precision/layout settings that go with it."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from ..errors import FtuiError

# torch is imported in the functions that use it: importing this module stays cheap.
if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit device that is missing is an error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FtuiError(
                f'device = {name!r} but no CUDA GPU is visible to PyTorch here. Use device = "auto" or "cpu".'
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise FtuiError(f"device = {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise FtuiError('device = "mps" but Apple\'s Metal backend is not available here. Use device = "cpu".')
    return torch.device(name)


def memory_in_use(device: str) -> int | None:
    """Bytes of GPU memory this process holds on a CUDA device, or None where there is nothing to measure.

    ``device`` is a device name ("cuda:1") or the text a run records for its device
    ("cuda (NVIDIA H200), bf16"): its first word names the device.
    """
    import torch

    name = device.split(" ", 1)[0].rstrip(",") if device else ""
    if not name.startswith("cuda") or not torch.cuda.is_available():
        return None
    try:
        return torch.cuda.memory_allocated(torch.device(name))
    except (RuntimeError, ValueError, AssertionError):
        return None


def device_key(device: torch.device) -> str:
    """A name per physical device, for the one-run-per-device lock ("cuda" means the current GPU)."""
    import torch

    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether steps and evaluation run under bf16 autocast.

    bf16 needs no loss scaling, and autocast keeps the weights, the optimizer and the loss in
    float32. "auto" uses it on CUDA, whose tensor cores are several times faster in bf16.
    On a CPU it is opt-in ("bf16") and only where oneDNN has native bf16 kernels (AVX512-BF16
    or AMX); elsewhere bf16 is emulated, slower than float32, and the run uses float32. Where it
    is native, steps are faster but a short run trained measurably worse (BENCHMARKS.md, section 1,
    `precision = "bf16"`): a CPU run keeps float32 unless asked.
    """
    if precision == "float32":
        return False
    if device.type == "cuda":
        return True
    return precision == "bf16" and device.type == "cpu" and _cpu_has_native_bf16()


def _cpu_has_native_bf16() -> bool:
    import torch

    # torch.cpu's feature probes are private; a torch without them gets float32, never an error.
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes)


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast where uses_bf16 says so; full precision elsewhere."""
    import torch

    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def uses_channels_last(device: torch.device) -> bool:
    # NHWC is what cuDNN's and oneDNN's fastest convolution kernels want (its gain on a CPU:
    # BENCHMARKS.md, section 1).
    return device.type in ("cuda", "cpu")


def tune_for(device: torch.device) -> None:
    """Process-wide settings that make training on this device faster.

    On CUDA, cuDNN times its convolution algorithms once per input shape and keeps the
    fastest: a run's shapes never change (the last partial batch of an epoch is dropped).
    Its choice, like cuDNN's default algorithms, is not bit-reproducible from run to run.
    TF32 speeds up the float32 matmuls left outside bf16 autocast.
    """
    import torch

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True


def describe_device(device: torch.device, precision: str | None = None) -> str:
    """'cuda (NVIDIA H100 80GB HBM3)', with ', bf16' or ', float32' when a precision is given."""
    import torch

    name = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    if precision is None:
        return name
    return f"{name}, {'bf16' if uses_bf16(device, precision) else 'float32'}"


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
