"""Device settings: what a run on each device turns on."""

import pytest
import torch

from ftui.engine.device import (
    autocast,
    describe_device,
    memory_in_use,
    tune_for,
    uses_bf16,
)


def test_cuda_runs_let_cudnn_pick_its_fastest_convolutions(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    tune_for(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False  # a CPU run changes nothing process-wide
    tune_for(torch.device("cuda"))  # only flags: no GPU is needed to set them
    assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cuda.matmul.allow_tf32 is True


def _cpu_probes(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("avx512_bf16, amx, native", [(True, False, True), (False, True, True), (False, False, False)])
def test_a_cpu_uses_bf16_when_asked_and_only_where_it_computes_it_natively(monkeypatch, avx512_bf16, amx, native):
    _cpu_probes(monkeypatch, avx512_bf16, amx)
    cpu = torch.device("cpu")
    assert uses_bf16(cpu, "bf16") is native
    assert uses_bf16(cpu, "auto") is False  # bf16 cost the quickstart accuracy on a CPU: opt-in
    assert uses_bf16(cpu, "float32") is False
    assert describe_device(cpu, "bf16") == ("cpu, bf16" if native else "cpu, float32")
    assert describe_device(cpu, "auto") == "cpu, float32"


def test_cuda_and_other_devices(monkeypatch):
    _cpu_probes(monkeypatch, True, True)
    cuda = torch.device("cuda")
    assert uses_bf16(cuda, "auto") and uses_bf16(cuda, "bf16") and not uses_bf16(cuda, "float32")
    assert not uses_bf16(torch.device("mps"), "bf16")  # MPS stays float32


def test_a_torch_without_the_cpu_probes_trains_in_float32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert not uses_bf16(torch.device("cpu"), "bf16")


def test_the_chosen_precision_is_what_the_convolutions_compute_in(monkeypatch):
    _cpu_probes(monkeypatch, True, False)
    conv, x = torch.nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8)
    with autocast(torch.device("cpu"), "bf16"):
        assert conv(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "auto"):
        assert conv(x).dtype == torch.float32
    with autocast(torch.device("cpu"), "float32"):
        assert conv(x).dtype == torch.float32


def _fake_cuda(monkeypatch, available: bool, allocated: dict | None = None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if available else 0)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: (allocated or {})[str(device)])


@pytest.mark.parametrize(
    "cuda, device, used",
    [
        (True, "cuda (NVIDIA H200), bf16", 2**30),  # the text a run records for its device
        (True, "cuda:1 (NVIDIA H200), bf16", 3 * 2**30),
        (True, "cuda:1", 3 * 2**30),
        (True, "cpu, float32", None),
        (True, "", None),
        (False, "cuda (NVIDIA H200), bf16", None),  # recorded by another machine: nothing to measure here
    ],
)
def test_gpu_memory_in_use_is_read_for_the_run_s_own_device(monkeypatch, cuda, device, used):
    _fake_cuda(monkeypatch, cuda, {"cuda": 2**30, "cuda:1": 3 * 2**30})
    assert memory_in_use(device) == used
