"""The recovery model of `nerverecover`: what to show after packet loss, learned from the real
RTP loss pipeline.

What the decoder gives after a lost packet (measured with `nerve-eval loss-frames`, the same
pipeline the evaluation runs): FFmpeg's concealment of the lost slice, then every later frame
predicted from that guess until the next intact IDR frame, often seconds away. A damaged IDR
frame is concealed spatially (a smooth smear) although the frame shown just before it still
holds the content. So the model does not paint pixels; per pixel it weighs three sources:

- the decoder's frame ``d`` (right wherever no loss reached),
- the decoder's frame carrying on the correction shown last time ``d + (s_prev - d_prev)``: where
  the element repaired a region, the decoder keeps predicting from its own wrong guess, and the
  same difference, carried along, keeps it repaired,
- the frame shown before ``s_prev`` (hold: fresh damage where nothing better exists).

Inputs (NCHW, luma in 0..1): ``[d, d_prev, s_prev, loss]``, ``loss`` a constant plane that is 1
when a packet was reported lost since the previous frame (the GAP events `rtph264depay` sends).
Output: the luma to show. The element picks each chroma block's source by the luma the model chose.
It is recurrent through ``s_prev``: training unrolls it over short sequences.
"""

from __future__ import annotations

import json
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .clips import Clip
from .metrics import psnr

INPUT_PLANES = 4
# The element chooses sources per 16x16 block (a macroblock): so does the oracle.
BLOCK = 16


class RecoveryNet(nn.Module):
    """Softmax weights over the three sources, from full-, 1/4- and 1/16-resolution features
    (a lost slice is a band of whole macroblock rows: the decision needs context)."""

    def __init__(self, channels: int = 12) -> None:
        super().__init__()
        c = channels
        self.full = nn.Conv2d(7, c, 3, padding=1)
        self.quarter = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.coarse = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.weights = nn.Conv2d(3 * c, 3, 1)

    @staticmethod
    def sources(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d, d_prev, s_prev = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        carried = (d + s_prev - d_prev).clamp(0.0, 1.0)
        return d, carried, s_prev

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        d, carried, s_prev = self.sources(x)
        d_prev, loss = x[:, 1:2], x[:, 3:4]
        feats = torch.cat([d - 0.5, carried - 0.5, s_prev - 0.5, d_prev - 0.5,
                           (d - d_prev).abs(), (d - s_prev).abs(), loss], 1)
        f = F.relu(self.full(feats))
        q = self.quarter(F.avg_pool2d(f, 4, ceil_mode=True))
        k = self.coarse(F.avg_pool2d(q, 4, ceil_mode=True))
        h, w = d.shape[-2:]
        q = F.interpolate(q, scale_factor=4.0, mode="nearest")[..., :h, :w]
        k = F.interpolate(k, scale_factor=16.0, mode="nearest")[..., :h, :w]
        return self.weights(torch.cat([f, q, k], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wgt = torch.softmax(self.logits(x), 1)
        return (wgt * torch.cat(self.sources(x), 1)).sum(1, keepdim=True)


# ---------------------------------------------------------------------------------------------
# Data: runs of the real loss pipeline, cut into short crop sequences


@dataclass(frozen=True)
class LossRunSpec:
    clip: Clip
    loss: float
    seed: int


@dataclass(frozen=True)
class CropConfig:
    frames: int = 8
    size: int = 96
    per_run: int = 32
    clip_frames: int = 120


def loss_frames(nerve_eval: Path, data_root: Path, spec: LossRunSpec, out: Path, frames: int,
                decoder: str | None = None) -> dict:
    """Runs `nerve-eval loss-frames` (original, lossless and lossy decode of the same packets);
    `decoder` None is the evaluation's own (one-thread `avdec_h264`)."""
    cmd = [str(nerve_eval), "loss-frames", "--reference", str(data_root / spec.clip.path), "--loss", str(spec.loss),
           "--seed", str(spec.seed), "--frames", str(frames), "--out", str(out)]
    subprocess.run(cmd + (["--decoder", decoder] if decoder else []), check=True, capture_output=True)
    return json.loads((out / "frames.json").read_text())


def read_luma(run_dir: Path, meta: dict, name: str) -> np.ndarray:
    w, h, n = meta["width"], meta["height"], len(meta["frames"])
    raw = np.fromfile(run_dir / name, np.uint8).reshape(n, w * h * 3 // 2)
    return raw[:, : w * h].reshape(n, h, w)


def cut_crops(run_dir: Path, meta: dict, cfg: CropConfig, key: str) -> dict[str, np.ndarray] | None:
    """Crop sequences of one run: most centred on damage, 2 in 5 over a damaged IDR frame
    (a spatially concealed IDR frame is where showing the past pays most); windows holding a
    frame the decoder never produced are skipped (the element synthesises those itself)."""
    fr = meta["frames"]
    n, t_len, p = len(fr), cfg.frames, cfg.size
    h, w = meta["height"], meta["width"]
    if n < t_len or h < p or w < p:
        return None
    present = np.array([f["present"] for f in fr])
    hit = np.array([f["hit"] for f in fr], np.uint8)
    keyf = np.array([f["keyframe"] for f in fr], np.uint8)
    clean, lossy = read_luma(run_dir, meta, "clean.yuv"), read_luma(run_dir, meta, "lossy.yuv")
    ok = [t for t in range(n - t_len + 1) if present[t:t + t_len].all()]
    if not ok:
        return None
    idr = [t for t in ok if any(keyf[t + k] and hit[t + k] for k in range(1, 4))]
    bad = np.abs(lossy.astype(np.int16) - clean) > 8
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    starts = []
    for k in range(cfg.per_run):
        r = k % 5
        t0 = int(rng.choice(idr)) if (r < 2 and idr) else int(rng.choice(ok))
        ys, xs = np.nonzero(bad[t0:t0 + t_len].any(0)) if r < 4 else (np.array([]), np.array([]))
        if len(ys):
            j = int(rng.integers(len(ys)))
            cy, cx = int(ys[j]), int(xs[j])
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0 = int(np.clip(cy - p // 2, 0, h - p)) // 16 * 16
        x0 = int(np.clip(cx - p // 2, 0, w - p)) // 16 * 16
        starts.append((t0, y0, x0))

    def stack(a: np.ndarray) -> np.ndarray:
        return np.stack([a[t0:t0 + t_len, y0:y0 + p, x0:x0 + p] for t0, y0, x0 in starts])

    return {"clean": stack(clean), "lossy": stack(lossy),
            "loss": np.stack([hit[t0:t0 + t_len] for t0, _, _ in starts])}


def build_crops(specs: list[LossRunSpec], nerve_eval: Path, data_root: Path, work: Path, cache: Path,
                cfg: CropConfig, decoder: str | None = None) -> Path:
    """Every run's crops into one cache file (reused when it exists)."""
    if cache.exists():
        return cache
    parts: dict[str, list[np.ndarray]] = {"clean": [], "lossy": [], "loss": []}
    for spec in tqdm(specs, desc="loss runs", unit="run"):
        run_dir = work / f"{Path(spec.clip.path).stem}_{spec.loss}_{spec.seed}"
        meta = loss_frames(nerve_eval, data_root, spec, run_dir, cfg.clip_frames, decoder)
        crops = cut_crops(run_dir, meta, cfg, f"{run_dir.name}/{decoder}")
        for f in run_dir.glob("*.yuv"):
            f.unlink()
        if crops is not None:
            for k, v in crops.items():
                parts[k].append(v)
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
    channels: int = 12
    seed: int = 0
    # "regression": Charbonnier to the lossless decode through the unrolled recurrence.
    # "oracle": imitate, block by block, the source nearest the lossless decode given what the
    # model itself showed before (DAgger), when it beats the decoder's by `margin` levels.
    objective: str = "regression"
    margin: float = 4.0


def unroll(model: RecoveryNet, lossy: torch.Tensor, loss: torch.Tensor) -> list[torch.Tensor]:
    """Runs the recurrence over (N, T, H, W) decoded luma; the first frame is shown as decoded."""
    shown = [lossy[:, 0:1]]
    for t in range(1, lossy.shape[1]):
        d = lossy[:, t:t + 1]
        lp = loss[:, t].view(-1, 1, 1, 1).expand_as(d)
        shown.append(model(torch.cat([d, lossy[:, t - 1:t], shown[-1], lp], 1)))
    return shown


def oracle_labels(sources: torch.Tensor, clean: torch.Tensor, margin: float) -> torch.Tensor:
    """Per 16x16 block, the index of the source (N, 3, H, W) nearest `clean`, or 0 (the decoder's)
    unless another beats it by `margin` grey levels per pixel."""
    err = F.avg_pool2d((sources - clean).abs(), BLOCK)
    best = err.argmin(1)
    best[err[:, 0] - err.min(1).values < margin / 255] = 0
    return best


def train(crops: Path, cfg: RecoveryTrainConfig, progress: bool = True) -> tuple[RecoveryNet, list[float]]:
    z = np.load(crops)
    clean, lossy, loss = z["clean"], z["lossy"], z["loss"].astype(np.float32)
    torch.manual_seed(cfg.seed)
    model = RecoveryNet(cfg.channels)
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    history = []
    bar = tqdm(range(cfg.steps), desc=f"recovery ({cfg.objective})", unit="step", disable=not progress)
    for _ in bar:
        idx = rng.integers(0, len(clean), cfg.batch)
        c = torch.from_numpy(clean[idx]).float() / 255
        d = torch.from_numpy(lossy[idx]).float() / 255
        lp = torch.from_numpy(loss[idx])
        if cfg.objective == "oracle":
            err = imitation_loss(model, d, c, lp, cfg.margin)
        else:
            shown = unroll(model, d, lp)
            err = sum(torch.sqrt((s - c[:, t:t + 1]) ** 2 + 1e-6).mean() for t, s in enumerate(shown) if t > 0)
            err = err / (len(shown) - 1)
        opt.zero_grad()
        err.backward()
        opt.step()
        sched.step()
        history.append(float(err.detach()))
        bar.set_postfix(loss=f"{np.mean(history[-50:]):.4f}")
    return model, history


def imitation_loss(model: RecoveryNet, d: torch.Tensor, c: torch.Tensor, loss: torch.Tensor, margin: float) -> torch.Tensor:
    """Cross-entropy of the model's block-averaged source logits against the oracle's choice,
    along the model's own (detached) trajectory."""
    total = torch.zeros(())
    shown = d[:, 0:1]
    for t in range(1, d.shape[1]):
        cur = d[:, t:t + 1]
        x = torch.cat([cur, d[:, t - 1:t], shown, loss[:, t].view(-1, 1, 1, 1).expand_as(cur)], 1)
        logits = model.logits(x)
        sources = torch.cat(model.sources(x), 1)
        labels = oracle_labels(sources, c[:, t:t + 1], margin)
        total = total + F.cross_entropy(F.avg_pool2d(logits, BLOCK), labels, weight=torch.tensor([1.0, 3.0, 3.0]))
        with torch.no_grad():
            shown = ((torch.softmax(logits, 1) * sources).sum(1, keepdim=True) * 255).round() / 255
    return total / (d.shape[1] - 1)


def replay_run(model: RecoveryNet, run_dir: Path) -> dict[str, float]:
    """Full frames through the recurrence, as the element runs it; a frame the decoder never
    produced is held (as the element synthesises it). PSNR-Y against the original."""
    meta = json.loads((run_dir / "frames.json").read_text())
    orig, lossy = read_luma(run_dir, meta, "original.yuv"), read_luma(run_dir, meta, "lossy.yuv")
    fr = meta["frames"]
    decoder, shown_frames = [], []
    prev_d = prev_s = None
    pending_loss = False
    with torch.no_grad():
        for t, f in enumerate(fr):
            pending_loss |= bool(f["hit"])
            if not f["present"]:
                decoder.append(decoder[-1] if decoder else lossy[t])
                shown_frames.append(shown_frames[-1] if shown_frames else lossy[t])
                continue
            d = torch.from_numpy(lossy[t]).float()[None, None] / 255
            if prev_d is None:
                s = d
            else:
                lp = torch.full_like(d, float(pending_loss))
                s = (model(torch.cat([d, prev_d, prev_s, lp], 1)) * 255).round().clamp(0, 255) / 255
            pending_loss = False
            decoder.append(lossy[t])
            shown_frames.append((s[0, 0] * 255).round().byte().numpy())
            prev_d, prev_s = d, s
    n = len(fr)
    return {"decoder": float(np.mean([psnr(decoder[i], orig[i]) for i in range(n)])),
            "model": float(np.mean([psnr(shown_frames[i], orig[i]) for i in range(n)]))}


def oracle_replay(run_dir: Path, margin: float = 1.0) -> dict[str, float]:
    """The bound of this family of repairs: per block, the source nearest the lossless decode
    (knowing it), frame after frame. PSNR-Y against the original."""
    meta = json.loads((run_dir / "frames.json").read_text())
    orig, clean, lossy = (read_luma(run_dir, meta, n) for n in ("original.yuv", "clean.yuv", "lossy.yuv"))
    decoder, shown_frames = [], []
    prev_d = prev_s = None
    for t, f in enumerate(meta["frames"]):
        if not f["present"]:
            decoder.append(decoder[-1] if decoder else lossy[t])
            shown_frames.append(shown_frames[-1] if shown_frames else lossy[t])
            continue
        d = torch.from_numpy(lossy[t]).float()[None, None] / 255
        s = d
        if prev_d is not None:
            x = torch.cat([d, prev_d, prev_s, torch.zeros_like(d)], 1)
            sources = torch.cat(RecoveryNet.sources(x), 1)
            best = oracle_labels(sources, torch.from_numpy(clean[t]).float()[None, None] / 255, margin)
            pick = F.interpolate(best[:, None].float(), scale_factor=float(BLOCK), mode="nearest").long()
            pad = (0, d.shape[-1] - pick.shape[-1], 0, d.shape[-2] - pick.shape[-2])
            pick = F.pad(pick, pad)  # the partial blocks at the edge keep the decoder's
            s = sources.gather(1, pick)
        decoder.append(lossy[t])
        shown_frames.append((s[0, 0] * 255).round().byte().numpy())
        prev_d, prev_s = d, s
    n = len(meta["frames"])
    return {"decoder": float(np.mean([psnr(decoder[i], orig[i]) for i in range(n)])),
            "oracle": float(np.mean([psnr(shown_frames[i], orig[i]) for i in range(n)]))}


def export_recovery(model: RecoveryNet, path: Path) -> str:
    """ONNX (opset 17, dynamic size) checked against PyTorch at an odd size; returns the sha256."""
    from .export import verify_onnx

    model.eval()
    dummy = torch.rand(1, INPUT_PLANES, 48, 64)
    torch.onnx.export(model, (dummy,), str(path), input_names=["frames"], output_names=["shown"], opset_version=17,
                      dynamic_axes={"frames": {2: "height", 3: "width"}, "shown": {2: "height", 3: "width"}},
                      dynamo=False)
    return verify_onnx(model, path, "frames", INPUT_PLANES)
