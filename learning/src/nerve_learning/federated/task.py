"""The task of the Flower app: the SR student that `nervesr` runs, its weights as the arrays a
device sends, a device's local training on its episodic memory, and its PSNR-Y on whole frames.

Every device starts from the shipped x2 student (models/nerve-sr-x2.onnx, read back into the
PyTorch `Student` with the same parameter names the exported ONNX keeps), so any federated
result exports through nerve_learning.sr.export to the same graph and manifest entry, and plays
in the element.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.memory import EpisodicMemory
from ..metrics import psnr
from ..paths import REPO
from ..sr.export import student_from_onnx
from ..sr.model import Student

SHIPPED = REPO / "models" / "nerve-sr-x2.onnx"
Weights = list[np.ndarray]


def load_shipped(path: Path = SHIPPED) -> Student:
    return student_from_onnx(path).eval()


def param_names(model: nn.Module) -> list[str]:
    """The trained parameters in a fixed order (the fixed bicubic buffers never travel)."""
    return [k for k, _ in model.named_parameters()]


def get_weights(model: nn.Module) -> Weights:
    return [p.detach().cpu().numpy().astype(np.float32).copy() for _, p in model.named_parameters()]


def set_weights(model: nn.Module, weights: Weights) -> nn.Module:
    names = param_names(model)
    if len(names) != len(weights):
        raise ValueError(f"{len(weights)} arrays for a model of {len(names)} parameters")
    state = model.state_dict()
    state.update(OrderedDict((k, torch.from_numpy(np.asarray(w, np.float32).copy())) for k, w in zip(names, weights)))
    model.load_state_dict(state)
    return model


def memory_pairs(memory: EpisodicMemory, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr) uint8 stacks of the items (their stored LR sides)."""
    return memory.batch(ids) if ids else (np.zeros((0, 1, 1), np.uint8), np.zeros((0, 2, 2), np.uint8))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)


def train_local(model: Student, lr_patches: np.ndarray, hr_patches: np.ndarray, steps: int, batch: int = 16,
                lr: float = 1e-3, seed: int = 0) -> float:
    """`steps` Adam steps of L1 on random batches (with flips) of the device's pairs, in place.
    Returns the mean loss. Few steps on purpose: a phone trains for seconds, not hours."""
    if len(lr_patches) == 0 or steps <= 0:
        return 0.0
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = _t(lr_patches), _t(hr_patches)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    total = 0.0
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (min(batch, len(x_all)),), generator=gen)
        x, y = x_all[idx], y_all[idx]
        if torch.rand(1, generator=gen).item() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = nn.functional.l1_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.item())
    model.eval()
    return total / steps


def predict(model: nn.Module, lr_frames: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(_t(lr_frames[i : i + 4])) for i in range(0, len(lr_frames), 4)])
    return np.clip(out.squeeze(1).numpy() * 255.0 + 0.5, 0, 255).astype(np.uint8)


def pairs_psnr(model: nn.Module, lr_patches: np.ndarray, hr_patches: np.ndarray) -> float:
    return psnr(predict(model, lr_patches), hr_patches) if len(lr_patches) else float("nan")


def frames_psnr(model: nn.Module, sets: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """PSNR-Y per clip (one MSE over all its frames), whole frames as nerve-eval scores them."""
    return {key: psnr(predict(model, lr), hr) for key, lr, hr in sets}


# ---- run settings (one JSON file, named by the run config key `config` or NERVE_FED_CONFIG) ----

import json as _json
import os as _os
from dataclasses import asdict as _asdict, dataclass as _dataclass, fields as _fields

CONFIG_ENV = "NERVE_FED_CONFIG"


@_dataclass
class Settings:
    fleet_dir: str = ""  # the devices' episodic memories: <fleet_dir>/device-NNNN
    out_dir: str = ""  # where the server writes its models, history and ledger
    eval_cache: str = ""  # cached whole-frame evaluation sets (fleet.eval_set); empty: no evaluation
    rounds: int = 20  # global FedAvg rounds
    cluster_rounds: int = 10  # per-cluster rounds after the global ones (0: no clusters)
    clusters: int = 5
    fraction: float = 0.2  # devices per round / devices eligible
    cluster_fraction: float = 0.25
    min_nodes: int = 2
    local_steps: int = 10
    local_lr: float = 5e-4
    batch: int = 16
    clip: float = 0.0  # L2 bound of a device's update (0: no clipping, no DP)
    noise: float = 0.0  # noise multiplier z (0: no DP)
    target_epsilon: float = 0.0  # > 0 (with clip > 0): the server sets `noise` to stay within it
    delta: float = 1e-5
    robust: bool = True  # NaN/Inf rejection + median-norm clipping
    poison_fraction: float = 0.0  # share of devices sending poisoned updates (simulation of attackers)
    secagg: bool = False
    secagg_shares: int = 5
    secagg_threshold: int = 3
    secagg_timeout: float = 60.0
    drop_partitions: str = ""  # partition ids (comma separated) that drop out mid-round in round 1
    eval_every: int = 5
    seed: int = 0

    @classmethod
    def load(cls, path: str | None = None) -> "Settings":
        path = path or _os.environ.get(CONFIG_ENV, "")
        if not path:
            return cls()
        raw = _json.loads(Path(path).read_text())
        known = {f.name for f in _fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(_json.dumps(_asdict(self), indent=2))


def settings_of(run_config: dict) -> Settings:
    return Settings.load(str(run_config.get("config", "")) or None)
