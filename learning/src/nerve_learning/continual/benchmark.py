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

import copy
import hashlib
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

from ..data.clips import EVAL, TRAIN, Clip, data_root
from ..data.dataset import PairConfig, build_pairs, eval_frames
from ..data.degrade import Codec, degrade, read_luma
from ..sr.export import load_onnx_weights
from ..data.memory import EpisodicMemory, MemoryConfig, patch_stats
from ..metrics import psnr
from ..sr.model import Student
from ..sr.train import to_tensor, upscale

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
    # "base": a base model trained first on content no task uses (`base_content`, e.g. the film
    # clip), so no learner starts cold and no task's frames were seen before; "scratch"; or the
    # path of an exported Student (ONNX) to start from.
    start: str = "base"
    base_content: str = "film"
    base_codec: str = "x264"
    base_crf: int = 28
    base_steps: int = 1500
    steps_per_task: int = 800
    batch: int = 32
    lr: float = 5e-4
    threads: int = 1
    seed: int = 0
    # Each training clip of a task is read as `frames_per_clip` frames, every `frame_step`-th
    # (the codec sees them as one stream). The last `heldout_frames` of them are the task's
    # held-out frames; training patches come from the frames before, less one frame of gap.
    patch_lr: int = 32
    frames_per_clip: int = 32
    frame_step: int = 4
    heldout_frames: int = 2
    patches_per_frame: int = 16
    eval_crop: int = 192  # centre crop (LR pixels) of each held-out frame
    # The clips.EVAL clip of each task's content (another recording), final models only
    clip_eval_frames: int = 4
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
    if raw.get("start", "base") not in ("base", "scratch"):
        raw["start"] = str((path.parent / raw["start"]).resolve())  # relative to the config file
    return replace(base, memory=memory, **raw)


@dataclass
class TaskData:
    task: Task
    lr: torch.Tensor  # (N,1,p,p) training pairs
    hr: torch.Tensor
    lr_u8: np.ndarray
    hr_u8: np.ndarray
    held: list[tuple[np.ndarray, np.ndarray, float]]  # per training clip: held-out (lr, hr), Catmull-Rom PSNR-Y
    other_clip: tuple[np.ndarray, np.ndarray, float]  # the clips.EVAL clip of the content, same codec


def centre_crop(lr: np.ndarray, hr: np.ndarray, side: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    _, h, w = lr.shape
    ch, cw = min(side, h), min(side, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    return (np.ascontiguousarray(lr[:, y : y + ch, x : x + cw]),
            np.ascontiguousarray(hr[:, y * scale : (y + ch) * scale, x * scale : (x + cw) * scale]))


def task_pairs(cfg: ContinualConfig, task: Task, cache: Path) -> dict[str, np.ndarray]:
    """Training pairs and held-out frames of one task, cached: per training clip, frames read as
    one stream through the task's codec, split by frame range into training and held-out."""
    text = json.dumps([asdict(task), cfg.scale, cfg.frames_per_clip, cfg.frame_step, cfg.heldout_frames,
                       cfg.patch_lr, cfg.patches_per_frame, cfg.eval_crop, cfg.seed,
                       [c.path for c in train_clips(task.content)]])
    path = cache / f"continual-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    rng = np.random.default_rng(cfg.seed)
    codec = Codec(task.codec, task.crf)
    p, s = cfg.patch_lr, cfg.scale
    lrs, hrs = [], []
    out: dict[str, np.ndarray] = {}
    for k, clip in enumerate(train_clips(task.content)):
        hr = read_luma(clip, data_root(), s, cfg.frames_per_clip, cfg.frame_step)
        lr = degrade(hr, s, codec, clip.fps)
        n = len(lr)
        train_end = n - cfg.heldout_frames - 1
        if train_end < 1:
            raise ValueError(f"{clip.path}: {n} frames read, too few for {cfg.heldout_frames} held-out frames")
        out[f"held_lr_{k}"], out[f"held_hr_{k}"] = centre_crop(lr[n - cfg.heldout_frames:], hr[n - cfg.heldout_frames:],
                                                               cfg.eval_crop, s)
        _, lh, lw = lr.shape
        for f in range(train_end):
            ys = rng.integers(0, lh - p + 1, cfg.patches_per_frame)
            xs = rng.integers(0, lw - p + 1, cfg.patches_per_frame)
            for y, x in zip(ys, xs):
                lrs.append(lr[f, y : y + p, x : x + p])
                hrs.append(hr[f, y * s : (y + p) * s, x * s : (x + p) * s])
    out["lr"], out["hr"] = np.stack(lrs), np.stack(hrs)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
    return out


def prepare(cfg: ContinualConfig, cache: Path) -> list[TaskData]:
    """Training pairs and held-out frames of every task."""
    bicubic = Student(cfg.scale).upscale
    out = []
    for task in tqdm(cfg.tasks, desc="tasks: pairs and held-out frames", unit="task"):
        z = task_pairs(cfg, task, cache)
        held = []
        for k in range(len(train_clips(task.content))):
            hlr, hhr = z[f"held_lr_{k}"], z[f"held_hr_{k}"]
            held.append((hlr, hhr, psnr(upscale(bicubic, hlr), hhr)))
        (_, elr, ehr), = eval_frames(cfg.scale, Codec(task.codec, task.crf), cfg.clip_eval_frames,
                                     clips=(eval_clip(task.content),))
        elr, ehr = centre_crop(elr, ehr, cfg.eval_crop, cfg.scale)
        out.append(TaskData(task, to_tensor(z["lr"]), to_tensor(z["hr"]), z["lr"], z["hr"], held,
                            (elr, ehr, psnr(upscale(bicubic, elr), ehr))))
    return out


def gain(model: nn.Module, data: TaskData) -> float:
    """PSNR-Y gain (dB) over the Catmull-Rom upscale on the task's held-out frames, averaged over
    its clips."""
    return float(np.mean([psnr(upscale(model, lr), hr) - bic for lr, hr, bic in data.held]))


def other_clip_gain(model: nn.Module, data: TaskData) -> float:
    """The same on the clips.EVAL clip of the task's content (a recording no task trains on)."""
    lr, hr, bic = data.other_clip
    return psnr(upscale(model, lr), hr) - bic


def base_model(cfg: ContinualConfig, cache: Path) -> Student:
    """The starting point of every learner with `start = "base"`: `base_steps` on the
    `base_content` clips (cached)."""
    pairs = PairConfig(scale=cfg.scale, codecs=(Codec(cfg.base_codec, cfg.base_crf),), patch_lr=cfg.patch_lr,
                       clips=train_clips(cfg.base_content), seed=cfg.seed)
    key = hashlib.sha256(json.dumps([pairs.key(), cfg.channels, cfg.depth, cfg.base_steps, cfg.batch, cfg.lr,
                                     cfg.seed]).encode()).hexdigest()[:16]
    path = cache / f"continual-base-{key}.pt"
    model = Student(cfg.scale, cfg.channels, cfg.depth)
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model
    lr, hr = build_pairs(pairs, cache)
    lr_t, hr_t = to_tensor(lr), to_tensor(hr)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    def draw(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, lr_t.shape[0], (cfg.batch,), generator=gen)
        return lr_t[idx], hr_t[idx]

    fit(model, draw, cfg.base_steps, cfg, None, f"base model ({cfg.base_content})")
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def initial_model(cfg: ContinualConfig, cache: Path) -> Student:
    if cfg.start == "base":
        return base_model(cfg, cache)
    model = Student(cfg.scale, cfg.channels, cfg.depth)
    if cfg.start != "scratch":
        load_onnx_weights(model, Path(cfg.start))
    return model


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


def run_sequential(learner: str, cfg: ContinualConfig, tasks: list[TaskData], start: Student,
                   work: Path) -> dict[str, Any]:
    """Trains one learner through the task sequence; returns its accuracy matrix and timings."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = copy.deepcopy(start)
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
    result: dict[str, Any] = {"initial": initial, "matrix": matrix, "train_seconds": seconds, "model": model,
                              "other_clip_final": [other_clip_gain(model, d) for d in tasks]}
    if memory is not None:
        result["memory_items"] = len(memory)
        result["memory_per_task"] = {t.task.name: sum(memory.meta(i)["task"] == t.task.name for i in memory.ids())
                                     for t in tasks}
    return result


def run_joint(cfg: ContinualConfig, tasks: list[TaskData], start: Student) -> dict[str, Any]:
    """All tasks at once, each batch drawn evenly over the tasks, same total steps."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = copy.deepcopy(start)
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
    return {"initial": [gain(start, d) for d in tasks], "final": final, "train_seconds": seconds, "model": model,
            "other_clip_final": [other_clip_gain(model, d) for d in tasks]}


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
    start = initial_model(cfg, cache)
    runs: dict[str, dict[str, Any]] = {}
    for learner in tqdm([l for l in cfg.learners if l != "joint"], desc="learners", unit="learner"):
        runs[learner] = run_sequential(learner, cfg, tasks, start, work)
    naive_diag = list(np.diag(np.asarray(runs["naive"]["matrix"])))
    report: dict[str, Any] = {
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "tasks": [{"name": d.task.name, "train_clips": [c.path for c in train_clips(d.task.content)],
                   "eval_clip": eval_clip(d.task.content).path, "train_pairs": int(d.lr.shape[0]),
                   "heldout_frames": [int(h[0].shape[0]) for h in d.held],
                   "heldout_lr_size": [list(h[0].shape[1:]) for h in d.held],
                   "bicubic_psnr_y": [h[2] for h in d.held], "eval_clip_bicubic_psnr_y": d.other_clip[2],
                   } for d in tasks],
        "other_clip_initial": [other_clip_gain(start, d) for d in tasks],
        "learners": {},
    }
    models: dict[str, nn.Module] = {}
    for learner, run in runs.items():
        entry = sequence_metrics(run["matrix"], run["initial"], naive_diag, cfg.min_gain_db)
        entry.update({"matrix": run["matrix"], "initial": run["initial"], "train_seconds": run["train_seconds"]})
        for key in ("memory_items", "memory_per_task", "other_clip_final"):
            if key in run:
                entry[key] = run[key]
        report["learners"][learner] = entry
        models[learner] = run["model"]
    if "joint" in cfg.learners:
        joint = run_joint(cfg, tasks, start)
        report["learners"]["joint"] = {
            "final_gain_db": float(np.mean(joint["final"])), "final": joint["final"], "initial": joint["initial"],
            "train_seconds": joint["train_seconds"], "other_clip_final": joint["other_clip_final"],
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
    fig, axes = plt.subplots(1, len(mats), figsize=(3.9 * len(mats) + 1.2, 4.8), squeeze=False, layout="constrained")
    for ax, (learner, m) in zip(axes[0], mats.items()):
        im = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim)
        ax.set_title(f"{learner}\nforgetting {seq[learner]['forgetting_pct']:.1f}%, final {seq[learner]['final_gain_db']:+.2f} dB",
                     fontsize=9)
        ax.set_xlabel("evaluated task")
        if ax is axes[0][0]:
            ax.set_ylabel("after training task")
        ax.set_xticks(range(t), [str(i + 1) for i in range(t)])
        ax.set_yticks(range(t), [str(i + 1) for i in range(t)])
        if t <= 10:
            for i in range(t):
                for j in range(t):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=5.5)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="PSNR-Y gain over Catmull-Rom (dB)")
    fig.suptitle("gain on each task's held-out frames after each task; tasks: "
                 + "; ".join(f"{i + 1} {n}" for i, n in enumerate(names)), fontsize=7)
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



def markdown(report: dict[str, Any]) -> str:
    """The generated part of the write-up: settings, tasks, the summary and per-task tables."""
    cfg = report["config"]
    names = [t["name"] for t in report["tasks"]]
    lines = [
        "# Continual-learning benchmark (generated)",
        "",
        f"Regenerate: `{report.get('command', 'nerve-learn continual')}` ({report['seconds'] / 60:.1f} min on this machine).",
        "",
        f"Student {cfg['channels']} channels x {cfg['depth']} hidden layers, x{cfg['scale']}; start: `{Path(cfg['start']).name}`; "
        f"{cfg['steps_per_task']} steps of {cfg['batch']} {cfg['patch_lr']}-px LR patches per task, Adam {cfg['lr']}, cosine "
        f"per task; replay: {cfg['replay_fraction']:.0%} of each batch from an episodic memory of {cfg['memory']['capacity']} "
        f"pairs ({cfg['memory']['eviction']} eviction balanced by {cfg['memory']['balance']}, {cfg['memory']['sampling']} "
        f"sampling), {cfg['memory_per_task']} pairs offered per finished task; EWC lambda {cfg['ewc_lambda']} "
        f"(Fisher normalised to mean 1, {cfg['fisher_samples']} samples per task). Per-cent metrics leave out tasks whose "
        f"reference gain is below {cfg['min_gain_db']} dB.",
        "",
        summary_table(report),
        "",
        "## Tasks",
        "",
        "| # | task | training clips (clips.TRAIN) | training pairs | held-out frames per clip (LR crop) | "
        "Catmull-Rom PSNR-Y per clip | other recording (clips.EVAL) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(report["tasks"]):
        sizes = ", ".join(f"{n} x {w}x{h}" for n, (h, w) in zip(t["heldout_frames"], t["heldout_lr_size"]))
        lines.append(f"| {i + 1} | {t['name']} | {', '.join(Path(c).name for c in t['train_clips'])} | "
                     f"{t['train_pairs']} | {sizes} | {', '.join(f'{b:.2f}' for b in t['bicubic_psnr_y'])} | "
                     f"{Path(t['eval_clip']).name} |")
    lines += ["", "## Final gain per task (dB over Catmull-Rom), and each task's gain right after it was learned", "",
              "| learner | " + " | ".join(str(i + 1) for i in range(len(names))) + " |",
              "|---|" + "---|" * len(names)]
    for learner, e in report["learners"].items():
        final = e["matrix"][-1] if "matrix" in e else e["final"]
        lines.append(f"| {learner} final | " + " | ".join(f"{g:+.2f}" for g in final) + " |")
        if "matrix" in e:
            lines.append(f"| {learner} just learned | " + " | ".join(f"{e['matrix'][i][i]:+.2f}" for i in range(len(names))) + " |")
    lines.append("| start model | " + " | ".join(f"{g:+.2f}" for g in report["learners"]["naive"]["initial"]) + " |")
    lines += ["", "## Final models on the other recording of each task's content (clips.EVAL, same codec)", "",
              "Not part of the protocol (no learner sees these clips or is selected on them): how the final "
              "models carry over to a different recording of the same content.", "",
              "| learner | " + " | ".join(str(i + 1) for i in range(len(names))) + " | mean |",
              "|---|" + "---|" * (len(names) + 1)]
    for learner, e in report["learners"].items():
        g = e["other_clip_final"]
        lines.append(f"| {learner} | " + " | ".join(f"{x:+.2f}" for x in g) + f" | {np.mean(g):+.3f} |")
    g = report["other_clip_initial"]
    lines.append("| start model | " + " | ".join(f"{x:+.2f}" for x in g) + f" | {np.mean(g):+.3f} |")
    if "export" in report:
        ex = report["export"]
        lines += ["", "## Exported student", "",
                  f"`{ex['onnx']}` ({ex['learner']}), {ex['parameters']} parameters, {ex['macs_per_pixel']} MACs per LR pixel, "
                  f"sha256 `{ex['sha256']}`."]
        if "fps_model_only" in ex:
            start_fps = (f", shipped nerve-sr-x2 {ex['shipped_fps_model_only']:.1f} fps"
                         if "shipped_fps_model_only" in ex else "")
            lines.append(f"Speed: {ex['fps_model_only']:.1f} fps{start_fps} ({ex['fps_note']}, measured in the same run).")
    lines.append("")
    return "\n".join(lines)
