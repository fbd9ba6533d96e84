"""Training pairs (decoded low rung, original) made with the real degradation, cached on disk."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .clips import EVAL, TRAIN, Clip, data_root
from .degrade import Codec, degrade, read_luma


@dataclass(frozen=True)
class PairConfig:
    scale: int = 2
    codecs: tuple[Codec, ...] = (Codec("x264", 18), Codec("x264", 23), Codec("x264", 28), Codec("x264", 33))
    frames_per_clip: int = 24
    frame_step: int = 6
    patch_lr: int = 48
    patches_per_frame: int = 24
    seed: int = 0
    clips: tuple[Clip, ...] = field(default=TRAIN)
    # Temporal pairs: each LR patch comes with the same patch of the previous decoded frame,
    # stacked (previous, current) on axis 1.
    temporal: bool = False

    def key(self) -> str:
        fields = asdict(self)
        # A clip's source is a label for the evaluation's split, not part of what the pairs are
        # made of: left out so caches made before it was recorded stay valid.
        fields["clips"] = [{k: v for k, v in c.items() if k != "source"} for c in fields["clips"]]
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_pairs(cfg: PairConfig, cache_dir: Path, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (lr, hr) uint8 patch stacks, from the cache if there: lr is (N, p, p), or
    (N, 2, p, p) for temporal pairs; hr is (N, p*s, p*s)."""
    root = root or data_root()
    cache = cache_dir / f"pairs-{cfg.key()}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["lr"], z["hr"]
    rng = np.random.default_rng(cfg.seed)
    lrs, hrs = [], []
    p, s = cfg.patch_lr, cfg.scale
    jobs = [(clip, codec) for clip in cfg.clips for codec in cfg.codecs]
    hr_frames: dict[str, np.ndarray] = {}
    for clip, codec in tqdm(jobs, desc=f"pairs x{s}", unit="rung"):
        if clip.path not in hr_frames:
            if cfg.temporal:
                # Consecutive frames, so each sampled frame has its real predecessor; the codec
                # sees the whole run, as in a stream.
                hr_frames[clip.path] = read_luma(clip, root, s, cfg.frames_per_clip * cfg.frame_step, 1)
            else:
                hr_frames[clip.path] = read_luma(clip, root, s, cfg.frames_per_clip, cfg.frame_step)
        hr = hr_frames[clip.path]
        lr = degrade(hr, s, codec, clip.fps)
        _, lh, lw = lr.shape
        if lh < p or lw < p:
            continue
        picked = range(1, lr.shape[0], cfg.frame_step) if cfg.temporal else range(lr.shape[0])
        for f in picked:
            ys = rng.integers(0, lh - p + 1, cfg.patches_per_frame)
            xs = rng.integers(0, lw - p + 1, cfg.patches_per_frame)
            for y, x in zip(ys, xs):
                if cfg.temporal:
                    lrs.append(lr[f - 1 : f + 1, y : y + p, x : x + p])
                else:
                    lrs.append(lr[f, y : y + p, x : x + p])
                hrs.append(hr[f, y * s : (y + p) * s, x * s : (x + p) * s])
    lr_arr, hr_arr = np.stack(lrs), np.stack(hrs)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, lr=lr_arr, hr=hr_arr)
    tmp.replace(cache)
    return lr_arr, hr_arr


def eval_frames(
    scale: int, codec: Codec, frames: int = 16, clips: tuple[Clip, ...] = EVAL, root: Path | None = None
) -> list[tuple[Clip, np.ndarray, np.ndarray]]:
    """Whole held-out frames: (clip, lr (N,h,w), hr (N,H,W)) for each evaluation clip."""
    root = root or data_root()
    out = []
    for clip in clips:
        hr = read_luma(clip, root, scale, frames)
        out.append((clip, degrade(hr, scale, codec, clip.fps), hr))
    return out
