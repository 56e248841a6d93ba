"""Datasets held in memory as uint8 image tensors.

Every dataset ftui trains on is small enough to keep whole: the training loop
moves it to the device once and augments batches there (see augment.py), so
loading is the only place that touches files, PIL or the network.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets

from ..errors import DataError

SAMPLE_FILE = "cifar10-sample.npz"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


# eq=False: field-wise == on tensors is ambiguous; datasets compare by identity.
@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor  # uint8 (N, 3, H, W), contiguous
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Dataset:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return dataclasses.replace(
            self,
            train_images=move(self.train_images),
            train_labels=move(self.train_labels),
            test_images=move(self.test_images),
            test_labels=move(self.test_labels),
        )


def load_dataset(name: str, data_dir: str = "", image_size: int = 32, classes: tuple[str, ...] = ()) -> Dataset:
    """Load a dataset onto the CPU, only the given classes if any (names, or indices as digits).

    ``image_size`` is the square size imagefolder images are stored at; the
    CIFAR datasets are always 32x32.
    """
    if name == "cifar10-sample":
        data = _load_sample()
    elif name == "cifar10":
        data = _load_cifar10(data_dir)
    elif name == "imagefolder":
        data = _load_imagefolder(data_dir, image_size)
    else:
        raise DataError(f"Unknown dataset {name!r}: use one of cifar10, cifar10-sample, imagefolder.")
    return subset(data, classes) if classes else data


def class_indices(wanted: tuple[str, ...], classes: tuple[str, ...], dataset: str) -> list[int]:
    """Each wanted class's index in the dataset: by name, or by index written as digits."""
    indices = []
    for item in wanted:
        if item in classes:
            indices.append(classes.index(item))
        elif item.isdigit() and int(item) < len(classes):
            indices.append(int(item))
        else:
            close = difflib.get_close_matches(item, classes, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"classes: {item!r} is not a class of {dataset} (its classes: {', '.join(classes)}; "
                f"or an index 0 to {len(classes) - 1}).{hint}"
            )
    if len(set(indices)) != len(indices):
        raise DataError(f"classes: {', '.join(wanted)} names a class twice.")
    return indices


def subset(data: Dataset, wanted: tuple[str, ...]) -> Dataset:
    """Only the wanted classes, relabelled 0..k-1 in the order given: the head gets k outputs."""
    keep = class_indices(wanted, data.classes, data.name)
    mapping = torch.full((len(data.classes),), -1, dtype=torch.int64)
    mapping[torch.tensor(keep)] = torch.arange(len(keep))

    def part(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mine = mapping[labels] >= 0
        return images[mine], mapping[labels[mine]]

    train_images, train_labels = part(data.train_images, data.train_labels)
    test_images, test_labels = part(data.test_images, data.test_labels)
    return dataclasses.replace(
        data,
        classes=tuple(data.classes[i] for i in keep),
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
    )


def _dataset(name: str, classes, train_images, train_labels, test_images, test_labels) -> Dataset:
    """Build a Dataset from array-likes: images uint8 (N, 3, H, W), labels integers."""

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8))

    def labels(a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.int64)

    return Dataset(
        name=name,
        classes=tuple(str(c) for c in classes),
        train_images=images(train_images),
        train_labels=labels(train_labels),
        test_images=images(test_images),
        test_labels=labels(test_labels),
    )


def _load_sample() -> Dataset:
    resource = importlib.resources.files("ftui") / "data" / SAMPLE_FILE
    try:
        with importlib.resources.as_file(resource) as path, np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("classes", "train_images", "train_labels", "test_images", "test_labels")}
    except Exception as e:  # numpy, zipfile and zlib each raise their own types for a damaged file
        raise DataError(
            f"The embedded CIFAR-10 sample ({resource}) is missing or corrupt ({e}). Reinstall ftui."
        ) from e
    return _dataset("cifar10-sample", **arrays)


# --- CIFAR-10 -----------------------------------------------------------------


def default_data_dir() -> Path:
    return Path(os.environ.get("FTUI_DATA_DIR") or "~/.cache/ftui/data").expanduser()


def cifar10_root(data_dir: str) -> Path:
    """The folder CIFAR-10 is read from: the experiment's data_dir, else the default."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def _load_cifar10(data_dir: str) -> Dataset:
    root = cifar10_root(data_dir)
    try:
        # download=True also verifies the md5 of every batch file on each load.
        train = datasets.CIFAR10(root, train=True, download=True)
        test = datasets.CIFAR10(root, train=False, download=True)
    except Exception as e:  # network, checksum and unpickling failures all look different
        raise _cifar10_error(root, e) from e
    return _dataset(
        "cifar10",
        train.classes,
        train.data.transpose(0, 3, 1, 2),
        train.targets,
        test.data.transpose(0, 3, 1, 2),
        test.targets,
    )


def _cifar10_error(root: Path, cause: Exception) -> DataError:
    cifar = datasets.CIFAR10
    archive = root / cifar.filename
    fetch = (
        f"Download {cifar.filename} from {cifar.url} and put it in {root}, "
        f'or set dataset = "cifar10-sample" to work offline.'
    )
    if archive.exists():
        what = f"The CIFAR-10 archive {archive} is corrupt or incomplete and could not be downloaded again"
    elif (root / cifar.base_folder).exists():
        what = f"The CIFAR-10 files in {root / cifar.base_folder} are corrupt and could not be downloaded again"
    else:
        what = f"CIFAR-10 is not in {root} and could not be downloaded"
    return DataError(f"{what} ({type(cause).__name__}: {cause}). {fetch}")


# --- image folders ------------------------------------------------------------


def _load_imagefolder(data_dir: str, image_size: int) -> Dataset:
    if not data_dir:
        raise DataError('dataset = "imagefolder" needs data_dir: a folder with train/CLASS/* and test/CLASS/* images.')
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"Image folder {root} does not exist. Set data_dir to a folder with train/ and test/ in it.")
    train_files = _class_files(root / "train")
    test_files = _class_files(root / "test")
    classes = sorted(train_files)
    if len(classes) < 2:
        # One class trains to a meaningless 100%: there is nothing to tell apart.
        raise DataError(
            f"{root / 'train'} has one class folder ({classes[0]}); a classifier needs at least two. "
            "Add a folder of images for each other class."
        )
    if set(test_files) != set(classes):
        raise DataError(_class_mismatch(root, set(classes), set(test_files)))
    train_images, train_labels = _read_split(train_files, classes, image_size)
    test_images, test_labels = _read_split(test_files, classes, image_size)
    return _dataset("imagefolder", classes, train_images, train_labels, test_images, test_labels)


def _class_files(split: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for one split folder."""
    if not split.is_dir():
        raise DataError(f"{split} does not exist. An image folder needs train/CLASS/* and test/CLASS/* images.")
    folders = sorted(p for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{split} has no class folders. Put each class's images in {split}/CLASS_NAME/.")
    files = {}
    for folder in folders:
        # Hidden files are skipped like hidden folders: macOS copies carry ._NAME.jpg resource forks.
        images = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            raise DataError(
                f"Class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}). Add images or remove the folder."
            )
        files[folder.name] = images
    return files


def _class_mismatch(root: Path, train: set[str], test: set[str]) -> str:
    parts = []
    if train - test:
        parts.append(f"missing from test/: {', '.join(sorted(train - test))}")
    if test - train:
        parts.append(f"not in train/: {', '.join(sorted(test - train))}")
    return (
        f"The class folders of {root}/train and {root}/test differ ({'; '.join(parts)}). Use the same classes in both."
    )


def _read_split(files: dict[str, list[Path]], classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    count = sum(len(v) for v in files.values())
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    i = 0
    for label, name in enumerate(classes):
        for path in files[name]:
            images[i] = _read_image(path, size)
            labels[i] = label
            i += 1
    return images.transpose(0, 3, 1, 2), labels


def _read_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    except Exception as e:  # PIL raises many types for damaged files; any of them means a bad file
        raise DataError(f"Cannot read image {path} ({e}). Replace or delete the file.") from e
