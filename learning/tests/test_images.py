"""Image packs (still pictures as BI training crops), merging packs, and fine-tuning from weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nerve_learning.data.images import ImagePackConfig, build_image_pack, find_pictures
from nerve_learning.data.pack import Pack, load_pack, merge_packs
from nerve_learning.sr.packtrain import PackTrainConfig, PatchSampler, train_from_pack


def picture(path: Path, size: tuple[int, int], textured: bool) -> Path:
    rng = np.random.default_rng(len(str(path)))
    w, h = size
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if textured else np.full((h, w, 3), 90, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def test_find_pictures_keeps_one_file_per_picture(tmp_path: Path) -> None:
    picture(tmp_path / "Kite/contents/images/64x48.png", (64, 48), True)
    big = picture(tmp_path / "Kite/contents/images/128x96.png", (128, 96), True)
    dark = picture(tmp_path / "Kite/contents/images_dark/64x48.png", (64, 48), True)
    picture(tmp_path / "b/Elephants_640x360.png", (64, 36), True)
    sized = picture(tmp_path / "b/Elephants_1280x720.png", (128, 72), True)
    (tmp_path / "b/readme.txt").write_text("not a picture")
    assert find_pictures([tmp_path], min_bytes=0) == [big, dark, sized]
    assert find_pictures([tmp_path], min_bytes=10**9) == []


def test_image_pack_crops_detailed_regions_with_a_shifted_previous_frame(tmp_path: Path) -> None:
    textured = picture(tmp_path / "t.png", (240, 200), True)
    flat = picture(tmp_path / "f.png", (240, 200), False)
    cfg = ImagePackConfig(crop=48, stride=48, shift=2, factors=(2, 3))
    pack = load_pack(build_image_pack(cfg, [textured, flat], tmp_path / "p.npz"))
    assert pack.clips() == ["pictures/t.png"]  # the flat picture gives no crop
    # /2: 120x100 -> top 2 (50 leaves no room for the shift), left 2 and 50; /3: 80x66 -> one crop
    assert pack.hr.shape == (3, 48, 48) and pack.hr_prev is not None and pack.hr_prev.shape == (3, 48, 48)
    assert (pack.valid == 48).all() and (pack.clip == 0).all()
    for hr, prev in zip(pack.hr, pack.hr_prev):
        # The stand-in previous frame is the same picture moved by at most `shift` pixels.
        inner = hr[2:-2, 2:-2].astype(int)
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if np.array_equal(prev[2 - dy : 46 - dy, 2 - dx : 46 - dx].astype(int), inner)]
        assert len(found) == 1
    with pytest.raises(ValueError, match="no crop"):
        build_image_pack(cfg, [flat], tmp_path / "q.npz")


def small_pack(n: int, crop: int, clips: list[str], prev: bool = True) -> Pack:
    rng = np.random.default_rng(n)
    hr = rng.integers(0, 256, (n, crop, crop), dtype=np.uint8)
    return Pack(hr=hr, clip=np.arange(n, dtype=np.int16) % len(clips), valid=np.full(n, crop, np.int16),
                lr={"lr/x4/x264-23": hr[:, ::4, ::4].copy()}, meta={"clips": clips, "config": {}},
                hr_prev=hr[::-1].copy() if prev else None)


def test_merge_packs_renumbers_clips_and_keeps_exclusions_working() -> None:
    video = small_pack(4, 48, ["videos/a.mp4", "videos/calendar.264"])
    photos = small_pack(3, 48, ["pictures/p.jpg"])
    merged = merge_packs([video, photos])
    assert merged.clips() == ["videos/a.mp4", "videos/calendar.264", "pictures/p.jpg"]
    assert merged.clip.tolist() == [0, 1, 0, 1, 2, 2, 2]
    # The same codec rungs in both (clips and pictures' pans): kept, crop for crop.
    assert set(merged.lr) == {"lr/x4/x264-23"}
    assert np.array_equal(merged.lr["lr/x4/x264-23"], np.concatenate([video.lr["lr/x4/x264-23"], photos.lr["lr/x4/x264-23"]]))
    # Other rungs (an image pack has none): dropped, the merge serves BI training only.
    photos_bi = small_pack(3, 48, ["pictures/p.jpg"])
    photos_bi.lr = {}
    assert merge_packs([video, photos_bi]).lr == {}
    assert merged.hr_prev is not None and np.array_equal(merged.hr_prev[4:], photos.hr_prev)
    sampler = PatchSampler(merged, PackTrainConfig(scale=4, rungs="bi", frames=2, exclude=("calendar",), patch_lr=6,
                                                   device="cpu"), torch.device("cpu"))
    assert sampler.hr.shape[0] == 5
    with pytest.raises(ValueError, match="crop sizes"):
        merge_packs([video, small_pack(2, 24, ["x"])])
    with pytest.raises(ValueError, match="previous"):
        merge_packs([video, small_pack(2, 48, ["x"], prev=False)])


def test_fine_tuning_starts_from_the_given_weights(tmp_path: Path) -> None:
    pack = small_pack(6, 48, ["a", "b"])
    base = PackTrainConfig(scale=4, rungs="bi", channels=4, depth=1, frames=2, rep=True, steps=3, batch=4, patch_lr=6,
                           device="cpu", threads=1)
    first = train_from_pack(pack, base, tmp_path / "a.pt")
    start = torch.load(first, weights_only=False)["state"]
    # A learning rate of 0: the fine-tuned weights are the starting ones, exactly.
    still = PackTrainConfig(**{**base.__dict__, "init": str(first), "lr": 0.0, "seed": 5})
    record = torch.load(train_from_pack(pack, still, tmp_path / "b.pt"), weights_only=False)
    assert record["init"]["path"] == str(first)
    assert all(torch.equal(record["state"][k], start[k]) for k in start)
    moved = PackTrainConfig(**{**still.__dict__, "lr": 1e-2})
    state = torch.load(train_from_pack(pack, moved, tmp_path / "c.pt"), weights_only=False)["state"]
    assert any(not torch.equal(state[k], start[k]) for k in start)
    with pytest.raises(ValueError, match="different student"):
        train_from_pack(pack, PackTrainConfig(**{**still.__dict__, "channels": 8}), tmp_path / "d.pt")


def test_model_card_describes_each_part_of_a_merged_pack(tmp_path: Path) -> None:
    from nerve_learning.sr.card import pack_description

    pictures = load_pack(build_image_pack(ImagePackConfig(crop=48, stride=48, shift=2, factors=(2,)),
                                          [picture(tmp_path / "t.png", (240, 200), True)], tmp_path / "p.npz"))
    video = small_pack(4, 48, ["videos/a.mp4"])
    video.meta["config"] = {"frames_per_clip": 32, "frame_step": 6, "crops_per_frame": 3, "crop": 48}
    parts = [pack_description(c) for c in merge_packs([video, pictures]).meta["config"]["merged"]]
    assert parts == ["32 frames per clip, every 6th, 3 crops of 48 px per frame",
                     "still pictures shrunk by 2, crops of 48 px every 48 px with detail >= 5.0, "
                     "each with a copy shifted by up to 2 px as its previous frame"]


def test_picture_names_say_which_wallpaper() -> None:
    from nerve_learning.data.images import picture_name

    assert picture_name(Path("/w/Kite/contents/images/1280x1024.jpg")) == "Kite.jpg"
    assert picture_name(Path("/w/Kite/contents/images_dark/1280x1024.jpg")) == "Kite-dark.jpg"
    assert picture_name(Path("/b/Elephants_5640x3172.jpg")) == "Elephants_5640x3172.jpg"


def test_l2_fine_tuning_measures_squared_error(tmp_path: Path) -> None:
    pack = small_pack(6, 48, ["a", "b"])
    base = PackTrainConfig(scale=4, rungs="bi", channels=4, depth=1, steps=1, batch=4, patch_lr=6, lr=0.0,
                           device="cpu", threads=1)
    first = train_from_pack(pack, base, tmp_path / "a.pt")
    # Same start, same first batch, no update: the recorded losses are L1 and MSE of the same errors.
    l1, l2 = (torch.load(train_from_pack(pack, PackTrainConfig(**{**base.__dict__, "init": str(first), "loss": loss}),
                                         tmp_path / f"{loss}.pt"), weights_only=False)["student"]["final_loss"]
              for loss in ("l1", "l2"))
    assert 0 < l2 < l1 < 1  # errors under 1: squares are smaller
    with pytest.raises(ValueError, match="l1 or l2"):
        train_from_pack(pack, PackTrainConfig(**{**base.__dict__, "loss": "huber"}), tmp_path / "h.pt")
