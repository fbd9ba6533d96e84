"""Keeping the best policy of a run, judged on training-family traces held out of training.

PPO after imitation can drift: it raises its return on the (augmented) sessions it trains on
while it gets worse elsewhere. So a share of each training family's traces is held out of
imitation and PPO, and the policy is scored on them, unaugmented, at the three named
preferences, before PPO (the imitated policy) and every `every` steps after; the best weights
are kept (early stopping; `KeepBest` says what "best" is). The left-out family of a
leave-one-family-out fold is never among them: the choice looks only at families the fold
trains on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from . import sim
from .features import to_policy

# What a policy is scored at: the named preferences' weights, on mains.
WEIGHTS: tuple[float, ...] = tuple(sim.PREFERENCE_WEIGHTS.values())


def split(groups: Sequence[Sequence[sim.Trace]], share: float) -> tuple[list[list[sim.Trace]], list[list[sim.Trace]]]:
    """(training, held out) per family: every round(1 / share)-th trace is held out (none from a
    family of fewer than 3 traces)."""
    step = max(int(round(1.0 / share)), 2) if share > 0 else 0
    train: list[list[sim.Trace]] = []
    held: list[list[sim.Trace]] = []
    for g in groups:
        g = list(g)
        if step and len(g) >= 3:
            held.append([t for i, t in enumerate(g) if i % step == step - 1])
            train.append([t for i, t in enumerate(g) if i % step != step - 1])
        else:
            train.append(g)
    return train, [h for h in held if h]


def score(model: PPO, vecnorm: VecNormalize, held: Sequence[Sequence[sim.Trace]]) -> dict[str, float]:
    """The deterministic policy on every held-out session at every named weight, all stepped
    together (one batched forward per chunk): mean return per session (the training reward),
    mean quality-QoE and stall, each family weighted equally (as training draws them)."""
    # one environment per session: the bindings keep one episode per environment
    sessions = []
    for k, g in enumerate(held):
        for i in range(len(g)):
            for w in WEIGHTS:
                e = sim.make_env(list(g))
                obs, _ = e.reset(trace=i, preference=w)
                sessions.append({"env": e, "obs": obs, "ret": 0.0, "done": False, "episode": None, "family": k})
    while not all(s["done"] for s in sessions):
        active = [s for s in sessions if not s["done"]]
        x = vecnorm.normalize_obs(to_policy(np.asarray([s["obs"] for s in active], dtype=np.float32)))
        with torch.no_grad():
            acts = model.policy.get_distribution(torch.as_tensor(x, dtype=torch.float32)).distribution.probs.argmax(dim=1).numpy()  # type: ignore[union-attr]
        for s, a in zip(active, acts):
            obs, r, term, trunc, info = s["env"].step(int(a))
            s["obs"], s["ret"] = obs, s["ret"] + float(r)
            if term or trunc:
                s["done"], s["episode"] = True, info["episode"]
    def mean(value: Any) -> float:
        per_family = [np.mean([value(s) for s in sessions if s["family"] == k]) for k in range(len(held))]
        return float(np.mean(per_family))

    return {"return": mean(lambda s: s["ret"]), "qoe_quality": mean(lambda s: s["episode"]["qoe_quality"]),
            "rebuffer_s": mean(lambda s: s["episode"]["rebuffer_s"]), "sessions": float(len(sessions))}


def planner_stall(held: Sequence[Sequence[sim.Trace]], planner: str = "nerve") -> float:
    """The planner's mean stall per session on the held-out traces at the named preferences,
    each family weighted equally (as `score` weighs them)."""
    per_family = []
    for g in held:
        env = sim.make_env(list(g))
        per_family.append(np.mean([env.run_policy(planner, i, preference=p)["rebuffer_s"]
                                   for i in range(len(g)) for p in sim.PREFERENCE_WEIGHTS]))
    return float(np.mean(per_family))


# "No more stall" with a rounding allowance per session.
STALL_EPS_S = 0.01


class KeepBest(BaseCallback):
    """Scores the policy on the held-out traces at the start of training and every `every`
    steps; at the end the best weights are put back: the highest return among the checkpoints
    that stall no more than the planner on the same sessions (issue 30's bar for PPO, "at no
    more stall"), or the least stalling one if none does. Return alone favoured checkpoints that
    bought quality with stalls (100 QoE points a second is the reward's own price) and those
    stalled most on a left-out family."""

    def __init__(self, vecnorm: VecNormalize, held: Sequence[Sequence[sim.Trace]], every: int,
                 log: TextIO | None = None) -> None:
        super().__init__()
        self.vecnorm, self.held, self.every, self.out = vecnorm, held, every, log
        self.stall_limit = planner_stall(held) + STALL_EPS_S
        self.best: dict[str, Any] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self._next = 0

    def _better(self, row: dict[str, float]) -> bool:
        if self.best is None:
            return True
        ok, best_ok = row["rebuffer_s"] <= self.stall_limit, self.best["rebuffer_s"] <= self.stall_limit
        if ok != best_ok:
            return ok
        return row["return"] > self.best["return"] if ok else row["rebuffer_s"] < self.best["rebuffer_s"]

    def _check(self) -> None:
        t0 = time.monotonic()
        s = score(self.model, self.vecnorm, self.held)  # type: ignore[arg-type]
        row = {"steps": float(self.num_timesteps), **s, "seconds": round(time.monotonic() - t0, 1)}
        self.history.append(row)
        if self._better(row):
            self.best = row
            self.best_state = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
        if self.out is not None and self.best is not None:
            print(f"[{time.strftime('%H:%M:%S')}] held-out training traces at {self.num_timesteps} steps: return "
                  f"{s['return']:.3f}, QoE {s['qoe_quality']:.2f}, stall {s['rebuffer_s']:.3f} s (limit "
                  f"{self.stall_limit:.3f}; kept: {int(self.best['steps'])} steps)", file=self.out, flush=True)

    def _on_training_start(self) -> None:
        self._check()
        self._next = self.num_timesteps + self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            self._check()
        return True

    def _on_training_end(self) -> None:
        self._check()
        if self.best_state is not None:
            self.model.policy.load_state_dict(self.best_state)

    def summary(self) -> dict[str, Any]:
        return {"kept_steps": int(self.best["steps"]) if self.best else None, "kept": self.best,
                "stall_limit_s": self.stall_limit, "history": self.history}
