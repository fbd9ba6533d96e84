"""Image packs: crops of still photographs in the frame-pack format, for the clean BI students.

The video clips of `../shared/data` are few (eight training clips) and most were compressed
before we got them, so their "originals" are soft. Vid4's frames are dense in fine detail
(calendar text, city windows, foliage). Photographs fill that gap: each picture is shrunk by 2, 3
and 4 (MATLAB bicubic, as Vid4's low-resolution frames are made), which cleans away its JPEG
coding and gives the detail density of a video frame at several scales; flat crops are dropped.

A still has no previous frame, so the pack stores the same region shifted by a few pixels
(`shift`): at the x4 low rung that is sub-pixel motion, the case of Vid4 (whose consecutive
low-resolution frames are best aligned by a zero integer shift). Temporal students learn from
it what the previous frame adds; single-frame students ignore it.

The pictures used for the shipped model are the photographic wallpapers of Debian packages
(`scripts/fetch_pictures.sh`: DFSG-free, fetched with apt like every other dependency).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .pack import detail, matlab_downscale

SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ImagePackConfig:
    crop: int = 288  # the BI video pack's crop, so the two merge (pack.merge_packs)
    stride: int = 144
    shift: int = 3  # largest shift (HR pixels, each axis) of the stand-in previous frame
    min_detail: float = 5.0  # mean absolute horizontal + vertical luma step of a kept crop
    factors: tuple[int, ...] = (2, 3, 4)
    min_bytes: int = 300_000  # smaller files are icons, previews or flat art
    seed: int = 0


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-swing luma of 8-bit RGB, the Vid4 convention (nerve-eval vid4)."""
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def picture_key(path: Path) -> str:
    """What names a picture whatever its size: wallpapers ship several sizes of one picture
    (`<Name>/contents/images/WxH.jpg`, `<name>_WxH.jpg`)."""
    s = str(path)
    if "/contents/" in s:
        return s.split("/contents/")[0] + ("-dark" if "/images_dark/" in s else "")
    return re.sub(r"_\d+x\d+$", "", str(path.with_suffix("")))


def picture_name(path: Path) -> str:
    """The name a model card lists: the picture's file name, or its wallpaper's folder name."""
    return Path(picture_key(path)).name + path.suffix if "/contents/" in str(path) else path.name


def find_pictures(roots: list[Path], min_bytes: int) -> list[Path]:
    """One file per picture (see `picture_key`): the largest."""
    best: dict[str, tuple[Path, int]] = {}
    for root in roots:
        for f in sorted(root.rglob("*")):
            if f.suffix.lower() not in SUFFIXES or f.stat().st_size < min_bytes:
                continue
            key = picture_key(f)
            with Image.open(f) as im:
                area = im.size[0] * im.size[1]
            if key not in best or area > best[key][1]:
                best[key] = (f, area)
    return [best[k][0] for k in sorted(best)]


def build_image_pack(cfg: ImagePackConfig, pictures: list[Path], out: Path) -> Path:
    """Crops every picture at each factor; writes a pack with `hr` and `hr_prev` (no codec rungs)."""
    if not pictures:
        raise ValueError("no pictures to pack")
    rng = np.random.default_rng(cfg.seed)
    hr: list[np.ndarray] = []
    prev: list[np.ndarray] = []
    clip: list[int] = []
    names: list[str] = []
    margin = cfg.shift
    Image.MAX_IMAGE_PIXELS = None  # the wallpapers go up to 6000x4000
    for f in tqdm(pictures, desc="pack pictures", unit="picture"):
        with Image.open(f) as im:
            y = torch.from_numpy(luma(np.asarray(im.convert("RGB"), dtype=np.float64)))[None]
        before = len(hr)
        for d in cfg.factors:
            if min(y.shape[1:]) // d < cfg.crop + 2 * margin + 1:
                continue
            small = matlab_downscale(y, d)[0].numpy().astype(np.uint8)
            h, w = small.shape
            for top in range(margin, h - cfg.crop - margin, cfg.stride):
                for left in range(margin, w - cfg.crop - margin, cfg.stride):
                    c = small[top : top + cfg.crop, left : left + cfg.crop]
                    if detail(c) < cfg.min_detail:
                        continue
                    dy, dx = (int(v) for v in rng.integers(-cfg.shift, cfg.shift + 1, 2))
                    hr.append(c)
                    prev.append(small[top + dy : top + dy + cfg.crop, left + dx : left + dx + cfg.crop])
                    clip.append(len(names))
        if len(hr) > before:
            names.append(f"pictures/{picture_name(f)}")
    if not hr:
        raise ValueError(f"no crop of {len(pictures)} pictures has detail >= {cfg.min_detail}")
    meta = {"config": asdict(cfg) | {"kind": "pictures"}, "clips": names, "contents": ["photo"] * len(names)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, hr=np.stack(hr), hr_prev=np.stack(prev), clip=np.array(clip, np.int16),
                        valid=np.full(len(hr), cfg.crop, np.int16),
                        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    tmp.replace(out)
    return out
