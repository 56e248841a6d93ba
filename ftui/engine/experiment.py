"""The Experiment: one fully resolved, plain, immutable training setup.

Everything the engine needs to reproduce a run is a field here, so the
resolved experiment stored with a run or a checkpoint is enough to rebuild
the model and continue. The catalog (experiments.toml) produces these; the
TUI edits them with ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# Per-channel statistics used to normalise inputs. The report (§3.4) uses
# CIFAR-10's own statistics for every model, including the ImageNet ones.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

DATASETS = ("cifar10", "cifar10-sample", "imagefolder")
OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULERS = ("cosine", "constant")
FROZEN_BN = ("update", "freeze")
# auto: bf16 autocast on CUDA; bf16: also on CPUs that compute bf16 natively; float32: never
PRECISIONS = ("auto", "bf16", "float32")
# weights values that are not a file path
WEIGHTS_NONE = "none"


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str = ""
    reference_acc: float | None = None  # the report's test accuracy, percent
    model: str = "resnet18"  # any torchvision classification model name
    weights: str = "DEFAULT"  # torchvision weights name, "none", or a file path
    dataset: str = "cifar10-sample"
    data_dir: str = ""  # "" means the dataset's default location
    input_size: int = 32  # images are resized to this square size on the device
    cifar_stem: bool = False  # ResNet: 3x3 stride-1 conv1, no maxpool
    trainable: tuple[str, ...] = ()  # layer unit names that train
    lr: float = 0.01  # base learning rate of every trainable unit
    unit_lr: dict[str, float] = field(default_factory=dict)  # per-unit overrides
    optimizer: str = "sgd"
    momentum: float = 0.9  # SGD momentum; Adam's beta1
    nesterov: bool = False
    weight_decay: float = 5e-4
    scheduler: str = "cosine"  # per-step cosine to zero over all epochs, or constant
    warmup_epochs: float = 0.0  # linear warm-up before the schedule
    epochs: int = 10
    batch_size: int = 128
    crop_padding: int = 4  # random crop with this zero padding, in stored pixels
    flip: bool = True  # random horizontal flip
    rotation: float = 0.0  # random rotation up to +/- this many degrees
    normalize: str = "cifar10"  # key of NORMALIZATIONS
    label_smoothing: float = 0.0
    frozen_bn: str = "update"  # BatchNorm running stats of frozen units
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    max_steps_per_epoch: int = 0  # 0: the whole training set every epoch
    max_test_images: int = 0  # 0: the whole test set
    compile: bool = False  # torch.compile the model: faster steps after a one-off compile at the start
    precision: str = "auto"  # a key of PRECISIONS

    def lr_for(self, unit: str) -> float:
        return self.unit_lr.get(unit, self.lr)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (lists, not tuples)."""
        d = dataclasses.asdict(self)
        d["trainable"] = list(self.trainable)
        d["unit_lr"] = dict(self.unit_lr)
        return d


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Experiment))
