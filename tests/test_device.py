"""Device settings: what a run on each device turns on."""

import torch

from ftui.engine.device import tune_for


def test_cuda_runs_let_cudnn_pick_its_fastest_convolutions(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    tune_for(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False  # a CPU run changes nothing process-wide
    tune_for(torch.device("cuda"))  # only flags: no GPU is needed to set them
    assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cuda.matmul.allow_tf32 is True
