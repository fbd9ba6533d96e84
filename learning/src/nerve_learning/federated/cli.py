"""`nerve-learn federated ...`: harvest the fleet, run the Flower simulation, write the report,
register the models.

  nerve-learn federated harvest     fill the fleet's pools with nervesr's harvester (cached)
  nerve-learn federated simulate    one Flower simulation (Ray backend) with the given settings
  nerve-learn federated report      all runs of the report + learning/reports/federated/
  nerve-learn federated register    put a run's global and cluster models in the MLflow registry
  nerve-learn federated qoe         the streaming QoE change per viewer type of a report (in place)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..paths import REPO

from .simulation import CACHE, simulate


def cmd_harvest(args: argparse.Namespace) -> int:
    from .fleet import VIEWER_TYPES, eval_set, harvest_fleet

    pools = harvest_fleet(Path(args.cache))
    print(f"{sum(len(p.hr) for p in pools.values())} patches from {len(pools)} clips")
    for v in VIEWER_TYPES:
        eval_set(v, cache=Path(args.cache))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .fleet import build_fleet, harvest_fleet
    from .task import Settings

    cache = Path(args.cache)
    s = Settings.load(args.settings) if args.settings else Settings()
    for kv in args.set or []:
        k, v = kv.split("=", 1)
        cur = getattr(s, k)
        setattr(s, k, type(cur)(v) if not isinstance(cur, bool) else v.lower() in ("1", "true", "yes"))
    fleet = Path(args.out) / "fleet"
    if not (fleet / f"device-{args.clients - 1:04d}").is_dir():
        build_fleet(harvest_fleet(cache), fleet, args.clients, seed=s.seed)
    s.fleet_dir, s.out_dir, s.eval_cache = str(fleet.resolve()), str(Path(args.out).resolve()), str(cache.resolve())
    h = simulate(s, args.clients)
    print(json.dumps({k: h.get(k) for k in ("devices", "epsilon", "seconds", "round_seconds", "personalise_probe")},
                     indent=1, default=float))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import make_report

    make_report(Path(args.work), Path(args.out), clients=args.clients, cache=Path(args.cache), only=args.only)
    return 0


def cmd_bound(args: argparse.Namespace) -> int:
    from .bound import BATCH, GRID, write_bound

    grid = tuple((float(r), int(n)) for r, n in (g.split(":") for g in args.grid.split(","))) if args.grid else GRID
    viewers = tuple(v for v in args.viewers.split(",") if v)
    write_bound(Path(args.cache), Path(args.out), grid=grid, batch=args.batch or BATCH, only=viewers)
    return 0


def cmd_qoe(args: argparse.Namespace) -> int:
    from .qoe import add_qoe

    path = Path(args.report)
    report = add_qoe(json.loads(path.read_text()))
    path.write_text(json.dumps(report, indent=1, default=float))
    for v, r in report["qoe"]["per_viewer"].items():
        print(f"{v}: {r['delta_vmaf']:+.2f} VMAF -> QoE {r['global_qoe']:.2f} -> {r['personal_qoe']:.2f} "
              f"({r['qoe_change_pct']:+.2f}%, median {r['qoe_change_median_pct']:+.2f}%)")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from .report import register_run

    for v in register_run(Path(args.run), Path(args.registry), args.name):
        print(v)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("federated", help="federated personalisation with Flower (simulation, report, registry)")
    fs = p.add_subparsers(dest="federated_command", required=True)
    h = fs.add_parser("harvest", help="harvest every training clip with nervesr (cached)")
    h.add_argument("--cache", default=str(CACHE))
    h.set_defaults(func=cmd_harvest)
    s = fs.add_parser("simulate", help="one Flower simulation run (Ray backend)")
    s.add_argument("--clients", type=int, default=100)
    s.add_argument("--out", default="out/federated/sim")
    s.add_argument("--cache", default=str(CACHE))
    s.add_argument("--settings", default="", help="a JSON file of task.Settings")
    s.add_argument("--set", action="append", help="KEY=VALUE of task.Settings (repeatable)")
    s.set_defaults(func=cmd_simulate)
    r = fs.add_parser("report", help="the runs of learning/reports/federated/ (clean, DP, poisoned, central)")
    r.add_argument("--clients", type=int, default=100)
    r.add_argument("--work", default="out/federated")
    r.add_argument("--out", default=str(REPO / "learning" / "reports" / "federated"))
    r.add_argument("--cache", default=str(CACHE))
    r.add_argument("--only", default="", help="comma-separated runs to (re)do; others are read back")
    r.set_defaults(func=cmd_report)
    b = fs.add_parser("bound", help="upper bound of personalisation: each viewer type's whole harvest, central fine-tuning")
    b.add_argument("--out", default=str(REPO / "learning" / "reports" / "federated"))
    b.add_argument("--cache", default=str(CACHE))
    b.add_argument("--grid", default="", help="lr:steps,... (default: the four settings of bound.GRID)")
    b.add_argument("--batch", type=int, default=0, help="patches per step (default bound.BATCH)")
    b.add_argument("--viewers", default="", help="comma-separated viewer types (default: all)")
    b.set_defaults(func=cmd_bound)
    q = fs.add_parser("qoe", help="the streaming QoE change per viewer type of a report, through nerveabr-sim's planner")
    q.add_argument("--report", default=str(REPO / "learning" / "reports" / "federated" / "federated.json"))
    q.set_defaults(func=cmd_qoe)
    g = fs.add_parser("register", help="register a run's global and cluster models in the MLflow registry")
    g.add_argument("--run", required=True, help="a run directory (global.npz, cluster-K.npz, history.json)")
    g.add_argument("--registry", default="out/registry")
    g.add_argument("--name", default="nerve-sr-x2-federated")
    g.set_defaults(func=cmd_register)
