"""The degradation, a tiny training run, export and the manifest entry, end to end in seconds."""

import hashlib
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nerve_learning.manifest import upsert_manifest
from nerve_learning.data.clips import EVAL, TRAIN
from nerve_learning.data.dataset import PairConfig, build_pairs
from nerve_learning.data.degrade import Codec, degrade
from nerve_learning.manifest import manifest_entry
from nerve_learning.sr.export import export_onnx
from nerve_learning.metrics import psnr
from nerve_learning.sr.train import TrainConfig, train


def smooth_frames(n: int, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(128 + 100 * np.sin(x / 5.0 + k) * np.cos(y / 7.0)).astype(np.uint8) for k in range(n)])


def test_degradation_goes_through_a_real_codec() -> None:
    hr = smooth_frames(4, 64, 96)
    mild, harsh = degrade(hr, 2, Codec("x264", 18)), degrade(hr, 2, Codec("x264", 45))
    assert mild.shape == harsh.shape == (4, 32, 48)
    plain = hr.reshape(4, 32, 2, 48, 2).mean((2, 4))
    # Harder compression loses more: the codec really ran.
    assert psnr(mild, plain) > psnr(harsh, plain) + 3


def test_split_keeps_evaluation_clips_out_of_training() -> None:
    assert not {c.path for c in TRAIN} & {c.path for c in EVAL}
    assert {c.content for c in EVAL} >= {"talking_head", "sports", "animation", "texture", "screen"}


def test_tiny_training_exports_a_model_the_manifest_describes(tmp_path: Path) -> None:
    pairs = PairConfig(scale=2, codecs=(Codec("x264", 23),), frames_per_clip=2, frame_step=1, patch_lr=24,
                       patches_per_frame=4, clips=TRAIN[:1])
    lr, hr = build_pairs(pairs, tmp_path / "cache")
    assert lr.shape[1:] == (24, 24) and hr.shape[1:] == (48, 48) and len(lr) == len(hr) == 8
    model = train(TrainConfig(steps=30, batch=4), pairs, tmp_path / "cache")
    onnx_path = tmp_path / "m.onnx"
    sha = export_onnx(model, onnx_path)
    assert sha == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    manifest = tmp_path / "manifest.toml"
    upsert_manifest(manifest, "m", manifest_entry("m", "m.onnx", 2, 1, sha, True, "m.md"))
    upsert_manifest(manifest, "m", manifest_entry("m", "m.onnx", 2, 1, sha, True, "m.md"))  # replaces, no duplicate
    entries = tomllib.loads(manifest.read_text())["model"]
    assert len(entries) == 1 and entries[0]["scale"] == 2 and entries[0]["sha256"] == sha
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"lr": np.random.rand(1, 1, 21, 35).astype(np.float32)})[0]
    assert out.shape == (1, 1, 42, 70)


def test_a_new_default_takes_the_old_ones_place(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.toml"
    upsert_manifest(manifest, "old", manifest_entry("old", "old.onnx", 2, 1, "a" * 64, True, None))
    upsert_manifest(manifest, "x4", manifest_entry("x4", "x4.onnx", 4, 1, "b" * 64, True, None))
    upsert_manifest(manifest, "new", manifest_entry("new", "new.onnx", 2, 2, "c" * 64, True, None, parent="p"))
    defaults = {m["name"]: m["default"] for m in tomllib.loads(manifest.read_text())["model"]}
    assert defaults == {"old": False, "x4": True, "new": True}  # another scale keeps its default


def test_a_replaced_entry_keeps_its_default_for_large_inputs(tmp_path: Path) -> None:
    # `default_from_rows` is set by hand (the shipped edge student's 480): re-exporting the model
    # must not drop it, a new default of the scale must not touch it, and an entry's own wins
    manifest = tmp_path / "manifest.toml"
    upsert_manifest(manifest, "fast", manifest_entry("fast", "fast.onnx", 2, 2, "a" * 64, False, None))
    manifest.write_text(manifest.read_text().replace("default = false", "default = false\ndefault_from_rows = 480"))
    upsert_manifest(manifest, "fast", manifest_entry("fast", "fast.onnx", 2, 2, "b" * 64, False, None))
    upsert_manifest(manifest, "strong", manifest_entry("strong", "strong.onnx", 2, 2, "c" * 64, True, None))
    models = {m["name"]: m for m in tomllib.loads(manifest.read_text())["model"]}
    assert models["fast"]["sha256"] == "b" * 64 and models["fast"]["default_from_rows"] == 480
    assert models["strong"]["default"] and "default_from_rows" not in models["strong"]
    own = manifest_entry("fast", "fast.onnx", 2, 2, "d" * 64, False, None).replace(
        "default = false", "default = false\ndefault_from_rows = 720")
    upsert_manifest(manifest, "fast", own)
    assert tomllib.loads(manifest.read_text())["model"][-1]["default_from_rows"] == 720
    assert manifest.read_text().count("default_from_rows") == 1
