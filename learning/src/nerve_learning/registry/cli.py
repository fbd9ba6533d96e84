"""`nerve-learn registry`: list, show, register, promote, rollback, alias, export, follow."""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from .store import CHAMPION, Registry, RegistryError, Version


def _entry_beside(onnx: Path) -> dict[str, Any] | None:
    """The `[[model]]` entry of the manifest.toml beside an ONNX file, if there is one."""
    manifest = onnx.parent / "manifest.toml"
    if not manifest.is_file():
        return None
    for m in tomllib.loads(manifest.read_text()).get("model", []):
        if Path(m.get("file", "")).name == onnx.name:
            return dict(m)
    return None


def _row(v: Version) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(v.created))
    parent = f"v{v.parent}" if v.parent is not None else "-"
    return (f"{v.name:<24} {v.version:>4} {','.join(v.aliases) or '-':<20} x{v.scale} f{v.frames} "
            f"{v.sha256[:12]} {parent:>6} {when}  {v.description[:40]}")


def cmd_list(reg: Registry, args: argparse.Namespace) -> int:
    names = [args.name] if args.name else reg.models()
    rows = [v for n in names for v in reg.versions(n)]
    if args.json:
        print(json.dumps([v.as_dict() for v in rows], indent=2))
        return 0
    print(f"{'model':<24} {'ver':>4} {'aliases':<20} scale  sha256       parent created (UTC)     description")
    for v in rows:
        print(_row(v))
    return 0


def cmd_show(reg: Registry, args: argparse.Namespace) -> int:
    v = reg.get(args.name, args.ref)
    out = v.as_dict()
    out["champion_history"] = reg.history(args.name)
    print(json.dumps(out, indent=2))
    return 0


def cmd_register(reg: Registry, args: argparse.Namespace) -> int:
    onnx = Path(args.model)
    entry = _entry_beside(onnx) or {}
    name = args.name or entry.get("name") or onnx.stem
    scale = args.scale or int(entry.get("scale", 0))
    frames = args.frames or int(entry.get("frames", 1))
    if not scale:
        raise RegistryError(f"{onnx}: no manifest entry beside it gives its scale; pass --scale")
    metrics: dict[str, Any] = {}
    metrics_path = Path(args.metrics) if args.metrics else onnx.with_suffix(".metrics.json")
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
    card = onnx.parent / entry["card"] if entry.get("card") else None
    data = json.loads(args.data) if args.data else {}
    v = reg.register(onnx, name, scale=scale, frames=frames, metrics=metrics, parent=args.parent, data=data,
                     description=args.description, alias=args.alias or None, card=card)
    print(_row(v))
    return 0


def cmd_promote(reg: Registry, args: argparse.Namespace) -> int:
    v = reg.promote(args.name, int(reg.get(args.name, args.ref).version))
    print(f"{args.name}: champion is now v{v.version}")
    return 0


def cmd_rollback(reg: Registry, args: argparse.Namespace) -> int:
    v = reg.rollback(args.name)
    print(f"{args.name}: rolled back, champion is now v{v.version}")
    return 0


def cmd_alias(reg: Registry, args: argparse.Namespace) -> int:
    reg.set_alias(args.name, args.alias, int(reg.get(args.name, args.ref).version))
    print(f"{args.name}: {args.alias} -> v{reg.get(args.name, args.alias).version}")
    return 0


def cmd_export(reg: Registry, args: argparse.Namespace) -> int:
    manifest = reg.materialize(args.name, args.ref, Path(args.dir))
    v = reg.get(args.name, args.ref)
    print(f"{args.name} v{v.version} -> {manifest.parent / f'{args.name}-v{v.version}.onnx'} (+ {manifest.name})")
    return 0


def cmd_follow(reg: Registry, args: argparse.Namespace) -> int:
    for version in reg.follow(args.name, args.ref, Path(args.dir), args.interval, args.rounds or None):
        print(f"{args.name}: {args.ref} is v{version}; written to {args.dir}", flush=True)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("registry", help="the model registry (MLflow): list, register, promote, rollback, export")
    p.add_argument("--tracking-uri", default="",
                   help="http://host:port of an MLflow tracking server, sqlite:///file.db, or a directory for "
                        "the embedded store (default: $NERVE_REGISTRY or ~/.local/share/nerve/registry)")
    rs = p.add_subparsers(dest="registry_command", required=True)
    q = rs.add_parser("list", help="registered versions, their aliases and lineage")
    q.add_argument("--name", default="")
    q.add_argument("--json", action="store_true")
    q.set_defaults(registry_func=cmd_list)
    q = rs.add_parser("show", help="one version (number or alias) as JSON, with the champion history")
    q.add_argument("name")
    q.add_argument("ref", nargs="?", default=CHAMPION)
    q.set_defaults(registry_func=cmd_show)
    q = rs.add_parser("register", help="add an ONNX model as a new version")
    q.add_argument("--model", required=True, help="the .onnx (scale/frames/card come from a manifest.toml beside it)")
    q.add_argument("--name", default="", help="registered model name (default: its manifest name)")
    q.add_argument("--scale", type=int, default=0)
    q.add_argument("--frames", type=int, default=0)
    q.add_argument("--metrics", default="", help="metrics JSON (default: <model>.metrics.json beside it)")
    q.add_argument("--parent", type=int, default=None, help="the version it was trained from")
    q.add_argument("--data", default="", help="JSON summary of the data it saw (lineage)")
    q.add_argument("--description", default="")
    q.add_argument("--alias", default="", help="e.g. champion or candidate")
    q.set_defaults(registry_func=cmd_register)
    q = rs.add_parser("promote", help="move the champion alias to a version (number or alias)")
    q.add_argument("name")
    q.add_argument("ref")
    q.set_defaults(registry_func=cmd_promote)
    q = rs.add_parser("rollback", help="move the champion alias back to the previous champion")
    q.add_argument("name")
    q.set_defaults(registry_func=cmd_rollback)
    q = rs.add_parser("alias", help="point any alias (e.g. candidate) at a version")
    q.add_argument("name")
    q.add_argument("alias")
    q.add_argument("ref")
    q.set_defaults(registry_func=cmd_alias)
    q = rs.add_parser("export", help="write a version as a model location nervesr follows (ONNX + manifest.toml)")
    q.add_argument("name")
    q.add_argument("ref", nargs="?", default=CHAMPION)
    q.add_argument("--dir", required=True)
    q.set_defaults(registry_func=cmd_export)
    q = rs.add_parser("follow", help="keep a model location in step with an alias (polls)")
    q.add_argument("name")
    q.add_argument("ref", nargs="?", default=CHAMPION)
    q.add_argument("--dir", required=True)
    q.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    q.add_argument("--rounds", type=int, default=0, help="stop after N polls (0: never)")
    q.set_defaults(registry_func=cmd_follow)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        reg = Registry(args.tracking_uri or None)
        return int(args.registry_func(reg, args))
    except RegistryError as e:
        print(f"nerve-learn registry: {e}")
        return 2
