#!/usr/bin/env python3
"""Where the `ppo` shield caps the actor's rung, chosen on each fold's training families.

The leave-one-family-out run (`nerve-learn rl lofo`) left, on 3G Norway, the shielded PPO
stalling 39 ms more per session than the planner with the shield capping at the highest rung the
planner holds safe (`safe-set`). The other caps: the planner's own rung (`planner-rung`: the
actor may go lower, never higher), and climbing with the planner's consent (`planner-climb`: the
actor may hold the rung it played or go lower, and climb no higher than the planner would play,
never above the safe set), and (added 2026-12-07, after the first choice kept the safe set)
the shadow session (`shadow`: a second planner plays its own session beside the actor's on the
throughputs the actor's downloads measure; while the actor holds less buffer than that session
would, the planner's decision is played whole, otherwise the actor's, capped at the safe set).
That result is a held-out one, so the choice is made here on data each
fold's policy was trained on: every fold's saved policy (out/rl/lofo/<fold>/ppo.onnx) plays the
sessions of the five families it was trained on, at the quality preference, with each cap, beside
the planner.

The rule, fixed before this ran: among the caps whose QoE_vmaf stays within 2% of the planner's
on every fold and training family, the one with the smallest worst stall excess over the planner
(seconds per session, over all of them) wins; caps within 1 ms of the smallest tie, and a tie
goes to the cap that leaves the actor more room (safe set, then shadow, then planner-climb,
then planner-rung); with none within 2%, the safe set stays. Writes
learning/reports/rl/shield_choice.json.

    python3 scripts/ppo_shield_choice.py --limit 40 --jobs 2   # 40 sessions per family (about 8 min)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "learning" / "src"))

from nerve_learning.rl import sim  # noqa: E402
from nerve_learning.rl.evaluate import (QOE_TOLERANCE, STALL_EPS_S, actor_of, play_named,  # noqa: E402
                                        slug, summarise)
from nerve_learning.rl.export import OnnxPolicy  # noqa: E402

CAPS = ("safe-set", "shadow", "planner-climb", "planner-rung")  # most room for the actor first
PREFERENCE = "quality"


def play(env, policy: OnnxPolicy, trace: int, at: str) -> dict[str, float]:
    r = env.run_actor(actor_of(policy), trace, preference=sim.PREFERENCE_WEIGHTS[PREFERENCE], shield=True,
                      shield_at=at)
    return {k: float(r[k]) for k in sim.METRICS}


# the families, set before worker processes fork (their traces do not pickle)
FAMILIES: list[sim.Family] = []


def pair(work: Path, li: int, fi: int) -> dict:
    """One fold's policy (the fold leaving out family `li`) on family `fi`, which it was trained
    on, under every cap, beside the planner."""
    left, fam = FAMILIES[li], FAMILIES[fi]
    policy = OnnxPolicy(work / slug(left.name) / "ppo.onnx")
    env = sim.make_env(fam.traces)
    n = len(fam.traces)
    nerve = summarise([play_named(env, "nerve", i, PREFERENCE) for i in range(n)])
    row = {"fold": left.name, "family": fam.name, "sessions": n, "nerve": nerve}
    for at in CAPS:
        s = summarise([play(env, policy, i, at) for i in range(n)])
        row[at] = {**s, "stall_excess_s": s["rebuffer_s"] - nerve["rebuffer_s"],
                   "qoe_gap_pct": 100 * (s["qoe_quality"] / nerve["qoe_quality"] - 1)}
    print(f"fold {left.name:<34} on {fam.name:<34} " + "  ".join(
        f"{at}: stall {row[at]['stall_excess_s']:+.3f} s, QoE {row[at]['qoe_gap_pct']:+.2f}%" for at in CAPS),
        flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "data" / "traces")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "rl" / "lofo")
    ap.add_argument("--limit", type=int, default=40, help="sessions per source (0 = all)")
    ap.add_argument("--jobs", type=int, default=1, help="(fold, family) pairs played at once, one process each")
    ap.add_argument("--out", type=Path, default=ROOT / "learning" / "reports" / "rl" / "shield_choice.json")
    args = ap.parse_args()
    fams = sim.families(args.traces, limit=args.limit)
    FAMILIES[:] = fams
    for left in fams:
        if not (args.work / slug(left.name) / "ppo.onnx").is_file():
            sys.exit(f"no saved policy for fold {left.name}: {args.work / slug(left.name) / 'ppo.onnx'}")
    pairs = [(args.work, li, fi) for li in range(len(fams)) for fi in range(len(fams)) if fi != li]
    if args.jobs > 1:
        from multiprocessing import get_context
        with get_context("fork").Pool(args.jobs) as pool:
            rows = pool.starmap(pair, pairs)
    else:
        rows = [pair(*p) for p in pairs]
    summary = {}
    for at in CAPS:
        summary[at] = {
            "worst_stall_excess_s": max(r[at]["stall_excess_s"] for r in rows),
            "mean_stall_excess_s": sum(r[at]["stall_excess_s"] for r in rows) / len(rows),
            "worst_qoe_gap_pct": min(r[at]["qoe_gap_pct"] for r in rows),
            "qoe_within": all(r[at]["qoe_gap_pct"] >= -100 * QOE_TOLERANCE for r in rows),
        }
    within = [at for at in CAPS if summary[at]["qoe_within"]]
    chosen = "safe-set"
    if within:
        best = min(summary[at]["worst_stall_excess_s"] for at in within)
        chosen = next(at for at in within if summary[at]["worst_stall_excess_s"] <= best + STALL_EPS_S)
    out = {"command": f"python3 scripts/ppo_shield_choice.py --limit {args.limit} --jobs {args.jobs}",
           "preference": PREFERENCE, "rule": __doc__.split("The rule, fixed before this ran: ")[1].split(" Writes")[0],
           "summary": summary, "chosen": chosen, "rows": rows}
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"chosen: {chosen}; wrote {args.out}")


if __name__ == "__main__":
    main()
