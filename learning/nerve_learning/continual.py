"""Continual learning of the SR student over a sequence of (content, codec) tasks, and the
benchmark that measures forgetting.

Learners (all train the same Student, so the exported model costs what the shipped one costs):
- `naive`: fine-tunes on each new task; the forgetting baseline and the plasticity reference.
- `replay`: half of every batch comes from the episodic memory (nerve_learning.memory), which
  receives a sample of each finished task's training pairs.
- `ewc`: elastic weight consolidation: after each task the diagonal Fisher information of the
  task is added to a running sum, and moving a weight away from its value at the end of the
  previous task costs lambda x Fisher x the squared move.
- `replay_ewc`: both.
- `joint`: one run on all tasks at once with the same total number of steps (the upper bound a
  learner that could keep all data would reach).

Protocol: each task's training pairs come from `clips.TRAIN` clips of its content, degraded by
its codec and rate through the real pipeline (degrade.py); its evaluation frames come from the
`clips.EVAL` clip of the same content, degraded the same way. After every task the model is
evaluated on every task (earlier, current and later), which gives the accuracy matrix R[i][j]:
PSNR-Y gain over the Catmull-Rom upscale on task j after training on tasks 0..i.
"""

from __future__ import annotations

import json
import shutil
import time
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .clips import EVAL, TRAIN, Clip
from .dataset import PairConfig, build_pairs, eval_frames
from .degrade import Codec
from .memory import EpisodicMemory, MemoryConfig, patch_stats
from .metrics import psnr
from .model import Student
from .train import to_tensor, upscale

LEARNERS = ("naive", "replay", "ewc", "replay_ewc", "joint")


@dataclass(frozen=True)
class Task:
    content: str
    codec: str
    crf: int

    @property
    def name(self) -> str:
        return f"{self.content}/{self.codec}-crf{self.crf}"


@dataclass(frozen=True)
class ContinualConfig:
    tasks: tuple[Task, ...]
    scale: int = 2
    channels: int = 16
    depth: int = 2
    start: str = "scratch"  # "scratch" or the path of an exported Student (ONNX) to start from
    steps_per_task: int = 800
    batch: int = 32
    lr: float = 5e-4
    threads: int = 2
    seed: int = 0
    # Training pairs per task
    patch_lr: int = 32
    frames_per_clip: int = 12
    frame_step: int = 8
    patches_per_frame: int = 32
    # Held-out evaluation per task: the first `eval_frames` frames, centre crop of `eval_crop` LR pixels
    eval_frames: int = 6
    eval_crop: int = 192
    # Replay
    memory: MemoryConfig = field(default_factory=lambda: MemoryConfig(capacity=800, balance=("task",), strata=("task",),
                                                                      clusters=4, durable=False))
    memory_per_task: int = 400  # pairs of a finished task offered to the memory
    replay_fraction: float = 0.5  # share of each batch drawn from the memory
    # EWC
    ewc_lambda: float = 1.0
    ewc_gamma: float = 1.0  # decay of the earlier tasks' Fisher sum (1: plain sum)
    fisher_samples: int = 128
    # Per-cent metrics (forgetting, plasticity) leave out tasks whose reference gain is below this:
    # a drop from +0.01 dB to 0.00 dB is 100% of nothing, measurement noise at this eval size.
    min_gain_db: float = 0.05
    learners: tuple[str, ...] = LEARNERS

    def __post_init__(self) -> None:
        unknown = set(self.learners) - set(LEARNERS)
        if unknown:
            raise ValueError(f"unknown learners {sorted(unknown)}; known: {LEARNERS}")
        if "naive" not in self.learners:
            raise ValueError("the naive learner is needed: plasticity is measured against it")
        if not self.tasks:
            raise ValueError("no tasks")
        for t in self.tasks:
            train_clips(t.content)
            eval_clip(t.content)
            Codec(t.codec, t.crf).args()  # unknown codec: ValueError now, not after an hour


def train_clips(content: str) -> tuple[Clip, ...]:
    clips = tuple(c for c in TRAIN if c.content == content)
    if not clips:
        raise ValueError(f"no training clip of content {content!r} in clips.TRAIN")
    return clips


def eval_clip(content: str) -> Clip:
    for c in EVAL:
        if c.content == content:
            return c
    raise ValueError(f"no held-out clip of content {content!r} in clips.EVAL")


def load_config(path: Path, quick: bool = False) -> ContinualConfig:
    """Reads a TOML benchmark config; with `quick`, its [quick] table overrides the rest."""
    raw = tomllib.loads(path.read_text())
    if quick:
        if "quick" not in raw:
            raise ValueError(f"{path} has no [quick] table")
        overrides = raw.pop("quick")
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key].update(value)
            else:
                raw[key] = value
    raw.pop("quick", None)
    tasks = tuple(Task(t["content"], t["codec"], int(t["crf"])) for t in raw.pop("task"))
    mem_raw = raw.pop("memory", {})
    mem_fields = {k: tuple(v) if isinstance(v, list) else v for k, v in mem_raw.items()}
    base = ContinualConfig(tasks=tasks)
    memory = replace(base.memory, **mem_fields)
    if "learners" in raw:
        raw["learners"] = tuple(raw["learners"])
    if raw.get("start", "scratch") != "scratch":
        raw["start"] = str((path.parent / raw["start"]).resolve())  # relative to the config file
    return replace(base, memory=memory, **raw)


@dataclass
class TaskData:
    task: Task
    lr: torch.Tensor  # (N,1,p,p) training pairs
    hr: torch.Tensor
    lr_u8: np.ndarray
    hr_u8: np.ndarray
    eval_lr: np.ndarray  # (F,h,w) uint8 held-out frames, cropped
    eval_hr: np.ndarray
    bicubic_psnr: float


def centre_crop(lr: np.ndarray, hr: np.ndarray, side: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    _, h, w = lr.shape
    ch, cw = min(side, h), min(side, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return lr[:, y : y + ch, x : x + cw], hr[:, y * scale : (y + ch) * scale, x * scale : (x + cw) * scale]


def prepare(cfg: ContinualConfig, cache: Path) -> list[TaskData]:
    """Training pairs and held-out frames of every task (pairs cached on disk by dataset.py)."""
    bicubic = Student(cfg.scale).upscale
    out = []
    for task in tqdm(cfg.tasks, desc="tasks: pairs and held-out frames", unit="task"):
        codec = Codec(task.codec, task.crf)
        pairs = PairConfig(scale=cfg.scale, codecs=(codec,), frames_per_clip=cfg.frames_per_clip,
                           frame_step=cfg.frame_step, patch_lr=cfg.patch_lr, patches_per_frame=cfg.patches_per_frame,
                           seed=cfg.seed, clips=train_clips(task.content))
        lr, hr = build_pairs(pairs, cache)
        (_, elr, ehr), = eval_frames(cfg.scale, codec, cfg.eval_frames, clips=(eval_clip(task.content),))
        elr, ehr = centre_crop(elr, ehr, cfg.eval_crop, cfg.scale)
        out.append(TaskData(task, to_tensor(lr), to_tensor(hr), lr, hr, np.ascontiguousarray(elr),
                            np.ascontiguousarray(ehr), psnr(upscale(bicubic, elr), ehr)))
    return out


def gain(model: nn.Module, data: TaskData) -> float:
    """PSNR-Y gain (dB) over the Catmull-Rom upscale on the task's held-out frames."""
    return psnr(upscale(model, data.eval_lr), data.eval_hr) - data.bicubic_psnr


def initial_model(cfg: ContinualConfig) -> Student:
    model = Student(cfg.scale, cfg.channels, cfg.depth)
    if cfg.start != "scratch":
        load_onnx_weights(model, Path(cfg.start))
    return model


def load_onnx_weights(model: Student, path: Path) -> None:
    """Copies an exported Student's weights (ONNX initializers keep the PyTorch names) into `model`."""
    import onnx
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    state = model.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        raise ValueError(f"{path} is not a Student of this shape: no {missing[:3]}")
    for k in state:
        if tuple(weights[k].shape) != tuple(state[k].shape):
            raise ValueError(f"{path}: {k} has shape {weights[k].shape}, the Student needs {tuple(state[k].shape)}")
        state[k] = torch.from_numpy(weights[k].copy())
    model.load_state_dict(state)


class Ewc:
    """Running diagonal Fisher information and the anchor weights (online EWC)."""

    def __init__(self, lam: float, gamma: float) -> None:
        self.lam, self.gamma = lam, gamma
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def consolidate(self, model: nn.Module, data: TaskData, samples: int, gen: torch.Generator) -> None:
        """Adds the task's Fisher (squared per-sample gradients of the Gaussian log-likelihood, i.e.
        of the squared error), normalised to mean 1 so lambda does not depend on the loss scale."""
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        idx = torch.randint(0, data.lr.shape[0], (samples,), generator=gen)
        model.train()
        for i in idx:
            model.zero_grad()
            out = model(data.lr[i : i + 1])
            loss = 0.5 * ((out - data.hr[i : i + 1]) ** 2).sum()
            loss.backward()
            for n, p in params.items():
                assert p.grad is not None
                fisher[n] += p.grad.detach() ** 2 / samples
        mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp_min(1e-20)
        for n in fisher:
            f = fisher[n] / mean
            self.fisher[n] = self.gamma * self.fisher[n] + f if n in self.fisher else f
            self.anchor[n] = params[n].detach().clone()
        model.zero_grad()

    def penalty(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for n, p in model.named_parameters():
            if n in self.fisher:
                total = total + (self.fisher[n] * (p - self.anchor[n]) ** 2).sum()
        return self.lam * total


def augment(x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips and transposes, as in train.py: the degradation has no preferred orientation."""
    if step % 2:
        x, y = x.flip(-1), y.flip(-1)
    if step % 3 == 0:
        x, y = x.transpose(-1, -2), y.transpose(-1, -2)
    return x, y


def fit(model: nn.Module, draw: Any, steps: int, cfg: ContinualConfig, ewc: Ewc | None, desc: str) -> None:
    """Adam with a cosine schedule over `steps`; `draw(step)` returns the (x, y) batch."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for step in tqdm(range(steps), desc=desc, unit="step", leave=False):
        x, y = augment(*draw(step), step)
        loss = nn.functional.l1_loss(model(x), y)
        if ewc is not None and ewc.fisher:
            loss = loss + ewc.penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def remember(memory: EpisodicMemory, data: TaskData, count: int, rng: np.random.Generator) -> None:
    """Offers `count` of the task's training pairs to the memory (which evicts to its capacity)."""
    pick = rng.choice(len(data.lr_u8), size=min(count, len(data.lr_u8)), replace=False)
    t = data.task
    memory.add_many([
        (data.hr_u8[i], data.lr_u8[i], {
            "source": ",".join(c.path for c in train_clips(t.content)), "codec": t.codec, "crf": t.crf,
            "patch": int(data.hr_u8.shape[-1]), "stats": patch_stats(data.hr_u8[i]), "task": t.name,
        })
        for i in pick
    ])


def run_sequential(learner: str, cfg: ContinualConfig, tasks: list[TaskData], work: Path) -> dict[str, Any]:
    """Trains one learner through the task sequence; returns its accuracy matrix and timings."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = initial_model(cfg)
    replay = learner in ("replay", "replay_ewc")
    ewc = Ewc(cfg.ewc_lambda, cfg.ewc_gamma) if learner in ("ewc", "replay_ewc") else None
    memory = None
    if replay:
        root = work / f"memory-{learner}"
        shutil.rmtree(root, ignore_errors=True)
        memory = EpisodicMemory(root, cfg.memory)
    initial = [gain(model, d) for d in tasks]
    matrix: list[list[float]] = []
    seconds = 0.0
    n_mem = int(round(cfg.batch * cfg.replay_fraction)) if replay else 0
    for k, data in enumerate(tasks):
        started = time.time()

        def draw(step: int, data: TaskData = data) -> tuple[torch.Tensor, torch.Tensor]:
            use_mem = memory is not None and len(memory) > 0
            n_new = cfg.batch - n_mem if use_mem else cfg.batch
            idx = torch.randint(0, data.lr.shape[0], (n_new,), generator=gen)
            x, y = data.lr[idx], data.hr[idx]
            if use_mem:
                assert memory is not None
                mlr, mhr = memory.batch(memory.sample(n_mem, rng))
                x, y = torch.cat([x, to_tensor(mlr)]), torch.cat([y, to_tensor(mhr)])
            return x, y

        fit(model, draw, cfg.steps_per_task, cfg, ewc, f"{learner} task {k + 1}/{len(tasks)}")
        if ewc is not None:
            ewc.consolidate(model, data, cfg.fisher_samples, gen)
        if memory is not None:
            remember(memory, data, cfg.memory_per_task, rng)
        seconds += time.time() - started
        matrix.append([gain(model, d) for d in tasks])
    result: dict[str, Any] = {"initial": initial, "matrix": matrix, "train_seconds": seconds, "model": model}
    if memory is not None:
        result["memory_items"] = len(memory)
        result["memory_per_task"] = {t.task.name: sum(memory.meta(i)["task"] == t.task.name for i in memory.ids())
                                     for t in tasks}
    return result


def run_joint(cfg: ContinualConfig, tasks: list[TaskData]) -> dict[str, Any]:
    """All tasks at once, each batch drawn evenly over the tasks, same total steps."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = initial_model(cfg)
    started = time.time()
    per = [cfg.batch // len(tasks) + (1 if k < cfg.batch % len(tasks) else 0) for k in range(len(tasks))]

    def draw(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.randperm(len(tasks), generator=gen).tolist()  # which tasks get the extra samples
        xs, ys = [], []
        for k, n in zip(order, per):
            if n:
                idx = torch.randint(0, tasks[k].lr.shape[0], (n,), generator=gen)
                xs.append(tasks[k].lr[idx])
                ys.append(tasks[k].hr[idx])
        return torch.cat(xs), torch.cat(ys)

    fit(model, draw, cfg.steps_per_task * len(tasks), cfg, None, "joint")
    seconds = time.time() - started
    final = [gain(model, d) for d in tasks]
    return {"initial": [gain(initial_model(cfg), d) for d in tasks], "final": final, "train_seconds": seconds,
            "model": model}


def sequence_metrics(matrix: list[list[float]], initial: list[float], naive_diag: list[float],
                     min_gain_db: float = 0.0) -> dict[str, Any]:
    """Forgetting, plasticity and transfer from an accuracy matrix R[i][j] (gain on task j after
    training task i). Per-cent figures count the tasks whose reference gain exceeds `min_gain_db`."""
    r = np.asarray(matrix)
    t = r.shape[0]
    final = r[-1]
    drops, drops_pct = [], []
    for j in range(t - 1):
        best = float(r[j:, j].max())
        drops.append(best - float(final[j]))
        # A task never gained on cannot be forgotten in per cent; it still counts in forgetting_db.
        if best > min_gain_db:
            drops_pct.append(100.0 * (best - float(final[j])) / best)
    diag = np.diag(r)
    plasticity = [100.0 * float(d) / float(n) for d, n in zip(diag, naive_diag) if n > min_gain_db]
    best_all = [float(r[j:, j].max()) for j in range(t - 1)]
    return {
        "final_gain_db": float(final.mean()),
        "forgetting_pct": float(np.mean(drops_pct)) if drops_pct else 0.0,
        "forgetting_pct_tasks": drops_pct,
        "forgetting_db": float(np.mean(drops)) if drops else 0.0,
        # Total drop over total best gain: the same idea, weighted by how much each task gained.
        "forgetting_pooled_pct": 100.0 * float(np.sum(drops)) / max(float(np.sum(best_all)), 1e-9) if drops else 0.0,
        "plasticity_pct": float(np.mean(plasticity)) if plasticity else 0.0,
        "plasticity_min_pct": float(np.min(plasticity)) if plasticity else 0.0,
        "plasticity_pct_tasks": plasticity,
        "new_task_gain_db": float(diag.mean()),
        "bwt_db": float(np.mean([final[j] - r[j, j] for j in range(t - 1)])) if t > 1 else 0.0,
        "fwt_db": float(np.mean([r[j - 1, j] - initial[j] for j in range(1, t)])) if t > 1 else 0.0,
    }


def run_benchmark(cfg: ContinualConfig, cache: Path, work: Path) -> tuple[dict[str, Any], dict[str, nn.Module]]:
    """Runs every configured learner; returns the report and the final models."""
    torch.set_num_threads(cfg.threads)
    started = time.time()
    tasks = prepare(cfg, cache)
    runs: dict[str, dict[str, Any]] = {}
    for learner in tqdm([l for l in cfg.learners if l != "joint"], desc="learners", unit="learner"):
        runs[learner] = run_sequential(learner, cfg, tasks, work)
    naive_diag = list(np.diag(np.asarray(runs["naive"]["matrix"])))
    report: dict[str, Any] = {
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "tasks": [{"name": d.task.name, "train_clips": [c.path for c in train_clips(d.task.content)],
                   "eval_clip": eval_clip(d.task.content).path, "train_pairs": int(d.lr.shape[0]),
                   "eval_frames": int(d.eval_lr.shape[0]), "eval_lr_size": list(d.eval_lr.shape[1:]),
                   "bicubic_psnr_y": d.bicubic_psnr} for d in tasks],
        "learners": {},
    }
    models: dict[str, nn.Module] = {}
    for learner, run in runs.items():
        entry = sequence_metrics(run["matrix"], run["initial"], naive_diag, cfg.min_gain_db)
        entry.update({"matrix": run["matrix"], "initial": run["initial"], "train_seconds": run["train_seconds"]})
        for key in ("memory_items", "memory_per_task"):
            if key in run:
                entry[key] = run[key]
        report["learners"][learner] = entry
        models[learner] = run["model"]
    if "joint" in cfg.learners:
        joint = run_joint(cfg, tasks)
        report["learners"]["joint"] = {
            "final_gain_db": float(np.mean(joint["final"])), "final": joint["final"], "initial": joint["initial"],
            "train_seconds": joint["train_seconds"],
        }
        models["joint"] = joint["model"]
        for entry in report["learners"].values():
            entry["gap_to_joint_db"] = report["learners"]["joint"]["final_gain_db"] - entry["final_gain_db"]
    report["seconds"] = time.time() - started
    return report, models


def plot(report: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Accuracy-matrix heat maps and the gain over time, as PNG beside the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t["name"] for t in report["tasks"]]
    seq = {k: v for k, v in report["learners"].items() if "matrix" in v}
    t = len(names)
    mats = {k: np.asarray(v["matrix"]) for k, v in seq.items()}
    lim = max(float(np.abs(m).max()) for m in mats.values()) or 1.0
    fig, axes = plt.subplots(1, len(mats), figsize=(4.2 * len(mats), 4.6), squeeze=False)
    for ax, (learner, m) in zip(axes[0], mats.items()):
        im = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim)
        ax.set_title(f"{learner}\nforgetting {seq[learner]['forgetting_pct']:.1f}%, final {seq[learner]['final_gain_db']:+.2f} dB",
                     fontsize=9)
        ax.set_xlabel("evaluated task")
        ax.set_ylabel("after training task")
        ax.set_xticks(range(t), [str(i + 1) for i in range(t)])
        ax.set_yticks(range(t), [str(i + 1) for i in range(t)])
        if t <= 10:
            for i in range(t):
                for j in range(t):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5.5)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="PSNR-Y gain over Catmull-Rom (dB)")
    fig.text(0.01, 0.01, "tasks: " + "; ".join(f"{i + 1} {n}" for i, n in enumerate(names)), fontsize=6, wrap=True)
    heat = out_dir / f"{stem}-matrix.png"
    fig.savefig(heat, dpi=130)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(1, t + 1)
    for learner, m in mats.items():
        seen = [float(m[i, : i + 1].mean()) for i in range(t)]
        a1.plot(x, seen, marker="o", label=learner)
        a2.plot(x, m[:, 0], marker="o", label=learner)
    if "joint" in report["learners"]:
        a1.axhline(report["learners"]["joint"]["final_gain_db"], color="k", ls="--", label="joint (all tasks, final)")
    a1.set_title("mean gain over the tasks seen so far")
    a2.set_title(f"gain on task 1 ({names[0]}) as training goes on")
    for a in (a1, a2):
        a.set_xlabel("after training task")
        a.set_ylabel("PSNR-Y gain (dB)")
        a.set_xticks(x)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    over_time = out_dir / f"{stem}-gain-over-time.png"
    fig.savefig(over_time, dpi=130)
    plt.close(fig)
    return [heat, over_time]


def summary_table(report: dict[str, Any]) -> str:
    lines = ["| learner | final gain (dB) | forgetting (%) | pooled forgetting (%) | forgetting (dB) | plasticity (%) | "
             "min plasticity (%) | BWT (dB) | FWT (dB) | gap to joint (dB) | train time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in report["learners"].items():
        def f(key: str, fmt: str) -> str:
            return format(e[key], fmt) if key in e else "-"
        lines.append(f"| {name} | {f('final_gain_db', '+.3f')} | {f('forgetting_pct', '.1f')} | {f('forgetting_pooled_pct', '.1f')} | {f('forgetting_db', '.3f')} | "
                     f"{f('plasticity_pct', '.0f')} | {f('plasticity_min_pct', '.0f')} | {f('bwt_db', '+.3f')} | "
                     f"{f('fwt_db', '+.3f')} | {f('gap_to_joint_db', '+.3f')} | {f('train_seconds', '.0f')} |")
    return "\n".join(lines)

