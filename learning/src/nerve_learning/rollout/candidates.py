"""Real candidate models for a rollout, made by the project's own training code and measured.

- *good*: the champion fine-tuned (the on-device trainer's `finetune`: replay of the original
  training pairs, letterbox/pillarbox bar rehearsal) on the fleet's content type, from frames of
  its clips the fleet does not watch in the rollout;
- *bad*: the champion fine-tuned on the wrong data: clean bicubic pairs (no codec) of another
  content type, no replay, a large step. It unlearns the codec's artefacts, so it loses on what
  the fleet really watches (coded rungs).

Both are scored on the fleet's content (frames they were not trained on, the fleet's rung: x264
at the device's CRF), PSNR-Y against the real frame, beside the champion: the dB they are said to
gain or lose are measured, not set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.clips import TRAIN, Clip, data_root
from ..data.dataset import PairConfig, build_pairs
from ..data.degrade import Codec, degrade, read_luma
from ..metrics import psnr
from .content import ContentSpec

# PyTorch and the trainers are imported where they are used: a pipeline resumed after its training
# step (pipeline.py imports this module) starts in a fraction of the time without them.


def _frames(spec: ContentSpec, scale: int, root: Path) -> list[np.ndarray]:
    out = []
    for clip, first, count, step in spec.clips:
        hr = read_luma(clip, root, scale, first + count * step, 1)[first::step][:count]
        out.append(hr)
    return out


def patches(spec: ContentSpec, scale: int, codec: Codec, patch_lr: int, per_frame: int, seed: int,
            bars: float = 0.0, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lr, hr) patch pairs of the spec's frames. Whole frames go through the codec, as in a
    stream, then aligned patches are cut (patches coded as a sequence of unrelated pictures come
    out coded differently: a model tuned only on those lost 0.13 to 0.15 dB on two of the fleet's
    Big Buck Bunny segments). A `bars` share of the patches also comes as a copy with a
    letterbox/pillarbox bar (`with_bar`: the on-device trainer's bar rehearsal; played video has
    bars and a fine-tune without them forgets them: Sintel -1.3 dB), those coded together as a
    short video, as the on-device trainer codes harvested patches.
    `codec.name == "none"`: a clean bicubic downscale."""
    from ..ondevice.local_trainer import with_bar

    root = root or data_root()
    rng = np.random.default_rng(seed)
    lrs, hrs, barred = [], [], []
    for hr in _frames(spec, scale, root):
        lr = degrade(hr, scale, codec)
        _, lh, lw = lr.shape
        for f in range(len(hr)):
            for _ in range(per_frame):
                y, x = int(rng.integers(0, lh - patch_lr + 1)), int(rng.integers(0, lw - patch_lr + 1))
                lrs.append(lr[f, y : y + patch_lr, x : x + patch_lr])
                hrs.append(hr[f, y * scale : (y + patch_lr) * scale, x * scale : (x + patch_lr) * scale])
                if bars > 0 and rng.random() < bars:
                    barred.append(with_bar(hrs[-1], rng))
    if barred:
        stack = np.stack(barred)
        lrs.extend(degrade(stack, scale, codec))
        hrs.extend(stack)
    return np.stack(lrs), np.stack(hrs)


def score_frames(onnx_paths: dict[str, Path], spec: ContentSpec, scale: int, codec: Codec,
                 root: Path | None = None) -> dict[str, Any]:
    """PSNR-Y of whole frames (one MSE per clip over all its frames, then the mean over clips)
    for each model, and bicubic; per clip beside the mean."""
    import torch

    from ..ondevice.local_trainer import predict
    from ..sr.export import student_from_onnx

    root = root or data_root()
    models = {name: student_from_onnx(p) for name, p in onnx_paths.items()}
    per_clip: dict[str, dict[str, float]] = {}
    for (clip, *_), hr in zip(spec.clips, _frames(spec, scale, root)):
        lr = degrade(hr, scale, codec)
        row = {name: psnr(predict(m, lr, batch=4), hr) for name, m in models.items()}
        up = torch.nn.functional.interpolate(torch.from_numpy(lr.astype(np.float32))[:, None], scale_factor=scale,
                                             mode="bicubic", align_corners=False)
        row["bicubic"] = psnr(np.clip(up[:, 0].numpy() + 0.5, 0, 255).astype(np.uint8), hr)
        per_clip[clip.path] = row
    names = list(models) + ["bicubic"]
    mean = {n: float(np.mean([r[n] for r in per_clip.values()])) for n in names}
    median = {n: float(np.median([r[n] for r in per_clip.values()])) for n in names}
    return {"per_clip": per_clip, "mean": mean, "median": median}


@dataclass
class CandidateConfig:
    scale: int = 2
    steps: int = 1000
    bad_steps: int = 600
    batch: int = 16
    lr: float = 2e-3
    # bar rehearsal: 0.5 (the on-device trainer's default) lost 0.13 to 0.2 dB on two of the fleet's
    # Big Buck Bunny segments, 0.15 keeps them within 0.05 dB and still gains +1 to +3.5 dB on Sintel
    bars: float = 0.15
    bad_lr_factor: float = 2.0  # the bad candidate's step, times `lr`
    rung: Codec = Codec("x264", 28)  # the fleet's rung: what devices decode and upscale
    patch_lr: int = 32
    per_frame: int = 24
    threads: int = 1
    seed: int = 0
    replay_clips: tuple[Clip, ...] = field(default_factory=lambda: TRAIN[:4])


def _replay(cfg: CandidateConfig, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    pc = PairConfig(scale=cfg.scale, codecs=(cfg.rung,), frames_per_clip=3, frame_step=5, patch_lr=cfg.patch_lr,
                    patches_per_frame=16, clips=cfg.replay_clips)
    return build_pairs(pc, cache)


def train_good(champion: Path, content: ContentSpec, out: Path, cfg: CandidateConfig, cache: Path) -> Path:
    """The champion fine-tuned on the fleet's content type (coded rungs, replay, bars)."""
    new = patches(content, cfg.scale, cfg.rung, cfg.patch_lr, cfg.per_frame, cfg.seed, bars=cfg.bars)
    return train_on_pairs(champion, new, out, cfg, cache)


def train_on_pairs(champion: Path, new: tuple[np.ndarray, np.ndarray], out: Path, cfg: CandidateConfig,
                   cache: Path) -> Path:
    """The good candidate's fine-tune on given (lr, hr) pairs of the fleet's content."""
    import torch

    from ..ondevice.local_trainer import LocalTrainConfig, finetune
    from ..sr.export import export_onnx, student_from_onnx

    torch.set_num_threads(cfg.threads)
    ltc = LocalTrainConfig(steps=cfg.steps, batch=cfg.batch, replay_fraction=0.5, bars=0.0, seed=cfg.seed)
    model = finetune(student_from_onnx(champion), new, _replay(cfg, cache), ltc, cfg.lr)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out)
    return out


def train_bad(champion: Path, wrong: ContentSpec, out: Path, cfg: CandidateConfig) -> Path:
    """The champion fine-tuned on the wrong data: clean (codec-free) pairs of other content, no
    replay, a larger step: it forgets how to undo the codec the fleet streams with."""
    import torch

    from ..ondevice.local_trainer import LocalTrainConfig, finetune
    from ..sr.export import export_onnx, student_from_onnx

    torch.set_num_threads(cfg.threads)
    new = patches(wrong, cfg.scale, Codec("none", 0), cfg.patch_lr, cfg.per_frame, cfg.seed)
    empty = (np.zeros((0, cfg.patch_lr, cfg.patch_lr), np.uint8),
             np.zeros((0, cfg.patch_lr * cfg.scale, cfg.patch_lr * cfg.scale), np.uint8))
    ltc = LocalTrainConfig(steps=cfg.bad_steps, batch=cfg.batch, replay_fraction=0.0, bars=0.0, seed=cfg.seed)
    model = finetune(student_from_onnx(champion), new, empty, ltc, cfg.lr * cfg.bad_lr_factor)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out)
    return out


def offset_candidate(champion: Path, out: Path, levels: float) -> Path:
    """A miscalibrated candidate made in a second: the champion with `levels` (of 255) added to
    every output pixel, through the bias of its last convolution (the residual the upscaler adds
    to its interpolation), as a wrong normalisation in an export would. It loses everywhere
    (1.5 levels: -0.7 to -1.3 dB a session on the small profile's segments), evenly enough for a
    canary to see it on a few reports; the CI test of the whole loop uses it as its bad candidate."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(champion))
    # the last convolution with a bias, in graph order (the interpolation's own has none)
    convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) == 3]
    found = [t for t in model.graph.initializer if convs and t.name == convs[-1].input[2]]
    if not found:
        raise ValueError(f"{champion}: no convolution bias to offset")
    last = found[0]
    value = numpy_helper.to_array(last) + np.float32(levels / 255.0)
    last.CopyFrom(numpy_helper.from_array(value.astype(np.float32), last.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def measure(champion: Path, candidates: dict[str, Path], fleet: ContentSpec, cfg: CandidateConfig) -> dict[str, Any]:
    """Each candidate's dB against the champion on the fleet's content (frames it never trained on)."""
    scores = score_frames({"champion": champion, **candidates}, fleet, cfg.scale, cfg.rung)
    out: dict[str, Any] = {"scores": scores}
    for name in candidates:
        out[f"{name}_gain_db"] = scores["mean"][name] - scores["mean"]["champion"]
    return out


def _demo() -> None:  # pragma: no cover - a manual check: python -m nerve_learning.rollout.candidates
    """Trains the good and the bad candidate and prints their dB against the champion."""
    import tempfile
    from pathlib import Path

    from ..paths import REPO
    from .content import FLEET_CONTENT, GOOD_TRAIN_CONTENT, WRONG_CONTENT

    cfg = CandidateConfig()
    champ = REPO / "models" / "nerve-sr-x2.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        good = train_good(champ, GOOD_TRAIN_CONTENT, Path(tmp) / "good.onnx", cfg, REPO / "learning" / "cache")
        bad = train_bad(champ, WRONG_CONTENT, Path(tmp) / "bad.onnx", cfg)
        print(measure(champ, {"good": good, "bad": bad}, FLEET_CONTENT, cfg))


if __name__ == "__main__":
    _demo()
