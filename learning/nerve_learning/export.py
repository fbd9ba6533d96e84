"""Export to ONNX (opset 17, dynamic height and width) and the manifest entry that goes with it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .model import Student


def export_onnx(model: Student, path: Path) -> str:
    """Writes the ONNX file, checks it against PyTorch, returns its sha256."""
    model.eval()
    dummy = torch.rand(1, model.frames, 40, 56)
    torch.onnx.export(
        model, (dummy,), str(path), input_names=["lr"], output_names=["hr"], opset_version=17,
        dynamic_axes={"lr": {2: "height", 3: "width"}, "hr": {2: "out_height", 3: "out_width"}}, dynamo=False,
    )
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


def manifest_entry(name: str, file: str, scale: int, frames: int, sha256: str, default: bool, card: str | None,
                   parent: str | None = None, version: str = "1") -> str:
    return "\n".join([
        "[[model]]",
        f'name = "{name}"',
        f'file = "{file}"',
        'task = "super-resolution"',
        f"scale = {scale}",
        f"frames = {frames}",
        f"default = {'true' if default else 'false'}",
        f'version = "{version}"',
        *([f'card = "{card}"'] if card else []),
        *([f'parent = "{parent}"'] if parent else []),
        f'sha256 = "{sha256}"',
        'input = { name = "lr", layout = "NCHW", planes = "Y", range = "unit" }',
        'output = { name = "hr", layout = "NCHW", planes = "Y", range = "unit" }',
        "",
    ])
