import pytest
import torch
import torch.nn.functional as F

from ftui.engine.augment import Augment
from ftui.engine.experiment import NORMALIZATIONS

MEAN, STD = NORMALIZATIONS["cifar10"]


def images(b=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def pixels(y):
    """Undo the normalisation: back to 0..255 floats."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (y * std + mean) * 255


def shifted(x, dx, dy):
    """x with its content moved by (dx, dy) pixels and zero fill, like RandomCrop(padding)."""
    p = max(abs(dx), abs(dy))
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


@pytest.mark.parametrize("size", [32, 224])
def test_shapes_and_dtype(size):
    aug = Augment(size, MEAN, STD, crop_padding=4, flip=True, rotation=10)
    x = images(4)
    for y in (aug.train(x, gen()), aug.test(x)):
        assert y.shape == (4, 3, size, size)
        assert y.dtype == torch.float32


def test_channels_last():
    for aug in (Augment(32, MEAN, STD, 4, True, channels_last=True), Augment(64, MEAN, STD, channels_last=True)):
        for y in (aug.train(images(4), gen()), aug.test(images(4))):
            assert y.is_contiguous(memory_format=torch.channels_last)


def test_values_stay_in_range_and_padding_is_black():
    aug = Augment(32, MEAN, STD, crop_padding=4, flip=True, rotation=15)
    x = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    p = pixels(aug.train(x, gen()))
    assert p.min() > -1e-3 and p.max() < 255 + 1e-3
    assert (p.abs() < 1e-3).any(), "shifted and rotated white images must show black zero fill"
    random_p = pixels(aug.train(images(64), gen()))
    assert random_p.min() > -1e-3 and random_p.max() < 255 + 1e-3


@pytest.mark.parametrize("size", [32, 100])
def test_test_of_constant_image(size):
    aug = Augment(size, MEAN, STD)
    x = torch.full((2, 3, 32, 32), 51, dtype=torch.uint8)
    expected = torch.tensor([(0.2 - m) / s for m, s in zip(MEAN, STD, strict=True)]).view(1, 3, 1, 1)
    assert torch.allclose(aug.test(x), expected.expand(2, 3, size, size), atol=1e-5)


def test_flip_only_gives_the_image_or_its_mirror():
    x = images(256)
    y = Augment(32, MEAN, STD, flip=True).train(x, gen())
    p, xf = pixels(y), x.float()
    same = (p - xf).abs().amax(dim=(1, 2, 3)) < 1e-3
    mirrored = (p - xf.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-3
    assert (same ^ mirrored).all()
    assert 64 < mirrored.sum() < 192


def test_flip_with_resize_matches_test_resize():
    x = images(64)
    aug = Augment(48, MEAN, STD, flip=True)
    y, ref = aug.train(x, gen()), aug.test(x)
    same = (y - ref).abs().amax(dim=(1, 2, 3)) < 1e-4
    mirrored = (y - ref.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert (same | mirrored).all() and mirrored.any() and same.any()


def test_crop_only_gives_integer_shifts_with_zero_fill():
    p = 2
    x = images(512) // 2 + 1  # no zeros in the images, so the fill is recognisable
    y = pixels(Augment(32, MEAN, STD, crop_padding=p).train(x, gen()))
    shifts = [(dx, dy) for dx in range(-p, p + 1) for dy in range(-p, p + 1)]
    seen = set()
    for i in range(len(x)):
        matches = [s for s in shifts if (y[i] - shifted(x[i].float(), *s)).abs().max() < 1e-3]
        assert len(matches) == 1, f"image {i} is not an exact integer shift"
        seen.add(matches[0])
    assert seen == set(shifts)


def test_same_seed_same_output_different_seed_different():
    aug = Augment(32, MEAN, STD, crop_padding=4, flip=True, rotation=10)
    x = images(32)
    assert torch.equal(aug.train(x, gen(1)), aug.train(x, gen(1)))
    assert not torch.equal(aug.train(x, gen(1)), aug.train(x, gen(2)))


def test_rotation_keeps_the_centre():
    # Odd size: the rotation centre is a pixel centre, so that pixel is exact.
    x = images(32, size=33)
    y = pixels(Augment(33, MEAN, STD, rotation=30).train(x, gen()))
    assert torch.allclose(y[..., 16, 16], x[..., 16, 16].float(), atol=1e-3)
    assert not torch.allclose(y, x.float(), atol=1)


def test_rotation_angles_are_within_the_limit():
    aug = Augment(32, MEAN, STD, rotation=10)
    theta = aug._thetas(4096, 32, 32, gen(), torch.device("cpu"))
    angles = torch.rad2deg(torch.atan2(theta[:, 1, 0], theta[:, 1, 1]))
    assert angles.abs().max() <= 10 + 1e-4
    assert angles.min() < -9.5 and angles.max() > 9.5
    assert torch.allclose(torch.linalg.det(theta[:, :, :2]), torch.ones(4096))


def test_fast_paths_skip_grid_sample(monkeypatch):
    calls = []
    monkeypatch.setattr(F, "grid_sample", lambda *a, **k: calls.append(1))
    x = images(8)
    same = Augment(32, MEAN, STD)
    assert torch.equal(same.train(x, gen()), same.test(x))
    resize = Augment(64, MEAN, STD).train(x, gen())
    expected = F.interpolate(x.float(), size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(pixels(resize), expected, atol=1e-3)
    assert calls == []


def test_whole_batch_in_one_grid_sample(monkeypatch):
    real, calls = F.grid_sample, []

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "grid_sample", counting)
    y = Augment(32, MEAN, STD, crop_padding=4, flip=True, rotation=15).train(images(256), gen())
    assert y.shape == (256, 3, 32, 32)
    assert calls == [256]


def test_crop_then_resize_matches_torchvision_order():
    # RandomCrop(32, padding=p) then Resize(64, antialias=False), as torchvision would do it on tensors.
    p, x = 2, images(64)
    y = Augment(64, MEAN, STD, crop_padding=p).train(x, gen())
    resize = Augment(64, MEAN, STD).test
    candidates = [resize(shifted(x, dx, dy)) for dx in range(-p, p + 1) for dy in range(-p, p + 1)]
    errors = torch.stack([(y - c).abs().amax(dim=(1, 2, 3)) for c in candidates])
    assert (errors.min(dim=0).values < 1e-4).all()


@pytest.mark.parametrize("size", [32, 24])
def test_grid_is_affine_grid_when_not_upsampling(size):
    aug = Augment(size, MEAN, STD, crop_padding=4, flip=True, rotation=20)
    theta = aug._thetas(8, 32, 32, gen(), torch.device("cpu"))
    expected = F.affine_grid(theta, [8, 3, size, size], align_corners=False)
    assert torch.allclose(aug._grid(theta, 32, 32), expected, atol=1e-6)
