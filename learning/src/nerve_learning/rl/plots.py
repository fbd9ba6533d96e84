"""The leave-one-family-out figure: QoE, stall and energy per left-out family, PPO beside the
`nerve` planner and the best baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def lofo_png(report: dict[str, Any], path: Path) -> None:
    names = report["folds_done"]
    s = report["summary"]
    short = [n.split("/")[-1].replace("_sabre_json", "") for n in names]
    x = np.arange(len(names))
    w = 0.27
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    series = [
        ("QoE_vmaf per session (mean)", "ppo_qoe", "nerve_qoe", "best_baseline_qoe"),
        ("stall s per session (mean)", "ppo_stall_s", "nerve_stall_s", "best_baseline_stall_s"),
    ]
    for ax, (title, a, b, c) in zip(axes[:2], series, strict=True):
        for off, key, label in ((-w, a, "PPO"), (0.0, b, "nerve planner"), (w, c, "best baseline (by QoE)")):
            bars = ax.bar(x + off, [s[n][key] or 0.0 for n in names], w, label=label)
            ax.bar_label(bars, fmt="%.2f" if "stall" in key else "%.1f", fontsize=6)
        ax.set_title(title)
        ax.set_xticks(x, short, rotation=25, ha="right", fontsize=8)
    axes[0].set_ylim(bottom=min(40.0, min(s[n]["ppo_qoe"] for n in names) - 5))
    ax = axes[2]
    ax.bar(x - w / 2, [s[n]["ppo_energy_j"] for n in names], w, label="PPO")
    ax.bar(x + w / 2, [s[n]["nerve_energy_j"] for n in names], w, label="nerve planner")
    ax.set_title("device energy per session, J (mean)")
    ax.set_xticks(x, short, rotation=25, ha="right", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"PPO leave-one-family-out (preference {report['headline_preference']}): "
                 "each family unseen in training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
