"""`nerve-learn`: the learning side's command line. Each capability (data, sr, continual, ondevice,
recovery, registry, rollout, rl) brings its own sub-commands from its `cli` module; this module only
puts them together, so no capability imports another's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .continual import cli as continual_cli
from .data import cli as data_cli
from .federated import cli as federated_cli
from .ondevice import cli as ondevice_cli
from .recovery import cli as recovery_cli
from .registry import cli as registry_cli
from .rl import cli as rl_cli
from .rollout import cli as rollout_cli
from .sr import cli as sr_cli


def cmd_compare(args: argparse.Namespace) -> int:
    from .quality import compare

    rows = {Path(d).name: compare(Path(args.reference), Path(d)) for d in args.distorted}
    print(f"{'video':<28} {'frames':>6} {'PSNR-Y':>8} {'VMAF':>7} {'VMAF NEG':>9}")
    for name, m in rows.items():
        print(f"{name:<28} {m['frames']:>6} {m['psnr_y']:>8.2f} {m['vmaf']:>7.2f} {m['vmaf_neg']:>9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"reference": args.reference, "results": rows}, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    """The whole `nerve-learn` command line (also what the docs check reads)."""
    parser = argparse.ArgumentParser(prog="nerve-learn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sr_cli.add_parsers(sub)
    data_cli.add_parsers(sub)
    continual_cli.add_parser(sub)
    registry_cli.add_parser(sub)
    ondevice_cli.add_parsers(sub)
    recovery_cli.add_parser(sub)
    rollout_cli.add_parsers(sub)
    federated_cli.add_parser(sub)
    rl_cli.add_parser(sub)
    c = sub.add_parser("compare", help="PSNR-Y, VMAF and VMAF NEG of videos against a reference")
    c.add_argument("--reference", required=True)
    c.add_argument("--json", default="")
    c.add_argument("distorted", nargs="+")
    c.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
