"""`nerve-learn train-sr`, `int8`, `int8-profile`, `register`, `train-pack`, `finish`: training,
quantizing, exporting and describing the SR students that `nervesr` runs."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from ..data.dataset import PairConfig, build_pairs
from ..data.degrade import DEFAULT_CODECS, Codec, parse_codecs
from ..manifest import manifest_entry, next_version, upsert_manifest
from ..paths import CACHE, MODELS
from .card import card, metrics_table, pack_description, training_sources
from .export import export_onnx
from .model import Student, Teacher
from .train import TrainConfig, evaluate, train


def cmd_train_sr(args: argparse.Namespace) -> int:
    from .quantize import quantize, seconds_per_frame, upscale_onnx

    codecs = parse_codecs(args.codecs)
    cfg = TrainConfig(scale=args.scale, channels=args.channels, depth=args.depth, steps=args.steps, batch=args.batch,
                      threads=args.threads, frames=args.frames_in, distill=args.distill if args.teacher_steps else 0.0,
                      block=args.block)
    pairs = PairConfig(scale=args.scale, codecs=codecs, frames_per_clip=args.frames, patches_per_frame=args.patches,
                       temporal=args.frames_in > 1)
    cache = Path(args.cache)
    started = time.time()
    extra: list[str] = []
    teacher = None
    if args.teacher_steps:
        t_cfg = TrainConfig(scale=args.scale, steps=args.teacher_steps, batch=args.batch, threads=args.threads)
        t_pairs = PairConfig(scale=args.scale, codecs=codecs, frames_per_clip=args.frames, patches_per_frame=args.patches)
        teacher = train(t_cfg, t_pairs, cache, model=Teacher(args.scale, args.teacher_channels, args.teacher_blocks))
        t_metrics = evaluate(teacher, (Codec("x264", 23), Codec("x264", 33)))
        t_gain = sum(v["psnr_y"] - v["psnr_y_bicubic"] for v in t_metrics.values()) / len(t_metrics)
        extra.append(f"- Teacher: {args.teacher_blocks} residual blocks of {args.teacher_channels} channels, "
                     f"{args.teacher_steps} steps; its mean held-out PSNR-Y gain {t_gain:+.2f} dB")
        print(f"teacher: mean held-out PSNR-Y gain {t_gain:+.2f} dB")
    model = train(cfg, pairs, cache, teacher=teacher)
    assert isinstance(model, Student)
    seconds = time.time() - started
    metrics = evaluate(model, (Codec("x264", 23), Codec("x264", 33)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"nerve-sr-x{args.scale}"
    onnx_path = out / f"{name}.onnx"
    sha = export_onnx(model, onnx_path)
    lw, lh = 1280 // args.scale, 720 // args.scale
    float_s = seconds_per_frame(onnx_path, lw, lh, frames=args.frames_in)
    extra.append(f"- Speed (ONNX Runtime CPU, 2 threads, model only, {lw}x{lh} -> 1280x720): {1 / float_s:.1f} fps")
    if args.int8:
        extra.append(make_int8(onnx_path, pairs, cache, name, args.frames_in))
    (out / f"{name}.md").write_text(card(name, cfg, model, metrics, pairs, seconds, extra))
    (out / f"{name}.metrics.json").write_text(json.dumps(metrics, indent=2))
    upsert_manifest(out / "manifest.toml", name, manifest_entry(name, onnx_path.name, model.scale, model.frames, sha, args.default, f"{name}.md"))
    mean_gain = sum(v["psnr_y"] - v["psnr_y_bicubic"] for v in metrics.values()) / len(metrics)
    print(f"{name}: mean PSNR-Y gain over Catmull-Rom on held-out clips {mean_gain:+.2f} dB; wrote {onnx_path}")
    for line in extra:
        print(line)
    return 0


def make_int8(float_path: Path, pairs: PairConfig, cache: Path, parent: str, frames: int = 1, default: bool = False,
              calibration_pack: Path | None = None) -> str:
    """Quantizes a float model (calibrated on training patches: the training clips', or those of
    `calibration_pack`), measures its speed and its PSNR-Y loss on held-out frames at x264 CRF 23,
    registers it in the manifest beside the float model (the default for its scale only with
    `default`) and returns the model-card line."""
    import hashlib

    from ..data.dataset import eval_frames
    from ..metrics import psnr
    from ..data.pack import load_pack
    from .quantize import pack_patches, quantize, seconds_per_frame, upscale_onnx
    from .train import stacked

    out = float_path.parent
    int8_name = f"{parent}-int8"
    int8_path = out / f"{int8_name}.onnx"
    if calibration_pack is not None:
        lr_np = pack_patches(load_pack(calibration_pack), pairs.scale, frames)
        calibrated_on = f"64 patches of its training pack ({calibration_pack.name})"
    else:
        lr_np, _ = build_pairs(pairs, cache)
        calibrated_on = "64 training patches"
    quantize(float_path, int8_path, lr_np)
    lw, lh = 1280 // pairs.scale, 720 // pairs.scale
    float_s, int8_s = seconds_per_frame(float_path, lw, lh, frames=frames), seconds_per_frame(int8_path, lw, lh, frames=frames)
    deltas = []
    for _clip, lr, hr in eval_frames(pairs.scale, Codec("x264", 23), 4):
        lr = stacked(lr, frames)
        deltas.append(psnr(upscale_onnx(int8_path, lr), hr) - psnr(upscale_onnx(float_path, lr), hr))
    loss = -sum(deltas) / len(deltas)
    sha = hashlib.sha256(int8_path.read_bytes()).hexdigest()
    upsert_manifest(out / "manifest.toml", int8_name,
                    manifest_entry(int8_name, int8_path.name, pairs.scale, frames, sha, default, f"{parent}.md", parent=parent))
    return (f"- int8 variant `{int8_name}` (static QDQ, per-channel weights, calibrated on {calibrated_on}): "
            f"{1 / int8_s:.1f} fps vs {1 / float_s:.1f} fps float ({float_s / int8_s:.2f}x), "
            f"{loss:+.3f} dB PSNR-Y lost at CRF 23 on the held-out clips (model only, ONNX Runtime CPU, 2 threads)")


def cmd_int8(args: argparse.Namespace) -> int:
    name = Path(args.model).stem
    pairs = PairConfig(scale=args.scale, frames_per_clip=args.frames, patches_per_frame=args.patches,
                       temporal=args.frames_in > 1)
    pack = Path(args.calibration_pack) if args.calibration_pack else None
    line = make_int8(Path(args.model), pairs, Path(args.cache), name, args.frames_in, args.default, pack)
    card_path = Path(args.model).with_suffix(".md")
    if card_path.exists():
        text = card_path.read_text()
        text = "\n".join(l for l in text.splitlines() if not l.startswith(f"- int8 variant `{name}-int8`"))
        marker = "\n## PSNR-Y"
        text = text.replace(marker, line + "\n" + marker, 1) if marker in text else text + "\n" + line + "\n"
        card_path.write_text(text)
    print(line)
    return 0


def cmd_int8_profile(args: argparse.Namespace) -> int:
    from .quantize import layer_times

    width, height = (int(v) for v in args.size.split("x"))
    for model in args.model:
        times = layer_times(Path(model), width, height, args.threads)
        print(f"{model}: {sum(times.values()):.2f} ms per {args.size} frame, {args.threads} thread(s)")
        for node, ms in times.items():
            if ms >= 0.05:
                print(f"  {ms:7.2f} ms  {node}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Evaluates an already exported student (ONNX) on the held-out clips and writes its model
    card, metrics and manifest entry: for a model whose training run ended before that step."""
    import hashlib

    from ..data.dataset import eval_frames
    from ..metrics import psnr
    from .quantize import seconds_per_frame, upscale_onnx
    from .train import stacked, upscale

    path = Path(args.model)
    name = path.stem
    student = Student(args.scale, args.channels, args.depth, args.frames_in, block=args.block)
    metrics: dict[str, dict[str, float]] = {}
    for codec in (Codec("x264", 23), Codec("x264", 33)):
        for clip, lr, hr in eval_frames(args.scale, codec, 8):
            key = f"{clip.content}/{codec.name}-crf{codec.crf}"
            metrics[key] = {"psnr_y": psnr(upscale_onnx(path, stacked(lr, args.frames_in)), hr),
                            "psnr_y_bicubic": psnr(upscale(student.upscale, lr), hr)}
    lw, lh = 1280 // args.scale, 720 // args.scale
    fps = 1 / seconds_per_frame(path, lw, lh, frames=args.frames_in)
    cfg = TrainConfig(scale=args.scale, channels=args.channels, depth=args.depth, steps=args.steps, frames=args.frames_in,
                      block=args.block)
    pairs = PairConfig(scale=args.scale, codecs=parse_codecs(args.codecs), temporal=args.frames_in > 1)
    extra = [f"- Speed (ONNX Runtime CPU, 2 threads, model only, {lw}x{lh} -> 1280x720): {fps:.1f} fps",
             "- Registered from its exported ONNX file (`nerve-learn register`); training time not recorded"]
    out = path.parent
    (out / f"{name}.md").write_text(card(name, cfg, student, metrics, pairs, 0.0, extra))
    (out / f"{name}.metrics.json").write_text(json.dumps(metrics, indent=2))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    upsert_manifest(out / "manifest.toml", name,
                    manifest_entry(name, path.name, args.scale, args.frames_in, sha, False, f"{name}.md"))
    gain = sum(v["psnr_y"] - v["psnr_y_bicubic"] for v in metrics.values()) / len(metrics)
    print(f"{name}: mean PSNR-Y gain over Catmull-Rom on held-out clips {gain:+.2f} dB, {fps:.1f} fps model only")
    return 0


def cmd_train_pack(args: argparse.Namespace) -> int:
    from ..data.pack import load_pack, merge_packs
    from .packtrain import PackTrainConfig, train_from_pack

    cfg = PackTrainConfig(scale=args.scale, rungs=args.rungs, exclude=tuple(args.exclude), channels=args.channels,
                          depth=args.depth, steps=args.steps, minutes=args.minutes, batch=args.batch, patch_lr=args.patch,
                          teacher_channels=args.teacher_channels, teacher_blocks=args.teacher_blocks,
                          teacher_steps=args.teacher_steps, teacher_minutes=args.teacher_minutes,
                          distill=args.distill, frames=args.frames_in, rep=args.rep, block=args.block, device=args.device,
                          threads=args.threads, seed=args.seed, init=args.init, lr=args.lr, loss=args.loss,
                          edge=args.edge, warmup=args.warmup)
    pack = load_pack(Path(args.pack))
    if args.extra_pack:
        pack = merge_packs([pack] + [load_pack(Path(p)) for p in args.extra_pack])
        if args.rungs != "bi" and not pack.lr:
            raise SystemExit("--extra-pack with codec rungs needs packs of the same --codecs and --scales "
                             "(a pack of pictures' pans, say); packs of other rungs merge for --rungs bi only")
    out = train_from_pack(pack, cfg, Path(args.out))
    print(f"wrote {out}")
    return 0


def cmd_finish(args: argparse.Namespace) -> int:
    """Export, held-out evaluation, speed, model card and manifest entry for a weights file made
    by `train-pack` (possibly on another machine)."""
    from .packtrain import load_student
    from .quantize import seconds_per_frame

    path = Path(args.weights)
    model, record = load_student(path)
    cfg = record["config"]
    name = args.name or path.stem
    codecs = parse_codecs(args.eval_codecs)
    metrics = evaluate(model, codecs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"
    sha = export_onnx(model, onnx_path)
    lw, lh = 1280 // model.scale, 720 // model.scale
    fps = 1 / seconds_per_frame(onnx_path, lw, lh, frames=model.frames)
    params = sum(p.numel() for p in model.parameters())
    s = record["student"]
    # A merged pack of codec rungs holds the same rungs in every part (data.pack.merge_packs).
    first_pack = record["pack"].get("merged", [record["pack"]])[0]
    rungs = ("MATLAB bicubic downscale only (the BI degradation of Vid4/Set5)" if cfg["rungs"] == "bi" else
             f"{'/'.join(first_pack.get('kernels', ['bicubic']))} downscale, then "
             + ", ".join(f"{c['name']} CRF {c['crf']}" for c in first_pack["codecs"]) + ", decoded")
    kd = f" + {cfg['distill']} x L1 to the teacher (distillation)" if "teacher" in record else ""
    lines = [
        f"# {name}", "",
        f"Real-time super-resolution student, x{model.scale}, luma in ("
        + ("the current frame" if model.frames == 1 else "the previous and the current frame, unaligned")
        + "), residual on a built-in",
        "Catmull-Rom upscale (the same kernel nervesr uses for chroma and its fallback). Trained from a frame pack",
        "(`nerve-learn pack`, `nerve-learn train-pack`), exported and evaluated by `nerve-learn finish`.", "",
        f"- Architecture: {model.architecture()}"
        + (" (trained as re-parameterisable edge-oriented blocks, ECBSR-style, merged into these plain convolutions)"
           if cfg.get("rep") else ""),
        f"- Parameters: {params}",
        f"- MACs per input (LR) pixel: {model.macs_per_pixel()}",
        f"- Training data: {training_sources(record['clips'])}",
        f"  ({'; '.join(pack_description(p) for p in record['pack'].get('merged', [record['pack']]))}; "
        f"patches of {cfg['patch_lr']} LR px drawn at random)",
        *([f"- Fine-tuned from: {Path(record['init']['path']).name}"] if "init" in record else []),
        *([f"- Started from: {record['start']}"] if "start" in record else []),
        *([f"- Left out of training: {', '.join(cfg['exclude'])}"] if cfg["exclude"] else []),
        f"- Degradation: {rungs}",
        f"- Training: {cfg.get('loss', 'l1').upper()}"
        f"{f' + {edge} x L1 on neighbour differences (edges)' if (edge := cfg.get('edge', 0.0)) else ''}{kd}, "
        f"Adam {cfg['lr']}, {f'{warm} steps of linear warm-up, ' if (warm := cfg.get('warmup', 0)) else ''}cosine schedule, "
        f"{s['steps']} steps of {cfg['batch']} on {s['device']} ({s['seconds'] / 60:.1f} min)",
        *([f"- Teacher: {cfg['teacher_blocks']} residual blocks of {cfg['teacher_channels']} channels, "
           f"{record['teacher']['steps']} steps on {record['teacher']['device']}"] if "teacher" in record else []),
        f"- Speed (ONNX Runtime CPU, 2 threads, model only, {lw}x{lh} -> 1280x720): {fps:.1f} fps "
        f"(load average {os.getloadavg()[0]:.1f} on 2 cores while measured)",
        *[f"- {line}" for line in args.note],
        "", "## PSNR-Y on the held-out clips (dB, first 8 frames)", "",
        "| clip / rung | Catmull-Rom | this model | gain |", "|---|---|---|---|", metrics_table(metrics), "",
        "VMAF, VMAF NEG and frames per second inside nervesr: `nerve-eval sr` (see the README).", "",
    ]
    (out / f"{name}.md").write_text("\n".join(lines))
    (out / f"{name}.metrics.json").write_text(json.dumps(metrics, indent=2))
    version = next_version(out / "manifest.toml", name, sha)
    upsert_manifest(out / "manifest.toml", name, manifest_entry(name, onnx_path.name, model.scale, model.frames, sha, args.default,
                                                                f"{name}.md", version=version))
    gain = sum(v["psnr_y"] - v["psnr_y_bicubic"] for v in metrics.values()) / len(metrics)
    print(f"{name}: mean PSNR-Y gain over Catmull-Rom on held-out clips {gain:+.2f} dB; {fps:.1f} fps model only")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("train-sr", help="train, evaluate and export a real-time SR student")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--block", type=int, default=1, choices=(1, 2),
                   help="2: run the network on the frame folded 2x2 into channels (wider layers, int8-friendly)")
    p.add_argument("--frames-in", type=int, default=1, choices=(1, 2), help="2: temporal student (previous frame too)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--codecs", default=DEFAULT_CODECS, help="degradations as codec:crf, codecs x264, x265, vp9, av1")
    p.add_argument("--teacher-steps", type=int, default=0, help="train a teacher first and distil from it")
    p.add_argument("--teacher-channels", type=int, default=32)
    p.add_argument("--teacher-blocks", type=int, default=4)
    p.add_argument("--distill", type=float, default=0.5, help="weight of the teacher term")
    p.add_argument("--int8", action="store_true", help="also export an int8 variant and measure it")
    p.add_argument("--frames", type=int, default=24, help="frames per training clip")
    p.add_argument("--patches", type=int, default=24, help="patches per frame")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch (1 when sharing the machine)")
    p.add_argument("--name", default="")
    p.add_argument("--default", action="store_true", help="make it the default model for its scale")
    p.add_argument("--out", default=str(MODELS))
    p.add_argument("--cache", default=str(CACHE))
    p.set_defaults(func=cmd_train_sr)
    q = sub.add_parser("int8", help="int8 variant of an exported float model, measured against it")
    q.add_argument("--model", required=True)
    q.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    q.add_argument("--frames", type=int, default=24)
    q.add_argument("--patches", type=int, default=24)
    q.add_argument("--frames-in", type=int, default=1, choices=(1, 2), help="2: a temporal model (previous frame too)")
    q.add_argument("--cache", default=str(CACHE))
    q.add_argument("--default", action="store_true", help="make the int8 variant the default model for its scale")
    q.add_argument("--calibration-pack", default="",
                   help="calibrate on this training pack's rungs instead of the training clips (a model trained "
                        "on a pack alone)")
    q.set_defaults(func=cmd_int8)
    q = sub.add_parser("int8-profile", help="time per node of float and int8 models (ONNX Runtime's profiler)")
    q.add_argument("--model", action="append", required=True, help="an .onnx file; repeat to compare")
    q.add_argument("--size", default="640x360", help="input (LR) frame size WxH")
    q.add_argument("--threads", type=int, default=1)
    q.set_defaults(func=cmd_int8_profile)
    r = sub.add_parser("register", help="card, metrics and manifest entry for an exported student")
    r.add_argument("--model", required=True)
    r.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    r.add_argument("--channels", type=int, default=16)
    r.add_argument("--depth", type=int, default=2)
    r.add_argument("--block", type=int, default=1, choices=(1, 2),
                   help="2: run the network on the frame folded 2x2 into channels (wider layers, int8-friendly)")
    r.add_argument("--frames-in", type=int, default=1, choices=(1, 2))
    r.add_argument("--steps", type=int, default=0)
    r.add_argument("--codecs", default=DEFAULT_CODECS)
    r.set_defaults(func=cmd_register)
    t = sub.add_parser("train-pack", help="train a student (and optionally its teacher) from a frame pack, on CUDA if present")
    t.add_argument("--pack", required=True)
    t.add_argument("--out", required=True, help="weights file to write (.pt)")
    t.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    t.add_argument("--rungs", default="codecs", choices=("codecs", "bi"))
    t.add_argument("--exclude", nargs="*", default=[], help="clip paths (substrings) to leave out")
    t.add_argument("--channels", type=int, default=16)
    t.add_argument("--depth", type=int, default=2)
    t.add_argument("--steps", type=int, default=20000)
    t.add_argument("--minutes", type=float, default=0.0, help="size the run by time instead of steps")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--patch", type=int, default=48, help="LR patch side")
    t.add_argument("--teacher-channels", type=int, default=48)
    t.add_argument("--teacher-blocks", type=int, default=6)
    t.add_argument("--teacher-steps", type=int, default=0)
    t.add_argument("--teacher-minutes", type=float, default=0.0)
    t.add_argument("--distill", type=float, default=0.5)
    t.add_argument("--frames-in", type=int, default=1, choices=(1, 2), help="2: temporal student (pack made with --previous)")
    t.add_argument("--rep", action="store_true", help="re-parameterisable (ECB) blocks in training, plain convs deployed")
    t.add_argument("--block", type=int, default=1, choices=(1, 2), help="2: space-to-depth student (int8-friendly)")
    t.add_argument("--extra-pack", action="append", default=[], help="another pack to draw from too: of the same codec rungs (pictures' pans), or any for --rungs bi")
    t.add_argument("--init", default="", help="start from this train-pack weights file (same architecture) or exported student (.onnx; a shallower one is grown with identity layers): fine-tuning")
    t.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (cosine schedule to 0)")
    t.add_argument("--loss", default="l1", choices=("l1", "l2"), help="l2: mean squared error (PSNR's measure)")
    t.add_argument("--edge", type=float, default=0.0,
                   help="weight of an L1 term on neighbour differences (edges), beside the pixel loss; 0: off")
    t.add_argument("--warmup", type=int, default=0,
                   help="steps of linear learning-rate warm-up before the cosine schedule (training from random "
                        "weights: 2000)")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train_pack)
    f = sub.add_parser("finish", help="export, evaluate and register a weights file from train-pack")
    f.add_argument("--weights", required=True)
    f.add_argument("--name", default="")
    f.add_argument("--eval-codecs", default="x264:23,x264:33")
    f.add_argument("--note", action="append", default=[], help="extra model-card line (repeatable)")
    f.add_argument("--default", action="store_true")
    f.add_argument("--out", default=str(MODELS))
    f.set_defaults(func=cmd_finish)
