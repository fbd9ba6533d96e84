"""Synthetic links for training only: steady rates and troughs, the states real traces rarely hold.

The real families are measured sessions: their throughput moves all the time, so a session on a
steady link, or one that sits in a short trough with a full small buffer and then recovers, is
rare in them. The element meets both (a player on a good Wi-Fi; the live DASH test's trough with
1 s segments and a 4 s buffer), and a policy that imitated the planner only where real traces
took it stayed on the lowest rung there after the planner had climbed back. These links add
those states to training, labelled by the same teacher. They are never used to choose weights
or to evaluate: every figure is on the real families.

Opt-in (`nerve-learn rl train --synthetic`): tried on 2026-12-07 with the re-measured tables, two
seeds, it did not give a policy that passes the element's climb tests (it dropped to the lowest
rung on a steady 8 Mbit/s link at battery-saver); the shipped recipe does not use it.
"""

from __future__ import annotations

import numpy as np

from . import sim

FAMILY = "synthetic_steady_and_troughs"
"""The family name training sees (never a leave-one-family-out fold: it is not a real network)."""


def _steady(rng: np.random.Generator, seconds: int) -> np.ndarray:
    # log-uniform 0.3-30 Mbit/s: below the lowest rung to far above the top one
    return np.full(seconds, 10 ** rng.uniform(np.log10(0.3e6), np.log10(30e6)))


def _troughs(rng: np.random.Generator, seconds: int) -> np.ndarray:
    # fast stretches (2-20 Mbit/s) broken by troughs (0.4-1.5 Mbit/s, 5-40 s)
    out: list[float] = []
    fast = True
    while len(out) < seconds:
        if fast:
            rate, span = 10 ** rng.uniform(np.log10(2e6), np.log10(20e6)), int(rng.integers(20, 120))
        else:
            rate, span = rng.uniform(0.4e6, 1.5e6), int(rng.integers(5, 40))
        out.extend([rate] * span)
        fast = not fast
    return np.asarray(out[:seconds])


def family(seed: int = 0, n: int = 60, seconds: int = 400) -> sim.Family:
    """`n` links of `seconds` one-second samples: half steady, half fast with troughs; each on
    LTE or Wi-Fi radio (the energy model's), drawn from `seed`."""
    rng = np.random.default_rng(seed)
    traces = []
    for k in range(n):
        bps = _steady(rng, seconds) if k % 2 == 0 else _troughs(rng, seconds)
        network = "lte" if rng.random() < 0.5 else "wifi"
        times = np.arange(1, seconds + 1, dtype=float)
        traces.append(sim.nerveabr_py.Trace(f"{FAMILY}-{k}", times.tolist(), bps.tolist(), network))
    return sim.Family(FAMILY, traces)
