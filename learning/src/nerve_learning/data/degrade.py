"""The streaming degradation, done by real codecs: downscale by the scale, encode, decode. Frames
travel as raw 8-bit luma planes through ffmpeg pipes.

The downscale kernel is bicubic unless told otherwise: services differ (and nerve-eval's ladder
downscales with GStreamer's Catmull-Rom), so packs can mix kernels (`KERNELS`) and a student does
not learn to undo one kernel only."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .clips import Clip


def ffmpeg_exe() -> str:
    """The ffmpeg from the imageio-ffmpeg wheel (it has libx264, libx265, libvpx, libaom, libvmaf)."""
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True)
class Codec:
    name: str  # x264, x265, vp9, av1
    crf: int

    def args(self) -> list[str]:
        if self.name == "none":  # the clean "BI" degradation: bicubic downscale only, lossless
            return ["-c:v", "ffv1"]
        if self.name == "x264":
            return ["-c:v", "libx264", "-preset", "medium", "-crf", str(self.crf)]
        if self.name == "x265":
            return ["-c:v", "libx265", "-preset", "fast", "-crf", str(self.crf), "-x265-params", "log-level=error"]
        if self.name == "vp9":
            return ["-c:v", "libvpx-vp9", "-crf", str(self.crf), "-b:v", "0", "-row-mt", "1", "-cpu-used", "4"]
        if self.name == "av1":
            return ["-c:v", "libsvtav1", "-crf", str(self.crf), "-preset", "10", "-svtav1-params", "verbosity=0"]
        raise ValueError(f"unknown codec {self.name}")

    @property
    def container(self) -> str:
        return "webm" if self.name in ("vp9", "av1") else "matroska"


def _input_args(clip: Clip, root: Path) -> list[str]:
    path = str(root / clip.path)
    if clip.raw_size is not None:
        w, h = clip.raw_size
        return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}", "-r", str(clip.fps), "-i", path]
    if clip.path.endswith((".264", ".jsv")):
        return ["-r", str(clip.fps), "-i", path]
    return ["-i", path]


def probe_size(clip: Clip, root: Path) -> tuple[int, int]:
    """Width and height of the decoded clip."""
    if clip.raw_size is not None:
        return clip.raw_size
    out = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", *_input_args(clip, root), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    )
    for line in out.stderr.decode(errors="replace").splitlines():
        if "Video:" in line and "Stream" in line:
            for token in line.replace(",", " ").split():
                if "x" in token and token.split("x")[0].isdigit() and token.split("x")[1].isdigit():
                    return int(token.split("x")[0]), int(token.split("x")[1])
    raise RuntimeError(f"cannot find the size of {clip.path}")


def hr_geometry(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The HR crop: a multiple of 2*scale so the LR rung has even (4:2:0-codable) sizes."""
    m = 2 * scale
    return size[0] // m * m, size[1] // m * m


def read_luma(clip: Clip, root: Path, scale: int, max_frames: int, step: int = 1) -> np.ndarray:
    """HR luma frames (N, H, W) of the clip, cropped to the HR geometry, every `step`-th frame."""
    w, h = hr_geometry(probe_size(clip, root), scale)
    vf = f"crop={w}:{h}:0:0,select='not(mod(n\\,{step}))'"
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", *_input_args(clip, root), "-vf", vf, "-fps_mode", "passthrough",
         "-frames:v", str(max_frames), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    )
    return np.frombuffer(out.stdout, np.uint8).reshape(-1, h, w)


KERNELS = ("bicubic", "bilinear", "area", "lanczos")
"""ffmpeg's swscale kernels a pack can mix (`-vf scale=...:flags=<kernel>`)."""


def degrade(hr: np.ndarray, scale: int, codec: Codec, fps: int = 25, kernel: str = "bicubic") -> np.ndarray:
    """Downscale (`kernel`) + encode + decode HR luma frames; returns LR luma (N, H/s, W/s).

    Luma is carried as the Y plane of a grey 4:2:0 video so the encoder sees a real stream."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown downscale kernel {kernel!r}: one of {', '.join(KERNELS)}")
    n, h, w = hr.shape
    lw, lh = w // scale, h // scale
    encode = [
        ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-r", str(fps),
        "-i", "-", "-vf", f"scale={lw}:{lh}:flags={kernel},format=yuv420p", *codec.args(), "-f", codec.container, "-",
    ]
    encoded = subprocess.run(encode, input=hr.tobytes(), capture_output=True, check=True).stdout
    decode = [ffmpeg_exe(), "-v", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    decoded = subprocess.run(decode, input=encoded, capture_output=True, check=True).stdout
    lr = np.frombuffer(decoded, np.uint8).reshape(-1, lh, lw)
    if lr.shape[0] != n:
        raise RuntimeError(f"codec {codec} returned {lr.shape[0]} frames for {n}")
    return lr


DEFAULT_CODECS = "x264:18,x264:23,x264:28,x264:33"
"""The rungs the SR students are trained on by default."""


def parse_codecs(text: str) -> tuple[Codec, ...]:
    """`x264:23,x265:28,vp9:40,av1:45` -> codecs."""
    out = []
    for item in text.split(","):
        name, crf = item.split(":")
        out.append(Codec(name.strip(), int(crf)))
    return tuple(out)
