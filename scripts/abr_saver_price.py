#!/usr/bin/env python3
"""Battery saver's bit price, chosen leave-one-family-out.

At `battery-saver` the `nerve` planner charges quality points per megabit it downloads
(`NerveParams::saver_bit_price`): on a link fast enough for the top rung, the radio is nearly
all of the device's energy, and the only way to spend less of it is to fetch fewer bits. This
script chooses that price the way issue 30 asks parameters to be chosen: for each trace family,
on the other five only, then scores the family left out.

The rule, fixed before any run: the battery saver spends as much energy as it can save within
the quality budget, so for each held-out family the price is the largest of the grid with which
nerve at battery-saver loses at most 5% QoE_vmaf against nerve at quality on every training
family (ties cannot happen; price 0, today's saver, is always a candidate). The shipped price is
the same rule on all six families.

Every run is `nerveabr-sim` (chunk scenario, the shipped measured table), each family on its own
radio, on the sets of scripts/abr_energy.py, with `--nerve-saver-bit-price P` (the shipped
price replaced by P; at quality no price applies).
Writes nerveabr-sim/results/saver_price.json and saver_price.png.

    python3 scripts/abr_saver_price.py            # all traces (about ten minutes on 2 cores)
    python3 scripts/abr_saver_price.py --limit 20 # a quick look
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import abr_energy as energy  # noqa: E402
from abr_energy import FAMILIES, QOE_BUDGET, SAVING_TARGET, SESSION_S, battery_target  # noqa: E402

GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)


def run(pref: str, price: float, limit: int) -> dict[str, dict[str, float]]:
    """nerve's per-family means at `pref`, its saver charging `price` per megabit."""
    with tempfile.TemporaryDirectory() as tmp:
        report = energy.run(pref, limit, Path(tmp) / "run.json", "nerve", ("--nerve-saver-bit-price", str(price)))
    by_set = {rel: fam for fam, rel in FAMILIES.items()}
    return {by_set.get(name, name): energy.summary(s["nerve"]) for name, s in report["sets"].items()}


def score(quality: dict[str, float], saver: dict[str, float]) -> dict[str, float | bool]:
    return {**battery_target(quality, saver), "rebuffer_s": saver["rebuffer_s"]}


def choose(cells: dict[float, dict[str, dict]], families: list[str]) -> float:
    """The largest price within the QoE budget on every family of `families`."""
    ok = [p for p in GRID if all(cells[p][f]["qoe_loss_pct"] <= 100 * QOE_BUDGET for f in families)]
    return max(ok) if ok else 0.0


def main() -> None:
    args = energy.parse_args(__doc__)
    print("nerve at quality ...", file=sys.stderr, flush=True)
    quality = run("quality", 0.0, args.limit)
    cells: dict[float, dict[str, dict]] = {}
    for price in GRID:
        print(f"nerve at battery-saver, {price} points per megabit ...", file=sys.stderr, flush=True)
        saver = run("battery-saver", price, args.limit)
        cells[price] = {fam: score(quality[fam], saver[fam]) for fam in FAMILIES}
    fams = list(FAMILIES)
    folds = {}
    for held in fams:
        price = choose(cells, [f for f in fams if f != held])
        folds[held] = {"price": price, **cells[price][held]}
    shipped = choose(cells, fams)
    out = {
        "command": "python3 scripts/abr_saver_price.py" + (f" --limit {args.limit}" if args.limit else ""),
        "rule": f"largest price of {list(GRID)} with QoE loss <= {100 * QOE_BUDGET:.0f}% on every training family",
        "session_s": SESSION_S,
        "quality": quality,
        "grid": {str(p): c for p, c in cells.items()},
        "leave_one_family_out": folds,
        "chosen_on_all_families": shipped,
    }
    path = args.out / "saver_price.json"
    path.write_text(json.dumps(out, indent=2))
    plot(cells, folds, path.with_suffix(".png"))
    for fam, f in folds.items():
        verdict = "met" if f["met"] else "NOT met"
        print(f"{fam:<18} price {f['price']:.1f} (chosen on the other five): {f['energy_saving_pct']:5.1f}% less "
              f"energy, {f['qoe_loss_pct']:4.1f}% less QoE, stall {f['rebuffer_s']:.3f} s -> {verdict}")
    print(f"chosen on all six families: {shipped}; wrote {path} and its PNG")


def plot(cells: dict[float, dict[str, dict]], folds: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, fam in enumerate(FAMILIES):
        xs = [cells[p][fam]["energy_saving_pct"] for p in GRID]
        ys = [cells[p][fam]["qoe_loss_pct"] for p in GRID]
        ax.plot(xs, ys, "o-", color=f"C{i}", alpha=0.6, label=fam)
        f = folds[fam]
        ax.plot(f["energy_saving_pct"], f["qoe_loss_pct"], "*", color=f"C{i}", markersize=16, markeredgecolor="k")
    ax.axvline(100 * SAVING_TARGET, color="k", ls="--", lw=0.8)
    ax.axhline(100 * QOE_BUDGET, color="k", ls="--", lw=0.8)
    ax.set_xlabel("energy saved at battery-saver vs quality (%)")
    ax.set_ylabel("QoE_vmaf lost (%)")
    ax.set_title("nerve battery saver: bit price grid (dots joined in price order), held-out choice (stars)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
