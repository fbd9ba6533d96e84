"""Pans over photographs: short videos made of still pictures, so that real codecs code them.

The training clips of `../shared/data` are nine, and a student trained on them alone gains half as
much on video of other sources (docs/research/2026-12-06-bar-free-protocol.md). Photographs bring
the variety (the Debian wallpaper packages of `scripts/fetch_pictures.sh`: landscapes, cities,
animals, plants, interiors), but a still has no motion for an encoder to predict, and the codec's
rungs are what the student must learn to undo. A pan is the simplest real motion: a window moves
over the picture by a whole number of original pixels per frame (half a pixel and more at the x2
low rung: sub-pixel motion there), the frames go through x264, x265, VP9 or AV1 like every clip,
and the frame before each sampled frame is the window one step back (what a temporal student
sees). The picture is first shrunk by 2 (MATLAB bicubic) to clean away its JPEG coding.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import luma, picture_key
from .pack import matlab_downscale

WINDOW = (768, 432)
"""The pan's frame (width, height): 16:9, a multiple of the pack's 24-pixel grid."""

MAX_SPEED = 4
"""Largest step per frame along each axis, in (shrunk) picture pixels."""


@dataclass(frozen=True)
class Picture:
    """A photograph as a training "clip": what the pack needs of a clip, plus where it came from."""

    path: str  # absolute path of the picture file
    source: str  # the Debian package (else the folder) it came from, listed in the model card
    content: str = "picture"
    fps: int = 25
    raw_size: None = None


def deb_contents(debs: Path) -> dict[str, str]:
    """File path (as under the unpacked root, `usr/share/...`) -> Debian package, from the .deb
    files `scripts/fetch_pictures.sh` downloaded (`dpkg-deb --contents`)."""
    owner: dict[str, str] = {}
    for deb in sorted(debs.glob("*.deb")):
        package = deb.name.split("_")[0]
        listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
        for line in listing.splitlines():
            name = line.split(None, 5)[-1].split(" -> ")[0].removeprefix("./")  # a link: its own name
            owner[name] = package
    return owner


def source_of(path: Path, owner: dict[str, str]) -> str:
    """The Debian package a picture came from. Enlightenment's photographs are taken out of its
    Edje files by the fetch script (`enlightenment/photos`), so they have no entry of their own."""
    s = path.as_posix()
    if "/usr/share/" in s:
        rel = "usr/share/" + s.split("/usr/share/", 1)[1]
        if rel in owner:
            return owner[rel]
        if "/enlightenment/photos/" in s:
            return "enlightenment-data"
    return path.parent.name


def pictures_of(paths: list[Path], debs: Path | None = None, window: tuple[int, int] = WINDOW) -> tuple[Picture, ...]:
    """The pictures a pan fits in (shrunk by 2, at least the window), named by their package."""
    owner = deb_contents(debs) if debs is not None and debs.is_dir() else {}
    Image.MAX_IMAGE_PIXELS = None
    fits = []
    for p in paths:
        with Image.open(p) as im:
            if im.size[0] // 2 >= window[0] and im.size[1] // 2 >= window[1]:
                fits.append(Picture(str(p), source_of(p, owner)))
    return tuple(fits)


def picture_label(p: Picture) -> str:
    """The name a pack (and a model card) gives a picture: pictures/<source>/<picture>."""
    return f"pictures/{p.source}/{Path(picture_key(Path(p.path))).name}"


def pan(picture: Picture, frames: int, rng: np.random.Generator, window: tuple[int, int] = WINDOW) -> np.ndarray:
    """`frames` luma frames (N, H, W) uint8 of a window moving in a straight line over the picture
    shrunk by 2; the speed and direction are drawn from `rng`, slower where the picture is small."""
    Image.MAX_IMAGE_PIXELS = None  # wallpapers go up to 6000x4000
    with Image.open(picture.path) as im:
        y = torch.from_numpy(luma(np.asarray(im.convert("RGB"), dtype=np.float64)))[None]
    small = matlab_downscale(y, 2)[0].numpy().astype(np.uint8)
    h, w = small.shape
    ww, wh = window
    if w < ww or h < wh:
        raise ValueError(f"{picture.path}: {w}x{h} after shrinking by 2 is smaller than the {ww}x{wh} window")
    steps = max(frames - 1, 1)
    room_x, room_y = (w - ww) // steps, (h - wh) // steps
    vx = int(rng.integers(-min(MAX_SPEED, room_x), min(MAX_SPEED, room_x) + 1))
    vy = int(rng.integers(-min(MAX_SPEED, room_y), min(MAX_SPEED, room_y) + 1))
    if vx == 0 and vy == 0:  # a still is not a pan: move by one pixel where there is room
        vx, vy = (1, 0) if room_x > 0 else (0, 1 if room_y > 0 else 0)
    span_x, span_y = abs(vx) * steps, abs(vy) * steps
    x0 = int(rng.integers(0, w - ww - span_x + 1)) + (span_x if vx < 0 else 0)
    y0 = int(rng.integers(0, h - wh - span_y + 1)) + (span_y if vy < 0 else 0)
    return np.stack([small[y0 + vy * t : y0 + vy * t + wh, x0 + vx * t : x0 + vx * t + ww] for t in range(frames)])
