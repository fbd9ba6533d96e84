"""Pans over photographs: short videos made of still pictures, so that real codecs code them.

The training clips of `../shared/data` are nine, and a student trained on them alone gains half as
much on video of other sources (docs/research/2026-12-06-bar-free-protocol.md). Photographs bring
the variety (the Debian wallpaper packages of `scripts/fetch_pictures.sh`: landscapes, cities,
animals, plants, interiors), but a still has no motion for an encoder to predict, and the codec's
rungs are what the student must learn to undo. A pan is the simplest real motion: a window moves
over the picture by a whole number of original pixels per frame (half a pixel and more at the x2
low rung: sub-pixel motion there), the frames go through x264, x265, VP9 or AV1 like every clip,
and the frame before each sampled frame is the window one step back (what a temporal student
sees). The picture is first shrunk (by 2 or more, `shrink_factor`) to clean away its JPEG coding.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import luma, picture_key
from .pack import detail

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

    @property
    def label(self) -> str:
        """The name a pack (and a model card) gives it: pictures/<source>/<picture>."""
        return f"pictures/{self.source}/{Path(picture_key(Path(self.path))).name}"

    def pan(self, frames: int, rng: np.random.Generator, shutter: float = 0.0) -> np.ndarray:
        """The frames of a pan over this picture (what `pack.build_pack` codes for it)."""
        return pan(self, frames, rng, shutter=shutter)


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


def pictures_of(paths: list[Path], debs: Path | None = None, window: tuple[int, int] = WINDOW,
                min_detail: float = 1.0) -> tuple[Picture, ...]:
    """The photographs to pan over, named by their package: those a window fits in once shrunk,
    and not flat (gradients and logos on a plain ground, which the wallpaper packages also hold,
    measure below 1 on the image packs' detail measure; photographs with much sky or a blurred
    background measure 1-5, so the pack picks detailed crops of them instead)."""
    owner = deb_contents(debs) if debs is not None and debs.is_dir() else {}
    fits = []
    for p in paths:
        small = shrunk_luma(Path(p))
        if small.shape[1] >= window[0] and small.shape[0] >= window[1] and detail(small) >= min_detail:
            fits.append(Picture(str(p), source_of(p, owner)))
    return tuple(fits)


def shrink_factor(size: tuple[int, int]) -> int:
    """How much a picture is shrunk before the pan: at least 2 (cleans its JPEG coding), more for
    big photographs, so the frame shows about as much of the scene as a 1080p video frame does."""
    return max(2, min(size[0] // 1600, size[1] // 900))


def shrunk_luma(path: Path) -> np.ndarray:
    """The picture's luma (uint8) shrunk by `shrink_factor`. Pillow's bicubic resize widens its
    kernel by the factor (antialiased, as MATLAB's is) and is fast on 24-megapixel photographs,
    where a dense matrix product is not."""
    Image.MAX_IMAGE_PIXELS = None  # wallpapers go up to 6000x4000
    with Image.open(path) as im:
        y = luma(np.asarray(im.convert("RGB"), dtype=np.float64)).astype(np.float32)
    f = shrink_factor((y.shape[1], y.shape[0]))
    shrunk = Image.fromarray(y, mode="F").resize((y.shape[1] // f, y.shape[0] // f), Image.BICUBIC)
    return np.clip(np.rint(np.asarray(shrunk)), 0, 255).astype(np.uint8)


def motion_blur(picture: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """What a camera records of `picture` while it moves by (dx, dy) pixels during the exposure:
    the mean of the picture shifted along that segment, centred on the frame's own position
    (SciPy's bilinear shifts, a quarter of a pixel apart; edges repeated). uint8 in and out."""
    from scipy import ndimage

    length = float(np.hypot(dx, dy))
    if length < 0.25:
        return picture
    n = int(np.ceil(4 * length)) + 1
    still = picture.astype(np.float32)
    acc = sum(ndimage.shift(still, (t * dy, t * dx), order=1, mode="nearest") for t in np.linspace(-0.5, 0.5, n))
    return np.clip(np.rint(acc / n), 0, 255).astype(np.uint8)


def pan(picture: Picture, frames: int, rng: np.random.Generator, window: tuple[int, int] = WINDOW,
        shutter: float = 0.0) -> np.ndarray:
    """`frames` luma frames (N, H, W) uint8 of a window moving in a straight line over the shrunk
    picture; the speed and direction are drawn from `rng`, slower where the picture is small.

    `shutter` > 0: the pan is filmed, not sampled: each pan draws an exposure of up to `shutter`
    frame intervals (uniformly; 0.5 is a film camera's 180-degree shutter), and every frame carries
    the motion blur of the window's travel during it. Real video that moves is blurred along its
    motion; a student that only ever saw sharp pans sharpens that blur into detail that is not
    there. 0 (the default) draws nothing more from `rng`, so earlier packs rebuild identically."""
    small = shrunk_luma(Path(picture.path))
    h, w = small.shape
    ww, wh = window
    if w < ww or h < wh:
        raise ValueError(f"{picture.path}: {w}x{h} once shrunk is smaller than the {ww}x{wh} window")
    steps = max(frames - 1, 1)
    room_x, room_y = (w - ww) // steps, (h - wh) // steps
    vx = int(rng.integers(-min(MAX_SPEED, room_x), min(MAX_SPEED, room_x) + 1))
    vy = int(rng.integers(-min(MAX_SPEED, room_y), min(MAX_SPEED, room_y) + 1))
    if vx == 0 and vy == 0:  # a still is not a pan: move by one pixel where there is room
        vx, vy = (1, 0) if room_x > 0 else (0, 1 if room_y > 0 else 0)
    span_x, span_y = abs(vx) * steps, abs(vy) * steps
    x0 = int(rng.integers(0, w - ww - span_x + 1)) + (span_x if vx < 0 else 0)
    y0 = int(rng.integers(0, h - wh - span_y + 1)) + (span_y if vy < 0 else 0)
    if shutter > 0:
        exposure = float(rng.uniform(0.0, shutter))
        small = motion_blur(small, exposure * vx, exposure * vy)
    return np.stack([small[y0 + vy * t : y0 + vy * t + wh, x0 + vx * t : x0 + vx * t + ww] for t in range(frames)])
