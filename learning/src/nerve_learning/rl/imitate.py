"""A warm start for PPO: imitate the `nerve` planner (DAgger), then let PPO improve on it.

PPO from a random policy needs millions of sessions to find what the planner already knows
(keep the buffer safe, take the top rung when it is affordable, enhance where it pays); a
shared 2-core machine gives it a few hundred thousand. So the policy network first learns the
planner's choices, then PPO fine-tunes it on the multi-objective reward (the planner's choices
are one fixed rule per named preference; PPO's reward weighs energy continuously).

DAgger (Ross et al., AISTATS 2011): round 0 plays the teacher and records its choices; each
later round plays the current learner (with a share `beta` of teacher moves) and records what
the teacher would have done in the states the learner reaches, so the learner also learns to
recover from its own mistakes. The teacher is the simulator's own planner advising on every
step (`teacher` of the bindings), never a copy of it. The data come from the training families
only, augmented as PPO's episodes are.

The value head is fitted to the discounted return of the recorded episodes too: PPO's first
updates would otherwise follow advantages from a random critic and undo the imitation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch

from .env import AbrEnv, EnvConfig
from .features import LogThroughput

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from . import sim


# Smallest variance of a normalised feature: features are on about a 0..1 scale, and a spread
# under 1% of that carries no decision.
VAR_FLOOR = 1e-4


@dataclass(frozen=True)
class ImitationConfig:
    """Chosen before any leave-one-family-out run (a few hundred thousand labelled states fit
    in minutes; three DAgger rounds is the paper's usual few), not tuned on a left-out family."""

    teacher: str = "nerve"
    rounds: int = 3
    episodes_per_round: int = 1200
    # share of teacher moves while the learner plays, per round after the first
    beta: float = 0.3
    epochs: int = 12
    batch_size: int = 512
    learning_rate: float = 1e-3
    # PPO after imitation: a smaller step and no entropy bonus, so it refines the imitated
    # policy instead of first spreading it out again
    ppo_learning_rate: float = 1e-4
    ppo_ent_coef: float = 0.0
    envs: int = 16


@dataclass
class Dataset:
    obs: np.ndarray  # policy-space observations (after LogThroughput), float32 [n, d]
    actions: np.ndarray  # teacher's action index, int64 [n]
    returns: np.ndarray  # discounted return from that step on, float32 [n]

    def __len__(self) -> int:
        return len(self.actions)

    def extend(self, other: Dataset) -> Dataset:
        return Dataset(np.concatenate([self.obs, other.obs]), np.concatenate([self.actions, other.actions]),
                       np.concatenate([self.returns, other.returns]))


def collect(envs: Sequence[LogThroughput], episodes: int, gamma: float, act: Any, beta: float,
            rng: np.random.Generator) -> tuple[Dataset, dict[str, float | None]]:
    """Play `episodes` sessions over `envs` in lock-step; `act(obs batch) -> actions` is the
    learner (None: the teacher plays every move). Every state is labelled with the teacher's
    choice. Returns the data and how the played sessions went."""
    obs_l: list[np.ndarray] = []
    act_l: list[int] = []
    ret_l: list[float] = []
    qoe: list[float] = []
    stall: list[float] = []
    agree = total = 0
    started = 0
    live: list[dict[str, Any]] = []
    for e in envs:
        if started >= episodes:
            break
        o, info = e.reset()
        live.append({"env": e, "obs": o, "advice": int(info["teacher_action"]), "o": [], "a": [], "r": []})
        started += 1
    while live:
        batch = np.stack([s["obs"] for s in live])
        mine = act(batch) if act is not None else None
        done: list[int] = []
        for i, s in enumerate(live):
            advice = s["advice"]
            if mine is None or rng.random() < beta:
                a = advice
            else:
                a = int(mine[i])
                agree += int(a == advice)
                total += 1
            s["o"].append(s["obs"])
            s["a"].append(advice)
            o, r, term, trunc, info = s["env"].step(a)
            s["r"].append(float(r))
            s["obs"] = o
            if term or trunc:
                g = 0.0
                rets = []
                for x in reversed(s["r"]):
                    g = x + gamma * g
                    rets.append(g)
                obs_l.extend(s["o"])
                act_l.extend(s["a"])
                ret_l.extend(reversed(rets))
                ep = info["episode"]
                qoe.append(float(ep["qoe_quality"]))
                stall.append(float(ep["rebuffer_s"]))
                done.append(i)
            else:
                s["advice"] = int(info["teacher_action"])
        for i in reversed(done):
            s = live[i]
            if started < episodes:
                o, info = s["env"].reset()
                live[i] = {"env": s["env"], "obs": o, "advice": int(info["teacher_action"]), "o": [], "a": [], "r": []}
                started += 1
            else:
                live.pop(i)
    data = Dataset(np.asarray(obs_l, dtype=np.float32), np.asarray(act_l, dtype=np.int64),
                   np.asarray(ret_l, dtype=np.float32))
    stats: dict[str, float | None] = {
        "episodes": float(len(qoe)), "qoe_quality": float(np.mean(qoe)), "rebuffer_s": float(np.mean(stall)),
        # how often the learner's own move was the teacher's (None while the teacher plays)
        "learner_agrees": agree / total if total else None}
    return data, stats


def fit(model: PPO, vecnorm: VecNormalize, data: Dataset, cfg: ImitationConfig, rng: np.random.Generator) -> dict[str, float]:
    """Cross-entropy on the teacher's choices and squared error on the returns, on normalised
    observations (the statistics PPO will keep using). 5% of the data is held out to report
    agreement on states the fit did not see."""
    policy = model.policy
    x = torch.as_tensor(vecnorm.normalize_obs(data.obs), dtype=torch.float32)
    y = torch.as_tensor(data.actions)
    ret = torch.as_tensor(data.returns)
    order = rng.permutation(len(data))
    hold = order[: max(len(data) // 20, 1)]
    train_idx = order[len(hold):]
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    policy.set_training_mode(True)
    last = float("nan")
    for _ in range(cfg.epochs):
        perm = train_idx[rng.permutation(len(train_idx))]
        losses = []
        for k in range(0, len(perm), cfg.batch_size):
            idx = torch.as_tensor(perm[k:k + cfg.batch_size])
            values, log_prob, _ = policy.evaluate_actions(x[idx], y[idx])
            loss = -log_prob.mean() + 0.5 * torch.mean((values.flatten() - ret[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            opt.step()
            losses.append(float(loss.detach()))
        last = float(np.mean(losses))
    policy.set_training_mode(False)
    with torch.no_grad():
        h = torch.as_tensor(hold)
        dist = policy.get_distribution(x[h])
        pred = dist.distribution.probs.argmax(dim=1)  # type: ignore[union-attr]
        held_acc = float((pred == y[h]).float().mean())
    return {"loss": last, "held_out_agreement": held_acc}


def imitate(model: PPO, vecnorm: VecNormalize, groups: Sequence[Sequence[sim.Trace]], env_cfg: EnvConfig,
            cfg: ImitationConfig, gamma: float, seed: int, log: TextIO | None = None) -> dict[str, Any]:
    """DAgger rounds into `model` (in place); sets `vecnorm`'s observation statistics from the
    data and freezes them (PPO then fine-tunes a policy whose input scale does not move under
    it). Returns what each round saw and reached."""
    t0 = time.monotonic()
    rng = np.random.default_rng(seed + 17)
    envs = [LogThroughput(AbrEnv(groups, cfg=env_cfg, seed=seed * 1000 + 500 + i, teacher=cfg.teacher))
            for i in range(cfg.envs)]
    for i, e in enumerate(envs):
        e.reset(seed=seed * 1000 + 500 + i)

    def act(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            obs = torch.as_tensor(vecnorm.normalize_obs(batch), dtype=torch.float32)
            return model.policy.get_distribution(obs).distribution.probs.argmax(dim=1).numpy()  # type: ignore[union-attr]

    data: Dataset | None = None
    rounds = []
    for k in range(cfg.rounds):
        new, played = collect(envs, cfg.episodes_per_round, gamma, None if k == 0 else act, cfg.beta, rng)
        data = new if data is None else data.extend(new)
        if k == 0:
            # the observation statistics PPO starts from (and keeps updating): those of the
            # teacher's sessions
            # teacher's sessions. A floor on the spread: a feature that hardly varies (the
            # quality table, fixed for a ladder) must not be magnified 10^4 times, where a
            # float32 rounding would move the policy's input.
            rms = vecnorm.obs_rms
            rms.mean = data.obs.mean(axis=0).astype(np.float64)
            rms.var = np.maximum(data.obs.var(axis=0).astype(np.float64), VAR_FLOOR)
            rms.count = float(len(data))
        fitted = fit(model, vecnorm, data, cfg, rng)
        rounds.append({"round": k, "played_by": "teacher" if k == 0 else f"learner (beta {cfg.beta})",
                       "samples": len(data), **played, **fitted})
        if log is not None:
            agrees = played["learner_agrees"]
            print(f"[{time.strftime('%H:%M:%S')}] imitation round {k}: {len(data)} states, played QoE "
                  f"{played['qoe_quality']:.2f} / {played['rebuffer_s']:.3f} s stall, learner agrees "
                  f"{'-' if agrees is None else f'{agrees:.3f}'} in play, "
                  f"{fitted['held_out_agreement']:.3f} held out", file=log, flush=True)
    vecnorm.training = False
    return {"teacher": cfg.teacher, "rounds": rounds, "seconds": round(time.monotonic() - t0, 1)}
