#!/usr/bin/env python3
"""A side-by-side crop of the demo's outputs (scripts/demo.sh): the same region of one frame as the
classical upscale, `nervesr` and the original show it, enlarged 2x without smoothing so the
difference is visible, with each tile's PSNR-Y over the crop.

The region is chosen without looking at the results: the most detailed window of the original
frame (largest mean luma gradient), so the crop shows where an upscaler has work to do.

Usage: demo_crop.py ORIGINAL.y4m CLASSICAL.y4m NERVESR.y4m OUT.png [--frame N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
WINDOW = (320, 180)  # crop size in output (720p) pixels
ZOOM = 2


def read_y4m_frame(path: Path, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame `index` of a 4:2:0 YUV4MPEG2 file as (Y, U, V) uint8 planes."""
    data = path.read_bytes()
    header_end = data.index(b"\n")
    fields = {f[:1]: f[1:] for f in data[:header_end].split(b" ")[1:]}
    width, height = int(fields[b"W"]), int(fields[b"H"])
    cw, ch = (width + 1) // 2, (height + 1) // 2
    size = width * height + 2 * cw * ch
    pos = header_end + 1
    for _ in range(index + 1):
        if not data.startswith(b"FRAME", pos):
            raise SystemExit(f"{path}: has no frame {index}")
        start = data.index(b"\n", pos) + 1
        frame, pos = data[start:start + size], start + size
    y = np.frombuffer(frame, np.uint8, width * height).reshape(height, width)
    u = np.frombuffer(frame, np.uint8, cw * ch, width * height).reshape(ch, cw)
    v = np.frombuffer(frame, np.uint8, cw * ch, width * height + cw * ch).reshape(ch, cw)
    return y, u, v


def to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.709 limited range (HD video), chroma repeated to full size."""
    h, w = y.shape
    uu = np.repeat(np.repeat(u, 2, 0), 2, 1)[:h, :w].astype(np.float32) - 128
    vv = np.repeat(np.repeat(v, 2, 0), 2, 1)[:h, :w].astype(np.float32) - 128
    yy = (y.astype(np.float32) - 16) * 255 / 219
    rgb = np.stack([yy + 1.793 * vv, yy - 0.213 * uu - 0.533 * vv, yy + 2.112 * uu], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def most_detailed_window(y: np.ndarray, size: tuple[int, int], step: int = 16) -> tuple[int, int]:
    g = np.abs(np.diff(y.astype(np.float32), axis=1))[:-1, :] + np.abs(np.diff(y.astype(np.float32), axis=0))[:, :-1]
    w, h = size
    best, where = -1.0, (0, 0)
    for top in range(0, g.shape[0] - h, step):
        for left in range(0, g.shape[1] - w, step):
            score = float(g[top:top + h, left:left + w].mean())
            if score > best:
                best, where = score, (left, top)
    return where


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path)
    parser.add_argument("classical", type=Path)
    parser.add_argument("nervesr", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frame", type=int, default=9)
    parser.add_argument("--classical-name", default="videoscale lanczos")
    args = parser.parse_args()

    frames = {name: read_y4m_frame(path, args.frame) for name, path in
              ((args.classical_name, args.classical), ("nervesr", args.nervesr), ("original 720p", args.original))}
    original_y = frames["original 720p"][0]
    left, top = most_detailed_window(original_y, WINDOW)
    w, h = WINDOW
    font = ImageFont.truetype(str(FONT), 22) if FONT.exists() else ImageFont.load_default()
    label_h = 34
    sheet = Image.new("RGB", (len(frames) * w * ZOOM + (len(frames) - 1) * 8, h * ZOOM + label_h), "white")
    for i, (name, (y, u, v)) in enumerate(frames.items()):
        rgb = to_rgb(y, u, v)[top:top + h, left:left + w]
        tile = Image.fromarray(rgb).resize((w * ZOOM, h * ZOOM), Image.Resampling.NEAREST)
        x = i * (w * ZOOM + 8)
        sheet.paste(tile, (x, label_h))
        crop_y = y[top:top + h, left:left + w]
        label = name if name.startswith("original") else f"{name}: {psnr(crop_y, original_y[top:top + h, left:left + w]):.2f} dB"
        ImageDraw.Draw(sheet).text((x + 6, 5), label, fill="black", font=font)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} (frame {args.frame}, window {w}x{h} at {left},{top}, PSNR-Y over the window)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
