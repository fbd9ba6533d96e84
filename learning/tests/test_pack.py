"""Frame packs and pack training, on synthetic crops (no ffmpeg, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nerve_learning.pack import Pack, matlab_downscale, matlab_weights
from nerve_learning.packtrain import PackTrainConfig, PatchSampler, load_student, train_from_pack


def synthetic_pack(n: int = 6, crop: int = 48) -> Pack:
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (n, crop, crop), dtype=np.uint8)
    lr = {"lr/x4/x264-23": hr[:, ::4, ::4].copy(), "lr/x2/x264-23": hr[:, ::2, ::2].copy()}
    meta = {"config": {"crop": crop}, "clips": ["a/clip1.mp4", "b/calendar.264"], "contents": ["x", "y"]}
    return Pack(hr=hr, clip=np.array([0, 0, 0, 1, 1, 1], np.int16), valid=np.full(n, crop, np.int16), lr=lr, meta=meta)


def test_matlab_weights_are_normalised_symmetric_and_antialiased() -> None:
    m = matlab_weights(64, 4)
    assert m.shape == (16, 64)
    assert np.allclose(m.sum(axis=1), 1.0)
    row = m[8]  # an interior row: 16 taps wide (antialiasing stretches the cubic by 4)
    taps = row[row != 0]
    assert len(taps) == 16 and np.allclose(taps, taps[::-1])
    flat = torch.full((1, 64, 64), 77.0)
    assert torch.equal(matlab_downscale(flat, 4), torch.full((1, 16, 16), 77.0))


def test_sampler_draws_aligned_pairs_and_honours_exclusions() -> None:
    pack = synthetic_pack()
    cfg = PackTrainConfig(scale=4, exclude=("calendar",), patch_lr=6, device="cpu")
    sampler = PatchSampler(pack, cfg, torch.device("cpu"))
    assert sampler.hr.shape[0] == 3  # the calendar clip's crops are left out
    x, y = sampler.draw(16, 6)
    assert x.shape == (16, 1, 6, 6) and y.shape == (16, 1, 24, 24)
    # The synthetic LR rung is HR subsampled at (0, 0) of each 4x4 block: pairs must line up.
    assert torch.equal(x, y[:, :, ::4, ::4])


def test_train_from_pack_writes_a_loadable_student(tmp_path: Path) -> None:
    cfg = PackTrainConfig(scale=2, channels=4, depth=1, steps=5, batch=4, patch_lr=8, teacher_steps=3,
                          teacher_channels=4, teacher_blocks=1, device="cpu", threads=1)
    out = train_from_pack(synthetic_pack(), cfg, tmp_path / "w.pt")
    model, record = load_student(out)
    assert record["student"]["steps"] == 5 and record["teacher"]["steps"] == 3
    with torch.no_grad():
        assert model(torch.rand(1, 1, 10, 12)).shape == (1, 1, 20, 24)
