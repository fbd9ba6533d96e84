"""The recovery model: its sources, the crops cut from a real loss run, training that learns,
and the exported ONNX contract nerverecover loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nerve_learning.recovery import train as recovery
from nerve_learning.data.clips import TRAIN, data_root

REPO = Path(__file__).resolve().parents[2]
NERVE_EVAL = REPO / "target" / "release" / "nerve-eval"


def test_each_block_shows_one_source_at_any_size() -> None:
    model = recovery.RecoveryNet().eval()
    same = torch.full((1, 1, 37, 53), 0.4)
    x = torch.cat([same, same, same, torch.ones_like(same)], 1)
    out = model(x)
    assert out.shape == (1, 1, 37, 53)
    assert torch.allclose(out, same, atol=1e-6), "where every source agrees, so does the choice"
    # The carried source is d + s_prev - d_prev, clamped to 0..1.
    d, d_prev, s_prev = torch.full_like(same, 0.9), torch.full_like(same, 0.1), torch.full_like(same, 0.8)
    _, carried, _ = model.sources(torch.cat([d, d_prev, s_prev, same], 1))
    assert torch.allclose(carried, torch.ones_like(same))
    # Three different sources: every 16x16 block (the partial ones at the edges too) shows
    # exactly one of them.
    x = torch.cat([torch.rand(1, 1, 37, 53), torch.rand(1, 1, 37, 53), torch.rand(1, 1, 37, 53), same], 1)
    out = model(x)
    sources = torch.cat(model.sources(x), 1)
    for by in range(0, 37, 16):
        for bx in range(0, 53, 16):
            o = out[..., by:by + 16, bx:bx + 16]
            assert any(torch.equal(o, sources[:, k:k + 1, by:by + 16, bx:bx + 16]) for k in range(3)), (by, bx)


def test_the_model_runs_where_the_element_runs_it() -> None:
    d_prev = torch.rand(3, 1, 16, 16)
    shown = d_prev.clone()
    shown[2, 0, 3, 3] += 0.1
    # No loss and nothing carried: the decoder's frame goes out; a reported loss, or a frame
    # shown before that differs from the decoder's, runs the model.
    assert recovery.runs(torch.tensor([0, 1, 0]), shown, d_prev).tolist() == [False, True, True]


def fake_run(tmp: Path, n: int = 12, w: int = 128, h: int = 96, missing: int | None = None) -> dict:
    rng = np.random.default_rng(0)
    orig = rng.integers(16, 235, (n, h * w * 3 // 2), dtype=np.uint8)
    lossy = orig.copy()
    lossy[4:, : 32 * w] = 0  # a lost band carried on
    for name, a in (("original.yuv", orig), ("clean.yuv", orig), ("lossy.yuv", lossy)):
        a.tofile(tmp / name)
    frames = [{"present": i != missing, "hit": i == 4, "keyframe": i == 0, "corrupted": False} for i in range(n)]
    meta = {"width": w, "height": h, "frames": frames}
    (tmp / "frames.json").write_text(json.dumps(meta))
    return meta


def test_crops_skip_windows_with_frames_the_decoder_never_produced(tmp_path: Path) -> None:
    cfg = recovery.CropConfig(frames=8, size=96, per_run=10)
    meta = fake_run(tmp_path, missing=6)
    crops = recovery.cut_crops(tmp_path, meta, cfg, "x")
    assert crops is None, "every 8-frame window of 12 holds frame 6"
    meta = fake_run(tmp_path, missing=None)
    crops = recovery.cut_crops(tmp_path, meta, cfg, "x")
    assert crops is not None
    assert crops["lossy"].shape == (10, 8, 96, 96) and crops["loss"].shape == (10, 8)


def test_training_learns_to_hold_what_a_loss_destroyed(tmp_path: Path) -> None:
    # Static content; at a reported loss a band turns black and stays so (what a decoder carries
    # on). Showing the past there, then carrying that correction, is right.
    rng = np.random.default_rng(1)
    n, t, p = 64, 6, 32
    base = rng.integers(40, 200, (n, 1, p, p)).astype(np.uint8)
    clean = np.repeat(base, t, axis=1)
    lossy = clean.copy()
    loss = np.zeros((n, t), np.uint8)
    for i in range(n):
        k = int(rng.integers(1, t))
        lossy[i, k:, 16:32] = 0
        loss[i, k] = 1
    crops = tmp_path / "crops.npz"
    np.savez(crops, clean=clean, lossy=lossy, loss=loss)
    torch.set_num_threads(1)
    model, history = recovery.train(crops, recovery.RecoveryTrainConfig(steps=150, batch=8, lr=5e-3), progress=False)
    # The objective is the change of PSNR against the decoder's frame (plus the soft oracle's
    # pull): it starts near the decoder's and ends dB below it.
    assert np.mean(history[-20:]) < np.mean(history[:5]) - 3.0, (history[:5], history[-20:])
    with torch.no_grad():
        shown = recovery.unroll(model, torch.from_numpy(lossy[:8]).float() / 255, torch.from_numpy(loss[:8]))
    err_model = float(np.mean([(s - torch.from_numpy(clean[:8, k:k + 1]).float() / 255).abs().mean() for k, s in enumerate(shown)]))
    err_decoder = float(np.abs(lossy[:8].astype(float) - clean[:8]).mean() / 255)
    assert err_model < 0.5 * err_decoder, (err_model, err_decoder)


def test_a_model_that_keeps_the_decoders_frame_costs_nothing() -> None:
    rng = np.random.default_rng(2)
    clean = torch.from_numpy(rng.integers(0, 255, (4, 5, 32, 32))).float() / 255
    lossy = clean.clone()
    lossy[:, 2:, :16] = 0
    loss = torch.tensor([[0, 0, 1, 0, 0]] * 4)
    model = recovery.RecoveryNet()
    with torch.no_grad():
        model.head[-1].bias.copy_(torch.tensor([50.0, 0.0, 0.0]))
        cost = recovery.expected_cost(model, lossy, clean, loss, recovery.FLOOR_MSE, soft=0.0)
    assert abs(float(cost)) < 1e-4, float(cost)


def test_export_matches_pytorch_and_the_element_contract(tmp_path: Path) -> None:
    model = recovery.RecoveryNet()
    path = tmp_path / "r.onnx"
    sha = recovery.export_recovery(model, path)
    assert len(sha) == 64
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, out.name) == ("frames", "shown")
    assert inp.shape[1] == recovery.INPUT_PLANES and out.shape[1] == 1
    y = sess.run(None, {"frames": np.random.rand(1, 4, 45, 61).astype(np.float32)})[0]
    assert y.shape == (1, 1, 45, 61)


@pytest.mark.skipif(not NERVE_EVAL.is_file(), reason="nerve-eval is built by scripts/setup.sh")
def test_crops_and_the_oracle_bound_from_the_real_loss_pipeline(tmp_path: Path) -> None:
    clip = next(c for c in TRAIN if c.content == "talking_head")
    spec = recovery.LossRunSpec(clip, 0.10, 11)
    meta = recovery.loss_frames(NERVE_EVAL, data_root(), spec, tmp_path, 24)
    assert len(meta["frames"]) == 24 and any(f["hit"] for f in meta["frames"])
    crops = recovery.cut_crops(tmp_path, meta, recovery.CropConfig(frames=8, size=96, per_run=6), "real")
    assert crops is not None
    # The lossy decode differs from the lossless one somewhere: there is damage to learn from.
    assert (crops["lossy"] != crops["clean"]).any()
    # The block oracle never does worse than the decoder (it may always keep the decoder's).
    bound = recovery.oracle_replay(tmp_path)
    assert bound["oracle"] >= bound["decoder"] - 1e-6, bound
