"""The gymnasium environment: one episode is one viewing session of the Rust chunk simulator
(through the `nerveabr_py` bindings), one step is one chunk's decision.

- Action: `Discrete(rungs x levels)`, index `rung * levels + level` (level 0 = no enhancement),
  as `nerve_abr::learned::Action` maps it. One flat index rather than `MultiDiscrete`: the
  exported graph ends in one argmax over one score vector, which is what the element's `ppo`
  policy reads. A (rung, level) the quality table lacks (no model for a 720p rung) is played
  as level 0 by the simulator, as for every other policy.
- Observation: `nerve_abr::learned::Features` (built in Rust, the same function the element
  runs): buffer, throughput and download-time history, last quality and rung, next chunk sizes,
  the quality table, enhancement speeds, battery, the preference weight, whether an enhancer
  runs. `AbrEnv.layout()` names each block.
- Reward: the simulator's per-chunk multi-objective QoE at the episode's weight (quality minus
  its change minus 100 points per stalled second, minus weight x 0.5 points per joule), / 100.

Episodes draw a training family first, then a trace of it (in Rust), so a family of 400
sessions does not drown one of 40. The preference weight is drawn per episode: half the
episodes at one of the named preferences (0, 0.5, 1: what the element exposes), half uniform
over [0, 1], so one policy learns every weight in between."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .. import paths
from . import sim


def content_tables() -> tuple[str, ...]:
    """The shipped per-content quality tables (talking heads, sports, animation, texture,
    screen), beside the generic one every environment starts from."""
    return tuple(str(p) for p in sorted(paths.ABR_TABLES.glob("pensieve_*_nervesr.json"))
                 if p.name != "pensieve_generic_nervesr.json")


@dataclass(frozen=True)
class EnvConfig:
    """Augmentation (done in Rust per episode) and how weights are drawn. The augmentation keeps
    a trace recognisably of its family: throughput x0.6-1.5 (a family's own sessions vary more
    than that), 15% per-sample noise, a random starting point (the link wraps around)."""

    scale: tuple[float, float] = (0.6, 1.5)
    noise: float = 0.15
    random_start: bool = True
    named_weight_share: float = 0.5
    # Share of episodes on battery (level drawn in `battery_range`), the rest on mains. The
    # element feeds the real battery state: a policy that never saw "on battery" in training
    # would meet an input far outside its normalisation on every phone.
    battery_share: float = 0.5
    battery_range: tuple[float, float] = (0.05, 1.0)
    # The player's buffer cap, seconds, drawn per episode: the chunk scenario's is 60 s, a
    # GStreamer player's 30 s (adaptivedemux2's default) or a low-latency 4 s. A policy trained
    # at 60 s only would read a full 4 s buffer as a start-up one (it sees the fill, 0..1).
    # Drawn log-uniformly by the bindings (half the sessions below 15 s).
    buffer_cap_range: tuple[float, float] = (4.0, 60.0)
    # Chunk (segment) durations drawn per episode, the session as long in seconds: streams come
    # in 1-6 s segments, the chunk scenario's are 4 s. () = the table's own.
    chunk_choices: tuple[float, ...] = (1.0, 2.0, 4.0)
    # Quality tables drawn per episode beside the generic one (each with the same chance;
    # `content_tables()` gives the shipped content types'): the policy reads the table as
    # features, and one that met a single table in training read a re-measured one as something
    # it had never seen (it kept the lowest rung on a 4 Mbit/s link). () = the generic table
    # only, the shipped policy's recipe: drawing the content tables did not yet give a policy
    # that passes the element's climb tests (docs/research/2026-12-07-abr-tables-active.md).
    tables: tuple[str, ...] = ()

    @staticmethod
    def plain() -> EnvConfig:
        """No augmentation, on mains, the generic table: how evaluation plays a trace."""
        return EnvConfig(scale=(1.0, 1.0), noise=0.0, random_start=False, battery_share=0.0,
                         buffer_cap_range=(60.0, 60.0), chunk_choices=(), tables=())


class AbrEnv(gym.Env[np.ndarray, np.int64]):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, groups: Sequence[Sequence[sim.Trace]], *, cfg: EnvConfig | None = None, seed: int = 0,
                 weight: float | None = None, teacher: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg or EnvConfig()
        self.fixed_weight = weight
        self._seed = int(seed)
        groups = [list(g) for g in groups if len(g)]
        if not groups:
            raise ValueError("AbrEnv needs at least one trace")
        # per family, one Rust environment on mains and one on battery (the bindings draw the
        # level per episode; on mains or not is fixed per environment)
        c = self.cfg
        self._envs = [sim.make_env(g, seed=self._seed * 7919 + i, scale=c.scale, noise=c.noise,
                                   random_start=c.random_start, teacher=teacher, buffer_cap=c.buffer_cap_range,
                                   chunk_choices=c.chunk_choices, tables=c.tables)
                      for i, g in enumerate(groups)]
        self._battery_envs = [sim.make_env(g, seed=self._seed * 7919 + 5000 + i, scale=c.scale, noise=c.noise,
                                           random_start=c.random_start, battery=c.battery_range, teacher=teacher,
                                           buffer_cap=c.buffer_cap_range, chunk_choices=c.chunk_choices,
                                           tables=c.tables)
                              for i, g in enumerate(groups)] if c.battery_share > 0 else []
        first = self._envs[0]
        self.rungs, self.levels, self.chunks = int(first.rungs), int(first.levels), int(first.chunks)
        self.action_space = spaces.Discrete(int(first.n_actions))
        # Every feature is >= 0 and most about 0..1 (speeds up to 4, a 5G link's throughput
        # far above): no upper bound is promised; the policy normalises with running statistics.
        self.observation_space = spaces.Box(0.0, np.inf, shape=(int(first.obs_dim),), dtype=np.float32)
        self._rng = np.random.default_rng(self._seed)
        self._current: Any = None

    def layout(self) -> list[tuple[str, int, int]]:
        return sim.layout(self._envs[0])

    def _draw_weight(self) -> float:
        if self.fixed_weight is not None:
            return float(self.fixed_weight)
        if self._rng.random() < self.cfg.named_weight_share:
            named = list(sim.PREFERENCE_WEIGHTS.values())
            return float(named[int(self._rng.integers(len(named)))])
        return float(self._rng.uniform(0.0, 1.0))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            # one seed fixes everything: the family and weight draws here, the trace and its
            # augmentation in each Rust environment
            self._rng = np.random.default_rng(seed)
            for i, e in enumerate(self._envs + self._battery_envs):
                e.reset(seed=int(seed) * 7919 + i)
        k = int(self._rng.integers(len(self._envs)))
        on_battery = bool(self._battery_envs) and self._rng.random() < self.cfg.battery_share
        self._current = (self._battery_envs if on_battery else self._envs)[k]
        trace = (options or {}).get("trace")
        obs, info = self._current.reset(trace=trace, preference=self._draw_weight())
        return np.asarray(obs, dtype=np.float32), dict(info) | {"group": k}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self._current is not None, "reset() first"
        obs, reward, terminated, truncated, info = self._current.step(int(action))
        return np.asarray(obs, dtype=np.float32), float(reward), bool(terminated), bool(truncated), dict(info)
