#!/usr/bin/env python3
"""Does aligning the previous frame pay for the temporal x2 student? (docs/research/2026-12-07-sr-align.md)

    cargo run --release -p nerve-eval --example dump_rungs -- /tmp/rungs 30
    python scripts/sr_align_probe.py pack learning/cache/pack-x2-clips.npz /tmp/pack-x2-clips-al.npz
    python scripts/sr_align_probe.py score MODEL.onnx --rungs /tmp/rungs --variants none,same,aligned --json out.json

`pack` rewrites a frame pack with every rung's previous frame aligned to its current frame;
`score` runs a two-frame model (ONNX Runtime) on the leave-one-source-out rungs with the previous
frame as it is (`none`), replaced by the current one (`same`) or aligned (`aligned`), and prints
PSNR-Y on the active picture per clip and the mean and median difference to the first variant.
Research tooling: nothing in the element or the learning package depends on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from nerve_learning.metrics import psnr


def align(prev: torch.Tensor, cur: torch.Tensor, block: int = 8, radius: int = 6, bias: float = 1.0) -> torch.Tensor:
    """prev, cur: (N,H,W) floats 0..255. Each `block`-square of `cur` takes the integer shift of
    `prev` within `radius` whose mean absolute difference, plus `bias` grey levels per `radius` of
    shift (so flat areas and ties keep zero motion), is least. Edges are replicated."""
    n, h, w = cur.shape
    ph, pw = -h % block, -w % block
    if ph or pw:  # partial blocks at the right and bottom: matched on edge-replicated pixels
        def pad(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
        return align(pad(prev), pad(cur), block, radius, bias)[:, :h, :w]
    p = F.pad(prev[:, None], (radius,) * 4, mode="replicate")[:, 0]
    best = torch.full((n, h // block, w // block), float("inf"))
    out = prev.clone()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            s = p[:, radius + dy: radius + dy + h, radius + dx: radius + dx + w]
            d = F.avg_pool2d((cur - s).abs()[:, None], block)[:, 0] + bias * (abs(dy) + abs(dx)) / radius
            better = d < best
            best = torch.where(better, d, best)
            out = torch.where(better.repeat_interleave(block, 1).repeat_interleave(block, 2), s, out)
    return out


def align_u8(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    a = align(torch.from_numpy(prev).float(), torch.from_numpy(cur).float())
    return a.round().clamp(0, 255).to(torch.uint8).numpy()


def pack(src: Path, dst: Path, batch: int = 128) -> None:
    z = np.load(src, allow_pickle=True)
    arrays = {k: z[k] for k in z.files}
    for k in [k for k in arrays if k.startswith("prev/")]:
        prev, cur = arrays[k], arrays["lr/" + k[len("prev/"):]]
        out = np.concatenate([align_u8(prev[i:i + batch], cur[i:i + batch]) for i in range(0, len(prev), batch)])
        print(f"{k}: {float((out != prev).mean()):.3f} of the pixels moved", flush=True)
        arrays[k] = out
    np.savez(dst, **arrays)


def lumas(path: Path, w: int, h: int, n: int) -> list[np.ndarray]:
    a = np.fromfile(path, np.uint8)
    size = w * h * 3 // 2
    return [a[i * size:i * size + w * h].reshape(h, w) for i in range(n)]


def score(model: Path, rungs: Path, variants: list[str], out: Path | None) -> None:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model), opts)
    index = json.loads((rungs / "index.json").read_text())
    res: dict[str, dict[str, float]] = {}
    for crf in (23, 33):
        for e in index:
            w, h, n = e["width"], e["height"], e["frames"]
            ax, ay, aw, ah = e["active"]
            ref = lumas(rungs / f"{e['i']}-ref.yuv", w, h, n)
            lr = lumas(rungs / f"{e['i']}-crf{crf}.yuv", w // 2, h // 2, n)
            row = {}
            for v in variants:
                ps = []
                for t in range(n):
                    cur, prev = lr[t], lr[max(t - 1, 0)]
                    if v == "same":
                        prev = cur
                    elif v == "aligned" and t > 0:
                        prev = align_u8(prev[None], cur[None])[0]
                    x = np.stack([prev, cur])[None].astype(np.float32) / 255.0
                    hr = np.clip(np.round(sess.run(None, {"lr": x})[0][0, 0] * 255), 0, 255)
                    ps.append(psnr(hr[ay:ay + ah, ax:ax + aw], ref[t][ay:ay + ah, ax:ax + aw]))
                row[v] = float(np.mean(ps))
            res[f"{crf}/{e['path']}"] = row
            print(crf, Path(e["path"]).name, " ".join(f"{k}={x:.3f}" for k, x in row.items()), flush=True)
    for crf in (23, 33):
        rows = [r for k, r in res.items() if k.startswith(f"{crf}/")]
        for v in variants[1:]:
            d = [r[v] - r[variants[0]] for r in rows]
            print(f"CRF {crf} {v} - {variants[0]}: mean {np.mean(d):+.3f} dB, median {np.median(d):+.3f} dB")
    if out:
        out.write_text(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    s = sub.add_parser("score")
    s.add_argument("model", type=Path)
    s.add_argument("--rungs", type=Path, default=Path("/tmp/rungs"))
    s.add_argument("--variants", default="none,same,aligned")
    s.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.cmd == "pack":
        pack(args.src, args.dst)
    else:
        score(args.model, args.rungs, args.variants.split(","), args.json)


if __name__ == "__main__":
    main()
