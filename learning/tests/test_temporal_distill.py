"""Temporal pairs, the temporal student's export, distillation and int8 quantization, on tiny data."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from nerve_learning.data.degrade import parse_codecs
from nerve_learning.data.clips import TRAIN
from nerve_learning.data.dataset import PairConfig, build_pairs
from nerve_learning.data.degrade import Codec
from nerve_learning.sr.export import export_onnx
from nerve_learning.sr.model import Teacher
from nerve_learning.sr.quantize import layer_times, quantize, upscale_onnx
from nerve_learning.sr.train import TrainConfig, stacked, train


def tiny(temporal: bool) -> PairConfig:
    return PairConfig(scale=2, codecs=(Codec("x264", 23),), frames_per_clip=2, frame_step=2, patch_lr=24,
                      patches_per_frame=4, clips=TRAIN[:1], temporal=temporal)


def test_codec_list_parses() -> None:
    assert parse_codecs("x264:23,av1:40") == (Codec("x264", 23), Codec("av1", 40))


def test_temporal_pairs_carry_the_previous_frame(tmp_path: Path) -> None:
    lr, hr = build_pairs(tiny(True), tmp_path)
    assert lr.shape == (8, 2, 24, 24) and hr.shape == (8, 48, 48)
    # Handheld foreman: the previous frame's patch is not the current one.
    assert np.any(lr[:, 0] != lr[:, 1])


def test_stacking_repeats_the_first_frame_like_the_element() -> None:
    lr = np.arange(3)[:, None, None] * np.ones((3, 2, 2), np.uint8)
    s = stacked(lr, 2)
    assert s.shape == (3, 2, 2, 2)
    assert [int(s[i, 0, 0, 0]) for i in range(3)] == [0, 0, 1]
    assert [int(s[i, 1, 0, 0]) for i in range(3)] == [0, 1, 2]


def test_distilled_temporal_student_exports_with_two_input_frames(tmp_path: Path) -> None:
    teacher = train(TrainConfig(steps=3, batch=2), tiny(False), tmp_path, model=Teacher(2, 8, 1))
    student = train(TrainConfig(steps=5, batch=2, frames=2, distill=0.5), tiny(True), tmp_path, teacher=teacher)
    path = tmp_path / "t.onnx"
    export_onnx(student, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == 2
    assert session.run(None, {"lr": np.zeros((1, 2, 10, 12), np.float32)})[0].shape == (1, 1, 20, 24)


def float_and_int8(tmp_path: Path, cfg: TrainConfig) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A tiny student of `cfg` trained, exported and quantized on its own calibration patches:
    the float and int8 files and both outputs on two patches."""
    pairs = tiny(cfg.frames > 1)
    lr, _ = build_pairs(pairs, tmp_path)
    model = train(cfg, pairs, tmp_path)
    f32, i8 = tmp_path / "f.onnx", tmp_path / "i.onnx"
    export_onnx(model, f32)
    quantize(f32, i8, lr)
    a, b = upscale_onnx(f32, lr[:2]), upscale_onnx(i8, lr[:2])
    assert a.shape == b.shape == (2, 48, 48)
    return f32, i8, a, b


def test_int8_variant_stays_close_to_float(tmp_path: Path) -> None:
    f32, i8, a, b = float_and_int8(tmp_path, TrainConfig(steps=20, batch=4))
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0
    # the profile behind `nerve-learn int8-profile` names the kernels that really ran
    float_ops = {node.split()[0] for node in layer_times(f32, 64, 48, runs=2)}
    int8_ops = {node.split()[0] for node in layer_times(i8, 64, 48, runs=2)}
    assert "Conv" in float_ops and "QLinearConv" not in float_ops
    assert "QLinearConv" in int8_ops


def test_int8_of_a_space_to_depth_student_quantizes_the_body_only(tmp_path: Path) -> None:
    import onnx

    _, i8, a, b = float_and_int8(tmp_path, TrainConfig(steps=20, batch=4, channels=8, block=2))
    graph = onnx.load(str(i8)).graph
    quantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    # The learned convolutions run in int8; the fixed upscale and the sum that makes the output
    # stay float, so the output is not rounded to a grid of its own.
    assert any(t.startswith("/body/") for t in quantized)
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in {"/Add_output_0", "/Conv_output_0"} for n in graph.node)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    # the export's native fold survives quantisation: nothing left for the speed rewrites
    from nerve_learning.sr.graph import speed_rewrites

    assert [n.op_type for n in graph.node].count("SpaceToDepth") == 2
    assert speed_rewrites(onnx.load(str(i8))) == 0


def test_int8_of_a_temporal_student_calibrates_on_frame_stacks(tmp_path: Path) -> None:
    # Calibration patches are (previous, current) stacks; the calibrator must feed them whole.
    assert build_pairs(tiny(True), tmp_path)[0].shape[1] == 2
    _, _, a, b = float_and_int8(tmp_path, TrainConfig(steps=10, batch=4, channels=8, frames=2, block=2))
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
