"""Frame packs and pack training, on synthetic crops (no ffmpeg, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nerve_learning.data.pack import Pack, matlab_downscale, matlab_weights
from nerve_learning.sr.packtrain import PackTrainConfig, PatchSampler, load_student, train_from_pack


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


def test_temporal_sampler_pairs_the_previous_frame_of_the_same_region() -> None:
    pack = synthetic_pack()
    with pytest.raises(ValueError, match="--previous"):
        PatchSampler(pack, PackTrainConfig(scale=4, frames=2, device="cpu"), torch.device("cpu"))
    pack.hr_prev = 255 - pack.hr  # a recognisable "previous frame"
    pack.prev = {"prev/x4/x264-23": pack.hr_prev[:, ::4, ::4].copy()}
    sampler = PatchSampler(pack, PackTrainConfig(scale=4, frames=2, patch_lr=6, device="cpu"), torch.device("cpu"))
    x, y = sampler.draw(16, 6)
    assert x.shape == (16, 2, 6, 6) and y.shape == (16, 1, 24, 24)
    assert torch.equal(x[:, 1:], y[:, :, ::4, ::4])  # current frame last, as nervesr feeds it
    assert torch.allclose(x[:, :1], 1.0 - y[:, :, ::4, ::4])  # previous frame first, same region
    bi = PatchSampler(pack, PackTrainConfig(scale=4, frames=2, rungs="bi", patch_lr=6, device="cpu"), torch.device("cpu"))
    xb, _ = bi.draw(4, 6)
    assert xb.shape == (4, 2, 6, 6) and not torch.equal(xb[:, 0], xb[:, 1])


def test_train_from_pack_writes_a_loadable_student(tmp_path: Path) -> None:
    cfg = PackTrainConfig(scale=2, channels=4, depth=1, steps=5, batch=4, patch_lr=8, teacher_steps=3,
                          teacher_channels=4, teacher_blocks=1, device="cpu", threads=1)
    out = train_from_pack(synthetic_pack(), cfg, tmp_path / "w.pt")
    model, record = load_student(out)
    assert record["student"]["steps"] == 5 and record["teacher"]["steps"] == 3
    with torch.no_grad():
        assert model(torch.rand(1, 1, 10, 12)).shape == (1, 1, 20, 24)


def test_rep_temporal_student_loads_as_its_plain_deployable_form(tmp_path: Path) -> None:
    pack = synthetic_pack()
    pack.hr_prev = pack.hr[::-1].copy()
    cfg = PackTrainConfig(scale=4, rungs="bi", channels=4, depth=1, steps=5, batch=4, patch_lr=6, frames=2, rep=True,
                          device="cpu", threads=1)
    out = train_from_pack(pack, cfg, tmp_path / "t.pt")
    model, record = load_student(out)
    assert record["config"]["rep"] and model.frames == 2 and not model.rep
    with torch.no_grad():
        assert model(torch.rand(1, 2, 10, 12)).shape == (1, 1, 40, 48)


def test_pack_with_previous_frames_from_a_real_clip(tmp_path: Path) -> None:
    from nerve_learning.data.clips import TRAIN
    from nerve_learning.data.degrade import Codec
    from nerve_learning.data.pack import PackConfig, build_pack, load_pack

    foreman = next(c for c in TRAIN if "test_cif" in c.path)
    cfg = PackConfig(scales=(4,), codecs=(Codec("x264", 23),), frames_per_clip=3, frame_step=4, crop=96,
                     crops_per_frame=2, clips=(foreman,), previous=True)
    pack = load_pack(build_pack(cfg, tmp_path / "p.npz"))
    assert pack.hr_prev is not None and pack.hr_prev.shape == pack.hr.shape == (6, 96, 96)
    assert pack.prev["prev/x4/x264-23"].shape == pack.lr["lr/x4/x264-23"].shape == (6, 24, 24)
    # Each crop is a region of frame 1, 5 or 9 (every 4th from 1), and its previous-frame crop
    # is the same region of frame 0, 4 or 8.
    from nerve_learning.data.clips import data_root
    from nerve_learning.data.degrade import read_luma

    seq = read_luma(foreman, data_root(), 12, 10)
    for k in range(len(pack.hr)):
        f = 1 + 4 * (k // 2)
        spots = [(y, x) for y in range(0, seq.shape[1] - 95, 24) for x in range(0, seq.shape[2] - 95, 24)
                 if np.array_equal(seq[f, y : y + 96, x : x + 96], pack.hr[k])]
        assert spots, f"crop {k} is not a region of frame {f}"
        y, x = spots[0]
        assert np.array_equal(seq[f - 1, y : y + 96, x : x + 96], pack.hr_prev[k])
        assert not np.array_equal(pack.hr_prev[k], pack.hr[k])


def test_fine_tuning_starts_from_an_exported_student_grown_deeper(tmp_path: Path) -> None:
    from nerve_learning.sr.export import export_onnx
    from nerve_learning.sr.model import Student
    from nerve_learning.sr.packtrain import _init_state

    torch.manual_seed(6)
    shipped = Student(4, channels=4, depth=1, frames=2)
    for p in shipped.body.parameters():
        p.data.normal_(std=0.2)
    export_onnx(shipped, tmp_path / "s.onnx")
    cfg = PackTrainConfig(scale=4, rungs="bi", channels=4, depth=2, frames=2, rep=True, init=str(tmp_path / "s.onnx"))
    grown = Student(4, channels=4, depth=2, frames=2, rep=True)
    grown.load_state_dict(_init_state(cfg))
    x = torch.rand(1, 2, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(grown.plain()(x), shipped(x), atol=1e-5, rtol=1e-4)
    # A train-pack weights file grows the same way (its plain form), and one of the very same
    # architecture is taken as it is.
    small = train_from_pack(synthetic_pack(), PackTrainConfig(scale=2, channels=4, depth=1, steps=2, batch=2, patch_lr=6,
                                                              device="cpu", threads=1), tmp_path / "small.pt")
    plain, _ = load_student(small)
    deep = Student(2, channels=4, depth=3)
    deep.load_state_dict(_init_state(PackTrainConfig(scale=2, channels=4, depth=3, init=str(small))))
    same = _init_state(PackTrainConfig(scale=2, channels=4, depth=1, init=str(small)))
    assert torch.equal(same["body.0.weight"], plain.body[0].weight)
    y = torch.rand(1, 1, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(deep(y), plain(y), atol=1e-5, rtol=1e-4)
    # A different student (width, frames) or a shallower run is refused before any training.
    for wrong in ({"channels": 8}, {"frames": 1}, {"depth": 0}):
        with pytest.raises(ValueError, match="different student"):
            _init_state(PackTrainConfig(**{**cfg.__dict__, **wrong}))


def test_edge_loss_sees_blur_that_the_pixel_loss_barely_sees() -> None:
    from nerve_learning.sr.packtrain import edge_loss

    y = torch.zeros(1, 1, 16, 16)
    y[..., ::2] = 1.0  # fine stripes
    blurred = torch.full_like(y, 0.5)  # the pixel loss's safe answer when unsure
    shifted = y.roll(2, dims=-1)  # the same stripes (a period away): no edge error
    assert edge_loss(y, y) == 0 and edge_loss(shifted, y) == 0
    assert edge_loss(blurred, y) >= 1.9 * torch.nn.functional.l1_loss(blurred, y)
    with pytest.raises(ValueError, match="edge weight"):
        train_from_pack(synthetic_pack(), PackTrainConfig(scale=2, edge=-1.0, device="cpu"), Path("/nonexistent/w.pt"))


def test_calibration_patches_come_from_the_packs_rungs_with_their_previous_frame() -> None:
    from nerve_learning.sr.quantize import pack_patches

    pack = synthetic_pack()
    with pytest.raises(ValueError, match="--previous"):
        pack_patches(pack, 2, frames=2, side=8)
    single = pack_patches(pack, 2, frames=1, count=10, side=8)
    assert single.shape == (10, 8, 8) and single.dtype == np.uint8
    pack.hr_prev = 255 - pack.hr
    pack.prev = {"prev/x2/x264-23": pack.hr_prev[:, ::2, ::2].copy()}
    stacks = pack_patches(pack, 2, frames=2, count=10, side=8)
    assert stacks.shape == (10, 2, 8, 8)
    # previous first, the same rung and region: the synthetic previous frame is the negative
    assert np.array_equal(stacks[:, 0], 255 - stacks[:, 1])
    # every patch is a window of some crop's x2 rung
    lr = pack.lr["lr/x2/x264-23"]
    for patch in stacks[:, 1]:
        assert any((lr[i, y : y + 8, x : x + 8] == patch).all() for i in range(len(lr)) for y in range(17) for x in range(17))
    with pytest.raises(ValueError, match="x3/ rungs"):
        pack_patches(pack, 3, frames=1)


def test_a_student_from_random_weights_keeps_its_relus_alive_and_learns() -> None:
    from torch import nn

    from nerve_learning.sr.model import Student
    from nerve_learning.sr.packtrain import fit

    # a learnable degradation: LR = HR box-averaged 2x2, so the bicubic upscale leaves residual
    rng = np.random.default_rng(1)
    hr = np.kron(rng.integers(0, 256, (8, 12, 12)), np.ones((4, 4))).astype(np.uint8)  # blocky: edges
    lr = hr.reshape(8, 24, 2, 24, 2).mean(axis=(2, 4)).round().astype(np.uint8)
    pack = Pack(hr=hr, clip=np.zeros(8, np.int16), valid=np.full(8, 48, np.int16), lr={"lr/x2/x264-23": lr},
                meta={"config": {"crop": 48}, "clips": ["a/clip.mp4"], "contents": ["x"]})
    cfg = PackTrainConfig(scale=2, channels=16, depth=4, block=2, rep=True, patch_lr=12, batch=16, lr=5e-4, warmup=50,
                          device="cpu")
    torch.manual_seed(0)
    sampler = PatchSampler(pack, cfg, torch.device("cpu"))
    x, y = sampler.draw(64, 12)
    model = Student(2, 16, 4, 1, True, 2)
    with torch.no_grad():
        before = nn.functional.l1_loss(model(x), y).item()
    model, record = fit(model, sampler, cfg, 300, 0.0, "test")
    with torch.no_grad():
        after = nn.functional.l1_loss(model(x), y).item()
        h = nn.functional.pixel_unshuffle(x, 2)
        for layer in list(model.body)[:-1]:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                assert (h.flatten(2).amax(-1) > 0).any(0).sum() >= 8, "a hidden layer lost most of its units"
    assert record["steps"] == 300
    assert after < 0.95 * before, (before, after)
