"""Training from a frame pack, on whatever device there is (CUDA when present, else CPU).

The pack's crops stay on the device as uint8; each step gathers random aligned (LR, HR) patches
from them in one indexing operation, so a GPU is not starved by a Python data loader. A run can
be sized in steps (reproducible anywhere) or in minutes (steps fixed after timing the first ones,
then recorded). The product is a weights file holding everything `nerve-learn finish` needs to
export, evaluate and register the model where ffmpeg is available.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .export import student_from_onnx
from .model import Student, Teacher
from ..data.pack import Pack, matlab_downscale


@dataclass
class PackTrainConfig:
    scale: int = 4
    rungs: str = "codecs"  # "codecs": every decoded rung in the pack; "bi": MATLAB bicubic only
    exclude: tuple[str, ...] = ()  # clip paths (substrings) left out of this run
    channels: int = 16
    depth: int = 2
    steps: int = 20000
    minutes: float = 0.0  # > 0: size the run by time instead of `steps`
    batch: int = 64
    patch_lr: int = 48
    lr: float = 5e-4
    teacher_channels: int = 48
    teacher_blocks: int = 6
    teacher_steps: int = 0
    teacher_minutes: float = 0.0
    distill: float = 0.5
    frames: int = 1  # 2: temporal student (previous, current); needs a pack made with `previous`
    rep: bool = False  # train each conv as a re-parameterisable EdgeConv (deployed plain)
    block: int = 1  # 2: space-to-depth student (see model.Student)
    loss: str = "l1"  # "l2": mean squared error, PSNR's own measure (a last fine-tuning stage)
    # Weight of an L1 term on the differences between neighbouring pixels (horizontal and
    # vertical): the pixel loss alone averages detail it is unsure of into blur, which VMAF's
    # detail features (and VMAF NEG's) score as loss; 0 turns it off.
    edge: float = 0.0
    init: str = ""  # a train-pack weights file of the same architecture to start from (fine-tuning)
    # Steps of linear learning-rate warm-up before the cosine schedule: Adam's first steps on a
    # student that starts as the bicubic upscale push its ReLUs off (see `Student.relu_init`).
    warmup: int = 0
    seed: int = 0
    device: str = "auto"
    threads: int = 2


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class PatchSampler:
    """Random aligned patches: LR (B,F,p,p) (F = `frames`: previous then current) and HR of the
    current frame (B,1,p*s,p*s), floats in 0..1."""

    def __init__(self, pack: Pack, cfg: PackTrainConfig, device: torch.device) -> None:
        keep = [i for i in range(len(pack.hr)) if not any(e in pack.clips()[pack.clip[i]] for e in cfg.exclude)]
        if not keep:
            raise ValueError("every clip of the pack is excluded")
        if cfg.frames == 2 and pack.hr_prev is None:
            raise ValueError("a temporal student needs a pack made with previous frames (nerve-learn pack --previous)")
        s = cfg.scale
        self.scale, self.device, self.frames = s, device, cfg.frames
        self.hr = torch.from_numpy(pack.hr[keep]).to(device)
        self.valid = torch.from_numpy(pack.valid[keep].astype("int64")).to(device)
        self.lr = self._rungs(self.hr, pack.lr, f"lr/x{s}/", keep, cfg)  # (R, N, h, w)
        self.prev = None
        if cfg.frames == 2:
            assert pack.hr_prev is not None
            self.prev = self._rungs(torch.from_numpy(pack.hr_prev[keep]).to(device), pack.prev, f"prev/x{s}/", keep, cfg)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def _rungs(self, hr: torch.Tensor, stored: dict, prefix: str, keep: list[int], cfg: PackTrainConfig) -> torch.Tensor:
        if cfg.rungs == "bi":
            return torch.cat([matlab_downscale(hr[i : i + 64].float(), self.scale) for i in range(0, len(keep), 64)]).to(torch.uint8)[None]
        names = sorted(k for k in stored if k.startswith(prefix))
        if not names:
            raise ValueError(f"the pack has no {prefix} rungs")
        return torch.stack([torch.from_numpy(stored[k][keep]).to(self.device) for k in names])

    def draw(self, batch: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, dev, g = self.scale, self.device, self.gen
        r = torch.randint(0, self.lr.shape[0], (batch,), device=dev, generator=g)
        i = torch.randint(0, self.hr.shape[0], (batch,), device=dev, generator=g)
        room = self.valid[i] // s - p + 1
        ly = (torch.rand(batch, device=dev, generator=g) * room).long()
        lx = (torch.rand(batch, device=dev, generator=g) * room).long()
        ar = torch.arange(p, device=dev)
        yy, xx = (ly[:, None] + ar)[:, :, None], (lx[:, None] + ar)[:, None, :]
        x = self.lr[r[:, None, None], i[:, None, None], yy, xx][:, None]
        if self.prev is not None:  # the same rung and region of the frame before
            x = torch.cat([self.prev[r[:, None, None], i[:, None, None], yy, xx][:, None], x], 1)
        ah = torch.arange(p * s, device=dev)
        hy, hx = (ly[:, None] * s + ah)[:, :, None], (lx[:, None] * s + ah)[:, None, :]
        y = self.hr[i[:, None, None], hy, hx]
        return x.float() / 255.0, y[:, None].float() / 255.0


def fit(model: nn.Module, sampler: PatchSampler, cfg: PackTrainConfig, steps: int, minutes: float, desc: str,
        teacher: nn.Module | None = None, start: dict | None = None) -> tuple[nn.Module, dict]:
    """L1 (or L2) to the original (+ `distill` x L1 to the teacher); returns the model and a record.
    `start`: weights to begin from (else the initialisation)."""
    dev = sampler.device
    model.to(dev).train()
    if minutes > 0:
        # Time a few steps, then fix the step count so the cosine schedule ends on the budget.
        probe = 50
        _loop(model, sampler, cfg, probe, probe, teacher, None, desc + " (timing)")
        if dev.type == "cuda":
            torch.cuda.synchronize()
        started = time.time()
        _loop(model, sampler, cfg, probe, probe, teacher, None, desc + " (timing)")
        if dev.type == "cuda":
            torch.cuda.synchronize()
        per_step = (time.time() - started) / probe
        steps = max(100, int(minutes * 60 / per_step))
        if start is None:  # restart from the initialisation: timing steps do not count
            for m in model.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
            model.zero_tail()
    if start is not None:
        model.load_state_dict(start)
    elif isinstance(model, Student):  # from random weights
        model.relu_init()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    warm, span = min(cfg.warmup, steps), max(steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm if warm else 1.0) * 0.5 * (1 + math.cos(math.pi * min(i, span) / span)))
    started = time.time()
    loss = _loop(model, sampler, cfg, steps, steps, teacher, (opt, sched), desc)
    return model, {"steps": steps, "seconds": time.time() - started, "final_loss": loss, "device": str(dev)}


def _loop(model: nn.Module, sampler: PatchSampler, cfg: PackTrainConfig, steps: int, total: int,
          teacher: nn.Module | None, optim: tuple | None, desc: str) -> float:
    if optim is None:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        sched = None
    else:
        opt, sched = optim
    loss_value = 0.0
    bar = tqdm(range(steps), desc=desc, unit="step", mininterval=5.0)
    for step in bar:
        x, y = sampler.draw(cfg.batch, cfg.patch_lr)
        if step % 2:
            x, y = x.flip(-1), y.flip(-1)
        if step % 3 == 0:
            x, y = x.transpose(-1, -2), y.transpose(-1, -2)
        out = model(x)
        loss = nn.functional.mse_loss(out, y) if cfg.loss == "l2" else nn.functional.l1_loss(out, y)
        if cfg.edge > 0:
            loss = loss + cfg.edge * edge_loss(out, y)
        if teacher is not None and cfg.distill > 0:
            with torch.no_grad():
                target = teacher(x[:, -1:])
            loss = loss + cfg.distill * nn.functional.l1_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if step % 500 == 0:
            loss_value = float(loss.item())
            bar.set_postfix(loss=f"{loss_value:.4f}")
    return loss_value


def edge_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and between the vertical neighbour differences of two images."""
    dx = nn.functional.l1_loss(out[..., :, 1:] - out[..., :, :-1], y[..., :, 1:] - y[..., :, :-1])
    dy = nn.functional.l1_loss(out[..., 1:, :] - out[..., :-1, :], y[..., 1:, :] - y[..., :-1, :])
    return dx + dy


def train_from_pack(pack: Pack, cfg: PackTrainConfig, out: Path) -> Path:
    """Teacher (optional) then student; writes a weights file with its configuration."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    dev = pick_device(cfg.device)
    if cfg.loss not in ("l1", "l2"):
        raise ValueError(f"loss {cfg.loss!r}: l1 or l2")
    if cfg.edge < 0:
        raise ValueError(f"edge weight {cfg.edge}: 0 (off) or more")
    start = _init_state(cfg) if cfg.init else None  # checked before any training
    sampler = PatchSampler(pack, cfg, dev)
    record: dict = {"config": asdict(cfg), "pack": pack.meta["config"], "clips": [c for c in pack.clips() if not any(e in c for e in cfg.exclude)]}
    teacher = None
    if cfg.teacher_steps or cfg.teacher_minutes:
        teacher, t_rec = fit(Teacher(cfg.scale, cfg.teacher_channels, cfg.teacher_blocks), sampler, cfg,
                             cfg.teacher_steps, cfg.teacher_minutes, f"teacher x{cfg.scale}")
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        record["teacher"] = t_rec
        record["teacher_state"] = {k: v.cpu() for k, v in teacher.state_dict().items()}
    if cfg.init:
        record["init"] = {"path": cfg.init}
    else:
        record["start"] = "random weights, hidden layers He-initialised (Student.relu_init)"
    student, s_rec = fit(Student(cfg.scale, cfg.channels, cfg.depth, cfg.frames, cfg.rep, cfg.block), sampler, cfg, cfg.steps, cfg.minutes,
                         f"student x{cfg.scale}", teacher, start)
    record["student"] = s_rec
    record["state"] = {k: v.cpu() for k, v in student.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, out)
    return out


ARCHITECTURE = ("scale", "channels", "depth", "frames", "rep", "block")


def _init_state(cfg: PackTrainConfig) -> dict:
    """The weights of `cfg.init`: a train-pack weights file or an exported student (.onnx) of
    the same architecture, or of a smaller depth - that one is then grown with identity layers
    (`Student.deepened`) and, for `rep`, re-parameterised (`Student.as_rep`) without changing
    what it computes, so a trained or shipped model can be given more layers and fine-tuned."""
    ours = {k: getattr(cfg, k) for k in ARCHITECTURE}
    if cfg.init.endswith(".onnx"):
        base = student_from_onnx(Path(cfg.init))
    else:
        record = torch.load(cfg.init, map_location="cpu", weights_only=False)
        if "state" not in record or "config" not in record:
            raise ValueError(f"{cfg.init}: not a train-pack weights file")
        theirs = {k: record["config"].get(k, PackTrainConfig.__dataclass_fields__[k].default) for k in ARCHITECTURE}
        if theirs == ours:
            return record["state"]  # the same student, re-parameterised branches included
        base, _ = load_student(Path(cfg.init))
    same = all(getattr(base, k) == ours[k] for k in ARCHITECTURE if k not in ("depth", "rep"))
    if not same or base.depth > cfg.depth:
        raise ValueError(f"{cfg.init} is a different student: {base.shape()}, this run trains {ours}")
    grown = base.deepened(cfg.depth) if cfg.depth > base.depth else base
    return (grown.as_rep() if cfg.rep else grown).state_dict()


def load_student(path: Path) -> tuple[Student, dict]:
    """The deployable student of a weights file (re-parameterised blocks merged) and its record."""
    record = torch.load(path, map_location="cpu", weights_only=False)
    cfg = record["config"]
    model = Student(cfg["scale"], cfg["channels"], cfg["depth"], cfg.get("frames", 1), cfg.get("rep", False), cfg.get("block", 1))
    model.load_state_dict(record["state"])
    return model.plain().eval(), record
