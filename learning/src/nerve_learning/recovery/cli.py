"""`nerve-learn train-recovery`: the recovery model of `nerverecover`, from the real loss pipeline
to a manifest entry and a model card."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import train as recovery
from ..data.clips import EVAL, TRAIN, data_root
from ..manifest import upsert_manifest
from ..paths import CACHE, MODELS, REPO

def manifest_entry(name: str, file: str, sha256: str, default: bool, card: str) -> str:
    return "\n".join([
        "[[model]]",
        f'name = "{name}"',
        f'file = "{file}"',
        'task = "recovery"',
        "scale = 1",
        f"frames = {recovery.INPUT_PLANES}",
        f"default = {'true' if default else 'false'}",
        'version = "1"',
        f'card = "{card}"',
        f'sha256 = "{sha256}"',
        'input = { name = "frames", layout = "NCHW", planes = "Y", range = "unit" }',
        'output = { name = "shown", layout = "NCHW", planes = "Y", range = "unit" }',
        "",
    ])


def macs_per_pixel(model: recovery.RecoveryNet) -> int:
    c, f = model.full.out_channels, model.FEATURES
    full = f * c * 9
    quarter = 2 * c * c * 9 / 16
    block = ((c + f) * c * 9 + c * c * 9 + 2 * c * c + 3 * c) / 256
    context = 2 * c * c * 9 / 4096
    return int(full + quarter + block + context)


def replay_rows(replay: dict, split: str, rate: float) -> list[dict]:
    """The replay rows of one split ("validation" or "held-out") at one loss rate."""
    return [v for k, v in replay.items() if k.startswith(split) and k.endswith(f" @ {rate}")]


def card(name: str, model: recovery.RecoveryNet, cfg: recovery.RecoveryTrainConfig, crops: recovery.CropConfig,
         specs: list[recovery.LossRunSpec], decoders: list[str], seconds: float, replay: dict) -> str:
    params = sum(p.numel() for p in model.parameters())
    rates = sorted({s.loss for s in specs})
    seeds = sorted({s.seed for s in specs})
    runs = sorted({k.rsplit(" @ ", 1)[0] for k in replay})
    table = []
    for run in runs:
        cells = []
        for r in rates:
            row = replay.get(f"{run} @ {r}")
            cells.append(f"{row['decoder']:.2f} {row['model'] - row['decoder']:+.2f} ({row['oracle'] - row['decoder']:+.2f})"
                         if row else "")
        table.append(f"| {run} | " + " | ".join(cells) + " |")
    means = []
    for split in ("validation", "held-out"):
        for r in rates:
            rows = replay_rows(replay, split, r)
            if rows:
                gain = [v["model"] - v["decoder"] for v in rows]
                means.append(f"| {split} | {r:.0%} | {np.mean(gain):+.3f} | {sum(g > 0.005 for g in gain)} / "
                             f"{sum(g < -0.005 for g in gain)} / {len(gain)} | "
                             f"{np.mean([v['oracle'] - v['decoder'] for v in rows]):+.3f} |")
    lines = [
        f"# {name}",
        "",
        "Recovery model of `nerverecover`: after packet loss, per 16x16 block, which of three sources to show:",
        "the decoder's frame, the decoder's frame carrying on the last correction, or the frame shown before.",
        "Recurrent through the frame shown. Contract: `learning/src/nerve_learning/recovery/train.py`.",
        "",
        f"- Inputs: {recovery.INPUT_PLANES} luma planes (decoded, decoded before, shown before, loss reported); output: luma",
        f"- Architecture: conv3x3({model.FEATURES}->{cfg.channels}) at full resolution, 2 x conv3x3 at 1/4, 2 at the"
        " block grid (1/16, with the block means of the input features), 2 at 1/64, conv1x1 head -> 3 block"
        " logits (one-hot in ONNX)",
        f"- Parameters: {params}; MACs per pixel: {macs_per_pixel(model)}",
        f"- Training data: the real RTP loss pipeline (`nerve-eval loss-frames`: x264 4 slices, MTU 1200, IDR every 2 s,"
        f" 0.1 bit/pixel) on {', '.join(c.path for c in TRAIN)}; packet loss {', '.join(f'{r:.0%}' for r in rates)},"
        f" seeds {', '.join(map(str, seeds))}; decoders {', '.join(decoders)}; the plain and the salvaging receiver's"
        " decodes",
        f"- {crops.per_run} sequences of {crops.frames} frames of {crops.size}x{crops.size} per decode of a run, three"
        " in five starting at a loss; target: the lossless decode of the same packets",
        f"- Objective: the expected change of PSNR-Y against the decoder's frame (block squared errors, counted from"
        f" {cfg.floor * 255**2:.0f} grey levels squared), where the element runs the model, along the model's own"
        f" choices; Adam {cfg.lr}, cosine, {cfg.steps} steps of {cfg.batch}; {seconds / 60:.0f} min on this machine's CPU",
        f"- Held-out clips (never trained on): {', '.join(c.path for c in EVAL)}",
        "",
        "## Replay (Python, full frames of the plain receiver's decode, PSNR-Y against the original)",
        "",
        "The model runs as the element runs it: on a frame after a reported loss, and while a correction is",
        "carried. Validation: training clips under a loss pattern never trained on (seed 31). Held-out: the",
        "evaluation clips (seeds 1 and 2), reported, never used to choose anything. Identical frames score 100 dB.",
        "Block oracle: per 16x16 block the source nearest the lossless decode (the bound of this design).",
        "",
        "| split | loss | mean gain (dB) | runs won / lost / all | block oracle |",
        "|---|---|---|---|---|",
        *means,
        "",
        "Per run: decoder dB, the model's gain, (the block oracle's gain).",
        "",
        "| run | " + " | ".join(f"{r:.0%}" for r in rates) + " |",
        "|---|" + "---|" * len(rates),
        *table,
        "",
        "Inside the element, with VMAF and freezing as a baseline: `nerve-eval recover --model` (see the README).",
        "",
    ]
    return "\n".join(lines)


def cmd_train_recovery(args: argparse.Namespace) -> int:

    torch.set_num_threads(args.threads)
    nerve_eval = Path(args.nerve_eval)
    if not nerve_eval.is_file():
        raise SystemExit(f"{nerve_eval} not found: build it first (cargo build --release -p nerve-eval)")
    rates = [float(x) for x in args.loss.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    decoders = [d for d in args.decoders.split(";") if d]
    specs = [recovery.LossRunSpec(c, r, s) for c in TRAIN for r in rates for s in seeds]
    crops_cfg = recovery.CropConfig(frames=args.sequence, size=args.crop, per_run=args.per_run, clip_frames=args.frames)
    work = Path(args.work)
    caches = []
    for k, dec in enumerate(decoders):
        cache = Path(args.cache).with_suffix(f".{k}.npz")
        caches.append(recovery.build_crops(specs, nerve_eval, data_root(), work / f"dec{k}", cache, crops_cfg, dec))
    merged = Path(args.cache)
    parts = [np.load(c) for c in caches]
    np.savez(merged, **{key: np.concatenate([p[key] for p in parts]) for key in ("clean", "lossy", "loss")})
    cfg = recovery.RecoveryTrainConfig(steps=args.steps, batch=args.batch, channels=args.channels, lr=args.lr,
                                       floor=args.floor / 255**2)
    started = time.time()
    model, history = recovery.train(merged, cfg)
    seconds = time.time() - started
    # Validation (for choosing settings): training clips under a loss pattern never trained on.
    # Held-out: the evaluation clips, reported, never used to choose anything.
    replay = {}
    jobs = [(split, clip, s, r) for split, clips, seeds_ in (("validation", TRAIN, (31,)), ("held-out", EVAL, (1, 2)))
            for clip in clips for s in seeds_ for r in rates]
    for split, clip, s, r in tqdm(jobs, desc="replay", unit="run"):
        run_dir = work / split / f"{Path(clip.path).stem}_{s}"
        recovery.loss_frames(nerve_eval, data_root(), recovery.LossRunSpec(clip, r, s), run_dir, args.frames)
        row = recovery.replay_run(model, run_dir)
        row["oracle"] = recovery.oracle_replay(run_dir)["oracle"]
        replay[f"{split}: {run_dir.name} @ {r}"] = row
        for f in run_dir.glob("*.yuv"):
            f.unlink()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{args.name}.onnx"
    sha = recovery.export_recovery(model, onnx_path)
    (out / f"{args.name}.md").write_text(card(args.name, model, cfg, crops_cfg, specs, decoders, seconds, replay))
    (out / f"{args.name}.metrics.json").write_text(json.dumps({"replay": replay, "loss_history": history[::10]}, indent=2))
    upsert_manifest(out / "manifest.toml", args.name, manifest_entry(args.name, onnx_path.name, sha, args.default, f"{args.name}.md"))
    for split in ("validation", "held-out"):
        for r in rates:
            rows = replay_rows(replay, split, r)
            mean = {k: float(np.mean([v[k] for v in rows])) for k in ("decoder", "model", "oracle")}
            print(f"{split} replay at {r:.0%} loss: decoder {mean['decoder']:.2f} dB, model {mean['model']:.2f} dB "
                  f"({mean['model'] - mean['decoder']:+.2f}), block oracle {mean['oracle']:.2f}")
    print(f"wrote {onnx_path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train-recovery", help="train the nerverecover model on the real RTP loss pipeline")
    p.add_argument("--nerve-eval", default=str(REPO / "target" / "release" / "nerve-eval"))
    p.add_argument("--loss", default="0.01,0.03,0.05,0.10")
    p.add_argument("--seeds", default="11,12,13")
    p.add_argument("--decoders", default="avdec_h264 max-threads=1",
                   help="decoders the loss runs use, ';'-separated (the frame-threaded avdec_h264 leaves lost slices black,"
                        " which nerverecover's detector repairs classically)")
    p.add_argument("--frames", type=int, default=120, help="frames per clip")
    p.add_argument("--sequence", type=int, default=10, help="frames per training sequence")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--per-run", type=int, default=16, help="sequences per decode of a run")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--floor", type=float, default=10.0,
                   help="grey levels squared a frame's error counts from (the held-out streams' compression error: 1 to 34 per clip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=str(CACHE / "recovery-runs"))
    p.add_argument("--cache", default=str(CACHE / "recovery-crops.npz"))
    p.add_argument("--out", default=str(MODELS))
    p.add_argument("--name", default="nerve-recover")
    p.add_argument("--default", action="store_true", help="make it the model nerverecover uses when none is named")
    p.set_defaults(func=cmd_train_recovery)
