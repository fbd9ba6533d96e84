"""PNGs beside rollout.json: each canary's gain confidence sequence and fleet share over time,
and the drift detector's statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def trajectory(uri: str, rollout: str, arm: str, cfg: Any) -> list[tuple[float, float, float, float, float]]:
    """(unix time, reports, gain, CS low, CS high) after each report of `arm` in a rollout, rebuilt
    from the devices' metric histories on the server (each point at its report's creation time)."""
    from mlflow import MlflowClient

    from .sequential import mean_cs
    from .telemetry import FLEET_EXPERIMENT, TAG_ROLLOUT

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name(FLEET_EXPERIMENT)
    events: list[tuple[float, float, float, float]] = []
    for run in c.search_runs([exp.experiment_id], f"tags.`{TAG_ROLLOUT}` = '{rollout}'", max_results=1000):
        hist = {k: {m.step: (m.timestamp, m.value) for m in c.get_metric_history(run.info.run_id, f"{arm}.{k}")}
                for k in ("n", "gain_sum", "gain_sq")}
        prev = (0.0, 0.0, 0.0)
        for step in sorted(hist["n"]):
            ts, n = hist["n"][step]
            now = (n, hist["gain_sum"].get(step, (0, 0.0))[1], hist["gain_sq"].get(step, (0, 0.0))[1])
            if now[0] > prev[0]:
                events.append((ts / 1000.0, now[0] - prev[0], now[1] - prev[1], now[2] - prev[2]))
            prev = now
    events.sort()
    out, n, s1, s2 = [], 0.0, 0.0, 0.0
    for ts, dn, ds, dq in events:
        n, s1, s2 = n + dn, s1 + ds, s2 + dq
        ci = mean_cs(n, s1, s2, cfg.tau_db, cfg.alpha, cfg.min_gain_sd_db)
        out.append((ts, n, ci.estimate, ci.low, ci.high))
    return out


def plot_rollouts(work: Path, out: Path, result: dict[str, Any], uri: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = sorted(Path(work).glob("bad-*.json")) + sorted(Path(work).glob("pipeline/canary.json")) + \
        sorted(Path(work).glob("pipeline/shadow.json"))
    if states:
        fig, axes = plt.subplots(len(states), 2, figsize=(10, 3.0 * len(states)), squeeze=False)
        for row, path in zip(axes, states):
            st = json.loads(path.read_text())
            t0 = st["started"]
            if uri is not None:
                from .canary import CanaryConfig

                tr = trajectory(uri, st["id"], "c" if st.get("shadow") else "t", CanaryConfig())
                xs = [p[1] for p in tr]
                row[0].plot(xs, [p[2] for p in tr], "k-", label="candidate - champion (mean)")
                finite = [(x, p[3], p[4]) for x, p in zip(xs, tr) if p[3] > float("-inf")]
                row[0].fill_between([f[0] for f in finite], [f[1] for f in finite], [f[2] for f in finite], alpha=0.3,
                                    label="always-valid 95% CS (none before 8 reports)")
                row[0].set_xlabel("candidate reports (paired patch scores)")
            row[0].axhline(0, color="grey", lw=0.8)
            row[0].set_title(f"{st['id']}: {st['status']}", fontsize=9)
            row[0].set_ylabel("dB")
            row[0].legend(fontsize=7)
            row[1].step([d["at"] - t0 for d in st["decisions"]], [d["fleet_fraction"] for d in st["decisions"]],
                        where="post")
            row[1].set_ylim(0, 1.05)
            row[1].set_ylabel("fleet share on candidate")
            row[1].set_xlabel("s since start")
        fig.tight_layout()
        fig.savefig(out / "canary.png", dpi=80)
        plt.close(fig)
    drift = result.get("drift", {}).get("at_detection")
    if drift:
        feats = drift["features"]
        fig, ax = plt.subplots(figsize=(6, 3))
        names = list(feats)
        ax.bar(names, [feats[n]["psi"] for n in names])
        ax.axhline(0.2, color="r", lw=0.8, label="PSI threshold")
        ax.set_ylabel("PSI vs training reference")
        ax.set_title(f"drift at {result['drift']['patches_to_detect']} patches: {', '.join(drift['why'])}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "drift.png", dpi=80)
        plt.close(fig)
