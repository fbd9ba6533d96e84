#!/usr/bin/env python3
"""How sure is "PPO stalls no more than the planner" on each left-out family?

The leave-one-family-out report (`nerve-learn rl lofo`) compares mean stall per session. A mean
over a family's sessions moves with the few sessions that meet an outage, so this pairs every
session: each fold's saved policy (out/rl/lofo/<fold>/ppo.onnx, shielded as the element plays
it) and the `nerve` planner play the same recorded session of the family the fold left out, at
the quality preference; it prints the mean stall difference with a 95% bootstrap interval
(10,000 resamples of the sessions, seeded), how many sessions stall more and less, and the
session that contributes most. Writes learning/reports/rl/ppo_stall_ci.json.

    python3 scripts/ppo_stall_ci.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "learning" / "src"))

from nerve_learning.rl import sim  # noqa: E402
from nerve_learning.rl.evaluate import play, play_named, slug  # noqa: E402
from nerve_learning.rl.export import OnnxPolicy  # noqa: E402

PREFERENCE = "quality"
RESAMPLES = 10_000


def interval(diff: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of paired differences."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (RESAMPLES, len(diff)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "data" / "traces")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "rl" / "lofo")
    ap.add_argument("--out", type=Path, default=ROOT / "learning" / "reports" / "rl" / "ppo_stall_ci.json")
    args = ap.parse_args()
    rows = {}
    for fam in sim.families(args.traces):
        onnx = args.work / slug(fam.name) / "ppo.onnx"
        if not onnx.is_file():
            sys.exit(f"no saved policy for fold {fam.name}: {onnx}")
        policy, env, n = OnnxPolicy(onnx), sim.make_env(fam.traces), len(fam.traces)
        ppo = np.array([play(env, policy, i, PREFERENCE, shield=True)["rebuffer_s"] for i in range(n)])
        nerve = np.array([play_named(env, "nerve", i, PREFERENCE)["rebuffer_s"] for i in range(n)])
        diff = ppo - nerve
        lo, hi = interval(diff)
        worst = int(np.argmax(diff))
        rows[fam.name] = {
            "sessions": n, "ppo_stall_s": float(ppo.mean()), "nerve_stall_s": float(nerve.mean()),
            "mean_excess_s": float(diff.mean()), "ci95_s": [lo, hi],
            "sessions_more": int((diff > 1e-9).sum()), "sessions_less": int((diff < -1e-9).sum()),
            "largest_session": {"trace": worst, "excess_s": float(diff[worst]),
                                "share_of_total": float(diff[worst] / diff.sum()) if diff.sum() > 0 else None},
        }
        r = rows[fam.name]
        print(f"{fam.name:<34} {n:>4} sessions: ppo {r['ppo_stall_s']:.3f} s, nerve {r['nerve_stall_s']:.3f} s, "
              f"excess {r['mean_excess_s']:+.3f} s [{lo:+.3f}, {hi:+.3f}], more in {r['sessions_more']}, "
              f"less in {r['sessions_less']}, largest {diff[worst]:+.2f} s (trace {worst})", flush=True)
    out = {"command": "python3 scripts/ppo_stall_ci.py", "preference": PREFERENCE, "shield": "planner-climb (the default)",
           "resamples": RESAMPLES, "families": rows}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
