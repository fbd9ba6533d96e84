#!/usr/bin/env python3
"""Applies nerve_learning.sr.graph's speed rewrites (the space-to-depth fold as ONNX's SpaceToDepth,
the output crop as one Slice) to the shipped models in place, updates their sha256 in
models/manifest.toml, and reports per file what changed: the
largest output difference against the old graph on three inputs (odd size, one 1080p band, a
small frame) and one 1080p band's time on one thread, old and new interleaved (the minimum of 5
rounds of 4 runs; this machine's speed drifts run to run).

  .venv/bin/python scripts/graph_rewrites.py --json nerve-eval/results/graph-rewrites-slices.json

A file with nothing left to rewrite is left as it is and not reported. Run on 2026-12-07 twice:
the fold (graph-rewrites-fold.json), then the crop once merge_slices existed
(graph-rewrites-slices.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from nerve_learning.sr.graph import speed_rewrites

ROOT = Path(__file__).resolve().parents[1]


def session(src: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def band_ms(s: ort.InferenceSession, x: np.ndarray) -> float:
    t = time.perf_counter()
    for _ in range(4):
        s.run(None, {"lr": x})
    return (time.perf_counter() - t) / 4 * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    manifest = args.models / "manifest.toml"
    text = manifest.read_text()
    rng = np.random.default_rng(7)
    report = {}
    for path in sorted(args.models.glob("*.onnx")):
        old_bytes = path.read_bytes()
        model = onnx.load_from_string(old_bytes)
        if speed_rewrites(model) == 0:
            continue
        onnx.checker.check_model(model)
        new_bytes = model.SerializeToString()
        old, new = session(old_bytes), session(new_bytes)
        frames = old.get_inputs()[0].shape[1]
        worst, flips = 0.0, 0
        for h, w in [(37, 53), (282, 960), (31, 40)]:
            x = rng.random((1, frames, h, w), dtype=np.float32)
            a, b = old.run(None, {"lr": x})[0], new.run(None, {"lr": x})[0]
            worst = max(worst, float(np.abs(a - b).max()))
            to8 = lambda v: np.clip(np.floor(v * 255 + 0.5), 0, 255)  # noqa: E731
            flips += int((to8(a) != to8(b)).sum())
        x = rng.random((1, frames, 282, 960), dtype=np.float32)
        times = {"old": [], "new": []}
        for _ in range(5):
            times["old"].append(band_ms(old, x))
            times["new"].append(band_ms(new, x))
        path.write_bytes(new_bytes)
        old_sha, new_sha = hashlib.sha256(old_bytes).hexdigest(), hashlib.sha256(new_bytes).hexdigest()
        if old_sha not in text:
            raise SystemExit(f"{path.name}: its sha256 {old_sha} is not in {manifest}")
        text = text.replace(old_sha, new_sha)
        report[path.stem] = {
            "max_abs_diff": worst, "pixel_levels_changed": flips, "pixels_compared": int(4 * (37 * 53 + 282 * 960 + 31 * 40)),
            "band_ms_old": min(times["old"]), "band_ms_new": min(times["new"]),
            "sha256_old": old_sha, "sha256_new": new_sha,
        }
        r = report[path.stem]
        print(f"{path.stem:45s} diff {worst:.2e} ({flips} levels)  band {r['band_ms_old']:.1f} -> {r['band_ms_new']:.1f} ms", flush=True)
    manifest.write_text(text)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "band": "960x282, one thread", "models": report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
