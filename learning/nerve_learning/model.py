"""Real-time super-resolution students: a residual on a fixed bicubic upscale, luma in.

The classical upscale is built into the network as a fixed 5x5 convolution per output phase
followed by a pixel shuffle, so the exported graph computes exactly the Catmull-Rom upscale the
Rust element uses for chroma and fallback; the learned branch only adds the correction. Sub-pixel
convolution (pixel shuffle) is the way up: ONNX Runtime's ConvTranspose is slow on CPUs.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def cubic(x: float, a: float = -0.5) -> float:
    """Catmull-Rom kernel (a = -0.5), identical to gst-nerve's engine/resample.rs."""
    x = abs(x)
    if x <= 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return 0.0


def bicubic_phase_weights(scale: int) -> torch.Tensor:
    """1-D weights over LR offsets -2..2 for each of the `scale` output phases."""
    w = torch.zeros(scale, 5)
    for p in range(scale):
        centre = (p + 0.5) / scale - 0.5  # offset of the sample centre from the LR pixel
        base = math.floor(centre)
        t = centre - base
        taps = [cubic(t + 1.0), cubic(t), cubic(1.0 - t), cubic(2.0 - t)]
        total = sum(taps)
        for k, v in enumerate(taps):
            w[p, base - 1 + k + 2] = v / total
    return w


class BicubicUpscale(nn.Module):
    """Fixed bicubic upscale as edge padding + conv(1 -> scale^2, 5x5) + pixel shuffle."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        w1 = bicubic_phase_weights(scale)
        kernel = torch.einsum("yi,xj->yxij", w1, w1).reshape(scale * scale, 1, 5, 5)
        self.register_buffer("kernel", kernel)

    def phases(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.phases(x), self.scale)


class Student(nn.Module):
    """conv3x3(frames -> C), `depth` x conv3x3(C -> C), conv3x3(C -> scale^2), ReLU between,
    added to the bicubic phases of the current frame, then pixel shuffle."""

    def __init__(self, scale: int, channels: int = 16, depth: int = 2, frames: int = 1) -> None:
        super().__init__()
        self.scale, self.channels, self.depth, self.frames = scale, channels, depth, frames
        layers: list[nn.Module] = [nn.Conv2d(frames, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, scale * scale, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.upscale = BicubicUpscale(scale)
        # Start as the bicubic upscale: the correction branch begins at zero.
        last = self.body[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = x if self.frames == 1 else x[:, -1:, :, :]
        return F.pixel_shuffle(self.body(x) + self.upscale.phases(current), self.scale)

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per LR pixel, the cost measure of the model cards."""
        c, s = self.channels, self.scale
        body = 9 * (self.frames * c + self.depth * c * c + c * s * s)
        return body + 25 * s * s


class Teacher(nn.Module):
    """A wider, deeper residual network used to distil the students."""

    def __init__(self, scale: int, channels: int = 48, blocks: int = 6) -> None:
        super().__init__()
        self.scale, self.frames = scale, 1
        self.head = nn.Conv2d(1, channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1),
            )
            for _ in range(blocks)
        )
        self.tail = nn.Conv2d(channels, scale * scale, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.upscale = BicubicUpscale(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        for block in self.blocks:
            h = h + block(h)
        # No activation before the tail (as in EDSR): a ReLU on the unnormalised residual stream
        # died during training (5% of units alive after 300 steps, none after 2500: 0.00 dB).
        return F.pixel_shuffle(self.tail(h) + self.upscale.phases(x), self.scale)
