"""Model cards for SR students: what a model is, what it was trained on and how it scored, written
beside the ONNX file so that a model and its card travel together."""

from __future__ import annotations

from ..data.clips import EVAL, TRAIN
from ..data.dataset import PairConfig
from ..data.pack import PICTURE_CANDIDATES
from ..data.pans import MAX_SPEED, WINDOW
from .model import Student
from .train import TrainConfig


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    return "\n".join(
        f"| {k} | {v['psnr_y_bicubic']:.2f} | {v['psnr_y']:.2f} | {v['psnr_y'] - v['psnr_y_bicubic']:+.2f} |"
        for k, v in sorted(metrics.items())
    )


def card(name: str, cfg: TrainConfig, model: Student, metrics: dict, pairs: PairConfig, seconds: float,
         extra: list[str]) -> str:
    params = sum(p.numel() for p in model.parameters())
    frames = "the current frame" if cfg.frames == 1 else f"the current and {cfg.frames - 1} previous frame(s), unaligned"
    lines = [
        f"# {name}",
        "",
        f"Real-time super-resolution student, x{cfg.scale}, luma in ({frames}), residual on a built-in",
        "Catmull-Rom upscale (the same kernel nervesr uses for chroma and its fallback).",
        "",
        f"- Architecture: {model.architecture()}",
        f"- Parameters: {params}",
        f"- MACs per input (LR) pixel: {model.macs_per_pixel()}",
        f"- Training data: {', '.join(c.path for c in TRAIN)}",
        f"  ({pairs.frames_per_clip} frames per clip, every {pairs.frame_step}th; {pairs.patches_per_frame} patches of {pairs.patch_lr} px per frame)",
        f"- Degradation: bicubic downscale x{pairs.scale}, then {', '.join(f'{c.name} CRF {c.crf}' for c in pairs.codecs)}, decoded",
        f"- Training: L1{f' + {cfg.distill} x L1 to the teacher (distillation)' if cfg.distill else ''}, Adam {cfg.lr}, "
        f"cosine schedule, {cfg.steps} steps of {cfg.batch}; {seconds / 60:.0f} min on this machine's CPU",
        f"- Held-out evaluation clips (never trained on): {', '.join(c.path for c in EVAL)}.",
        "  The screen-content clip is a different capture of the same PDF page as the training one.",
        *extra,
        "",
        "## PSNR-Y on the held-out clips (dB, first 8 frames, x264 preset medium)",
        "",
        "| clip / rung | Catmull-Rom | this model | gain |",
        "|---|---|---|---|",
        metrics_table(metrics),
        "",
        "VMAF, VMAF NEG and frames per second inside nervesr: `nerve-eval sr` (see the README).",
        "",
    ]
    return "\n".join(lines)


def training_sources(clips: list[str]) -> str:
    """The card's list of what a model learnt from: each video clip by path; photographs (many)
    counted per source, their Debian package (`pictures/<package>/<picture>` in a pack)."""
    videos = [c for c in clips if not c.startswith("pictures/")]
    per_package: dict[str, int] = {}
    for c in clips:
        if c.startswith("pictures/"):
            parts = c.split("/")
            package = parts[1] if len(parts) > 2 else "pictures"
            per_package[package] = per_package.get(package, 0) + 1
    text = ", ".join(videos)
    if per_package:
        listed = ", ".join(f"{n} from {p}" for p, n in sorted(per_package.items()))
        text += ("; " if text else "") + f"{sum(per_package.values())} photographs coded as pans ({listed})"
    return text


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def pack_description(cfg: dict) -> str:
    """One part of a (possibly merged) pack's configuration, as a model card says it."""
    if cfg.get("kind") == "pictures":
        return (f"still pictures shrunk by {', '.join(map(str, cfg['factors']))}, crops of {cfg['crop']} px every "
                f"{cfg['stride']} px with detail >= {cfg['min_detail']}, each with a copy shifted by up to {cfg['shift']} px "
                "as its previous frame")
    parts = []
    if cfg.get("clips", True):  # a pictures-only pack has no clips
        parts.append(f"{cfg['frames_per_clip']} frames per clip, every {ordinal(cfg['frame_step'])}, "
                     f"{cfg['crops_per_frame']} crops of {cfg['crop']} px per frame")
    if cfg.get("pictures"):
        parts.append(f"each photograph shrunk by 2 or more and coded as a pan of a {WINDOW[0]}x{WINDOW[1]} window (up to "
                     f"{MAX_SPEED} px per frame), {cfg['frames_per_picture']} frames of it (every {ordinal(cfg['frame_step'])}), "
                     f"{cfg['crops_per_frame']} crops of {cfg['crop']} px per frame, each the most detailed of "
                     f"{PICTURE_CANDIDATES} spots")
        if cfg.get("shutter", 0.0) > 0:
            parts.append(f"the pans filmed with motion blur: each pan's exposure drawn up to {cfg['shutter']:g} frame "
                         "interval(s)")
    kernels = cfg.get("kernels", ["bicubic"])
    if list(kernels) != ["bicubic"]:
        parts.append(f"downscale kernels {', '.join(kernels)} in turn over clip and rung")
    return "; ".join(parts)
