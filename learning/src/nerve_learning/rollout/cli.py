"""`nerve-learn rollout ...` and `nerve-learn pipeline ...`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _uri(args: argparse.Namespace) -> str:
    if args.uri:
        return str(args.uri)
    from .faults import start_server

    return start_server(Path(args.tracking_dir) if args.tracking_dir else None)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import make

    tracking = Path(args.tracking_dir) if args.tracking_dir else Path(".nerve/tracking").resolve()
    uri = _uri(args)
    result = make(uri, Path(args.out), Path(args.work), devices=args.devices, tracking_dir=tracking,
                  canary_timeout=args.timeout, inject_faults=not args.no_faults)
    print(json.dumps({k: result[k] for k in ("devices", "bad_candidate", "good_candidate", "ab_test", "faults")},
                     indent=2, default=str)[:4000])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .canary import load

    st = load(Path(args.state))
    if st is None:
        print(f"no rollout state at {args.state}")
        return 1
    print(json.dumps({k: getattr(st, k) for k in ("id", "name", "candidate", "champion", "step", "threshold", "status",
                                                   "max_fleet_fraction", "device_minutes")}, indent=2))
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """Starts (or resumes) a canary of a registered version on a running fleet and drives it."""
    import time

    from ..registry.store import Registry
    from .canary import Canary, CanaryConfig

    registry = Registry(args.uri)
    devices = [f"dev{i:03d}" for i in range(args.devices)]
    canary = Canary(registry, Path(args.state), CanaryConfig(steps=tuple(float(x) for x in args.steps.split(","))))
    st = canary.start(args.name, args.candidate, args.id, devices)
    while st.status == "running":
        time.sleep(args.interval)
        st = canary.tick(devices)
        print(f"step {st.step} threshold {st.threshold:.3f} {st.status}", flush=True)
    return 0 if st.status == "promoted" else 3


def cmd_fleet(args: argparse.Namespace) -> int:
    from .fleet import Fleet, FleetConfig

    fleet = Fleet(args.uri, args.name, FleetConfig(devices=args.devices, mix=args.mix, work=Path(args.work),
                                                   sessions=args.sessions))
    fleet.start()
    try:
        for p in fleet.procs.values():
            p.wait()
    except KeyboardInterrupt:
        fleet.stop()
    return 0


def cmd_abtest(args: argparse.Namespace) -> int:
    from .abtest import report
    from .telemetry import fleet_totals

    res = report(fleet_totals(args.uri, args.id), Path(args.out) / "ab_test.json", Path(args.out) / "ab_test.png")
    print(json.dumps({k: v for k, v in res.items() if k != "outcomes"}, indent=2))
    return 0


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    from typing import Any

    from .candidates import CandidateConfig
    from .content import PROFILES
    from .fleet import Fleet, FleetConfig, RunningFleet
    from .pipeline import Pipeline, PipelineConfig, summary

    uri = _uri(args)
    work = Path(args.work)
    profile = PROFILES[args.content]

    def fleet_factory(rid: str) -> Any:
        if args.devices <= 0:
            return None
        if args.fleet_running:
            return RunningFleet(args.devices)
        return Fleet(uri, args.name, FleetConfig(devices=args.devices, mix=profile.mix, work=work / f"fleet-{rid}"))

    cfg = PipelineConfig(name=args.name, work=work, uri=uri, devices=args.devices,
                         candidate=CandidateConfig(steps=args.steps),
                         canary_steps=tuple(float(x) for x in args.canary_steps.split(",")),
                         trigger=json.loads(args.trigger) if args.trigger else {})
    state = Pipeline(cfg, profile.train, profile.heldout, profile.other, fleet_factory).run()
    print(json.dumps(summary(state), indent=2))
    return 0 if state.get("stopped") is None else 3


def cmd_pipeline_status(args: argparse.Namespace) -> int:
    path = Path(args.work) / "pipeline.json"
    if not path.is_file():
        print(f"no pipeline state in {args.work}")
        return 1
    st = json.loads(path.read_text())
    print(json.dumps({"id": st["id"], "done": list(st["done"]), "running": st.get("running"),
                      "stopped": st.get("stopped")}, indent=2))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("rollout", help="release models to a fleet: canary, A/B test, drift, the report")
    rs = r.add_subparsers(dest="rollout_command", required=True)

    def server_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--uri", default="", help="MLflow tracking server (empty: start scripts/tracking_server.sh)")
        p.add_argument("--tracking-dir", default="", help="the server's directory (NERVE_TRACKING_DIR)")

    p = rs.add_parser("report", help="the whole loop on the fleet simulator -> rollout.json + PNGs")
    server_args(p)
    p.add_argument("--out", default="learning/reports/rollout")
    p.add_argument("--work", default="out/rollout")
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--timeout", type=float, default=1800, help="seconds a canary may run at most")
    p.add_argument("--no-faults", action="store_true", help="do not kill a device and the server mid-rollout")
    p.set_defaults(func=cmd_report)

    p = rs.add_parser("canary", help="start or resume a canary of a registered version and drive it")
    p.add_argument("--uri", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--candidate", type=int, required=True)
    p.add_argument("--id", required=True, help="rollout id (the assignment's salt)")
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--steps", default="0.05,0.25,0.5,1.0")
    p.add_argument("--state", default="out/rollout/canary.json")
    p.add_argument("--interval", type=float, default=5.0)
    p.set_defaults(func=cmd_canary)

    p = rs.add_parser("status", help="a rollout's state file")
    p.add_argument("--state", default="out/rollout/canary.json")
    p.set_defaults(func=cmd_status)

    p = rs.add_parser("fleet", help="run simulated devices (processes playing nervesr) against a server")
    p.add_argument("--uri", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--mix", default="animation", choices=("animation", "mixed", "small"))
    p.add_argument("--sessions", type=int, default=0, help="sessions per device (0: until the STOP file)")
    p.add_argument("--work", default="out/fleet")
    p.set_defaults(func=cmd_fleet)

    p = rs.add_parser("abtest", help="A/B report of a rollout's arms (JSON + PNG)")
    p.add_argument("--uri", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--out", default="out/rollout")
    p.set_defaults(func=cmd_abtest)

    pl = sub.add_parser("pipeline", help="data -> train -> evaluate -> register -> shadow -> canary -> promote")
    ps = pl.add_subparsers(dest="pipeline_command", required=True)
    p = ps.add_parser("run", help="run (or resume) the pipeline")
    server_args(p)
    p.add_argument("--name", required=True, help="registered model (its champion is the starting point)")
    p.add_argument("--work", default="out/pipeline")
    p.add_argument("--devices", type=int, default=10, help="simulated devices for shadow and canary")
    p.add_argument("--steps", type=int, default=1000, help="fine-tune steps")
    p.add_argument("--canary-steps", default="0.05,0.2,0.5,1.0", help="fleet shares of the canary's steps")
    p.add_argument("--content", default="fleet", choices=("fleet", "small"),
                   help="what it trains on, is gated on and the fleet plays (content.py's PROFILES; "
                        "small: the CI test's)")
    p.add_argument("--fleet-running", action="store_true",
                   help="the --devices devices (dev000...) are already running: start none for shadow and canary")
    p.add_argument("--trigger", default="", help="why it runs, as JSON (a drift event): kept in the lineage")
    p.set_defaults(func=cmd_pipeline_run)
    p = ps.add_parser("status", help="which steps are done")
    p.add_argument("--work", default="out/pipeline")
    p.set_defaults(func=cmd_pipeline_status)


def main(argv: list[str] | None = None) -> int:
    """`python -m nerve_learning.rollout.cli rollout|pipeline ...`: the same commands as
    `nerve-learn rollout|pipeline ...` without loading every other command's modules (PyTorch
    among them): a pipeline resumed past its training step, or a controller, starts in a second."""
    import sys

    parser = argparse.ArgumentParser(prog="nerve-learn")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
