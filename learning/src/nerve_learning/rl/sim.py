"""The Rust simulator as the learning side sees it: a thin layer over the `nerveabr_py`
bindings (nerveabr-py: pyo3, built by scripts/setup.sh with maturin). Nothing of the simulator
is re-implemented here: sessions, observations, rewards, trace reading and augmentation, the
`nerve` planner and the baselines all run in Rust."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import nerveabr_py

# The viewer's preference as a weight on energy (nerve_abr::learned, Preference::weight): the
# three named points the element exposes.
PREFERENCE_WEIGHTS: dict[str, float] = {"quality": 0.0, "balanced": 0.5, "battery-saver": 1.0}

# The session scores every comparison reports (nerveabr-sim's TraceResult fields).
METRICS: tuple[str, ...] = ("qoe_quality", "rebuffer_s", "energy_j", "battery_pct", "mean_quality", "bits_mb",
                            "switches", "enhanced_chunks")

Trace = Any  # nerveabr_py.Trace (a pyo3 class: no stub to type it against)


@dataclass(frozen=True)
class Family:
    """One trace family by nerveabr-sim's leave-one-family-out rule (`lofo::discover`)."""

    name: str
    traces: list[Trace]


def families(root: Path, limit: int = 0) -> list[Family]:
    """The families under `root`, at most `limit` traces per source (0 = all)."""
    return [Family(name, list(traces)) for name, traces in nerveabr_py.families(str(root), limit)]


def make_env(traces: list[Trace], *, seed: int = 0, scale: tuple[float, float] = (1.0, 1.0), noise: float = 0.0,
             random_start: bool = False, battery: tuple[float, float] | None = None,
             teacher: str | None = None, buffer_cap: float | tuple[float, float] = 60.0,
             chunk_choices: tuple[float, ...] = (), tables: Sequence[str] = ()) -> Any:
    """A bindings environment over `traces` (the shipped generic quality table, the chunk
    scenario's 48 chunks); augmentation happens in Rust, per episode, from the seeded generator.
    `battery`: None = on mains, else the battery level is drawn per episode in that range.
    `teacher`: a planner (`nerve`) whose choice for the next chunk every `info` carries as
    `teacher_action` (imitation). `buffer_cap`: the player's buffer cap, seconds, or a range
    drawn per episode; `chunk_choices`: chunk durations drawn per episode (() = the table's);
    `tables`: other quality tables of the same ladder (content types), each episode playing one
    of the generic table and these."""
    return nerveabr_py.Env(traces, seed=seed, scale=scale, noise=noise, random_start=random_start, battery=battery,
                           teacher=teacher, buffer_cap=buffer_cap, chunk_choices=list(chunk_choices) or None,
                           tables=list(tables) or None)


def layout(env: Any) -> list[tuple[str, int, int]]:
    """(name, offset, length) of each block of the observation vector."""
    return [tuple(b) for b in env.layout()]  # type: ignore[misc]
