"""The Experiment: one fully resolved, plain, immutable training setup.

Everything the engine needs to reproduce a run is a field here, so the
resolved experiment stored with a run or a checkpoint is enough to rebuild
the model and continue. The catalog (experiments.toml) produces these; the
TUI edits them with ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from .schema import Pattern, Range, Setting, declare, setting, settings_of

# Per-channel statistics used to normalise inputs. The report (§3.4) uses
# CIFAR-10's own statistics for every model, including the ImageNet ones.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

DATASETS = ("cifar10", "cifar10-sample", "imagefolder")
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The classes of the datasets whose classes are known before loading them (imagefolder's are its folders).
KNOWN_CLASSES = {"cifar10": _CIFAR10, "cifar10-sample": _CIFAR10}
OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULERS = ("cosine", "constant")
FROZEN_BN = ("update", "freeze")
# auto: bf16 autocast on CUDA; bf16: also on CPUs that compute bf16 natively; float32: never
PRECISIONS = ("auto", "bf16", "float32")
# weights values that are not a file path
WEIGHTS_NONE = "none"
# weights = "run:NAME": the best checkpoint of the latest finished run of experiment NAME (train.py resolves it)
RUN_WEIGHTS = "run:"
# Layers inside a LoRA unit that can carry an update (engine/lora.py finds them in a model).
LORA_KINDS = ("attention", "linear", "conv")


class UnitMode(enum.StrEnum):
    """What a layer unit does in a run: a value, not a flag, so that more than two modes can exist."""

    TRAIN = "train"  # its parameters are handed to the optimizer
    LORA = "lora"  # its weights stay as they are; a low-rank update B·A beside them trains (engine/lora.py)
    FROZEN = "frozen"  # requires_grad=False, never in the optimizer


_NAME = Pattern(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    "not a valid name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
    "(it becomes the run's folder name)",
)
_DEVICE = Pattern(r"auto|cpu|mps|cuda(:\d+)?", "allowed: auto, cpu, mps, cuda or cuda:N")


@dataclass(frozen=True)
class Experiment:
    # Each setting once: type, default, what is allowed, one line of help (README's key table is made of these).
    name: str = field(
        metadata=declare("names the run folders", pattern=_NAME, values="letters, digits, `.`, `_`, `-` (≤ 64)")
    )
    description: str = setting("", "one line shown in lists")
    origin: str = setting(
        "",
        "the experiment this one was saved from in the editor: Results shows it under that one, with what differs",
        values="an experiment's name",
    )
    reference_acc: float | None = setting(
        None, "the report's test accuracy (percent), for comparison", range=Range(0, 100)
    )
    mirrors: str = setting(
        "",
        "the report's row this experiment reproduces in miniature: Results sets the two side by side",
        values="an experiment's name",
    )
    model: str = setting(
        "resnet18", "any torchvision classification model", values="`resnet18`, `vgg16`, `vit_b_16`, …"
    )
    weights: str = setting(
        "DEFAULT",
        "torchvision's pretrained weights, random init, or a local `.safetensors`/`.pth` "
        "(relative to the catalog's folder)",
        values=f"`DEFAULT`, `IMAGENET1K_V1`, …, `{WEIGHTS_NONE}`, a file path, or `{RUN_WEIGHTS}NAME` (the best "
        "checkpoint of experiment NAME's latest finished run)",
    )
    dataset: str = setting("cifar10-sample", "see Data below", choices=DATASETS)
    classes: tuple[str, ...] = setting(
        (),
        "train and test on these classes of the dataset only, relabelled in this order; the head gets that many "
        "outputs (empty: every class)",
        values="a list of class names or indices",
    )
    data_dir: str = setting(
        "",
        "where `cifar10` is downloaded, or the `imagefolder` root (empty: the dataset's default place)",
        values="path",
    )
    input_size: int = setting(
        32, "images are resized to this square size on the device (ViT_B_16: 224)", range=Range(8, 1024), label="input"
    )
    cifar_stem: bool = setting(False, "ResNet: 3×3 stride-1 `conv1`, no maxpool (the report's §3.1 change)")
    trainable: tuple[str, ...] = setting(
        (),
        "the layer units that train; the rest are frozen",
        values='`"all"` or a list of layer units',
        catalog_default="all",  # unit names depend on the model; an entry that does not say trains every unit
    )
    lora: tuple[str, ...] = setting(
        (),
        "the layer units adapted with LoRA: their weights stay frozen and a low-rank update B·A learns beside them",
        values='`"all"` (every unit not in `trainable`) or a list of layer units',
    )
    lora_rank: int = setting(8, "rank r of each LoRA update", range=Range(1, 1024), label="lora rank")
    lora_alpha: float | None = setting(
        None, "LoRA scaling α: the update is α/r · B·A (none: 2 × rank)", range=Range(0, lo_open=True), label="lora α"
    )
    lora_dropout: float = setting(
        0.0, "dropout on the input of each LoRA update", range=Range(0, 1, hi_open=True), label="lora drop"
    )
    lora_layers: tuple[str, ...] = setting(
        LORA_KINDS,
        "which layers of a LoRA unit get an update: `attention` (ViT's self-attention, its in- and output "
        "projections together), `linear` (ViT's MLP, VGG's classifier, a head), `conv` (ResNet, VGG)",
        values='`"all"` or a list of `attention`, `linear`, `conv`',
    )
    lr: float = setting(
        0.01, "base learning rate of every trainable unit", range=Range(0, 10, lo_open=True), label="base lr"
    )
    unit_lr: dict[str, float] = field(
        default_factory=dict,
        metadata=declare("per-unit learning rates; the schedule keeps their ratios", values="`{ unit = lr, … }`"),
    )
    optimizer: str = setting("sgd", "the optimizer", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "SGD momentum; Adam's β1", range=Range(0, 1, hi_open=True))
    nesterov: bool = setting(False, "Nesterov momentum, SGD only")
    weight_decay: float = setting(5e-4, "decoupled for AdamW, L2 for SGD and Adam", range=Range(0, 1))
    scheduler: str = setting(
        "cosine", "cosine decays every unit's LR to 0 over all epochs, per step", choices=SCHEDULERS
    )
    warmup_epochs: float = setting(0.0, "linear warm-up before the schedule", range=Range(0))
    epochs: int = setting(10, "passes over the training set", range=Range(1, 10000))
    batch_size: int = setting(
        128, "images per step, over all processes (each takes batch_size / nproc)", range=Range(1, 65536), label="batch"
    )
    crop_padding: int = setting(4, "random crop with this zero padding, in stored pixels", range=Range(0, 64))
    flip: bool = setting(True, "random horizontal flip")
    rotation: float = setting(0.0, "random rotation up to ± this many degrees", range=Range(0, 180))
    normalize: str = setting(
        "cifar10", "per-channel mean/std (the report uses CIFAR-10's)", choices=tuple(NORMALIZATIONS)
    )
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy loss", range=Range(0, 1, hi_open=True))
    frozen_bn: str = setting(
        "update",
        "whether BatchNorm running statistics of frozen units keep updating (the report's runs let them; "
        "with LoRA units they never do: they belong to the base weights)",
        choices=FROZEN_BN,
    )
    seed: int = setting(
        0, "seeds initialisation, data order and augmentation", range=Range(0, 2**63 - 1), values="integer ≥ 0"
    )
    device: str = setting(
        "auto", "`auto` picks CUDA when present", pattern=_DEVICE, values="`auto`, `cpu`, `cuda`, `cuda:N`, `mps`"
    )
    nproc: int = setting(
        1,
        "processes that train the run together (DDP): `ftui run` starts torchrun with this many, one per GPU on "
        "CUDA, gloo processes on a CPU; `batch_size` stays the global batch (see Several processes below)",
        range=Range(1, 1024),
        label="processes",
    )
    sync_bn: bool = setting(
        False, "SyncBatchNorm: BatchNorm statistics over every process's batch (NCCL on CUDA only; refused on a CPU)"
    )
    max_steps_per_epoch: int = setting(
        0, "0 = the whole training set each epoch; smaller for smoke runs", range=Range(0)
    )
    max_test_images: int = setting(0, "0 = the whole test set", range=Range(0))
    compile: bool = setting(
        False,
        "`torch.compile` the model: faster steps after a one-off compile when the run starts "
        "(BENCHMARKS.md has the measured effect)",
    )
    precision: str = setting(
        "auto",
        "`auto`: bf16 autocast on CUDA, float32 elsewhere; `bf16`: also on CPUs that compute bf16 natively; "
        "`float32`: never bf16 (see below)",
        choices=PRECISIONS,
    )

    def mode_of(self, unit: str) -> UnitMode:
        if unit in self.trainable:
            return UnitMode.TRAIN
        return UnitMode.LORA if unit in self.lora else UnitMode.FROZEN

    def with_modes(self, modes: dict[str, UnitMode], order: Iterable[str]) -> Experiment:
        """The experiment with these units' modes changed (others keep theirs); order is the model's unit order."""
        order = tuple(order)
        mode = {u: modes.get(u, self.mode_of(u)) for u in order}
        # Kept in the model's order, so the experiment compares equal to a catalog entry.
        return dataclasses.replace(
            self,
            trainable=tuple(u for u in order if mode[u] is UnitMode.TRAIN),
            lora=tuple(u for u in order if mode[u] is UnitMode.LORA),
        )

    @property
    def uses_lora(self) -> bool:
        return bool(self.lora)

    @property
    def alpha(self) -> float:
        """The LoRA scaling numerator in effect (lora_alpha, or twice the rank)."""
        return self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora_rank

    def lr_for(self, unit: str) -> float:
        return self.unit_lr.get(unit, self.lr)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (lists, not tuples)."""
        d = dataclasses.asdict(self)
        d["trainable"] = list(self.trainable)
        d["lora"] = list(self.lora)
        d["lora_layers"] = list(self.lora_layers)
        d["classes"] = list(self.classes)
        d["unit_lr"] = dict(self.unit_lr)
        return d


SETTINGS: dict[str, Setting] = settings_of(Experiment)
FIELD_NAMES = tuple(SETTINGS)


# Keys that name or describe an experiment rather than say how it trains.
_LABELS = ("name", "description", "origin", "reference_acc", "mirrors")


def differing_settings(experiments: list[dict]) -> dict[str, list[object]]:
    """The settings whose values differ between these experiments (as stored in run folders), each
    with every experiment's value in order: what changed between two ablation rows."""
    keys = [k for k in FIELD_NAMES if k not in _LABELS]
    return {
        key: [e.get(key) for e in experiments]
        for key in keys
        if any(e.get(key) != experiments[0].get(key) for e in experiments[1:])
    }


def describe_changes(base: dict, variant: dict) -> str:
    """What a variant changes of its base, in a line: "lr 0.01 → 0.001, epochs 20 → 5"."""
    from .schema import toml_value

    changes = differing_settings([base, variant])
    return ", ".join(f"{k} {toml_value(a)} → {toml_value(b)}" for k, (a, b) in changes.items())
