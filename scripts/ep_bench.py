#!/usr/bin/env python3
"""nervesr on each ONNX Runtime execution provider, against the CPU provider on the same frames.

Each run is one `gst-launch-1.0` process (ONNX Runtime is loaded once per process):
the same clip decoded and scaled to the same input size, through `nervesr provider=P
ort-library=LIB qos=false` into a raw file. The run's speed is nervesr's own mean inference time
(its `nervesr-stats` at EOS) and the pipeline's wall time; its output is compared with the CPU
run's on the same ONNX Runtime library, on the luma plane (what the model makes; chroma is
upscaled classically either way), in 8-bit levels.

A provider that is compiled in but cannot be registered by that ONNX Runtime build must fall back
to the CPU with a warning naming it: such a run is recorded with `ran_on: cpu` and the warning,
and the script fails if the warning is missing or the output differs from the CPU's.

Usage: scripts/ep_bench.sh (builds the plugin with the providers and sets the libraries up).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Outputs of another provider match the CPU provider's when, on the luma plane in 8-bit levels,
# no pixel differs by more than MAX_LEVELS and the mean difference is under MEAN_LEVELS. Float
# kernels are reordered (fused, vectorised differently) by each provider, which moves results by
# a few ulps before rounding to 8 bits: that is at most one level here and then only rarely.
MAX_LEVELS = 2
MEAN_LEVELS = 0.05

STATS = re.compile(r"nervesr-stats, (.*?);?$", re.M)


def field(stats: str, name: str) -> str:
    m = re.search(rf"(?:^|, ){re.escape(name)}=\([^)]*\)(\"[^\"]*\"|[^,]*)", stats)
    if not m:
        raise ValueError(f"no {name} in {stats}")
    return m.group(1).strip('"')


def run(plugin_dir: Path, clip: Path, provider: str, library: Path, model: str, frames: int,
        width: int, height: int, out: Path, registry: Path) -> dict:
    pipeline = (
        f'filesrc location="{clip}" ! decodebin ! videoconvert ! videoscale ! '
        f"video/x-raw,format=I420,width={width},height={height},pixel-aspect-ratio=1/1 ! "
        f"identity eos-after={frames} ! "
        f'nervesr name=sr provider={provider} ort-library="{library}" qos=false stats-interval=0 '
        f'model="{model}" ! filesink location="{out}"'
    )
    env = dict(os.environ, GST_PLUGIN_PATH=str(plugin_dir), GST_REGISTRY=str(registry))
    start = time.monotonic()
    p = subprocess.run(["gst-launch-1.0", "-m", *pipeline.split(" ")], env=env, capture_output=True,
                       text=True, timeout=1800)
    wall = time.monotonic() - start
    text = p.stdout + p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"{provider} with {library}: gst-launch-1.0 failed:\n{text[-3000:]}")
    found = STATS.findall(text)
    if not found:
        raise RuntimeError(f"{provider}: no nervesr-stats in the output:\n{text[-3000:]}")
    stats = found[-1]
    warnings = [line.strip() for line in text.splitlines() if "WARNING" in line or "warning" in line.lower()]
    return {
        "requested": provider,
        "ran_on": field(stats, "provider"),
        "library": str(library),
        "frames_enhanced": int(field(stats, "frames-enhanced")),
        "frames_classical": int(field(stats, "frames-classical")),
        "mean_inference_ms": float(field(stats, "mean-inference-ms")),
        "model_fps": 1000.0 / max(float(field(stats, "mean-inference-ms")), 1e-9),
        "pipeline_wall_s": wall,
        "warnings": warnings[:5],
    }


def luma(path: Path, width: int, height: int) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    frame = width * height * 3 // 2
    n = raw.size // frame
    return raw[: n * frame].reshape(n, frame)[:, : width * height].astype(np.int16)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugin-dir", type=Path, required=True, help="directory of the libgstnerve.so built with the providers")
    ap.add_argument("--clip", type=Path, required=True)
    ap.add_argument("--run", action="append", required=True, metavar="PROVIDER:LIBRARY",
                    help="a provider and the libonnxruntime.so to run it with; a cpu run on the same library is added")
    ap.add_argument("--model", default="nerve-sr-x2", help="manifest name (a single-frame model: frames compare one to one)")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--out", type=Path, default=Path("gst-nerve/results/providers.json"))
    args = ap.parse_args()

    runs: list[tuple[str, Path]] = []
    for spec in args.run:
        provider, _, lib = spec.partition(":")
        runs.append((provider, Path(lib).resolve()))
    libraries = sorted({lib for _, lib in runs})
    failures: list[str] = []
    results = []
    scale = 2 if "x2" in args.model else 3 if "x3" in args.model else 4
    ow, oh = args.width * scale, args.height * scale
    with tempfile.TemporaryDirectory(prefix="nerve-ep-") as tmp:
        tmpd = Path(tmp)
        registry = tmpd / "registry.bin"
        reference: dict[Path, tuple[dict, np.ndarray]] = {}
        for lib in libraries:
            print(f"cpu on {lib} ...", file=sys.stderr, flush=True)
            out = tmpd / f"cpu-{len(reference)}.yuv"
            r = run(args.plugin_dir, args.clip, "cpu", lib, args.model, args.frames, args.width, args.height, out, registry)
            reference[lib] = (r, luma(out, ow, oh))
            print(f"  {r['model_fps']:.1f} fps (model), {r['pipeline_wall_s']:.1f} s wall", file=sys.stderr)
        for provider, lib in runs:
            if provider == "cpu":
                continue
            print(f"{provider} on {lib} ...", file=sys.stderr, flush=True)
            out = tmpd / f"{provider}.yuv"
            r = run(args.plugin_dir, args.clip, provider, lib, args.model, args.frames, args.width, args.height, out, registry)
            cpu, ref = reference[lib]
            y = luma(out, ow, oh)
            if y.shape != ref.shape:
                failures.append(f"{provider}: {y.shape[0]} frames, the CPU run {ref.shape[0]}")
                continue
            # The last frame (the one before identity's EOS) is left out: it differs between two
            # runs of the very same CPU configuration (seen: up to 248 levels), so it says
            # nothing about the provider.
            diff = np.abs(y[:-1] - ref[:-1])
            r["vs_cpu"] = {
                "frames_compared": int(y.shape[0]) - 1,
                "max_levels": int(diff.max()),
                "mean_levels": float(diff.mean()),
                "pixels_differing": float((diff > 0).mean()),
                "speedup_model": r["model_fps"] / cpu["model_fps"],
                "within_tolerance": bool(diff.max() <= MAX_LEVELS and diff.mean() < MEAN_LEVELS),
            }
            r["cpu_same_library"] = {k: cpu[k] for k in ("mean_inference_ms", "model_fps", "pipeline_wall_s")}
            if not r["vs_cpu"]["within_tolerance"]:
                failures.append(f"{provider}: output differs from the CPU's beyond tolerance: {r['vs_cpu']}")
            if r["ran_on"] != provider and not any(provider in w for w in r["warnings"]):
                failures.append(f"{provider}: fell back to {r['ran_on']} without a warning naming it")
            print(f"  ran on {r['ran_on']}: {r['model_fps']:.1f} fps (model) vs cpu {cpu['model_fps']:.1f}; "
                  f"max diff {r['vs_cpu']['max_levels']} levels, mean {r['vs_cpu']['mean_levels']:.4f}", file=sys.stderr)
            results.append(r)
        # The same provider (CPU) on two ONNX Runtime builds, for scale: how much a library change moves outputs.
        if len(libraries) > 1:
            a, b = (reference[lib][1][:-1] for lib in libraries[:2])
            cross = np.abs(a - b) if a.shape == b.shape else None
            cpu_across = {
                "libraries": [str(lib) for lib in libraries[:2]],
                "max_levels": int(cross.max()) if cross is not None else None,
                "mean_levels": float(cross.mean()) if cross is not None else None,
            }
        else:
            cpu_across = None
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clip": str(args.clip),
        "model": args.model,
        "input": [args.width, args.height],
        "output": [ow, oh],
        "frames": args.frames,
        "tolerance": {"max_levels": MAX_LEVELS, "mean_levels_below": MEAN_LEVELS, "plane": "Y, 8-bit",
                      "frames": "all but the last (it differs between two identical CPU runs)"},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": load, "nice": os.nice(0)},
        "cpu": [{**r, "library": str(lib)} for lib, (r, _) in reference.items()],
        "providers": results,
        "cpu_across_libraries": cpu_across,
        "failures": failures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
