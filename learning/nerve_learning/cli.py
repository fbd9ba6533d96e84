"""`nerve-learn`: the learning side's command line."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from .dataset import PairConfig
from .degrade import Codec
from .export import export_onnx, manifest_entry
from .train import TrainConfig, evaluate, train

MODELS = Path(__file__).resolve().parents[2] / "models"


def upsert_manifest(manifest: Path, name: str, entry: str) -> None:
    """Replaces the `[[model]]` table called `name` in the manifest, or appends it."""
    text = manifest.read_text() if manifest.exists() else "# nerve model manifest: see models/README.md\n\n"
    tables = re.split(r"(?m)^(?=\[\[model\]\])", text)
    kept = [t for t in tables if f'name = "{name}"' not in t]
    manifest.write_text("".join(kept).rstrip("\n") + "\n\n" + entry)


def card(name: str, model_cfg: TrainConfig, macs: int, params: int, metrics: dict, pairs: PairConfig, seconds: float) -> str:
    rows = "\n".join(
        f"| {k} | {v['psnr_y_bicubic']:.2f} | {v['psnr_y']:.2f} | {v['psnr_y'] - v['psnr_y_bicubic']:+.2f} |"
        for k, v in sorted(metrics.items())
    )
    from .clips import EVAL, TRAIN

    return f"""# {name}

Real-time super-resolution student, x{model_cfg.scale}, luma in, residual on a built-in
Catmull-Rom upscale (the same kernel nervesr uses for chroma and its fallback).

- Architecture: conv3x3(1->{model_cfg.channels}), {model_cfg.depth} x conv3x3({model_cfg.channels}->{model_cfg.channels}), conv3x3(->{model_cfg.scale**2}), ReLU, pixel shuffle
- Parameters: {params}
- MACs per input (LR) pixel: {macs}
- Training data: {', '.join(c.path for c in TRAIN)} ({pairs.frames_per_clip} frames per clip, every {pairs.frame_step}th)
- Degradation: bicubic downscale x{pairs.scale}, then {', '.join(f'{c.name} CRF {c.crf}' for c in pairs.codecs)} (preset medium), decoded
- Training: L1, Adam, {model_cfg.steps} steps of {model_cfg.batch} {pairs.patch_lr}px LR patches, {seconds/60:.0f} min on 2 CPU cores
- Held-out evaluation clips (never trained on): {', '.join(c.path for c in EVAL)}.
  The screen-content clip is a different capture of the same PDF page as the training one.

## Metrics on the held-out clips (PSNR-Y, dB, first 8 frames)

| clip / rung | Catmull-Rom | this model | gain |
|---|---|---|---|
{rows}

Speed and VMAF are measured by the project's benchmark and evaluation tools; see the README.
"""


def cmd_train_sr(args: argparse.Namespace) -> int:
    cfg = TrainConfig(scale=args.scale, channels=args.channels, depth=args.depth, steps=args.steps, batch=args.batch,
                      threads=args.threads)
    pairs = PairConfig(scale=args.scale, frames_per_clip=args.frames, patches_per_frame=args.patches)
    started = time.time()
    model = train(cfg, pairs, Path(args.cache))
    seconds = time.time() - started
    metrics = evaluate(model, (Codec("x264", 23), Codec("x264", 33)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"nerve-sr-x{args.scale}"
    sha = export_onnx(model, out / f"{name}.onnx")
    params = sum(p.numel() for p in model.parameters())
    (out / f"{name}.md").write_text(card(name, cfg, model.macs_per_pixel(), params, metrics, pairs, seconds))
    (out / f"{name}.metrics.json").write_text(json.dumps(metrics, indent=2))
    upsert_manifest(out / "manifest.toml", name, manifest_entry(name, f"{name}.onnx", model, sha, args.default, f"{name}.md"))
    mean_gain = sum(v["psnr_y"] - v["psnr_y_bicubic"] for v in metrics.values()) / len(metrics)
    print(f"{name}: mean PSNR-Y gain over Catmull-Rom on held-out clips {mean_gain:+.2f} dB; wrote {out / (name + '.onnx')}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .quality import compare

    rows = {Path(d).name: compare(Path(args.reference), Path(d)) for d in args.distorted}
    print(f"{'video':<28} {'frames':>6} {'PSNR-Y':>8} {'VMAF':>7} {'VMAF NEG':>9}")
    for name, m in rows.items():
        print(f"{name:<28} {m['frames']:>6} {m['psnr_y']:>8.2f} {m['vmaf']:>7.2f} {m['vmaf_neg']:>9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"reference": args.reference, "results": rows}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nerve-learn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-sr", help="train, evaluate and export a real-time SR student")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=24, help="frames per training clip")
    p.add_argument("--patches", type=int, default=24, help="patches per frame")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch (1 when sharing the machine)")
    p.add_argument("--name", default="")
    p.add_argument("--default", action="store_true", help="make it the default model for its scale")
    p.add_argument("--out", default=str(MODELS))
    p.add_argument("--cache", default=str(Path(__file__).resolve().parents[1] / "cache"))
    p.set_defaults(func=cmd_train_sr)
    c = sub.add_parser("compare", help="PSNR-Y, VMAF and VMAF NEG of videos against a reference")
    c.add_argument("--reference", required=True)
    c.add_argument("--json", default="")
    c.add_argument("distorted", nargs="+")
    c.set_defaults(func=cmd_compare)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
