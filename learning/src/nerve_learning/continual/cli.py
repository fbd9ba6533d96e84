"""`nerve-learn continual`: the continual-learning benchmark (forgetting, plasticity, transfer)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..manifest import manifest_entry, upsert_manifest
from ..paths import CACHE, MODELS
from ..sr.export import export_onnx
from ..sr.model import Student


def cmd_continual(args: argparse.Namespace) -> int:
    """The continual-learning benchmark: every learner through the task sequence, then the JSON
    report, its plots and the replay+EWC student exported like the shipped models."""
    from .benchmark import load_config, markdown, plot, run_benchmark, summary_table

    if args.replot:
        # Plots and the generated write-up again from an existing report, without training.
        out_json = Path(args.json)
        report = json.loads(out_json.read_text())
        plots = plot(report, out_json.parent, out_json.stem)
        out_json.with_suffix(".md").write_text(markdown(report))
        print(f"wrote {', '.join(str(p) for p in plots)} and {out_json.with_suffix('.md')}")
        return 0
    cfg = load_config(Path(args.config), quick=args.quick)
    from dataclasses import replace

    if args.steps:
        cfg = replace(cfg, steps_per_task=args.steps)
    if args.ewc_lambda is not None:
        cfg = replace(cfg, ewc_lambda=args.ewc_lambda)
    if args.learners:
        cfg = replace(cfg, learners=tuple(args.learners.split(",")))
    out_json = Path(args.json)
    out_dir = out_json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    import shutil
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="nerve-continual-"))
    try:
        report, models = run_benchmark(cfg, Path(args.cache), work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    flags = [f"--config {args.config}", f"--json {args.json}", *(["--quick"] if args.quick else []),
             *([f"--steps {args.steps}"] if args.steps else []),
             *([f"--ewc-lambda {args.ewc_lambda}"] if args.ewc_lambda is not None else []),
             *([f"--learners {args.learners}"] if args.learners else []), *([f"--export {args.export}"] if args.export else [])]
    report["command"] = "nerve-learn continual " + " ".join(flags)
    # Saved before anything else can fail: the run is the expensive part.
    out_json.write_text(json.dumps(report, indent=2))
    if args.export:
        learner = "replay_ewc" if "replay_ewc" in models else "naive"
        model = models[learner]
        assert isinstance(model, Student)
        name = args.export
        onnx_path = out_dir / f"{name}.onnx"
        sha = export_onnx(model, onnx_path)
        upsert_manifest(out_dir / "manifest.toml", name,
                        manifest_entry(name, onnx_path.name, model.scale, model.frames, sha, False, f"{out_json.stem}.md"))
        report["export"] = {"learner": learner, "onnx": onnx_path.name, "sha256": sha,
                            "macs_per_pixel": model.macs_per_pixel(),
                            "parameters": sum(p.numel() for p in model.parameters())}
        if not args.quick:
            # Same architecture, so the same cost; measured anyway, beside the model it started from.
            from ..sr.quantize import seconds_per_frame

            lw, lh = 1280 // model.scale, 720 // model.scale
            report["export"]["fps_model_only"] = 1 / seconds_per_frame(onnx_path, lw, lh)
            shipped = MODELS / f"nerve-sr-x{model.scale}.onnx"
            if shipped.exists():
                report["export"]["shipped_fps_model_only"] = 1 / seconds_per_frame(shipped, lw, lh)
            report["export"]["fps_note"] = f"ONNX Runtime CPU, 2 threads, model only, {lw}x{lh} -> 1280x720"
    plots = [] if args.no_plots else plot(report, out_dir, out_json.stem)
    report["plots"] = [p.name for p in plots]
    out_json.write_text(json.dumps(report, indent=2))
    out_json.with_suffix(".md").write_text(markdown(report))
    print(summary_table(report))
    print(f"wrote {out_json}" + (f" and {', '.join(str(p) for p in plots)}" if plots else ""))
    return 0


def add_parser(sub: Any) -> None:
    k = sub.add_parser("continual", help="the continual-learning benchmark (forgetting, plasticity, transfer)")
    k.add_argument("--config", required=True, help="TOML task sequence and settings (learning/configs/continual-10.toml)")
    k.add_argument("--json", required=True, help="report path; plots are written beside it")
    k.add_argument("--quick", action="store_true", help="the config's [quick] overrides: tiny data, for tests")
    k.add_argument("--steps", type=int, default=0, help="override steps per task")
    k.add_argument("--ewc-lambda", type=float, default=None, help="override the EWC strength")
    k.add_argument("--learners", default="", help="override the learners, comma separated (naive is needed)")
    k.add_argument("--export", default="", help="export the replay+EWC student as <name>.onnx + manifest.toml beside the JSON")
    k.add_argument("--no-plots", action="store_true")
    k.add_argument("--replot", action="store_true", help="only redraw the plots and the write-up from --json")
    k.add_argument("--work", default="", help="scratch directory (episodic memories), kept; default a temporary one")
    k.add_argument("--cache", default=str(CACHE))
    k.set_defaults(func=cmd_continual)
