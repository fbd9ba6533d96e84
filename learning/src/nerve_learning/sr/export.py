"""Export to ONNX (opset 17, dynamic height and width) and the manifest entry that goes with it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .graph import crd_from_dcr, permuted_weights, rewrite_file
from .model import FOLDED_BASE, Student


def export_onnx(model: Student, path: Path) -> str:
    """Writes the ONNX file (its space-to-depth fold as the native operator, see `graph`), checks
    it against PyTorch, returns its sha256."""
    model.eval()
    dummy = torch.rand(1, model.frames, 40, 56)
    torch.onnx.export(
        model, (dummy,), str(path), input_names=["lr"], output_names=["hr"], opset_version=17,
        dynamic_axes={"lr": {2: "height", 3: "width"}, "hr": {2: "out_height", 3: "out_width"}}, dynamo=False,
    )
    rewrite_file(path)
    return verify_onnx(model, path, "lr", model.frames)


def verify_onnx(model: torch.nn.Module, path: Path, input_name: str, planes: int) -> str:
    """Runs the exported file and the PyTorch model on the same odd-sized input (dynamic sizes
    must really be dynamic); raises if they differ; returns the file's sha256."""
    probe = torch.rand(1, planes, 37, 53)
    with torch.no_grad():
        expected = model(probe).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {input_name: probe.numpy()})[0]
    err = float(np.abs(got - expected).max())
    if err > 1e-4:
        raise RuntimeError(f"ONNX export differs from PyTorch by {err}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_onnx_weights(model: Student, path: Path) -> None:
    """Copies an exported Student's weights (ONNX initializers keep the PyTorch names) into `model`."""
    import onnx

    weights = _torch_order(onnx.load(str(path)))
    state = model.state_dict()
    # Fixed buffers (the bicubic kernels) are rebuilt by the constructor; the graph may omit them.
    fixed = {name for name, _ in model.named_buffers()}
    state = {k: v for k, v in state.items() if k not in fixed or k in weights}
    missing = [k for k in state if k not in weights]
    if missing:
        raise ValueError(f"{path} is not a Student of this shape: no {missing[:3]}")
    for k in state:
        if tuple(weights[k].shape) != tuple(state[k].shape):
            raise ValueError(f"{path}: {k} has shape {weights[k].shape}, the Student needs {tuple(state[k].shape)}")
        state[k] = torch.from_numpy(weights[k].copy())
    model.load_state_dict(state, strict=False)


def student_from_onnx(path: Path) -> Student:
    """The PyTorch Student an exported ONNX file came from (shape read from its weights)."""
    import onnx

    weights = _torch_order(onnx.load(str(path)))
    convs = sorted(int(k.split(".")[1]) for k in weights if k.startswith("body.") and k.endswith(".weight"))
    if "body.0.weight" not in weights or len(convs) < 2:
        raise ValueError(f"{path} is not an exported nerve Student (no body.N.weight initializers)")
    first, last = weights["body.0.weight"], weights[f"body.{convs[-1]}.weight"]
    # A space-to-depth student carries its folded bicubic kernel: (block^2 scale^2, block^2, 3, 3).
    folded = int(weights[FOLDED_BASE].shape[1]) if FOLDED_BASE in weights else 1
    block = int(round(folded ** 0.5))
    channels, frames = int(first.shape[0]), int(first.shape[1]) // folded
    scale = int(round((last.shape[0] // folded) ** 0.5))
    model = Student(scale, channels, len(convs) - 2, frames, block=block)
    load_onnx_weights(model, path)
    return model


def _torch_order(proto) -> dict[str, np.ndarray]:
    """An exported file's initializers by name, the ones the native space-to-depth rewrite
    permuted put back in PyTorch's channel order."""
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    permuted = permuted_weights(proto)
    if permuted:
        block = int(round(weights[FOLDED_BASE].shape[1] ** 0.5))
        for name in permuted:
            if name in weights:
                weights[name] = crd_from_dcr(weights[name], block)
    return weights
