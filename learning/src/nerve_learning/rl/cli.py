"""`nerve-learn rl ...`: train, export and judge the PPO ABR agent."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

from ..paths import MODELS, REPO

TRACES = REPO.parent / "shared" / "data" / "traces"


def _log(path: str) -> TextIO:
    if not path:
        return sys.stdout
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", buffering=1)  # noqa: SIM115 (closed by the caller's context)


def _train_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .env import EnvConfig, content_tables
    from .imitate import ImitationConfig
    from .train import TrainConfig

    imitation = None
    if args.imitate:
        imitation = ImitationConfig(teacher=args.imitate, rounds=args.imitate_rounds,
                                    episodes_per_round=args.imitate_episodes)
    if args.tables == "content":
        env = EnvConfig(tables=content_tables())
    elif args.tables == "perturbed":
        from ..paths import ABR_TABLES, CACHE
        from .tables import write_perturbed
        # into the cache: `lofo`'s --out is the committed reports directory
        sources = [ABR_TABLES / "pensieve_generic_nervesr.json", *map(Path, content_tables())]
        tables_dir = CACHE / "rl-tables" / f"seed{args.seed}-{args.perturbed}"
        env = EnvConfig(tables=content_tables() + write_perturbed(sources, args.perturbed, tables_dir, seed=args.seed))
    else:
        env = EnvConfig()
    return TrainConfig(timesteps=args.timesteps, max_seconds=args.max_seconds, seed=args.seed, n_envs=args.envs,
                       imitation=imitation, env=env)


def cmd_train(args: argparse.Namespace) -> int:
    """Train on the named families (default: all), save, export and check the ONNX graph."""
    import numpy as np

    from . import sim, synthetic
    from .export import export, inference_time, random_obs, verify, write_training_table
    from .train import save, train

    fams = sim.families(Path(args.traces), limit=args.limit)
    chosen = [f for f in fams if not args.families or f.name in args.families.split(",")]
    if args.synthetic:
        chosen.append(synthetic.family(seed=args.seed))
    log = _log(args.log)
    with log if log is not sys.stdout else nullcontext():
        print(f"training on {', '.join(f'{f.name} ({len(f.traces)})' for f in chosen)}", file=log, flush=True)
        trained = train([f.traces for f in chosen], _train_config(args), label="ppo", log=log)
        out = Path(args.out)
        save(trained, out)
        config = _train_config(args)
        onnx = export(trained.model, trained.vecnorm, Path(args.onnx) if args.onnx else out / "ppo.onnx")
        write_training_table(onnx, config.env.tables)
        probe = random_obs(trained.vecnorm, 512, np.random.default_rng(args.seed))
        check = verify(trained.model, trained.vecnorm, onnx, probe)
        timing = inference_time(onnx, probe)
        summary = {**trained.summary(), "families": [f.name for f in chosen], "onnx": str(onnx),
                   "onnx_check": vars(check) | {"ok": check.ok}, "inference": timing}
        (out / "train.json").write_text(json.dumps(summary, indent=2, default=str))
        print(json.dumps({k: summary[k] for k in ("timesteps", "train_s", "onnx", "onnx_check", "inference")},
                         indent=2, default=str), file=log, flush=True)
    return 0 if check.ok else 1


def cmd_lofo(args: argparse.Namespace) -> int:
    from .evaluate import LofoConfig, lofo, replay

    cfg = LofoConfig(root=Path(args.traces), out=Path(args.out), work=Path(args.work), train=_train_config(args),
                     preference=args.preference, families=tuple(f for f in args.families.split(",") if f),
                     limit=args.limit, synthetic=args.synthetic)
    log = _log(args.log)
    with log if log is not sys.stdout else nullcontext():
        res = replay(cfg, log) if args.replay else lofo(cfg, log)
        print(json.dumps(res["summary"], indent=1), file=log, flush=True)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import sim
    from .evaluate import LofoConfig, report

    cfg = LofoConfig(root=Path(args.traces), out=Path(args.out), work=Path(args.work), preference=args.preference)
    res = report(cfg, [f.name for f in sim.families(cfg.root)])
    print(json.dumps(res["summary"], indent=1))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("rl", help="the PPO ABR agent: train in the Rust simulator, export to ONNX, leave-one-family-out")
    rs = r.add_subparsers(dest="rl_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--traces", default=str(TRACES), help="trace root: one family per directory (as nerveabr-sim)")
        p.add_argument("--families", default="", help="comma-separated family names (default: all)")
        p.add_argument("--limit", type=int, default=0, help="at most N traces per source (0: all)")
        p.add_argument("--timesteps", type=int, default=200_000)
        p.add_argument("--max-seconds", type=float, default=0.0, help="wall-clock cap on each training (0: none)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--envs", type=int, default=8, help="environments stepped together")
        p.add_argument("--imitate", default="", metavar="POLICY",
                       help="imitate this planner first (DAgger; `nerve`), then PPO from there (default: PPO only)")
        p.add_argument("--imitate-rounds", type=int, default=3, help="DAgger rounds")
        p.add_argument("--imitate-episodes", type=int, default=1200, help="sessions played per DAgger round")
        p.add_argument("--log", default="", help="progress log file (default: stdout)")
        p.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=False,
                       help="add a training family of synthetic steady links and troughs (rl/synthetic.py; "
                            "never evaluated on)")
        p.add_argument("--tables", default="generic", choices=("content", "generic", "perturbed"),
                       help="quality tables episodes draw from: the generic one and every content type's "
                            "(content), those and --perturbed perturbed copies (perturbed, rl/tables.py), "
                            "or the generic one only (generic)")
        p.add_argument("--perturbed", type=int, default=200, help="perturbed tables with --tables perturbed")

    p = rs.add_parser("train", help="train on families, save, export to ONNX and check it against torch")
    common(p)
    p.add_argument("--out", default="out/rl/all")
    p.add_argument("--onnx", default="", help=f"ONNX path (default: OUT/ppo.onnx; shipped: {MODELS / 'abr' / 'ppo.onnx'})")
    p.set_defaults(func=cmd_train)

    p = rs.add_parser("lofo", help="leave-one-family-out: train without each family, test on it, vs nerve and baselines")
    common(p)
    p.add_argument("--out", default="learning/reports/rl")
    p.add_argument("--work", default="out/rl/lofo", help="per-fold checkpoints, ONNX graphs and per-trace results")
    p.add_argument("--preference", default="quality", choices=("quality", "balanced", "battery-saver"))
    p.add_argument("--replay", action="store_true",
                   help="play the finished folds' saved policies again (no training), e.g. after a change to the shield")
    p.set_defaults(func=cmd_lofo)

    p = rs.add_parser("report", help="gather the finished folds of a lofo run into the JSON + PNG")
    p.add_argument("--traces", default=str(TRACES))
    p.add_argument("--out", default="learning/reports/rl")
    p.add_argument("--work", default="out/rl/lofo")
    p.add_argument("--preference", default="quality", choices=("quality", "balanced", "battery-saver"))
    p.set_defaults(func=cmd_report)
