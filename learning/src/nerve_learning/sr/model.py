"""Real-time super-resolution students: a residual on a fixed bicubic upscale, luma in.

The classical upscale is built into the network as a fixed 5x5 convolution per output phase
followed by a pixel shuffle, so the exported graph computes exactly the Catmull-Rom upscale the
Rust element uses for chroma and fallback; the learned branch only adds the correction. Sub-pixel
convolution (pixel shuffle) is the way up: ONNX Runtime's ConvTranspose is slow on CPUs.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
import torch.nn.functional as F


def cubic(x: float, a: float = -0.5) -> float:
    """Catmull-Rom kernel (a = -0.5), identical to nerve-engine's src/resample.rs."""
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


# The name of a folded student's fixed bicubic kernel, in the state dict and the exported graph:
# its presence marks a space-to-depth student (see `Student`).
FOLDED_BASE = "base"


def space_to_depth_kernel(scale: int, block: int) -> torch.Tensor:
    """The bicubic phases of `BicubicUpscale(scale)` as one fixed 3x3 convolution over a frame
    folded `block` x `block` into channels (pixel unshuffle), written in the channel order that
    `pixel_shuffle(., block * scale)` unfolds: the 5 LR taps around any pixel of a block lie
    within one folded pixel of it, so the folded frame (edge-padded by `block` LR pixels) gives
    exactly the same upscale."""
    w1 = bicubic_phase_weights(scale)
    b, s = block, scale
    k = torch.zeros(b * b * s * s, b * b, 3, 3)
    for a, c, p, q in itertools.product(range(b), range(b), range(s), range(s)):
        out = (s * a + p) * (b * s) + (s * c + q)
        for a2, c2, dy, dx in itertools.product(range(b), range(b), (-1, 0, 1), (-1, 0, 1)):
            oy, ox = b * dy + a2 - a, b * dx + c2 - c
            if -2 <= oy <= 2 and -2 <= ox <= 2:
                k[out, a2 * b + c2, dy + 1, dx + 1] = w1[p, oy + 2] * w1[q, ox + 2]
    return k


# Fixed edge filters of the ECB branches: Sobel x, Sobel y, Laplacian.
EDGE_MASKS = torch.tensor([
    [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
    [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
    [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
])


class EdgeConv(nn.Module):
    """A re-parameterisable 3x3 convolution (the edge-oriented block of ECBSR, Zhang et al. 2021):
    a 3x3 conv, a 1x1-expand -> 3x3 branch and three 1x1 branches through fixed Sobel-x, Sobel-y
    and Laplacian filters with learned per-channel scales. Every branch is linear and has no bias
    of its own, so their sum *is* one 3x3 kernel: training runs the merged kernel (as cheap as a
    plain conv) while the gradients see the richer parameterisation, and deployment copies the
    merged kernel into a plain `nn.Conv2d` - train rich, deploy plain, exactly (borders too)."""

    def __init__(self, cin: int, cout: int, expand: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.expand = nn.Parameter(torch.empty(cout * expand, cin))
        self.squeeze = nn.Parameter(torch.empty(cout, cout * expand, 3, 3))
        self.edge = nn.Parameter(torch.empty(len(EDGE_MASKS), cout, cin))
        self.edge_scale = nn.Parameter(torch.empty(len(EDGE_MASKS), cout, 1))
        self.register_buffer("masks", EDGE_MASKS.clone())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        nn.init.kaiming_uniform_(self.expand, a=math.sqrt(5))
        # Small extra branches: at start the block is close to its plain 3x3 conv.
        nn.init.normal_(self.squeeze, std=1e-2 / math.sqrt(self.squeeze.shape[1]))
        for k in range(self.edge.shape[0]):
            nn.init.kaiming_uniform_(self.edge.data[k], a=math.sqrt(5))
        nn.init.normal_(self.edge_scale, std=1e-2)

    def zero_(self) -> None:
        for p in (self.conv.weight, self.conv.bias, self.squeeze, self.edge_scale):
            nn.init.zeros_(p)

    def kernel(self) -> torch.Tensor:
        w = self.conv.weight + torch.einsum("omhw,mi->oihw", self.squeeze, self.expand)
        return w + torch.einsum("koi,khw->oihw", self.edge * self.edge_scale, self.masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel(), self.conv.bias, padding=1)


class Student(nn.Module):
    """conv3x3(frames -> C), `depth` x conv3x3(C -> C), conv3x3(C -> scale^2), ReLU between,
    added to the bicubic phases of the current frame, then pixel shuffle. With `rep`, each conv
    trains as an `EdgeConv` and `plain()` gives the deployable model of the same cost.

    With `block` = 2 the network runs on the frame folded 2 x 2 into channels (pixel unshuffle):
    4 x `frames` channels in, 4 x scale^2 out, at a quarter of the pixels. Each layer is then
    wide enough for the CPU's blocked kernels (ONNX Runtime pads channels to blocks of 8-16, so a
    1-channel input or 4-channel output layer costs as much as a full one) and for int8, whose
    kernels gain nothing on thin layers; a 3x3 kernel sees 6x6 LR pixels. Frames of odd size are
    edge-padded to even inside the graph and the output cropped, so the contract with nervesr
    (any size in, `scale` x that size out) is unchanged."""

    def __init__(self, scale: int, channels: int = 16, depth: int = 2, frames: int = 1, rep: bool = False,
                 block: int = 1) -> None:
        super().__init__()
        self.scale, self.channels, self.depth, self.frames, self.rep, self.block = scale, channels, depth, frames, rep, block

        def conv(cin: int, cout: int) -> nn.Module:
            return EdgeConv(cin, cout) if rep else nn.Conv2d(cin, cout, 3, padding=1)

        folded = block * block
        layers: list[nn.Module] = [conv(frames * folded, channels), nn.ReLU(inplace=True)]
        for _ in range(depth):
            layers += [conv(channels, channels), nn.ReLU(inplace=True)]
        layers.append(conv(channels, folded * scale * scale))
        self.body = nn.Sequential(*layers)
        self.upscale = BicubicUpscale(scale)
        if block > 1:
            self.register_buffer(FOLDED_BASE, space_to_depth_kernel(scale, block))
        self.zero_tail()

    def relu_init(self) -> None:
        """He initialisation for the layers before a ReLU, biases slightly positive. PyTorch's
        default halves the activations at each layer, and with the zero tail the first updates
        see almost no signal: a four-layer folded student trained from it on 2026-12-07 lost
        every unit of its last hidden layer to the ReLU within the run and stayed the bicubic
        upscale (+0.00 dB after 51,770 steps); from this one all layers stayed alive."""
        for layer in list(self.body)[:-1]:
            conv = layer.conv if isinstance(layer, EdgeConv) else layer
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.constant_(conv.bias, 0.01)

    def zero_tail(self) -> None:
        """Start as the bicubic upscale: the correction branch begins at zero."""
        last = self.body[-1]
        if isinstance(last, EdgeConv):
            last.zero_()
        else:
            assert isinstance(last, nn.Conv2d)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def shape(self) -> dict[str, int]:
        return {"scale": self.scale, "channels": self.channels, "depth": self.depth, "frames": self.frames, "block": self.block}

    def as_rep(self) -> "Student":
        """A re-parameterisable copy of a plain student computing the same function: each conv
        becomes an EdgeConv whose 3x3 branch holds its weights, the other branches starting with
        no effect (for fine-tuning a deployed plain model with the richer parameterisation)."""
        out = Student(**self.shape(), rep=True)
        with torch.no_grad():
            for mine, theirs in zip(self.plain().body, out.body):
                if isinstance(theirs, EdgeConv):
                    assert isinstance(mine, nn.Conv2d)
                    theirs.conv.weight.copy_(mine.weight)
                    theirs.conv.bias.copy_(mine.bias)
                    theirs.squeeze.zero_()
                    theirs.edge_scale.zero_()
        return out

    def deepened(self, depth: int) -> "Student":
        """A plain copy with `depth` middle layers computing the same function: each added layer
        is an identity 3x3 conv (centre tap 1 on its own channel, no bias) placed before the
        tail, where its input has just passed a ReLU and so is left unchanged by the next one.
        Growing a trained student this way keeps everything it learnt (function-preserving, as
        in Net2Net) and gives fine-tuning new capacity to use. A folded (`block` 2) student grows
        the same way: its middle layers are `channels` wide like any other's."""
        if depth < self.depth:
            raise ValueError(f"cannot deepen a depth-{self.depth} student to {depth}")
        src = self.plain()
        out = Student(**{**self.shape(), "depth": depth})
        convs = [m for m in src.body if isinstance(m, nn.Conv2d)]
        theirs = [m for m in out.body if isinstance(m, nn.Conv2d)]
        identity = torch.zeros(self.channels, self.channels, 3, 3)
        identity[range(self.channels), range(self.channels), 1, 1] = 1.0
        middle = convs[:-1] + [None] * (depth - self.depth)
        with torch.no_grad():
            for mine, conv in zip(middle + convs[-1:], theirs):
                conv.weight.copy_(identity if mine is None else mine.weight)
                conv.bias.copy_(torch.zeros(self.channels) if mine is None else mine.bias)
        return out.eval()

    def plain(self) -> "Student":
        """The same function as plain 3x3 convolutions (a copy; itself when not `rep`)."""
        if not self.rep:
            return self
        out = Student(**self.shape())
        with torch.no_grad():
            for mine, theirs in zip(self.body, out.body):
                if isinstance(mine, EdgeConv):
                    assert isinstance(theirs, nn.Conv2d)
                    theirs.weight.copy_(mine.kernel())
                    theirs.bias.copy_(mine.conv.bias)
        return out.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        current = x if self.frames == 1 else x[:, -1:, :, :]
        if self.block == 1:
            return F.pixel_shuffle(self.body(x) + self.upscale.phases(current), self.scale)
        b, (h, w) = self.block, x.shape[-2:]
        even = (0, (-w) % b, 0, (-h) % b)
        x, current = F.pad(x, even, mode="replicate"), F.pad(current, even, mode="replicate")
        base = F.conv2d(F.pixel_unshuffle(F.pad(current, (b, b, b, b), mode="replicate"), b), self.base)
        out = F.pixel_shuffle(self.body(F.pixel_unshuffle(x, b)) + base, b * self.scale)
        return out[..., : h * self.scale, : w * self.scale]

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per LR pixel, the cost measure of the model cards."""
        c, s, f = self.channels, self.scale, self.block * self.block
        body = 9 * (self.frames * f * c + self.depth * c * c + c * f * s * s) // f
        return body + (9 * f * s * s if self.block > 1 else 25 * s * s)

    def architecture(self) -> str:
        """The model card's one-line description of the deployed network."""
        f, s = self.block * self.block, self.scale
        fold = f"pixel unshuffle {self.block}, " if self.block > 1 else ""
        return (f"{fold}conv3x3({self.frames * f}->{self.channels}), {self.depth} x conv3x3({self.channels}->{self.channels}), "
                f"conv3x3(->{f * s * s}), ReLU, pixel shuffle {self.block * s}")


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
        self.upscale = BicubicUpscale(scale)
        self.zero_tail()

    def zero_tail(self) -> None:
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        for block in self.blocks:
            h = h + block(h)
        # No activation before the tail (as in EDSR): a ReLU on the unnormalised residual stream
        # died during training (5% of units alive after 300 steps, none after 2500: 0.00 dB).
        return F.pixel_shuffle(self.tail(h) + self.upscale.phases(x), self.scale)
