"""The recovery model of `nerverecover`: what to show after packet loss, learned from the real
RTP loss pipeline.

What the decoder gives after a lost packet (measured with `nerve-eval loss-frames`, the same
pipeline the evaluation runs): FFmpeg's concealment of the lost slice, then every later frame
predicted from that guess until the next intact IDR frame, often seconds away. A damaged IDR
frame is concealed spatially (a smooth smear) although the frame shown just before it still
holds the content. So the model does not paint pixels; per 16x16 block (a macroblock, the unit
a slice loses) it chooses one of three sources:

- the decoder's frame ``d`` (right wherever no loss reached),
- the decoder's frame carrying on the correction shown last time ``d + (s_prev - d_prev)``: where
  the element repaired a region, the decoder keeps predicting from its own wrong guess, and the
  same difference, carried along, keeps it repaired,
- the frame shown before ``s_prev`` (hold: where the concealment went wrong and nothing better exists).

Inputs (NCHW, luma in 0..1): ``[d, d_prev, s_prev, loss]``, ``loss`` a constant plane that is 1
when a packet was reported lost since the previous frame (the GAP events `rtph264depay` sends).
Output: the luma to show. The element picks each chroma block's source by the luma the model chose.
It is recurrent through ``s_prev``: training unrolls it over short sequences, and it learns the
change of PSNR its choice makes, so a block changed where the decoder was right costs what it
costs on screen.
"""

from __future__ import annotations

import json
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..data.clips import Clip
from ..metrics import psnr

INPUT_PLANES = 4
# The element chooses sources per 16x16 block (a macroblock): so does the model, and so does the oracle.
BLOCK = 16
# What a shown frame's squared error (unit range) counts from: 10 grey levels squared (38 dB),
# within the compression error of the protocol's streams (the lossless decode against the
# original: per-clip medians of 1.0 to 34 levels squared on the held-out clips, measured at 1%
# loss, seed 1). Below it, mean PSNR barely moves; above it, every doubling costs 3 dB.
FLOOR_MSE = 10.0 / 255**2
# Block mean squared error difference (unit range) over which the soft oracle prefers one source
# to another by a factor e.
SOFT_ORACLE_MSE = 4.0 / 255**2


class RecoveryNet(nn.Module):
    """Per 16x16 block, softmax weights over the three sources, from features at full resolution,
    1/4, the block grid (1/16) and 1/64 around it (a lost slice is a band of whole macroblock rows:
    the decision needs context). In eval mode (and so in ONNX) the weights are one-hot: each block
    shows one source exactly, as the element does with it."""

    FEATURES = 8

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        c = channels
        self.full = nn.Conv2d(self.FEATURES, c, 3, padding=1)
        self.quarter = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(c + self.FEATURES, c, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.context = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(2 * c, c, 1), nn.ReLU(), nn.Conv2d(c, 3, 1))
        with torch.no_grad():
            # Start from the decoder's frame everywhere: any other choice has to earn its place.
            self.head[-1].bias.copy_(torch.tensor([3.0, 0.0, 0.0]))

    @staticmethod
    def sources(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d, d_prev, s_prev = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        carried = (d + s_prev - d_prev).clamp(0.0, 1.0)
        return d, carried, s_prev

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Source logits on the block grid (N, 3, ceil(H/16), ceil(W/16))."""
        d, carried, s_prev = self.sources(x)
        d_prev, loss = x[:, 1:2], x[:, 3:4]
        feats = torch.cat([d - 0.5, s_prev - 0.5, d_prev - 0.5, (d - d_prev).abs(), (d - s_prev).abs(),
                           (s_prev - d_prev).abs(), (carried - s_prev).abs(), loss], 1)
        f = F.relu(self.full(feats))
        q = self.quarter(F.avg_pool2d(f, 4, ceil_mode=True))
        b = self.block(torch.cat([F.avg_pool2d(q, 4, ceil_mode=True), F.avg_pool2d(feats, BLOCK, ceil_mode=True)], 1))
        k = self.context(F.avg_pool2d(b, 4, ceil_mode=True))
        k = F.interpolate(k, scale_factor=4.0, mode="nearest")[..., : b.shape[-2], : b.shape[-1]]
        return self.head(torch.cat([b, k], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        if self.training:
            wgt = torch.softmax(logits, 1)
        else:
            wgt = (logits >= logits.amax(1, keepdim=True)).float()
            wgt = wgt / wgt.sum(1, keepdim=True)
        return (per_pixel(wgt, x) * torch.cat(self.sources(x), 1)).sum(1, keepdim=True)


def per_pixel(grid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Values on the block grid spread over the pixels of `like` (the partial blocks at the right
    and bottom edges included)."""
    h, w = like.shape[-2:]
    return F.interpolate(grid, scale_factor=float(BLOCK), mode="nearest")[..., :h, :w]


# ---------------------------------------------------------------------------------------------
# Data: runs of the real loss pipeline, cut into short crop sequences


@dataclass(frozen=True)
class LossRunSpec:
    clip: Clip
    loss: float
    seed: int


@dataclass(frozen=True)
class CropConfig:
    frames: int = 10
    size: int = 128
    per_run: int = 16
    clip_frames: int = 120


# The decodes a loss run writes that the model learns from: the plain receiver's and the
# salvaging one's (nervesalvage before the depayloader); both are what nerverecover sees.
DECODES = ("lossy", "salvaged")


def loss_frames(nerve_eval: Path, data_root: Path, spec: LossRunSpec, out: Path, frames: int,
                decoder: str | None = None) -> dict:
    """Runs `nerve-eval loss-frames` (original, lossless, lossy and salvaged decode of the same
    packets); `decoder` None is the evaluation's own (one-thread `avdec_h264`)."""
    cmd = [str(nerve_eval), "loss-frames", "--reference", str(data_root / spec.clip.path), "--loss", str(spec.loss),
           "--seed", str(spec.seed), "--frames", str(frames), "--out", str(out)]
    subprocess.run(cmd + (["--decoder", decoder] if decoder else []), check=True, capture_output=True)
    return json.loads((out / "frames.json").read_text())


def read_luma(run_dir: Path, meta: dict, name: str) -> np.ndarray:
    """The luma planes (N, H, W) of one decode of a run: `<name>.yuv` (I420) or `<name>.npy`."""
    if (run_dir / f"{name}.npy").exists():
        return np.load(run_dir / f"{name}.npy")
    w, h, n = meta["width"], meta["height"], len(meta["frames"])
    raw = np.fromfile(run_dir / f"{name}.yuv", np.uint8).reshape(n, w * h * 3 // 2)
    return raw[:, : w * h].reshape(n, h, w)


def cut_crops(run_dir: Path, meta: dict, cfg: CropConfig, key: str, decode: str = "lossy") -> dict[str, np.ndarray] | None:
    """Crop sequences of one decode of a run. Three in five start on the frame before a reported
    loss (the model's decision at the onset is the one that counts: it is carried on), one in
    five anywhere damage is, one in five anywhere at all (what must stay untouched). Windows
    holding a frame the decoder never produced are skipped (the element synthesises those)."""
    fr = meta["frames"]
    n, t_len, p = len(fr), cfg.frames, cfg.size
    h, w = meta["height"], meta["width"]
    if n < t_len or h < p or w < p:
        return None
    present = np.array([f["present"] for f in fr])
    hit = np.array([f["hit"] for f in fr], np.uint8)
    clean, lossy = read_luma(run_dir, meta, "clean"), read_luma(run_dir, meta, decode)
    ok = [t for t in range(n - t_len + 1) if present[t:t + t_len].all()]
    if not ok:
        return None
    onsets = [t for t in ok if hit[t + 1]]
    bad = np.abs(lossy.astype(np.int16) - clean) > 8
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    starts = []
    for k in range(cfg.per_run):
        r = k % 5
        t0 = int(rng.choice(onsets)) if (r < 3 and onsets) else int(rng.choice(ok))
        ys, xs = np.nonzero(bad[t0:t0 + t_len].any(0)) if r < 4 else (np.array([]), np.array([]))
        if len(ys):
            j = int(rng.integers(len(ys)))
            cy, cx = int(ys[j]), int(xs[j])
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        # On the block grid: the model decides per 16x16 block of the frame.
        y0 = int(np.clip(cy - p // 2, 0, h - p)) // BLOCK * BLOCK
        x0 = int(np.clip(cx - p // 2, 0, w - p)) // BLOCK * BLOCK
        starts.append((t0, y0, x0))

    def stack(a: np.ndarray) -> np.ndarray:
        return np.stack([a[t0:t0 + t_len, y0:y0 + p, x0:x0 + p] for t0, y0, x0 in starts])

    return {"clean": stack(clean), "lossy": stack(lossy),
            "loss": np.stack([hit[t0:t0 + t_len] for t0, _, _ in starts])}


def build_crops(specs: list[LossRunSpec], nerve_eval: Path, data_root: Path, work: Path, cache: Path,
                cfg: CropConfig, decoder: str | None = None) -> Path:
    """Every run's crops, from both decodes, into one cache file (reused when it exists)."""
    if cache.exists():
        return cache
    parts: dict[str, list[np.ndarray]] = {"clean": [], "lossy": [], "loss": []}
    for spec in tqdm(specs, desc="loss runs", unit="run"):
        run_dir = work / f"{Path(spec.clip.path).stem}_{spec.loss}_{spec.seed}"
        meta = loss_frames(nerve_eval, data_root, spec, run_dir, cfg.clip_frames, decoder)
        for decode in DECODES:
            crops = cut_crops(run_dir, meta, cfg, f"{run_dir.name}/{decoder}/{decode}", decode)
            if crops is not None:
                for k, v in crops.items():
                    parts[k].append(v)
        for f in run_dir.glob("*.yuv"):
            f.unlink()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **{k: np.concatenate(v) for k, v in parts.items()})
    return cache


# ---------------------------------------------------------------------------------------------
# Training and evaluation


@dataclass
class RecoveryTrainConfig:
    steps: int = 3000
    batch: int = 8
    lr: float = 2e-3
    channels: int = 16
    seed: int = 0
    floor: float = FLOOR_MSE
    # Weight of the soft-oracle term (see expected_cost).
    soft: float = 1.0


def model_input(d: torch.Tensor, d_prev: torch.Tensor, s_prev: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """The element's input planes; `loss` (N,) is broadcast to a constant plane."""
    return torch.cat([d, d_prev, s_prev, loss.float().view(-1, 1, 1, 1).expand_as(d)], 1)


def runs(loss: torch.Tensor, s_prev: torch.Tensor, d_prev: torch.Tensor) -> torch.Tensor:
    """Where the element runs the model (N,): a packet was reported lost since the frame before,
    or the frame shown before differs from the decoder's (a correction is being carried)."""
    return (loss > 0) | (s_prev != d_prev).flatten(1).any(1)


def quantised(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().clamp(0, 255) / 255


def show(model: RecoveryNet, d: torch.Tensor, d_prev: torch.Tensor, s_prev: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """The frame the element shows for decoded `d`: the model's (8-bit) where it runs, else `d`."""
    out = quantised(model(model_input(d, d_prev, s_prev, loss)))
    return torch.where(runs(loss, s_prev, d_prev).view(-1, 1, 1, 1), out, d)


def unroll(model: RecoveryNet, lossy: torch.Tensor, loss: torch.Tensor) -> list[torch.Tensor]:
    """What the element shows for (N, T, H, W) decoded luma: the first frame as decoded, then
    [`show`] frame by frame."""
    shown = [lossy[:, 0:1]]
    for t in range(1, lossy.shape[1]):
        shown.append(show(model, lossy[:, t:t + 1], lossy[:, t - 1:t], shown[-1], loss[:, t]))
    return shown


def expected_cost(model: RecoveryNet, d: torch.Tensor, c: torch.Tensor, loss: torch.Tensor, floor: float,
                  soft: float) -> torch.Tensor:
    """The change of PSNR-Y (dB, lower is better) the model's expected choice makes against the
    decoder's frame, per frame where the element runs it, along the model's own (hard, detached)
    choices. Per block the cost of a source is its squared error to the lossless decode `c`;
    a frame's error counts from `floor` (see FLOOR_MSE), so errors in a nearly clean frame
    weigh as much as PSNR weighs them."""
    total = torch.zeros(())
    shown = d[:, 0:1]
    for t in range(1, d.shape[1]):
        cur, prev = d[:, t:t + 1], d[:, t - 1:t]
        active = runs(loss[:, t], shown, prev).float()
        x = model_input(cur, prev, shown, loss[:, t])
        logits = model.logits(x)
        sources = torch.cat(model.sources(x), 1)
        cost = F.avg_pool2d((sources - c[:, t:t + 1]) ** 2, BLOCK, ceil_mode=True)
        mse = (torch.softmax(logits, 1) * cost).sum(1).mean((1, 2))
        base = cost[:, 0].mean((1, 2))
        total = total + (torch.log((floor + mse) / (floor + base)) * active).mean() * (10 / np.log(10))
        # Alone, the expected cost settles on the decoder's frame everywhere (its gradient
        # vanishes with the other sources' weights): a soft oracle keeps every block where the
        # sources differ pulling towards the nearest ones.
        rel = (cost - cost.amin(1, keepdim=True)) / SOFT_ORACLE_MSE
        weight = (1 - torch.exp(-rel.amax(1))) * active.view(-1, 1, 1)
        ce = -(torch.softmax(-rel, 1) * torch.log_softmax(logits, 1)).sum(1)
        total = total + soft * (weight * ce).mean()
        with torch.no_grad():
            pick = per_pixel(logits.argmax(1, keepdim=True).float(), cur).long()
            shown = torch.where(active.view(-1, 1, 1, 1) > 0, quantised(sources.gather(1, pick)), cur)
    return total / (d.shape[1] - 1)


def train(crops: Path, cfg: RecoveryTrainConfig, progress: bool = True) -> tuple[RecoveryNet, list[float]]:
    z = np.load(crops)
    clean, lossy, loss = z["clean"], z["lossy"], z["loss"]
    torch.manual_seed(cfg.seed)
    model = RecoveryNet(cfg.channels)
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    history = []
    bar = tqdm(range(cfg.steps), desc="recovery", unit="step", disable=not progress)
    for _ in bar:
        idx = np.sort(rng.integers(0, len(clean), cfg.batch))
        c = torch.from_numpy(clean[idx]).float() / 255
        d = torch.from_numpy(lossy[idx]).float() / 255
        err = expected_cost(model, d, c, torch.from_numpy(loss[idx]), cfg.floor, cfg.soft)
        opt.zero_grad()
        err.backward()
        opt.step()
        sched.step()
        history.append(float(err.detach()))
        bar.set_postfix(dB=f"{-np.mean(history[-100:]):+.3f}")
    model.eval()
    return model, history


def floored_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-Y against a lossless decode, the compression error it lacks stood in by FLOOR_MSE."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10.0 * np.log10(1.0 / (mse / 255.0**2 + FLOOR_MSE)))


# A repair as `replay` runs it: (d, d_prev, s_prev, loss, frame index) -> the frame to show.
Repair = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def replay(run_dir: Path, decode: str, choose: Repair) -> dict[str, float]:
    """Full frames of one decode through a repair `choose(d, d_prev, s_prev, loss, t)` (unit-range
    (1,1,H,W) luma; `loss` (1,): a packet was reported lost since the frame before), as the element
    runs it: a frame the decoder never produced is held, as the element synthesises it. Mean
    PSNR-Y of the decoder's and of the repaired frames against the original; when the run kept no
    original, against the lossless decode with FLOOR_MSE added to every frame's error (the
    compression error it lacks)."""
    meta = json.loads((run_dir / "frames.json").read_text())
    lossy = read_luma(run_dir, meta, decode)
    has_orig = (run_dir / "original.npy").exists() or (run_dir / "original.yuv").exists()
    orig = read_luma(run_dir, meta, "original" if has_orig else "clean")
    score = psnr if has_orig else floored_psnr
    decoder, shown_frames = [], []
    prev_d = prev_s = None
    pending_loss = False
    with torch.no_grad():
        for t, f in enumerate(meta["frames"]):
            pending_loss |= bool(f["hit"])
            if not f["present"]:
                decoder.append(decoder[-1] if decoder else lossy[t])
                shown_frames.append(shown_frames[-1] if shown_frames else lossy[t])
                continue
            d = torch.from_numpy(lossy[t]).float()[None, None] / 255
            s = d if prev_d is None else choose(d, prev_d, prev_s, torch.tensor([float(pending_loss)]), t)
            pending_loss = False
            decoder.append(lossy[t])
            shown_frames.append((s[0, 0] * 255).round().byte().numpy())
            prev_d, prev_s = d, s
    n = len(meta["frames"])
    return {"decoder": float(np.mean([score(decoder[i], orig[i]) for i in range(n)])),
            "shown": float(np.mean([score(shown_frames[i], orig[i]) for i in range(n)]))}


def replay_run(model: RecoveryNet, run_dir: Path, decode: str = "lossy") -> dict[str, float]:
    """The model on full frames of one decode, as the element runs it (see `replay`)."""
    model.eval()
    r = replay(run_dir, decode, lambda d, d_prev, s_prev, loss, _t: show(model, d, d_prev, s_prev, loss))
    return {"decoder": r["decoder"], "model": r["shown"]}


def oracle_labels(sources: torch.Tensor, clean: torch.Tensor, margin: float) -> torch.Tensor:
    """Per 16x16 block, the index of the source (N, 3, H, W) nearest `clean`, or 0 (the decoder's)
    unless another beats it by `margin` grey levels per pixel."""
    err = F.avg_pool2d((sources - clean).abs(), BLOCK, ceil_mode=True)
    best = err.argmin(1)
    best[err[:, 0] - err.min(1).values < margin / 255] = 0
    return best


def oracle_replay(run_dir: Path, margin: float = 1.0, decode: str = "lossy") -> dict[str, float]:
    """The bound of this family of repairs: on every frame, per block, the source nearest the
    lossless decode (knowing it); see `replay`."""
    meta = json.loads((run_dir / "frames.json").read_text())
    clean = read_luma(run_dir, meta, "clean")

    def choose(d: torch.Tensor, d_prev: torch.Tensor, s_prev: torch.Tensor, loss: torch.Tensor, t: int) -> torch.Tensor:
        sources = torch.cat(RecoveryNet.sources(model_input(d, d_prev, s_prev, loss)), 1)
        best = oracle_labels(sources, torch.from_numpy(clean[t]).float()[None, None] / 255, margin)
        return sources.gather(1, per_pixel(best[:, None].float(), d).long())

    r = replay(run_dir, decode, choose)
    return {"decoder": r["decoder"], "oracle": r["shown"]}


def export_recovery(model: RecoveryNet, path: Path) -> str:
    """ONNX (opset 17, dynamic size) checked against PyTorch at an odd size; returns the sha256."""
    from ..sr.export import verify_onnx

    model.eval()
    dummy = torch.rand(1, INPUT_PLANES, 48, 64)
    torch.onnx.export(model, (dummy,), str(path), input_names=["frames"], output_names=["shown"], opset_version=17,
                      dynamic_axes={"frames": {2: "height", 3: "width"}, "shown": {2: "height", 3: "width"}},
                      dynamo=False)
    return verify_onnx(model, path, "frames", INPUT_PLANES)
