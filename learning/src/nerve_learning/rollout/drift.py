"""Drift: is the content the fleet harvests still what the champion was trained on?

Content statistics of harvested patches (the episodic memory's `stats`: luma mean, std,
gradient, temporal change; and its metadata: codec, bitrate, resolution) in a window of recent
patches against the champion's training reference, per feature: the two-sample Kolmogorov-Smirnov
test (scipy.stats.ks_2samp) and the population stability index (PSI over the reference's deciles;
categorical PSI for codec and resolution). A window drifts when a feature's KS p-value is below
alpha / (number of features) AND its PSI is at least `psi_threshold` (0.2: the usual "significant
shift"), or a categorical PSI is; both conditions together keep large windows from alarming on
shifts too small to matter. The quality monitor beside it watches the champion's gain over bicubic
on harvested pairs and alarms when its always-valid interval lies below the reference by more
than `max_drop_db`. A drift event calls `on_drift` (the retraining pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .sequential import diff_cs

FEATURES = ("mean", "std", "grad", "temporal")
CATEGORIES = ("codec", "resolution")


def columns(metas: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out: dict[str, Any] = {f: [] for f in FEATURES + CATEGORIES + ("bitrate_kbps",)}
    for m in metas:
        st = m.get("stats", {})
        for f in FEATURES:
            out[f].append(float(st.get(f) or 0.0))
        out["codec"].append(str(m.get("codec")))
        out["resolution"].append(f"{m.get('width')}x{m.get('height')}")
        out["bitrate_kbps"].append(float(m.get("bitrate_kbps") or 0.0))
    return {k: np.asarray(v) for k, v in out.items()}


def psi(reference: np.ndarray, window: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    q = np.bincount(np.searchsorted(edges, window, side="right"), minlength=len(edges) + 1) / len(window)
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_categorical(reference: np.ndarray, window: np.ndarray, eps: float = 1e-4) -> float:
    cats = sorted(set(reference.tolist()) | set(window.tolist()))
    p = np.array([np.mean(reference == c) for c in cats])
    q = np.array([np.mean(window == c) for c in cats])
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass
class DriftConfig:
    window: int = 64
    alpha: float = 0.01
    psi_threshold: float = 0.2
    max_drop_db: float = 0.1
    categorical: bool = True  # False: content statistics only (codec and resolution ignored)


class DriftDetector:
    def __init__(self, reference: list[dict[str, Any]], cfg: DriftConfig | None = None,
                 on_drift: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ref = columns(reference)
        self.cfg = cfg or DriftConfig()
        self.on_drift = on_drift

    def check(self, window: list[dict[str, Any]]) -> dict[str, Any]:
        from scipy.stats import ks_2samp

        w = columns(window)
        out: dict[str, Any] = {"patches": len(window), "features": {}}
        drifted = []
        for f in FEATURES:
            ks = ks_2samp(self.ref[f], w[f])
            value = psi(self.ref[f], w[f])
            out["features"][f] = {"ks_p": float(ks.pvalue), "ks_stat": float(ks.statistic), "psi": value}
            if ks.pvalue < self.cfg.alpha / len(FEATURES) and value >= self.cfg.psi_threshold:
                drifted.append(f)
        for c in CATEGORIES if self.cfg.categorical else ():
            value = psi_categorical(self.ref[c], w[c])
            out["features"][c] = {"psi": value}
            if value >= self.cfg.psi_threshold:
                drifted.append(c)
        out["drifted"] = bool(drifted)
        out["why"] = drifted
        if drifted and self.on_drift is not None:
            self.on_drift(out)
        return out


class QualityMonitor:
    """The champion's gain over bicubic on harvested pairs, against its reference gain."""

    def __init__(self, reference_gains: list[float], cfg: DriftConfig | None = None) -> None:
        self.ref = np.asarray(reference_gains, dtype=float)
        self.cfg = cfg or DriftConfig()

    def check(self, gains: list[float]) -> dict[str, Any]:
        g = np.asarray(gains, dtype=float)
        ci = diff_cs((len(g), g.sum(), (g**2).sum()), (len(self.ref), self.ref.sum(), (self.ref**2).sum()),
                     tau=0.3, alpha=self.cfg.alpha)
        return {"drop_db": -ci.estimate, "ci": [ci.low, ci.high], "alarm": bool(ci.valid and ci.high < -self.cfg.max_drop_db)}


def experiment(reference: list[dict[str, Any]], same: list[dict[str, Any]], shifted: list[dict[str, Any]],
               cfg: DriftConfig, trials: int = 100, seed: int = 0, step: int = 8) -> dict[str, Any]:
    """False alarms: `trials` windows drawn from `same` (new patches of the reference's content);
    detection: a stream of `same` patches, then the fleet switches and `shifted` patches arrive,
    `step` at a time; patches_to_detect counts the shifted patches harvested until the first alarm
    (windows of the last `cfg.window` patches)."""
    det = DriftDetector(reference, cfg)
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(trials):
        pick = rng.choice(len(same), size=min(cfg.window, len(same)), replace=False)
        alarms += det.check([same[i] for i in pick])["drifted"]
    stream = [same[i] for i in rng.permutation(len(same))[: cfg.window]]
    order = rng.permutation(len(shifted))
    found, last = None, None
    for k in range(step, len(shifted) + 1, step):
        stream_now = (stream + [shifted[i] for i in order[:k]])[-cfg.window :]
        last = det.check(stream_now)
        if last["drifted"]:
            found = k
            break
    return {"false_alarm_rate": alarms / trials, "false_alarm_windows": trials, "window": cfg.window,
            "detected": found is not None, "patches_to_detect": found, "at_detection": last}
