"""The actor to ONNX: raw observation in, (logits, action) out.

The graph carries the observation normalisation (VecNormalize's frozen mean / variance and
clip), then the actor network, then an argmax: the element feeds the observation as the
simulator builds it and reads one integer, with no statistics file beside the model. The critic
is left out: it is only needed to train."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from .features import from_policy, to_policy, to_policy_torch

OPSET = 17
INPUT = "obs"
# Scores first: the element's `ppo` policy takes the argmax of the first output itself.
OUTPUTS = ("logits", "action")


class Actor(nn.Module):
    """Log throughput (features.py) + normalisation + SB3's actor path (features -> policy MLP -> action logits) + argmax."""

    def __init__(self, model: PPO, vecnorm: VecNormalize) -> None:
        super().__init__()
        policy = model.policy
        rms = vecnorm.obs_rms
        self.register_buffer("mean", torch.as_tensor(np.asarray(rms.mean), dtype=torch.float32))
        # VecNormalize divides by sqrt(var + epsilon); folding it into one scale here keeps the
        # graph two elementwise ops
        inv = 1.0 / np.sqrt(np.asarray(rms.var) + vecnorm.epsilon)
        self.register_buffer("inv_std", torch.as_tensor(inv, dtype=torch.float32))
        self.clip = float(vecnorm.clip_obs)
        self.features = policy.features_extractor
        self.mlp = policy.mlp_extractor.policy_net
        self.head = policy.action_net

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.clamp((to_policy_torch(obs) - self.mean) * self.inv_std, -self.clip, self.clip)
        logits = self.head(self.mlp(self.features(x)))
        return logits, torch.argmax(logits, dim=1)


def export(model: PPO, vecnorm: VecNormalize, path: Path) -> Path:
    """Write the actor to `path` (batch dimension dynamic)."""
    actor = Actor(model, vecnorm).eval()
    dim = int(vecnorm.observation_space.shape[0])  # type: ignore[index]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            actor, (torch.zeros(1, dim),), str(path), input_names=[INPUT], output_names=list(OUTPUTS),
            opset_version=OPSET, dynamic_axes={INPUT: {0: "batch"}, "logits": {0: "batch"}, "action": {0: "batch"}},
            dynamo=False,
        )
    return path


def training_table_path(onnx: Path) -> Path:
    """Where a policy's training table sits: `ppo.onnx` -> `ppo.table.json` (the name
    `nerve_abr::learned::training_table` reads in the element, the simulator and the bindings)."""
    return onnx.with_suffix(".table.json")


def write_training_table(onnx: Path, tables: tuple[str, ...]) -> Path | None:
    """Ship the table a policy trained on beside its graph, when it trained on one (`tables` empty:
    the bindings' embedded generic table). The policy's features then read that table wherever
    it plays, and the stream's table prices and scores (a network that met one table reads any
    other as inputs it never saw). A policy that drew several tables reads the stream's: a stale
    file from an earlier export is removed."""
    path = training_table_path(onnx)
    if tables:
        path.unlink(missing_ok=True)
        return None
    import nerveabr_py

    path.write_text(nerveabr_py.DEFAULT_TABLE)
    return path


class OnnxPolicy:
    """The exported actor through ONNX Runtime, one thread (as on a phone's spare core)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.path = path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def logits(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32).reshape(-1, self.session.get_inputs()[0].shape[1])
        return np.asarray(self.session.run(["logits"], {INPUT: x})[0])

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        x = x.reshape(-1, x.shape[-1])
        return np.asarray(self.session.run(["action"], {INPUT: x})[0]).astype(np.int64)


@dataclass
class Check:
    """ONNX against torch on the same observations."""

    samples: int
    actions_equal: int
    max_logit_diff: float

    @property
    def ok(self) -> bool:
        return self.actions_equal == self.samples and self.max_logit_diff < 1e-4


def verify(model: PPO, vecnorm: VecNormalize, path: Path, obs: np.ndarray) -> Check:
    """Compare the ONNX graph's actions with SB3's own deterministic `predict` on normalised
    observations (SB3's path, not our Actor module, so a wrong normalisation in the export
    would show), and its logits with the torch policy's."""
    onnx = OnnxPolicy(path)
    obs = np.asarray(obs, dtype=np.float32)
    got = onnx.act(obs)
    norm = vecnorm.normalize_obs(to_policy(obs))
    want, _ = model.predict(norm, deterministic=True)
    with torch.no_grad():
        dist = model.policy.get_distribution(torch.as_tensor(norm, dtype=torch.float32))
        want_logits = dist.distribution.logits.numpy()  # type: ignore[union-attr]
        # SB3's categorical keeps normalised log-probabilities; compare in that form
    got_logits = torch.log_softmax(torch.as_tensor(onnx.logits(obs)), dim=1).numpy()
    diff = float(np.max(np.abs(got_logits - want_logits))) if len(obs) else 0.0
    return Check(len(obs), int(np.sum(got == np.asarray(want))), diff)


def random_obs(vecnorm: VecNormalize, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raw observations spread over what training saw: the running mean +- 3 standard
    deviations per feature (uniform) in the policy's space, mapped back to the simulator's, so
    the check covers the whole normalised range, clip included."""
    mean = np.asarray(vecnorm.obs_rms.mean)
    std = np.sqrt(np.asarray(vecnorm.obs_rms.var))
    x = np.maximum(mean + std * rng.uniform(-3.0, 3.0, size=(n, len(mean))), 0.0)  # features are >= 0
    return from_policy(x.astype(np.float32))


def inference_time(path: Path, obs: np.ndarray, repeats: int = 2000) -> dict[str, float]:
    """Seconds per decision (batch 1, one thread): median and 99th percentile, in microseconds."""
    onnx = OnnxPolicy(path)
    x = np.asarray(obs, dtype=np.float32)
    for i in range(50):  # warm-up: first runs allocate
        onnx.act(x[i % len(x)])
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        onnx.act(x[i % len(x)])
        times[i] = time.perf_counter() - t0
    return {"median_us": float(np.median(times) * 1e6), "p99_us": float(np.percentile(times, 99) * 1e6),
            "mean_us": float(np.mean(times) * 1e6), "repeats": repeats}
