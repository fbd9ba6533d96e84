"""The native space-to-depth rewrite: the exported fold becomes ONNX's SpaceToDepth, the
convolutions that read it are permuted, and nothing the file computes changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from nerve_learning.sr.export import export_onnx, student_from_onnx
from nerve_learning.sr.graph import (
    PERMUTED_KEY, crd_from_dcr, dcr_from_crd, merged_slices, native_space_to_depth, permuted_weights, speed_rewrites,
)
from nerve_learning.sr.model import Student

MODELS = Path(__file__).resolve().parents[2] / "models"


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def run(model: onnx.ModelProto | str, x: np.ndarray) -> np.ndarray:
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]


def test_the_permutation_is_space_to_depths_order() -> None:
    # 3 channels folded 2x2: SpaceToDepth puts block position first, pixel_unshuffle channel first
    x = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(1, 3, 4, 6)
    crd = torch.nn.functional.pixel_unshuffle(x, 2)[0]
    dcr = torch.from_numpy(run_s2d(x.numpy()))[0]
    assert torch.equal(dcr, crd[torch.from_numpy(dcr_from_crd(3, 2))])
    w = np.random.default_rng(0).normal(size=(5, 12, 3, 3)).astype(np.float32)
    assert np.array_equal(crd_from_dcr(w[:, dcr_from_crd(3, 2)], 2), w)


def run_s2d(x: np.ndarray) -> np.ndarray:
    h = onnx.helper
    g = h.make_graph([h.make_node("SpaceToDepth", ["lr"], ["y"], blocksize=2)], "g",
                     [h.make_tensor_value_info("lr", onnx.TensorProto.FLOAT, list(x.shape))],
                     [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return run(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), x)


def test_export_writes_the_native_fold_and_reads_back_the_same_student(tmp_path: Path) -> None:
    torch.manual_seed(3)
    m = Student(2, channels=8, depth=1, frames=2, block=2)
    for p in m.body.parameters():
        p.data.normal_(std=0.1)
    export_onnx(m, tmp_path / "s2d.onnx")  # checks the rewritten file against PyTorch
    model = onnx.load(str(tmp_path / "s2d.onnx"))
    assert ops(model).count("SpaceToDepth") == 2, ops(model)
    perms = [list(a.ints) for n in model.graph.node if n.op_type == "Transpose" for a in n.attribute]
    assert [0, 1, 3, 5, 2, 4] not in perms, "no six-dimensional fold is left"
    assert sorted(permuted_weights(model)) == ["base", "body.0.weight"]
    back = student_from_onnx(tmp_path / "s2d.onnx")
    for k, v in m.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, msg=k)
    # the crop back to odd sizes is one Slice over both axes
    crops = [n for n in model.graph.node if n.op_type == "Slice" and n.output[0] == "hr"]
    assert len(crops) == 1 and not any(n.op_type == "Slice" and n.output[0] in crops[0].input for n in model.graph.node)
    # a second pass finds nothing to do and leaves the file as it is
    assert speed_rewrites(model) == 0


def two_slices(second_axis: int) -> onnx.ModelProto:
    """lr[:, :, 1:h-1, :] then [..., :-1] on `second_axis`, the first slice's end read from the
    input's shape (as a folded student's crop is)."""
    h = onnx.helper
    i64 = lambda name, v: h.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.asarray(v, np.int64), name))  # noqa: E731
    nodes = [
        i64("two", [2]), i64("one", [1]), i64("s0", [0]), i64("s1", [1]), i64("ax2", [2]), i64("axb", [second_axis]),
        i64("e3", [-1]),
        h.make_node("Shape", ["lr"], ["shape"]),
        h.make_node("Gather", ["shape", "two"], ["h"], axis=0),
        h.make_node("Sub", ["h", "one"], ["h1"]),
        h.make_node("Slice", ["lr", "s1", "h1", "ax2", "one"], ["a"]),
        h.make_node("Slice", ["a", "s0", "e3", "axb", "one"], ["hr"]),
    ]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("lr", onnx.TensorProto.FLOAT, [1, 2, "h", "w"])],
                     [h.make_tensor_value_info("hr", onnx.TensorProto.FLOAT, [1, 2, "oh", "ow"])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_two_slices_merge_into_one_with_the_same_output_at_any_size() -> None:
    model = two_slices(3)
    before = onnx.ModelProto()
    before.CopyFrom(model)
    assert merged_slices(model) == 1
    onnx.checker.check_model(model)
    assert ops(model).count("Slice") == 1
    for shape in [(1, 2, 5, 7), (1, 2, 12, 3)]:
        x = np.random.default_rng(2).random(shape, dtype=np.float32)
        assert np.array_equal(run(model, x), run(before, x))
        assert np.array_equal(run(model, x), x[:, :, 1:-1, :-1])
    assert merged_slices(model) == 0
    # the same axis twice (or a negative axis, which may be the same) is left alone
    for axis in (2, -1):
        assert merged_slices(two_slices(axis)) == 0


def test_shipped_folded_models_carry_the_native_fold_with_the_old_graphs_output() -> None:
    # every shipped space-to-depth file has been rewritten (a model exported the old way and
    # added to the manifest would fail here), and rewriting the old layout again computes the
    # same: the default int8 exactly
    folded = [p for p in sorted(MODELS.glob("nerve-sr-x2-s2d*.onnx"))]
    assert folded
    for p in folded:
        model = onnx.load(str(p))
        assert "SpaceToDepth" in ops(model), f"{p.name} still folds with Transpose"
        assert permuted_weights(model), f"{p.name} says which weights it permuted ({PERMUTED_KEY})"
        assert speed_rewrites(model) == 0, f"{p.name} has a rewrite left to apply (scripts/graph_rewrites.py)"
    # a picture-like input (smooth, a little grain): int8 is calibrated on pictures, not noise
    yy, xx = np.mgrid[0:45, 0:61].astype(np.float32)
    grain = np.random.default_rng(1).normal(scale=0.02, size=(1, 2, 45, 61)).astype(np.float32)
    x = np.clip(0.5 + 0.3 * np.sin(0.21 * xx + 0.13 * yy) + grain, 0, 1).astype(np.float32)
    # the default x2 (eight middle layers) and the default before it (four)
    for parent in ("nerve-sr-x2-s2d-temporal-d8-filmed-mix", "nerve-sr-x2-s2d-temporal-d4-filmed-mix"):
        student = student_from_onnx(MODELS / f"{parent}.onnx")
        with torch.no_grad():
            expected = student(torch.from_numpy(x)).numpy()
        # the float file read back into PyTorch is the file's own function
        assert np.abs(run(str(MODELS / f"{parent}.onnx"), x) - expected).max() < 1e-5, parent
        # and the int8 variant stays within its quantisation of it (0.15 of a level on average)
        assert np.abs(run(str(MODELS / f"{parent}-int8.onnx"), x) - expected).mean() < 0.5 / 255, parent
