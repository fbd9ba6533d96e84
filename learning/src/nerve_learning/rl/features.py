"""One fixed transform of the simulator's observation before the policy's running
normalisation: throughputs on a log scale.

The families' links span three orders of magnitude (Norway 3G about 1 Mbit/s, Lumos 5G about
500). A linear scale normalised by running statistics gives 5G's spread the whole range and
leaves every 0.3-4 Mbit/s sample, where the rung choice is hard, within a hundredth of a standard
deviation of the next. log1p(Mbit/s) gives each factor of throughput the same room (0 stays 0,
the history's padding). The transform is applied in training (a gymnasium wrapper) and inside
the exported ONNX graph (export.py), so the element feeds the features exactly as Rust builds
them."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

# `throughput_mbps_over_10` in nerve_abr::learned::Features (offset 1, HISTORY = 8 entries);
# checked against the bindings' layout when the wrapper is built.
THROUGHPUT = slice(1, 9)
MBIT_NORM = 10.0


def to_policy(obs: np.ndarray) -> np.ndarray:
    x = np.array(obs, dtype=np.float32, copy=True)
    x[..., THROUGHPUT] = np.log1p(np.maximum(x[..., THROUGHPUT], 0.0) * MBIT_NORM)
    return x


def from_policy(x: np.ndarray) -> np.ndarray:
    """The inverse (for probing the export with observations spread over the policy's space)."""
    obs = np.array(x, dtype=np.float32, copy=True)
    obs[..., THROUGHPUT] = np.expm1(np.maximum(obs[..., THROUGHPUT], 0.0)) / MBIT_NORM
    return obs


def to_policy_torch(obs: torch.Tensor) -> torch.Tensor:
    """`to_policy` as graph operations (no in-place slice assignment: it exports cleanly)."""
    a, b = THROUGHPUT.start, THROUGHPUT.stop
    mid = torch.log1p(torch.clamp(obs[:, a:b], min=0.0) * MBIT_NORM)
    return torch.cat([obs[:, :a], mid, obs[:, b:]], dim=1)


class LogThroughput(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    def __init__(self, env: gym.Env[np.ndarray, Any]) -> None:
        super().__init__(env)
        layout = {name: (off, n) for name, off, n in env.unwrapped.layout()}  # type: ignore[attr-defined]
        if layout.get("throughput_mbps_over_10") != (THROUGHPUT.start, THROUGHPUT.stop - THROUGHPUT.start):
            raise ValueError(f"the bindings' observation layout moved: {layout}")

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return to_policy(observation)
