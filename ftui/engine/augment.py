"""Batched augmentation on the training device.

A batch of uint8 images is cropped, flipped, rotated and resized in a single
batched affine sampling grid + ``grid_sample`` call, so a training step costs a few tensor
ops whatever the batch size, on the CPU and on CUDA alike, with no per-image
Python and no host<->device traffic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


class Augment:
    def __init__(
        self,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        flip: bool = False,
        rotation: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        self.input_size = input_size
        self.crop_padding = crop_padding
        self.flip = flip
        self.rotation = rotation
        self.channels_last = channels_last
        self.geometric = crop_padding > 0 or flip or rotation > 0
        # (x/255 - mean)/std as one multiply-add.
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_t
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def train(self, x: torch.Tensor, generator: torch.Generator, share: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Random augmentation of uint8 (B, 3, H, W) images -> normalised float32 (B, 3, S, S).

        ``generator`` must live on x's device. ``share`` = (rank, processes): x is the rank's part of
        a global batch of B * processes images, at rows rank, rank + processes, ... (see
        distributed.Group.epoch_order). The draws are made for the whole global batch and the rank
        keeps its rows: every process's generator stays in step, and the global batch is augmented
        exactly as one process would augment it.
        """
        if not self.geometric:
            return self.test(x)
        h, w = x.shape[-2:]
        rank, processes = share
        thetas = self._thetas(x.shape[0] * processes, h, w, generator, x.device)[rank::processes]
        grid = self._grid(thetas, h, w)
        y = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return self._normalize(y)

    def test(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic resize and normalisation of uint8 (B, 3, H, W) images."""
        y = x.float()
        if y.shape[-2:] != (self.input_size, self.input_size):
            y = F.interpolate(y, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=False)
        return self._normalize(y)

    def _thetas(self, b: int, h: int, w: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Per-image 2x3 matrices mapping output to input coordinates in [-1, 1].

        Sampling input = flip . rotate . output - shift, in stored pixels about
        the image centre: a crop offset, then a flip, then a rotation of the image.
        """
        r = torch.rand(b, 4, generator=generator, device=device)
        p = self.crop_padding
        # Integer shifts in [-p, p] place grid points on pixel centres, so a pure
        # crop copies pixels exactly, as torchvision's RandomCrop(padding=p) does.
        shift = (r[:, :2] * (2 * p + 1)).floor().clamp(max=2 * p) - p
        sign = torch.where(r[:, 2] < 0.5, -1.0, 1.0) if self.flip else torch.ones_like(r[:, 2])
        angle = (2 * r[:, 3] - 1) * math.radians(self.rotation)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.empty(b, 2, 3, device=device)
        # Pixel-space rotation in normalised coordinates: off-diagonals carry the aspect ratio.
        theta[:, 0, 0] = sign * cos
        theta[:, 0, 1] = -sign * sin * (h / w)
        theta[:, 1, 0] = sin * (w / h)
        theta[:, 1, 1] = cos
        theta[:, 0, 2] = -2 * shift[:, 0] / w
        theta[:, 1, 2] = -2 * shift[:, 1] / h
        return theta

    def _grid(self, theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """F.affine_grid(theta, size=(S, S), align_corners=False), except that the
        output coordinates are first clamped to the outermost stored pixel centres.

        The clamp makes the resize behave like F.interpolate (and test()): when
        upsampling, the outer output pixels repeat the edge instead of fading into
        grid_sample's zero padding, which would frame every training image in black.
        """
        s, device = self.input_size, theta.device
        centres = (torch.arange(s, device=device) * 2 + 1) / s - 1
        xs = centres.clamp(-1 + 1 / w, 1 - 1 / w).expand(s, s)
        ys = centres.clamp(-1 + 1 / h, 1 - 1 / h)[:, None].expand(s, s)
        base = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, s * s, 3)
        return (base @ theta.transpose(1, 2)).view(-1, s, s, 2)

    def _normalize(self, y: torch.Tensor) -> torch.Tensor:
        scale, shift = self._stats(y.device)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(shift, y, scale)

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Cached per device so that no step copies the constants from the host.
        if device not in self._on_device:
            self._on_device[device] = (self._scale.to(device), self._shift.to(device))
        return self._on_device[device]
