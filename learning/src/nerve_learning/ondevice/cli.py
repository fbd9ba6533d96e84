"""`nerve-learn harvest` (the Python stand-in for nervesr's harvester) and `nerve-learn local-train`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..data.clips import EVAL, TRAIN, Clip, data_root
from ..data.degrade import parse_codecs
from ..paths import CACHE

def find_clip(path: str) -> Clip:
    for c in (*TRAIN, *EVAL):
        if c.path == path:
            return c
    raise SystemExit(f"nerve-learn: {path} is not in clips.TRAIN or clips.EVAL")


def cmd_harvest(args: argparse.Namespace) -> int:
    from .local_trainer import harvest_clip
    from ..data.memory import EpisodicMemory, MemoryConfig

    clips = [c for c in TRAIN if c.content == args.content] if args.content else []
    clips += [find_clip(p) for p in args.clip]
    if not clips:
        raise SystemExit("nerve-learn harvest: name --content (its TRAIN clips) or --clip")
    if any(c.path in {e.path for e in EVAL} for c in clips) and not args.allow_eval:
        raise SystemExit("nerve-learn harvest: refusing to harvest a held-out (EVAL) clip; --allow-eval to insist")
    memory = EpisodicMemory(Path(args.memory), MemoryConfig(capacity=args.capacity))
    total = 0
    for i, clip in enumerate(clips):
        n = harvest_clip(memory, clip, data_root(), max_frames=args.frames, frame_step=args.step,
                         patches_per_frame=args.patches, patch=args.patch, select=args.select, seed=i)
        print(f"{clip.path}: {n.items} patches from {n.seconds_played:.1f} s of video")
        total += n.items
    print(f"{args.memory}: {len(memory)} items ({total} written)")
    return 0


def policy_from(args: argparse.Namespace) -> Any:
    from .local_trainer import Policy

    return Policy(require_idle=not args.no_idle, require_charging=not args.no_charging, require_wifi=not args.no_wifi,
                  max_load=args.max_load, window=args.window, assume_idle=args.assume_idle,
                  assume_charging=args.assume_charging, assume_wifi=args.assume_wifi)


def config_from(args: argparse.Namespace) -> Any:
    from .local_trainer import LocalTrainConfig

    return LocalTrainConfig(name=args.name, rungs=parse_codecs(args.rungs), steps=args.steps, batch=args.batch,
                            lrs=tuple(float(v) for v in str(args.lr).split(",") if v.strip()),
                            replay_fraction=args.replay_fraction, replay_pairs=args.replay_pairs,
                            ewc_lambda=args.ewc_lambda, holdout=args.holdout, min_gain_db=args.min_gain,
                            max_forget_db=args.max_forget, guard_pairs=args.guard_pairs,
                            threads=args.threads, seed=args.seed, bars=args.bars,
                            holdout_by=args.holdout_by, rep=args.rep, soup=args.soup)


def cmd_local_train(args: argparse.Namespace) -> int:
    from .local_trainer import EX_TEMPFAIL, local_train
    from ..data.memory import EpisodicMemory
    from ..registry.store import Registry, RegistryError

    try:
        report = local_train(Registry(args.tracking_uri or None), EpisodicMemory(Path(args.memory)), config_from(args),
                             policy_from(args), Path(args.cache), promote=args.promote)
    except (RegistryError, ValueError) as e:
        print(f"nerve-learn local-train: {e}")
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    if not report["ran"]:
        print("not now: " + "; ".join(report["reasons"]))
        return EX_TEMPFAIL
    print(f"held-back harvested pairs ({report['held_pairs']}): champion v{report['champion']} "
          f"{report['heldback_psnr_champion']:.2f} dB, candidate {report['heldback_psnr_candidate']:.2f} dB "
          f"({report['gain_db']:+.3f} dB)")
    print(report["decision"])
    return 0


def cmd_ondevice_loop(args: argparse.Namespace) -> int:
    from .loop import LoopConfig, markdown, run_loop

    cfg = LoopConfig(content=args.content, harvest_frames=args.frames, harvest_step=args.step,
                     harvest_patches=args.patches, patch=args.patch, harvest_select=args.select, train=config_from(args), eval_frames=args.eval_frames)
    result = run_loop(cfg, Path(args.work), Path(args.cache))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ondevice-{args.content}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def cmd_ondevice_plot(args: argparse.Namespace) -> int:
    from .loop import plot_reports

    plot_reports([Path(r) for r in args.reports], Path(args.out))
    print(f"wrote {args.out}")
    return 0


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rungs", default="x264:23,x264:33", help="codec:crf rungs for harvested patches without one")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", default="5e-4,1e-3,2e-3",
                   help="learning rates to try, comma-separated: one candidate each, the best on the held-back pairs is kept")
    p.add_argument("--replay-fraction", type=float, default=0.5, help="share of each batch from the original pairs")
    p.add_argument("--replay-pairs", type=int, default=6000)
    p.add_argument("--ewc-lambda", type=float, default=0.0, help="EWC strength (0: no EWC)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of harvested frames held back for the decision")
    p.add_argument("--holdout-by", default="frame", choices=("frame", "source"),
                   help="hold back whole frames, or whole videos (when the memory has two or more)")
    p.add_argument("--min-gain", type=float, default=0.02, help="dB the candidate must gain to be registered")
    p.add_argument("--max-forget", type=float, default=0.1,
                   help="dB the candidate may lose on original training pairs kept out of the fine-tune (<0: no check)")
    p.add_argument("--guard-pairs", type=int, default=2000)
    p.add_argument("--bars", type=float, default=0.5,
                   help="share of harvested patches also trained with a letterbox/pillarbox bar (0: none)")
    p.add_argument("--soup", action="store_true",
                   help="also try the mean weights of the learning-rate candidates within the guard (model soup)")
    p.add_argument("--rep", action="store_true", help="fine-tune as re-parameterisable (ECB) blocks, merged back")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=str(CACHE), help="where the original training pairs are cached")


def add_policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--assume-idle", action="store_true", help="treat the device as idle")
    p.add_argument("--assume-charging", action="store_true")
    p.add_argument("--assume-wifi", action="store_true")
    p.add_argument("--no-idle", action="store_true", help="do not require idleness")
    p.add_argument("--no-charging", action="store_true", help="do not require charging")
    p.add_argument("--no-wifi", action="store_true", help="do not require Wi-Fi")
    p.add_argument("--max-load", type=float, default=0.5, help="idle: 1-min load average per CPU at most this")
    p.add_argument("--window", default="", help="only inside this local time window, HH:MM-HH:MM")


def add_parsers(sub: Any) -> None:
    h = sub.add_parser("harvest", help="store high-resolution patches of clips in an episodic memory "
                                       "(what nervesr's harvester does during playback)")
    h.add_argument("--memory", required=True, help="the store directory")
    h.add_argument("--content", default="", help="harvest every TRAIN clip of this content type")
    h.add_argument("--clip", action="append", default=[], help="a clip path of clips.py (repeatable)")
    h.add_argument("--frames", type=int, default=300, help="sampled frames per clip at most")
    h.add_argument("--step", type=int, default=5, help="sample every N-th frame")
    h.add_argument("--patches", type=int, default=6, help="patches per sampled frame")
    h.add_argument("--patch", type=int, default=96, help="patch side (high-resolution pixels)")
    h.add_argument("--select", default="textured", choices=("random", "textured"),
                   help="patch selection in a frame (textured: the most detailed of several candidates, as nervesr does)")
    h.add_argument("--capacity", type=int, default=4000)
    h.add_argument("--allow-eval", action="store_true")
    h.set_defaults(func=cmd_harvest)
    t = sub.add_parser("local-train", help="fine-tune the champion on the harvested memory when the device "
                                           "allows it; register a better model as candidate")
    t.add_argument("--memory", required=True)
    t.add_argument("--tracking-uri", default="", help="registry (as for `nerve-learn registry`)")
    t.add_argument("--promote", action="store_true", help="promote the candidate to champion")
    t.add_argument("--json", default="", help="write the run's report here")
    t.add_argument("--name", default="nerve-sr-x2", help="registered model to improve")
    add_train_args(t)
    add_policy_args(t)
    t.set_defaults(func=cmd_local_train)
    o = sub.add_parser("ondevice-loop", help="measure the whole loop on one content type: harvest its TRAIN clips, "
                                             "train locally, score on clips never trained on")
    o.add_argument("--content", default="talking_head")
    o.add_argument("--work", required=True, help="scratch directory (registry, memory, model location)")
    o.add_argument("--out", required=True, help="where the JSON and markdown report go")
    o.add_argument("--frames", type=int, default=300, help="sampled frames per clip at most")
    o.add_argument("--step", type=int, default=2)
    o.add_argument("--patches", type=int, default=8)
    o.add_argument("--patch", type=int, default=96)
    o.add_argument("--select", default="textured", choices=("random", "textured"))
    o.add_argument("--eval-frames", type=int, default=16)
    o.add_argument("--name", default="nerve-sr-x2")
    add_train_args(o)
    o.set_defaults(func=cmd_ondevice_loop)
    g = sub.add_parser("ondevice-plot", help="bar chart (PNG) of ondevice-loop reports: own gain and worst other change")
    g.add_argument("reports", nargs="+", help="ondevice-*.json reports")
    g.add_argument("--out", required=True, help="PNG to write")
    g.set_defaults(func=cmd_ondevice_plot)
