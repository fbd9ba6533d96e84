"""Training the PPO agent (stable-baselines3) on training families only.

Several environments step in one process (`DummyVecEnv`): the simulator step is microseconds of
Rust, so worker processes would cost more in pickling than they save, and the machine has two
shared cores. Observations are normalised by running statistics (`VecNormalize`); the statistics
are frozen into the exported ONNX graph (export.py), so the element feeds raw observations."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from . import sim
from .env import AbrEnv, EnvConfig
from .features import LogThroughput
from .imitate import ImitationConfig, imitate
from .select import KeepBest, split


@dataclass
class TrainConfig:
    """PPO's settings. Chosen before any leave-one-family-out run from SB3's defaults and
    Pensieve's setting (a 48-chunk session: gamma 0.99 looks about 100 chunks ahead, more than a
    session), not tuned on any left-out family."""

    timesteps: int = 200_000
    # Wall-clock cap on training (0 = none): the real run must end by a deadline on a shared
    # machine; the report states how many steps each fold actually took.
    max_seconds: float = 0.0
    seed: int = 0
    n_envs: int = 8
    n_steps: int = 256
    batch_size: int = 256
    n_epochs: int = 5
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    # Entropy bonus keeps the 12-way choice exploring long enough to find enhancement worth it.
    ent_coef: float = 0.01
    clip_range: float = 0.2
    net_arch: tuple[int, ...] = (128, 128)
    env: EnvConfig = field(default_factory=EnvConfig)
    # Imitate the `nerve` planner first (imitate.py), then PPO from there at the imitation's
    # learning rate and entropy bonus; None = PPO from a random policy.
    imitation: ImitationConfig | None = None
    # With imitation: this share of each training family's traces is held out of training and
    # the best policy on them is kept, the imitated one or one every `select_every` PPO steps
    # (select.py). 0 = keep the last.
    holdout_share: float = 0.1
    select_every: int = 50_000


class Progress(BaseCallback):
    """Shows progress (steps, steps/s, mean episode return, ETA) every `every_s` seconds, and
    stops training at the wall-clock cap."""

    def __init__(self, label: str, total: int, out: TextIO | None, every_s: float = 15.0,
                 max_seconds: float = 0.0) -> None:
        super().__init__()
        self.label, self.total, self.out, self.every_s, self.max_seconds = label, total, out, every_s, max_seconds
        self.start = self.last = 0.0

    def _on_training_start(self) -> None:
        self.start = self.last = time.monotonic()
        self._say(0)

    def _say(self, steps: int) -> None:
        now = time.monotonic()
        rate = steps / max(now - self.start, 1e-9)
        eps = [e["r"] for e in self.model.ep_info_buffer] if self.model.ep_info_buffer else []
        ret = f"{np.mean(eps):8.3f}" if eps else "     n/a"
        eta = (self.total - steps) / rate if rate > 0 else float("nan")
        line = (f"[{time.strftime('%H:%M:%S')}] {self.label}: {steps}/{self.total} steps "
                f"({100 * steps / max(self.total, 1):5.1f}%), {rate:7.0f} steps/s, "
                f"mean episode return {ret}, eta {eta:6.0f} s")
        if self.out is not None:
            print(line, file=self.out, flush=True)

    def _on_step(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._say(self.num_timesteps)
        if self.max_seconds > 0 and now - self.start >= self.max_seconds:
            self._say(self.num_timesteps)
            if self.out is not None:
                print(f"{self.label}: wall-clock cap of {self.max_seconds:.0f} s reached", file=self.out, flush=True)
            return False
        return True

    def _on_training_end(self) -> None:
        self._say(self.num_timesteps)


@dataclass
class Trained:
    """A trained policy and what it took."""

    model: PPO
    vecnorm: VecNormalize
    timesteps: int
    seconds: float
    config: TrainConfig
    imitation: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    # The policy's weights after imitation, before PPO: so a report can say what PPO added.
    imitated: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        ppo_s = self.seconds - (self.imitation["seconds"] if self.imitation else 0.0)
        return {"timesteps": self.timesteps, "train_s": round(self.seconds, 1),
                "steps_per_s": round(self.timesteps / max(ppo_s, 1e-9), 1), "config": cfg,
                "imitation": self.imitation, "selection": self.selection}


def make_vec_env(groups: Sequence[Sequence[sim.Trace]], cfg: TrainConfig,
                 factory: Callable[..., AbrEnv] = AbrEnv) -> VecNormalize:
    """`n_envs` environments over the training families, each seeded differently so they do
    not play the same augmented trace in lock-step."""
    def one(i: int) -> Callable[[], LogThroughput]:
        return lambda: LogThroughput(factory(groups, cfg=cfg.env, seed=cfg.seed * 1000 + i))

    venv = VecMonitor(DummyVecEnv([one(i) for i in range(cfg.n_envs)]))
    # The reward is not normalised: it is already in QoE points / 100, about -1..1 per chunk, and
    # a running reward scale would make the return mean different things early and late.
    return VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=10.0, gamma=cfg.gamma)


def train(groups: Sequence[Sequence[sim.Trace]], cfg: TrainConfig, *, label: str = "ppo",
          log: TextIO | None = None) -> Trained:
    """Train on `groups` (one list of traces per training family; episodes draw a family first,
    then a trace, so a family with 400 sessions does not drown one with 40)."""
    set_random_seed(cfg.seed)
    # One thread: the network is tiny, and the machine is shared.
    torch.set_num_threads(1)
    im = cfg.imitation
    held: list[list[sim.Trace]] = []
    if im and cfg.holdout_share > 0:
        groups, held = split(groups, cfg.holdout_share)
    venv = make_vec_env(groups, cfg)
    model = PPO(
        "MlpPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
        learning_rate=im.ppo_learning_rate if im else cfg.learning_rate, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
        ent_coef=im.ppo_ent_coef if im else cfg.ent_coef,
        clip_range=cfg.clip_range, seed=cfg.seed, device="cpu", verbose=0,
        policy_kwargs={"net_arch": {"pi": list(cfg.net_arch), "vf": list(cfg.net_arch)}},
    )
    t0 = time.monotonic()
    imitation = imitate(model, venv, groups, cfg.env, im, cfg.gamma, cfg.seed, log) if im else None
    imitated = {k: v.detach().clone() for k, v in model.policy.state_dict().items()} if im else None
    selection = None
    if cfg.timesteps > 0:
        # the wall-clock cap covers imitation and PPO together
        left = cfg.max_seconds - (time.monotonic() - t0) if cfg.max_seconds > 0 else 0.0
        progress = Progress(label, cfg.timesteps, log, max_seconds=max(left, 1.0) if cfg.max_seconds > 0 else 0.0)
        keep = KeepBest(venv, held, cfg.select_every, log) if held else None
        model.learn(total_timesteps=cfg.timesteps, callback=[progress, keep] if keep else progress)
        selection = keep.summary() if keep else None
    seconds = time.monotonic() - t0
    # From here on the statistics are fixed: evaluation and export see the same normalisation.
    venv.training = False
    return Trained(model, venv, int(model.num_timesteps), seconds, cfg, imitation, selection, imitated)


def export_imitated(t: Trained, path: Path) -> Path | None:
    """The policy as it was after imitation (before PPO) exported to `path`; None without
    imitation. The trained weights are put back afterwards."""
    if t.imitated is None:
        return None
    from .export import export

    final = {k: v.detach().clone() for k, v in t.model.policy.state_dict().items()}
    t.model.policy.load_state_dict(t.imitated)
    try:
        return export(t.model, t.vecnorm, path)
    finally:
        t.model.policy.load_state_dict(final)


def save(t: Trained, out: Path) -> None:
    """The SB3 checkpoint, its normalisation statistics and the run's summary."""
    out.mkdir(parents=True, exist_ok=True)
    t.model.save(out / "ppo.zip")
    t.vecnorm.save(str(out / "vecnormalize.pkl"))
    (out / "train.json").write_text(json.dumps(t.summary(), indent=2, default=str))
