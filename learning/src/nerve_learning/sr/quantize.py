"""int8 variants through ONNX Runtime's static quantization, calibrated on training pairs and
checked against the float model on held-out frames."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from ..data.pack import Pack


class PatchReader(CalibrationDataReader):
    """Feeds training LR patches (never evaluation clips) to the calibrator: (N,h,w) patches, or
    (N,frames,h,w) stacks for a temporal model."""

    def __init__(self, lr: np.ndarray, count: int = 64) -> None:
        rng = np.random.default_rng(0)
        pick = rng.choice(len(lr), size=min(count, len(lr)), replace=False)
        batch = (lambda x: x[None]) if lr.ndim == 4 else (lambda x: x[None, None])
        self.items = iter([{"lr": batch(lr[i]).astype(np.float32) / 255.0} for i in pick])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def pack_patches(pack: Pack, scale: int, frames: int, count: int = 64, side: int = 64, seed: int = 0) -> np.ndarray:
    """Calibration patches from a training pack (`nerve-learn pack`), drawn as training draws them
    (`PatchSampler`: a random crop, rung and place): (N,side,side) uint8, or (N,2,side,side) with
    the previous frame for a temporal model. A model trained on a pack alone (pictures' pans) is
    then calibrated on what it learnt from, not on clips it never saw."""
    import torch

    from .packtrain import PackTrainConfig, PatchSampler

    cfg = PackTrainConfig(scale=scale, frames=frames, patch_lr=side, seed=seed, device="cpu")
    x, _ = PatchSampler(pack, cfg, torch.device("cpu")).draw(count, side)
    patches = (x * 255).round().to(torch.uint8).numpy()
    return patches[:, 0] if frames == 1 else patches


def quantize(float_path: Path, int8_path: Path, calibration_lr: np.ndarray) -> None:
    """Static QDQ quantization (uint8 activations, per-channel int8 weights). For a space-to-depth
    student only the learned body is quantized: the fixed upscale, the sum and the unfold stay
    float, so the output is not rounded to an 8-bit grid of its own before the element rounds it
    to pixels (on nerve-sr-x2-s2d: 0.094 dB lost quantized whole, 0.019 dB body only, at the same
    speed). A plain student is quantized whole: its thin first and last layers run no
    faster in int8, and float islands between int8 layers cost layout changes (see the README)."""
    import onnx

    from .graph import rewrite_file
    from .model import FOLDED_BASE

    graph = onnx.load(str(float_path)).graph
    folded = any(i.name == FOLDED_BASE for i in graph.initializer)
    body = [n.name for n in graph.node if n.name.startswith("/body/")]
    quantize_static(
        str(float_path), str(int8_path), PatchReader(calibration_lr),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        per_channel=True, nodes_to_quantize=body if folded and body else None,
    )
    # a float file exported before the native space-to-depth rewrite gets it here (exact in int8)
    rewrite_file(int8_path)


def cpu_session(path: Path, threads: int, profile_prefix: Path | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with `threads` intra-op threads, profiling into
    `profile_prefix`* when given."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def seconds_per_frame(path: Path, width: int, height: int, threads: int = 2, runs: int = 20, frames: int = 1) -> float:
    """Model-only ONNX Runtime CPU time for one width x height luma frame (with `frames` inputs)."""
    session = cpu_session(path, threads)
    x = np.random.default_rng(0).random((1, frames, height, width), dtype=np.float32)
    for _ in range(3):
        session.run(None, {"lr": x})
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, {"lr": x})
    return (time.perf_counter() - started) / runs


def upscale_onnx(path: Path, lr: np.ndarray) -> np.ndarray:
    """Runs an exported model over uint8 luma frames (N,h,w), or stacks (N,F,h,w), -> uint8 (N,H,W)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = (lambda f: f[None]) if lr.ndim == 4 else (lambda f: f[None, None])
    outs = [session.run(None, {"lr": feed(f).astype(np.float32) / 255.0})[0][0, 0] for f in lr]
    return np.clip(np.stack(outs) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def layer_times(path: Path, width: int, height: int, threads: int = 1, runs: int = 6) -> dict[str, float]:
    """Milliseconds per frame spent in each node of the optimized graph ONNX Runtime runs (its
    own profiler), for one width x height luma frame: where int8 wins and where it loses."""
    import json
    import tempfile
    from collections import Counter

    with tempfile.TemporaryDirectory(prefix="nerve-int8-profile-") as tmp:
        session = cpu_session(path, threads, Path(tmp) / "profile")  # not into the working directory
        x = np.random.default_rng(0).random((1, 1, height, width), dtype=np.float32)
        session.run(None, {"lr": x})  # the first run allocates; it is profiled too, and skipped below
        for _ in range(runs):
            session.run(None, {"lr": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: Counter[str] = Counter()
    seen: set[str] = set()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = f"{e['args'].get('op_name', '?')} {e['name'].removesuffix('_kernel_time')}"
            if name in seen:
                per_node[name] += e["dur"]
            seen.add(name)
    return {k: v / runs / 1000.0 for k, v in per_node.most_common()}
