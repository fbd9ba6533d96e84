"""A/B test of two models over the fleet: per-device randomisation (assign.py, 50/50 by hash),
one outcome per device (the mean gain over bicubic, in dB, of the model the device ran, measured
on the patches of what it watched: content differences between devices mostly cancel in a gain
over bicubic of the same patches), the difference of the arms' means with Welch's t interval
(scipy.stats), an always-valid interval beside it (sequential.diff_cs), and a decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .sequential import diff_cs


def device_outcomes(totals: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"t": [], "c": []}
    for t in totals.values():
        for arm in ("t", "c"):
            n = t.get(f"{arm}.q_n", 0.0)
            if n > 0:
                out[arm].append(t[f"{arm}.q_sum"] / n)
    return out


def analyse(outcomes: dict[str, list[float]], alpha: float = 0.05, min_effect_db: float = 0.0) -> dict[str, Any]:
    from scipy import stats

    a, b = np.asarray(outcomes["t"]), np.asarray(outcomes["c"])
    if len(a) < 2 or len(b) < 2:
        return {"decision": "not enough devices", "devices_a": int(len(a)), "devices_b": int(len(b))}
    effect = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else len(a) + len(b) - 2
    q = float(stats.t.ppf(1 - alpha / 2, df))
    test = stats.ttest_ind(a, b, equal_var=False)
    cs = diff_cs((len(a), a.sum(), (a**2).sum()), (len(b), b.sum(), (b**2).sum()), tau=0.3, alpha=alpha)
    low, high = effect - q * se, effect + q * se
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    if low > min_effect_db:
        decision = "B (candidate) is better: ship it"
    elif high < 0:
        decision = "B (candidate) is worse: keep A"
    else:
        decision = "no significant difference"
    return {"effect_db": effect, "ci_low_db": float(low), "ci_high_db": float(high), "p_value": float(test.pvalue),
            "always_valid_ci_db": [cs.low, cs.high], "cohens_d": float(effect / pooled) if pooled > 0 else None,
            "devices_a": int(len(b)), "devices_b": int(len(a)), "mean_a_db": float(b.mean()), "mean_b_db": float(a.mean()),
            "median_a_db": float(np.median(b)), "median_b_db": float(np.median(a)), "decision": decision,
            "outcome": "per device: mean PSNR-Y gain over bicubic of the model it ran (dB)",
            "a": "champion", "b": "candidate"}


def plot(outcomes: dict[str, list[float]], result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    rng = np.random.default_rng(0)
    for i, (arm, label) in enumerate((("c", "A: champion"), ("t", "B: candidate"))):
        ys = outcomes[arm]
        ax1.scatter(i + rng.uniform(-0.12, 0.12, len(ys)), ys, s=14, alpha=0.7)
        if ys:
            ax1.hlines([np.mean(ys)], i - 0.25, i + 0.25, colors="k")
    ax1.set_xticks([0, 1], ["A: champion", "B: candidate"])
    ax1.set_ylabel("gain over bicubic per device (dB)")
    ax1.set_title("one point per device")
    if "effect_db" in result:
        ax2.errorbar([0], [result["effect_db"]], yerr=[[result["effect_db"] - result["ci_low_db"]],
                                                      [result["ci_high_db"] - result["effect_db"]]], fmt="o", capsize=6)
        ax2.axhline(0, color="grey", lw=0.8)
        ax2.set_xticks([0], ["B - A"])
        ax2.set_ylabel("effect (dB), 95% CI")
        ax2.set_title(result["decision"], fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def report(totals: dict[str, dict[str, float]], out_json: Path, png: Path) -> dict[str, Any]:
    outcomes = device_outcomes(totals)
    result = analyse(outcomes)
    result["outcomes"] = outcomes
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=2))
    plot(outcomes, result, png)
    return result
