"""Pans over photographs coded by real codecs, and downscale kernels mixed in a pack (ffmpeg from
the imageio-ffmpeg wheel; a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerve_learning.data.degrade import KERNELS, Codec, degrade
from nerve_learning.data.pack import PackConfig, build_pack, load_pack
from nerve_learning.data.pans import WINDOW, Picture, motion_blur, pan, source_of
from nerve_learning.sr.packtrain import PackTrainConfig, PatchSampler


def photo(path: Path, size: tuple[int, int]) -> Path:
    """A smooth random picture (detail at several scales, as a photograph has)."""
    rng = np.random.default_rng(7)
    w, h = size
    coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noisy).save(path)
    return path


def test_a_pan_moves_a_window_in_a_straight_line(tmp_path: Path) -> None:
    pic = Picture(str(photo(tmp_path / "p.png", (1700, 1000))), "test-backgrounds")
    frames = pan(pic, 5, np.random.default_rng(3))
    assert frames.shape == (5, WINDOW[1], WINDOW[0]) and frames.dtype == np.uint8
    # The same step between every pair of frames: find it by matching frame 1 inside frame 0's
    # neighbourhood, then check frame 4 is four steps away.
    best = min(((dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)),
               key=lambda d: np.abs(_shifted(frames[0], d) - frames[1][8:-8, 8:-8].astype(int)).mean())
    assert best != (0, 0)
    assert np.abs(_shifted(frames[0], (4 * best[0], 4 * best[1]), 20) - frames[4][20:-20, 20:-20].astype(int)).max() == 0


def _shifted(a: np.ndarray, d: tuple[int, int], m: int = 8) -> np.ndarray:
    dy, dx = d
    return a[m + dy : a.shape[0] - m + dy, m + dx : a.shape[1] - m + dx].astype(int)


def test_motion_blur_smears_along_the_motion_only() -> None:
    edge = np.zeros((40, 40), np.uint8)
    edge[:, 20:] = 200  # a vertical edge
    across = motion_blur(edge, 6.0, 0.0)  # moving sideways: the edge becomes a ramp 6 pixels wide
    ramp = across[20, 14:27].astype(int)
    assert ramp[0] == 0 and ramp[-1] == 200 and np.all(np.diff(ramp) >= 0)
    assert 4 <= int(((across[20] > 10) & (across[20] < 190)).sum()) <= 7
    assert abs(int(across[20, 19]) + int(across[20, 20]) - 200) <= 2  # centred on the edge
    assert np.array_equal(motion_blur(edge, 0.0, 6.0), edge)  # moving along it: nothing changes
    assert motion_blur(edge, 0.1, 0.0) is edge  # under a quarter pixel: no blur


def test_a_filmed_pan_is_blurred_and_a_sampled_one_rebuilds_as_before(tmp_path: Path) -> None:
    pic = Picture(str(photo(tmp_path / "p.png", (1700, 1000))), "test-backgrounds")
    sharp = pan(pic, 3, np.random.default_rng(5))
    assert np.array_equal(sharp, pan(pic, 3, np.random.default_rng(5), shutter=0.0))
    filmed = pan(pic, 3, np.random.default_rng(5), shutter=1.0)
    assert filmed.shape == sharp.shape

    def sharpness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(int), axis=1)).mean() + np.abs(np.diff(a.astype(int), axis=0)).mean())

    assert sharpness(filmed[1]) < 0.95 * sharpness(sharp[1])


def test_a_picture_too_small_for_the_window_is_refused(tmp_path: Path) -> None:
    pic = Picture(str(photo(tmp_path / "s.png", (800, 600))), "x")
    with pytest.raises(ValueError, match="smaller than"):
        pan(pic, 5, np.random.default_rng(0))


def test_picture_sources_are_their_debian_packages(tmp_path: Path) -> None:
    owner = {"usr/share/backgrounds/mate/nature/Wood.jpg": "mate-backgrounds"}
    assert source_of(Path("/c/root/usr/share/backgrounds/mate/nature/Wood.jpg"), owner) == "mate-backgrounds"
    assert source_of(Path("/c/root/usr/share/enlightenment/photos/Lake.png"), owner) == "enlightenment-data"
    assert source_of(Path("/elsewhere/mine/x.jpg"), owner) == "mine"
    assert Picture("/c/root/usr/share/wallpapers/Kite/contents/images/3840x2160.jpg", "plasma").label == "pictures/plasma/Kite"


def test_downscale_kernels_differ_and_an_unknown_one_is_refused() -> None:
    rng = np.random.default_rng(0)
    hr = np.repeat(rng.integers(0, 256, (1, 64, 64), dtype=np.uint8), 2, axis=0)
    lows = {k: degrade(hr, 2, Codec("none", 0), kernel=k) for k in KERNELS}
    assert all(v.shape == (2, 32, 32) for v in lows.values())
    assert len({v.tobytes() for v in lows.values()}) == len(KERNELS)
    with pytest.raises(ValueError, match="unknown downscale kernel"):
        degrade(hr, 2, Codec("none", 0), kernel="nearest-ish")


def test_a_pack_of_pictures_holds_coded_pans_with_their_previous_frames(tmp_path: Path) -> None:
    pics = (Picture(str(photo(tmp_path / "a.png", (1700, 1000))), "pkg-a"),
            Picture(str(photo(tmp_path / "b.png", (1800, 1100))), "pkg-b"))
    cfg = PackConfig(scales=(2,), codecs=(Codec("x264", 23), Codec("vp9", 40)), frame_step=2, crop=96,
                     crops_per_frame=1, clips=(), pictures=pics, frames_per_picture=2, previous=True,
                     kernels=("bicubic", "lanczos"))
    pack = load_pack(build_pack(cfg, tmp_path / "p.npz"))
    assert pack.clips() == ["pictures/pkg-a/a", "pictures/pkg-b/b"]
    assert pack.meta["sources"] == ["pkg-a", "pkg-b"]
    assert pack.hr.shape == (4, 96, 96) and pack.hr_prev is not None
    assert set(pack.lr) == {"lr/x2/x264-23", "lr/x2/vp9-40"} and pack.lr["lr/x2/x264-23"].shape == (4, 48, 48)
    # A pan moves: the previous frame's crop is not the crop itself.
    assert not np.array_equal(pack.hr, pack.hr_prev)
    # The coded low rung is close to a plain 2x2 mean of the original (same region, aligned).
    mean = pack.hr.reshape(4, 48, 2, 48, 2).mean(axis=(2, 4))
    assert np.abs(mean - pack.lr["lr/x2/x264-23"]).mean() < 12
    sampler = PatchSampler(pack, PackTrainConfig(scale=2, frames=2, patch_lr=16, device="cpu"), __import__("torch").device("cpu"))
    x, y = sampler.draw(4, 16)
    assert x.shape == (4, 2, 16, 16) and y.shape == (4, 1, 32, 32)


def test_model_card_names_every_source_and_the_pans() -> None:
    from nerve_learning.sr.card import pack_description, training_sources

    clips = {"frames_per_clip": 32, "frame_step": 3, "crops_per_frame": 3, "crop": 384, "clips": [{"path": "v"}],
             "kernels": ["bicubic", "area"], "pictures": 0}
    pans = {**clips, "clips": [], "pictures": 2, "frames_per_picture": 4, "crops_per_frame": 2}
    assert pack_description(clips) == ("32 frames per clip, every 3rd, 3 crops of 384 px per frame; "
                                       "downscale kernels bicubic, area in turn over clip and rung")
    described = pack_description(pans)
    assert "frames per clip" not in described and "768x432" in described and "4 frames of it (every 3rd)" in described
    assert "motion blur" not in described
    assert "exposure drawn up to 1 frame interval" in pack_description({**pans, "shutter": 1.0})
    sources = training_sources(["videos/a.mp4", "pictures/mate-backgrounds/Wood", "pictures/mate-backgrounds/Dune",
                                "pictures/ukui-wallpapers/x"])
    assert sources == "videos/a.mp4; 3 photographs coded as pans (2 from mate-backgrounds, 1 from ukui-wallpapers)"
