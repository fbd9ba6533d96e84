"""Robust aggregation: what the server does with updates it cannot trust.

1. Reject: an update with a NaN or an infinity in any array, or of the wrong shapes, is dropped
   before aggregation, with the device and the reason logged (`rejections` keeps them).
2. Bound: every remaining update (its difference to the round's starting model) is clipped to
   the median update norm of the round (a parameter-free bound: a majority of honest devices
   sets it), so a scaled or random update moves the model no more than an honest one.
3. Average the bounded updates uniformly (every device counts once, as DP needs).

A poisoned device (scaled, NaN or random update, 10% of the fleet) then weighs as much as one
honest device at most; the median is where a majority defines "normal".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("nerve.federated.robust")
Weights = list[np.ndarray]


@dataclass
class Rejection:
    round: int
    device: str
    reason: str


def problem(update: Weights, reference: Weights) -> str | None:
    """Why an update cannot be aggregated (None when it can)."""
    if len(update) != len(reference):
        return f"{len(update)} arrays, the model has {len(reference)}"
    for k, (u, r) in enumerate(zip(update, reference)):
        if u.shape != r.shape:
            return f"array {k} has shape {u.shape}, the model's is {r.shape}"
        bad = ~np.isfinite(u)
        if bad.any():
            kinds = ("NaN" if np.isnan(u).any() else "") + (" Inf" if np.isinf(u).any() else "")
            return f"array {k} holds {int(bad.sum())} non-finite values ({kinds.strip()})"
    return None


@dataclass
class RobustMean:
    """NaN/Inf rejection + median-norm clipping + uniform mean of updates (see the module)."""

    clip_to_median: bool = True
    rejections: list[Rejection] = field(default_factory=list)
    last_median: float = 0.0  # median update norm of the last round (for choosing a DP bound)

    def __call__(self, server_round: int, reference: Weights, updates: list[tuple[str, Weights]]) -> Weights | None:
        deltas = []
        for device, w in updates:
            why = problem(w, reference)
            if why is not None:
                self.rejections.append(Rejection(server_round, device, why))
                log.warning("round %s: update of device %s rejected: %s", server_round, device, why)
                continue
            deltas.append([a.astype(np.float64) - r for a, r in zip(w, reference)])
        if not deltas:
            return None
        norms = np.array([np.sqrt(sum(float((d**2).sum()) for d in delta)) for delta in deltas])
        self.last_median = float(np.median(norms))
        if self.clip_to_median and len(deltas) > 2:
            bound = float(np.median(norms))
            scale = np.minimum(1.0, bound / np.maximum(norms, 1e-12))
        else:
            scale = np.ones(len(deltas))
        mean = [sum(s * d[k] for s, d in zip(scale, deltas)) / len(deltas) for k in range(len(reference))]
        return [(r + m).astype(np.float32) for r, m in zip(reference, mean)]
