"""Frame packs: training crops of the original frames with their decoded low rungs, in one
portable compressed file, so that training can run where there is no ffmpeg (a GPU machine).

A pack holds, for each training clip, crops of every `frame_step`-th frame (`hr`, uint8, size a
multiple of 24 so every scale divides it) and, for each scale and codec rung, the same region of
the decoded low rung (`lr/x{s}/{codec}-{crf}`), cut from the whole decoded frame (the encoder saw
the whole frame, not the crop). The clean "BI" rung (MATLAB bicubic, no codec) is not stored: it
is computed from `hr` by `matlab_downscale`, exactly as Vid4's low-resolution frames are.
With `previous`, each crop also comes with the same region of the frame before it (`hr_prev`,
`prev/x{s}/...`, decoded in sequence), for temporal students.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .clips import TRAIN, Clip, data_root
from .degrade import Codec, degrade, probe_size, read_luma

PICTURE_CANDIDATES = 4  # random crop spots per picture crop, the most detailed kept
ALIGN = 24  # lcm of 2 x every scale (2, 3, 4): crops land on whole low-rung pixels at each scale


@dataclass(frozen=True)
class PackConfig:
    scales: tuple[int, ...] = (2, 3, 4)
    codecs: tuple[Codec, ...] = (
        Codec("x264", 18), Codec("x264", 23), Codec("x264", 28), Codec("x264", 33),
        Codec("x265", 28), Codec("vp9", 40), Codec("av1", 45),
    )
    frames_per_clip: int = 16
    frame_step: int = 6
    crop: int = 384
    crops_per_frame: int = 2
    seed: int = 0
    clips: tuple[Clip, ...] = field(default=TRAIN)
    # > 1: the originals are first shrunk by this factor (MATLAB bicubic), which cleans away the
    # sources' own compression and softness; a pack for the clean BI degradation, without rungs.
    hr_downscale: int = 1
    previous: bool = False  # also store the frame before each sampled frame (temporal students)
    # Downscale kernels, in turn over (clip, rung): clip i's rung k uses kernels[(i + k) % n], so
    # every rung sees every kernel across clips and the pack's rung count does not grow.
    kernels: tuple[str, ...] = ("bicubic",)
    # Photographs coded as pans (data/pans.py), after the clips; `frames_per_picture` sampled each.
    pictures: tuple = ()
    frames_per_picture: int = 4
    # > 0: the pans carry camera motion blur, each with an exposure drawn up to this many frame
    # intervals (data.pans.pan).
    shutter: float = 0.0


def rung_key(scale: int, codec: Codec) -> str:
    return f"lr/x{scale}/{codec.name}-{codec.crf}"


def prev_key(scale: int, codec: Codec) -> str:
    return f"prev/x{scale}/{codec.name}-{codec.crf}"


def build_pack(cfg: PackConfig, out: Path, root: Path | None = None) -> Path:
    """Decodes, degrades and crops; writes `out` (npz, compressed) and returns it."""
    root = root or data_root()
    rng = np.random.default_rng(cfg.seed)
    hr_crops: list[np.ndarray] = []
    clip_of: list[int] = []
    valid: list[int] = []
    prev_crops: list[np.ndarray] = []
    lr_crops: dict[str, list[np.ndarray]] = {rung_key(s, c): [] for s in cfg.scales for c in cfg.codecs}
    if cfg.previous:
        lr_crops |= {prev_key(s, c): [] for s in cfg.scales for c in cfg.codecs}
    sources = (*cfg.clips, *cfg.pictures)
    for ci, clip in enumerate(tqdm(sources, desc="pack clips and pictures", unit="clip")):
        if hasattr(clip, "pan"):  # a photograph (data.pans.Picture): its frames are made, not read
            sampled = cfg.frames_per_picture
            # Every frame is coded, so the codec predicts across the pan; sampled below.
            seq = clip.pan(sampled * cfg.frame_step + 1, rng, shutter=cfg.shutter)
            h, w = seq.shape[1:]
            picked = np.arange(1, len(seq), cfg.frame_step)[:sampled]
        else:
            w, h = probe_size(clip, root)
            w, h = w // ALIGN * ALIGN, h // ALIGN * ALIGN
            # read_luma crops to a multiple of 2*scale; with scale 12 that is 24, the common grid.
            if cfg.previous:  # every frame, so the codec sees the real sequence; sampled below
                seq = read_luma(clip, root, 12, cfg.frames_per_clip * cfg.frame_step + 1)[:, :h, :w]
                picked = np.arange(1, len(seq), cfg.frame_step)[: cfg.frames_per_clip]
            else:
                seq = read_luma(clip, root, 12, cfg.frames_per_clip, cfg.frame_step)[:, :h, :w]
                picked = np.arange(len(seq))
        if cfg.hr_downscale > 1:
            d = cfg.hr_downscale
            small = matlab_downscale(torch.from_numpy(seq).float(), d).numpy().astype(np.uint8)
            h, w = h // d // ALIGN * ALIGN, w // d // ALIGN * ALIGN
            seq = np.ascontiguousarray(small[:, :h, :w])
        crop = min(cfg.crop, h // ALIGN * ALIGN, w // ALIGN * ALIGN)
        def spot(f: int) -> tuple[int, int, int]:
            return (f, int(rng.integers(0, (h - crop) // ALIGN + 1)) * ALIGN, int(rng.integers(0, (w - crop) // ALIGN + 1)) * ALIGN)

        def detail_at(s: tuple[int, int, int]) -> float:
            f, y, x = s
            return detail(seq[f, y : y + crop, x : x + crop])

        # A photograph's sky or blurred background teaches nothing: of PICTURE_CANDIDATES random
        # spots the most detailed is kept (a clip's crops stay random: its flat parts are real video).
        tries = PICTURE_CANDIDATES if hasattr(clip, "pan") else 1
        spots = [max((spot(int(f)) for _ in range(tries)), key=detail_at) for f in picked for _ in range(cfg.crops_per_frame)]
        for f, y, x in spots:
            hr_crops.append(_fit(seq[f, y : y + crop, x : x + crop], cfg.crop))
            if cfg.previous:
                prev_crops.append(_fit(seq[f - 1, y : y + crop, x : x + crop], cfg.crop))
            clip_of.append(ci)
            valid.append(crop)
        for s in cfg.scales:
            for k, codec in enumerate(cfg.codecs):
                lr = degrade(seq, s, codec, clip.fps, cfg.kernels[(ci + k) % len(cfg.kernels)])
                for f, y, x in spots:
                    region = (slice(y // s, (y + crop) // s), slice(x // s, (x + crop) // s))
                    lr_crops[rung_key(s, codec)].append(_fit(lr[f][region], cfg.crop // s))
                    if cfg.previous:
                        lr_crops[prev_key(s, codec)].append(_fit(lr[f - 1][region], cfg.crop // s))
    arrays = {k: np.stack(v) for k, v in lr_crops.items()}
    if cfg.previous:
        arrays["hr_prev"] = np.stack(prev_crops)
    meta = {"config": asdict(cfg) | {"pictures": len(cfg.pictures)}, "clips": [_label(c) for c in sources],
            "contents": [c.content for c in sources], "sources": [c.source for c in sources]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, hr=np.stack(hr_crops), clip=np.array(clip_of, np.int16), valid=np.array(valid, np.int16),
                        meta=np.frombuffer(json.dumps(meta, default=str).encode(), np.uint8), **arrays)
    tmp.replace(out)
    return out


def detail(crop: np.ndarray) -> float:
    """Mean absolute horizontal + vertical luma step: how much detail a crop holds."""
    c = crop.astype(np.float32)
    return float(np.abs(np.diff(c, axis=1)).mean() + np.abs(np.diff(c, axis=0)).mean())


def _label(clip: object) -> str:
    """What the pack (and a model card) calls a clip: its path, or a picture's own label."""
    return str(getattr(clip, "label", None) or clip.path)  # type: ignore[attr-defined]


def _fit(a: np.ndarray, size: int) -> np.ndarray:
    """Small clips give smaller crops: padded (edge) to the pack's crop size; `valid` records the
    real extent and the sampler draws patches from that top-left region only."""
    if a.shape == (size, size):
        return a
    return np.pad(a, ((0, size - a.shape[0]), (0, size - a.shape[1])), mode="edge")


@dataclass
class Pack:
    hr: np.ndarray
    clip: np.ndarray
    valid: np.ndarray
    lr: dict[str, np.ndarray]
    meta: dict
    hr_prev: np.ndarray | None = None  # the frame before each crop's frame, same region
    prev: dict[str, np.ndarray] = field(default_factory=dict)  # its decoded rungs

    def clips(self) -> list[str]:
        return list(self.meta["clips"])


def load_pack(path: Path) -> Pack:
    with np.load(path) as z:
        lr = {k: z[k] for k in z.files if k.startswith("lr/")}
        prev = {k: z[k] for k in z.files if k.startswith("prev/")}
        meta = json.loads(bytes(z["meta"]).decode())
        hr_prev = z["hr_prev"] if "hr_prev" in z.files else None
        return Pack(hr=z["hr"], clip=z["clip"], valid=z["valid"], lr=lr, meta=meta, hr_prev=hr_prev, prev=prev)


def merge_packs(packs: list[Pack]) -> Pack:
    """One pack of the crops of several (a video BI pack and an image pack, say). Stored codec
    rungs are kept when every pack holds the same ones (packs of clips and of pictures' pans made
    with the same `--codecs` and `--scales`); otherwise they are dropped and the pack serves the
    clean BI degradation only, whose low rungs are computed from `hr`."""
    if len({p.hr.shape[1:] for p in packs}) != 1:
        raise ValueError(f"packs of different crop sizes: {[p.hr.shape[1:] for p in packs]}")
    with_prev = [p.hr_prev is not None for p in packs]
    if any(with_prev) and not all(with_prev):
        raise ValueError("either every pack or none has previous frames")
    names: list[str] = []
    clip = []
    for p in packs:
        clip.append(p.clip.astype(np.int16) + len(names))
        names += p.clips()
    meta = {"config": {"merged": [p.meta.get("config", {}) for p in packs]}, "clips": names,
            "contents": [c for p in packs for c in p.meta.get("contents", [""] * len(p.clips()))]}
    same_rungs = len({(tuple(sorted(p.lr)), tuple(sorted(p.prev))) for p in packs}) == 1
    lr = {k: np.concatenate([p.lr[k] for p in packs]) for k in packs[0].lr} if same_rungs else {}
    prev = {k: np.concatenate([p.prev[k] for p in packs]) for k in packs[0].prev} if same_rungs else {}
    return Pack(hr=np.concatenate([p.hr for p in packs]), clip=np.concatenate(clip),
                valid=np.concatenate([p.valid for p in packs]), lr=lr, meta=meta,
                hr_prev=np.concatenate([p.hr_prev for p in packs]) if all(with_prev) else None, prev=prev)


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1,
                    np.where(a < 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0))


def matlab_weights(in_len: int, scale: int) -> np.ndarray:
    """(in_len/scale, in_len) matrix of MATLAB imresize(x, 1/scale, 'bicubic') along one axis:
    antialiased cubic (a = -0.5), symmetric borders. Same maths as nerve-eval's vid4.rs."""
    out_len = in_len // scale
    s = 1.0 / scale
    width = 4.0 / s
    m = np.zeros((out_len, in_len))
    for i in range(out_len):
        u = (i + 1) / s + 0.5 * (1 - 1 / s)
        left = math.floor(u - width / 2)
        idx = np.arange(left, left + math.ceil(width) + 2)
        w = s * _cubic(s * (u - idx))
        w = w / w.sum()
        for j, wt in zip(idx, w):
            k = j - 1  # 1-based -> 0-based, then mirror (symmetric: the edge sample repeats)
            if k < 0:
                k = -k - 1
            if k >= in_len:
                k = 2 * in_len - k - 1
            m[i, k] += wt
    return m


def matlab_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, H, W) float 0..255 -> (N, H/s, W/s), rounded to 8 bits as a stored LR image is."""
    n, h, w = hr.shape
    mh = torch.tensor(matlab_weights(h, scale), dtype=torch.float64, device=hr.device)
    mw = torch.tensor(matlab_weights(w, scale), dtype=torch.float64, device=hr.device)
    out = mh @ hr.double() @ mw.T
    return out.round().clamp(0, 255).float()
