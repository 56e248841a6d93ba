"""bf16 autocast and the channels_last layout, seen inside the convolutions of a real CUDA run."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from ftui.engine.catalog import experiment_from_dict
from ftui.engine.train import train
from tests.cuda.conftest import cuda_entry

pytestmark = pytest.mark.cuda


@dataclass(frozen=True)
class ConvCall:
    training: bool
    in_channels: int
    input_channels_last: bool
    weight_channels_last: bool
    output_dtype: torch.dtype


@pytest.fixture(scope="module")
def conv_calls(tmp_path_factory) -> list[ConvCall]:
    """Every Conv2d call of a tiny one-epoch CUDA run, its steps and its evaluation, seen by a global forward hook."""
    calls: list[ConvCall] = []

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv2d):
            calls.append(
                ConvCall(
                    module.training,
                    module.in_channels,
                    args[0].is_contiguous(memory_format=torch.channels_last),
                    module.weight.is_contiguous(memory_format=torch.channels_last),
                    output.dtype,
                )
            )

    exp = experiment_from_dict(cuda_entry(epochs=1), where="test")
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        result = train(exp, runs_root=tmp_path_factory.mktemp("checkpoints"))
    finally:
        handle.remove()
    assert result.status == "finished", result.reason
    return calls


def test_every_convolution_computes_in_bf16_in_training_and_in_evaluation(conv_calls):
    assert {c.training for c in conv_calls} == {True, False}  # the steps and the evaluation were both seen
    assert {c.output_dtype for c in conv_calls} == {torch.bfloat16}


def test_the_batches_and_the_weights_are_channels_last(conv_calls):
    # The stem's convolution (the only one with 3 input channels) takes the augmented batch itself.
    stem = [c for c in conv_calls if c.in_channels == 3]
    assert {c.training for c in stem} == {True, False}
    assert all(c.input_channels_last for c in stem), "a batch reached the network in the default layout"
    assert all(c.weight_channels_last for c in conv_calls)
