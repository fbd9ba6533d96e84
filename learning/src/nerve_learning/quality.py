"""Full-reference quality of a video against its original: PSNR-Y, VMAF and VMAF NEG.

VMAF comes from libvmaf inside the imageio-ffmpeg wheel's ffmpeg. Always reported together:
sharpening alone raises VMAF while lowering PSNR-Y and VMAF NEG."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .data.degrade import ffmpeg_exe
from .metrics import psnr


def read_y(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Luma frames (N, H, W) of any video ffmpeg reads, optionally scaled to `size` (bicubic)."""
    vf = ["-vf", f"scale={size[0]}:{size[1]}:flags=bicubic"] if size else []
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), *vf, "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True).stderr.decode()
    w, h = size or _size_of(probe)
    return np.frombuffer(out, np.uint8).reshape(-1, h, w)


def _size_of(ffmpeg_banner: str) -> tuple[int, int]:
    for line in ffmpeg_banner.splitlines():
        if "Video:" in line:
            for token in line.replace(",", " ").split():
                parts = token.split("x")
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    return int(parts[0]), int(parts[1])
    raise ValueError("no video stream")


def vmaf(reference: Path, distorted: Path) -> dict[str, float]:
    """Pooled VMAF (v0.6.1) and VMAF NEG means over all frames."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "vmaf.json"
        graph = (
            "[0:v]setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];[d][r]libvmaf="
            "model='version=vmaf_v0.6.1\\:name=vmaf|version=vmaf_v0.6.1neg\\:name=vmaf_neg'"
            f":log_fmt=json:log_path={log}:n_threads=2"
        )
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-i", str(distorted), "-i", str(reference), "-lavfi", graph, "-f", "null", "-"],
            check=True, capture_output=True,
        )
        pooled = json.loads(log.read_text())["pooled_metrics"]
    return {"vmaf": pooled["vmaf"]["mean"], "vmaf_neg": pooled["vmaf_neg"]["mean"]}


def vmaf_frames(reference: np.ndarray, distorted: np.ndarray, fps: int = 25) -> dict[str, float]:
    """VMAF and VMAF NEG of luma frames (N, H, W) uint8 against reference luma frames: both go to
    libvmaf as 4:2:0 video with neutral chroma (VMAF reads luma only)."""
    if reference.shape != distorted.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, distorted {distorted.shape}")
    _, h, w = reference.shape
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, frames in (("ref", reference), ("dist", distorted)):
            raw = Path(tmp) / f"{name}.gray"
            raw.write_bytes(np.ascontiguousarray(frames).tobytes())
            y4m = Path(tmp) / f"{name}.y4m"
            subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                            "-r", str(fps), "-i", str(raw), "-pix_fmt", "yuv420p", str(y4m)], check=True,
                           capture_output=True)
            paths.append(y4m)
        return vmaf(paths[0], paths[1])


def compare(reference: Path, distorted: Path) -> dict[str, float]:
    ref = read_y(reference)
    dist = read_y(distorted)
    n = min(len(ref), len(dist))
    if ref.shape[1:] != dist.shape[1:]:
        raise ValueError(f"sizes differ: reference {ref.shape[1:]}, distorted {dist.shape[1:]}")
    return {"frames": n, "psnr_y": psnr(ref[:n], dist[:n]), **vmaf(reference, distorted)}
