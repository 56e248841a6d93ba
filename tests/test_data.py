import re
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from ftui.engine.data import Dataset, load_dataset
from ftui.errors import DataError

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def sample():
    return load_dataset("cifar10-sample")


def test_sample_shapes_dtypes_and_classes(sample):
    assert sample.name == "cifar10-sample"
    assert sample.classes == CIFAR_CLASSES and sample.num_classes == 10
    assert sample.train_images.shape == (5170, 3, 32, 32) and sample.test_images.shape == (1017, 3, 32, 32)
    for images, labels in ((sample.train_images, sample.train_labels), (sample.test_images, sample.test_labels)):
        assert images.dtype == torch.uint8 and images.is_contiguous()
        assert labels.dtype == torch.int64 and labels.shape == images.shape[:1]
        assert labels.min() == 0 and labels.max() == 9
    assert sample.train_images.float().std() > 30  # real pictures, not blank


def test_to_moves_every_tensor(sample):
    assert sample.to("cpu").train_images.device.type == "cpu"
    moved = sample.to("meta")  # a real move without a GPU
    assert isinstance(moved, Dataset) and moved.classes == sample.classes
    for t in (moved.train_images, moved.train_labels, moved.test_images, moved.test_labels):
        assert t.device.type == "meta"
    assert sample.train_images.device.type == "cpu"


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError, match="cifar10, cifar10-sample, imagefolder"):
        load_dataset("mnist")


# --- imagefolder --------------------------------------------------------------


def save(path, color, size=(20, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


@pytest.fixture
def folder(tmp_path):
    """train: cat x3, dog x3 (constant colours, assorted sizes and formats); test: one of each."""
    root = tmp_path / "pets"
    save(root / "train/cat/a.png", (255, 0, 0), (20, 30))
    save(root / "train/cat/b.PNG", (250, 0, 0), (64, 48))
    save(root / "train/cat/c.jpg", (200, 0, 0), (7, 9))
    save(root / "train/dog/a.bmp", (0, 0, 255), (33, 33))
    save(root / "train/dog/b.webp", (0, 0, 250), (16, 16))
    save(root / "train/dog/c.png", 128, (40, 10), mode="L")
    (root / "train/dog/notes.txt").write_text("not an image")
    save(root / "test/cat/x.jpeg", (255, 0, 0))
    save(root / "test/dog/y.png", (0, 0, 255))
    return root


def test_imagefolder_loads_and_resizes(folder):
    ds = load_dataset("imagefolder", str(folder), image_size=16)
    assert ds.classes == ("cat", "dog") and ds.num_classes == 2
    assert ds.train_images.shape == (6, 3, 16, 16) and ds.train_images.dtype == torch.uint8
    assert ds.train_images.is_contiguous()
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and ds.train_labels.dtype == torch.int64
    assert ds.test_images.shape == (2, 3, 16, 16) and ds.test_labels.tolist() == [0, 1]
    # Constant colours survive the resize; channels are RGB; greyscale becomes three equal channels.
    assert (ds.train_images[0] == torch.tensor([255, 0, 0]).view(3, 1, 1)).all()
    assert (ds.train_images[3] == torch.tensor([0, 0, 255]).view(3, 1, 1)).all()
    assert (ds.train_images[5] == 128).all()
    assert abs(int(ds.train_images[2, 0].float().mean()) - 200) <= 3  # jpeg is lossy


def test_imagefolder_needs_a_data_dir():
    with pytest.raises(DataError, match="needs data_dir"):
        load_dataset("imagefolder", "")


def test_imagefolder_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset("imagefolder", str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(e.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_imagefolder_missing_split(folder, split):
    for f in sorted((folder / split).rglob("*"), reverse=True):
        f.rmdir() if f.is_dir() else f.unlink()
    (folder / split).rmdir()
    with pytest.raises(DataError, match="does not exist") as e:
        load_dataset("imagefolder", str(folder))
    assert str(folder / split) in str(e.value)


def test_imagefolder_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train/loose.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class folders") as e:
        load_dataset("imagefolder", str(tmp_path))
    assert str(tmp_path / "train") in str(e.value)


def test_imagefolder_empty_class(folder):
    (folder / "train/bird").mkdir()
    with pytest.raises(DataError, match="has no images") as e:
        load_dataset("imagefolder", str(folder))
    assert str(folder / "train/bird") in str(e.value)


def test_imagefolder_corrupt_image(folder):
    (folder / "train/dog/broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="Cannot read image") as e:
        load_dataset("imagefolder", str(folder))
    assert str(folder / "train/dog/broken.png") in str(e.value)


def test_imagefolder_copied_from_macos_skips_its_hidden_files(folder):
    # A macOS copy carries AppleDouble resource forks (._NAME, not images) and .DS_Store files.
    for split in ("train/cat", "train/dog", "test/cat"):
        (folder / split / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        (folder / split / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "train/.DS_Store").write_bytes(b"Bud1")
    ds = load_dataset("imagefolder", str(folder), image_size=8)
    assert ds.classes == ("cat", "dog") and len(ds.train_labels) == 6 and len(ds.test_labels) == 2


def test_imagefolder_with_one_class_is_refused(folder):
    for split in ("train", "test"):
        for f in sorted((folder / split / "dog").iterdir()):
            f.unlink()
        (folder / split / "dog").rmdir()
    with pytest.raises(DataError, match="one class folder \\(cat\\); a classifier needs at least two") as e:
        load_dataset("imagefolder", str(folder))
    assert str(folder / "train") in str(e.value)


def test_imagefolder_test_classes_differ(folder):
    (folder / "test/dog").rename(folder / "test/wolf")
    with pytest.raises(DataError) as e:
        load_dataset("imagefolder", str(folder))
    assert "missing from test/: dog" in str(e.value) and "not in train/: wolf" in str(e.value)


# --- cifar10 ------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    """No network: torchvision's downloader (and urlopen, in case) raise URLError."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    # cifar.py calls utils.download_and_extract_archive, which looks up utils.download_url.
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_cifar10_offline_explains_what_to_do(tmp_path, offline):
    root = tmp_path / "cifar"
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", str(root))
    message = str(e.value)
    assert f"not in {root}" in message
    for part in ("cifar-10-python.tar.gz", torchvision.datasets.CIFAR10.url, str(root), "cifar10-sample"):
        assert part in message


def test_cifar10_default_folder_comes_from_environment(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("FTUI_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError, match=re.escape(f"not in {tmp_path / 'env'}")):
        load_dataset("cifar10")
    monkeypatch.delenv("FTUI_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match=re.escape(f"not in {tmp_path / '.cache/ftui/data'}")):
        load_dataset("cifar10")


def test_cifar10_corrupt_archive(tmp_path, offline):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"truncated")
    with pytest.raises(DataError, match="corrupt") as e:
        load_dataset("cifar10", str(tmp_path))
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(e.value)


def test_cifar10_corrupt_batch_files(tmp_path, offline):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py/data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt") as e:
        load_dataset("cifar10", str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py") in str(e.value)


def test_cifar10_converts_torchvision_arrays(tmp_path, monkeypatch):
    class FakeCIFAR10:
        def __init__(self, root, train, download):
            n = 5 if train else 3
            self.data = np.arange(n * 32 * 32 * 3, dtype=np.uint32).reshape(n, 32, 32, 3).astype(np.uint8)
            self.targets = list(range(n))
            self.classes = list(CIFAR_CLASSES)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    ds = load_dataset("cifar10", str(tmp_path))
    reference = FakeCIFAR10(tmp_path, True, False).data
    assert ds.classes == CIFAR_CLASSES
    assert ds.train_images.shape == (5, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    assert ds.train_images.is_contiguous() and ds.train_labels.dtype == torch.int64
    assert torch.equal(ds.train_images, torch.from_numpy(reference).permute(0, 3, 1, 2))


def test_missing_embedded_sample(monkeypatch):
    monkeypatch.setattr("ftui.engine.data.SAMPLE_FILE", "gone.npz")
    with pytest.raises(DataError, match="Reinstall ftui"):
        load_dataset("cifar10-sample")
