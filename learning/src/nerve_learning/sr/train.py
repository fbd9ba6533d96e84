"""Training of the SR students on (decoded low rung, original) luma pairs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..data.dataset import PairConfig, build_pairs, eval_frames
from ..data.degrade import Codec
from ..metrics import psnr
from .model import Student


@dataclass
class TrainConfig:
    scale: int = 2
    channels: int = 16
    depth: int = 2
    steps: int = 6000
    batch: int = 32
    lr: float = 5e-4  # 2e-3 kills the ReLUs of these narrow nets (measured: +0.00 dB vs +1.0 dB)
    seed: int = 0
    threads: int = 2
    frames: int = 1  # 2: temporal student (previous + current frame)
    distill: float = 0.0  # weight of the teacher term in the student loss (0: no teacher)
    block: int = 1  # 2: space-to-depth student (see model.Student)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W) -> float (N,1,H,W); (N,F,H,W) stacks of frames keep their F channels."""
    t = torch.from_numpy(a.astype(np.float32) / 255.0)
    return t.unsqueeze(1) if t.dim() == 3 else t


def stacked(lr: np.ndarray, frames: int) -> np.ndarray:
    """Whole-sequence LR frames (N,h,w) as model inputs (N,frames,h,w): each frame with its
    predecessors, oldest first, the first frame standing in for missing ones (as nervesr does)."""
    idx = np.arange(len(lr))
    return np.stack([lr[np.maximum(idx - (frames - 1 - k), 0)] for k in range(frames)], axis=1)


def upscale(model: nn.Module, lr: np.ndarray) -> np.ndarray:
    """Runs a model over whole uint8 luma frames (N,h,w), or stacks (N,F,h,w), and returns
    uint8 (N,H,W)."""
    model.eval()
    with torch.no_grad():
        outs = [model(to_tensor(lr[i : i + 1])) for i in range(lr.shape[0])]
    out = torch.cat(outs).squeeze(1).numpy()
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def evaluate(model: Student, codecs: tuple[Codec, ...], frames: int = 8) -> dict[str, dict[str, float]]:
    """PSNR-Y of the model and of its own bicubic branch on the held-out clips."""
    report: dict[str, dict[str, float]] = {}
    for codec in codecs:
        for clip, lr, hr in eval_frames(model.scale, codec, frames):
            sr = upscale(model, stacked(lr, model.frames))
            bic = upscale(model.upscale, lr)
            key = f"{clip.content}/{codec.name}-crf{codec.crf}"
            report[key] = {"psnr_y": psnr(sr, hr), "psnr_y_bicubic": psnr(bic, hr)}
    return report


def train(
    cfg: TrainConfig, pairs: PairConfig, cache_dir: Path, log: Path | None = None, teacher: nn.Module | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """Trains `model` (default: a fresh Student) with L1 to the original, plus, with a teacher,
    `cfg.distill` x L1 to the teacher's output on the current frame (knowledge distillation)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    lr_np, hr_np = build_pairs(pairs, cache_dir)
    lr_t, hr_t = to_tensor(lr_np), to_tensor(hr_np)
    if model is None:
        model = Student(cfg.scale, cfg.channels, cfg.depth, cfg.frames, block=cfg.block)
    if teacher is not None:
        teacher.eval()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    started = time.time()
    bar = tqdm(range(cfg.steps), desc=f"train x{cfg.scale}", unit="step")
    for step in bar:
        idx = torch.randint(0, lr_t.shape[0], (cfg.batch,), generator=gen)
        x, y = lr_t[idx], hr_t[idx]
        # Flips and transposes: the degradation has no preferred orientation.
        if step % 2:
            x, y = x.flip(-1), y.flip(-1)
        if step % 3 == 0:
            x, y = x.transpose(-1, -2), y.transpose(-1, -2)
        model.train()
        out = model(x)
        loss = nn.functional.l1_loss(out, y)
        if teacher is not None and cfg.distill > 0:
            with torch.no_grad():
                target = teacher(x[:, -1:])
            loss = loss + cfg.distill * nn.functional.l1_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            bar.set_postfix(l1=f"{loss.item():.4f}")
    if log is not None:
        log.write_text(json.dumps({"train": asdict(cfg), "pairs": pairs.key(), "n_pairs": int(lr_np.shape[0]),
                                   "seconds": time.time() - started}, indent=2))
    return model
