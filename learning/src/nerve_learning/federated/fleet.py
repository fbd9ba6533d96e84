"""The simulated fleet: viewer types, the episodic memory each device fills with nervesr's own
harvester, and each device's share of it.

Harvesting runs the real element (`nervesr scale=1 harvest-location=DIR`) over every training
clip of learning/clips.toml once (short clips several times over, since the harvester takes at
most `harvest-budget` patches per minute of video: a 2 s screen capture gives about 20 patches a
pass); held-out and unseen clips are never harvested, they are where each viewer type is
measured. The low-resolution side of every harvested patch is made once per clip by the real
codec pipeline (nerve_learning.data.degrade) and stored beside the patch (`<id>.lr.npy`, the
memory contract's optional LR side), so a device's training needs no encoder.

A device's memory is a distinct subset of its viewer type's pool: no two devices hold the same
patch. A fifth of each device's frames is held back (never trained on) for choosing between the
personalisation options on the device's own data, not on the evaluation clips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.clips import EVAL, TRAIN, UNSEEN, Clip, data_root
from ..data.degrade import Codec, _input_args, degrade, ffmpeg_exe, hr_geometry, probe_size
from ..data.memory import EpisodicMemory, MemoryConfig, features
from ..paths import REPO

PLUGIN_DIR = REPO / "target" / "release"
RUNG = Codec("x264", 28)  # the rung devices learn to upscale (the middle of the SR students' rungs)
PATCH = 64  # harvested HR patch side (LR side 32)

# Viewer type -> the content types of learning/clips.toml it watches. "mixed" watches the rest
# (natural texture and archival film), so every training clip belongs to exactly one type.
VIEWER_TYPES: dict[str, tuple[str, ...]] = {
    "sports": ("sports",),
    "animation": ("animation",),
    "talking_heads": ("talking_head",),
    "screen": ("screen",),
    "mixed": ("texture", "film"),
}


def viewer_of(content: str) -> str:
    for viewer, contents in VIEWER_TYPES.items():
        if content in contents:
            return viewer
    raise ValueError(f"content type {content!r} belongs to no viewer type")


def eval_clips(viewer: str) -> tuple[Clip, ...]:
    """Clips of the viewer's content that no device harvested (held-out and unseen roles)."""
    return tuple(c for c in (*EVAL, *UNSEEN) if c.content in VIEWER_TYPES[viewer])


def clip_key(clip: Clip) -> str:
    return Path(clip.path).stem


def gst_env() -> dict[str, str]:
    if not (PLUGIN_DIR / "libgstnerve.so").is_file() or shutil.which("gst-launch-1.0") is None:
        raise RuntimeError(f"harvesting needs gst-launch-1.0 and the built plugin in {PLUGIN_DIR} "
                           "(cargo build --release -p gst-nerve)")
    return {**os.environ, "GST_PLUGIN_PATH": str(PLUGIN_DIR)}


def harvest_pass(clip: Clip, out: Path, budget: int = 600, patch: int = PATCH, root: Path | None = None) -> None:
    """One playback of the clip through nervesr at display size with harvesting on."""
    root = root or data_root()
    src = ["filesrc", f"location={root / clip.path}", "!"]
    if clip.raw_size is not None:
        w, h = clip.raw_size
        src += ["rawvideoparse", f"width={w}", f"height={h}", "format=i420", f"framerate={clip.fps}/1", "!"]
    else:
        src += ["decodebin", "!"]
    cmd = ["gst-launch-1.0", "-q", *src, "videoconvert", "!", "video/x-raw,format=I420", "!", "nervesr", "scale=1",
           f"harvest-location={out}", f"harvest-budget={budget}", f"harvest-patch={patch}", "!", "fakesink"]
    done = subprocess.run(cmd, env=gst_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"harvesting {clip.path} failed: {done.stderr[-2000:]}")


@dataclass
class Pool:
    """The harvested patches of one clip with their LR side and the contract's metadata."""

    clip: Clip
    hr: np.ndarray  # (N, P, P) uint8
    lr: np.ndarray  # (N, P/2, P/2) uint8
    meta: list[dict[str, Any]]


def aligned(meta: dict[str, Any], shape: tuple[int, int], patch: int = PATCH) -> bool:
    """Whether a harvested patch has an LR counterpart at x2: even origin, inside the HR crop."""
    x, y = int(meta["x"]), int(meta["y"])
    return x % 2 == 0 and y % 2 == 0 and x + patch <= shape[1] and y + patch <= shape[0]


def one_clip_per_viewer() -> tuple[Clip, ...]:
    """The first training clip of each viewer type: the smallest fleet that still has every type
    (the deployment test in CI)."""
    first: dict[str, Clip] = {}
    for clip in TRAIN:
        first.setdefault(viewer_of(clip.content), clip)
    return tuple(first[v] for v in VIEWER_TYPES if v in first)


def harvest_fleet(cache: Path, min_patches: int = 150, max_passes: int = 24, log: Any = print,
                  clips: tuple[Clip, ...] = TRAIN) -> dict[str, Pool]:
    """Harvests each of `clips` (every training clip by default; cached under `cache`/harvest)
    until it has `min_patches` usable patches, and returns the pools by clip key.

    The LR side of a patch is its co-located crop of the clip's low rung (the whole clip encoded
    at RUNG, as a ladder's rung is encoded), which a device can fetch for a segment it played at a
    high rung. Encoding a stack of unrelated patches as one short video instead (the local
    trainer's way) gives artifacts no whole-frame stream has: fine-tuning on such pairs lost
    0.3-1 dB on other content types at once (docs/research/2026-12-06-federated.md). Only patches
    at an even origin have an exact LR crop; the others are left out."""
    pools: dict[str, Pool] = {}
    for clip in clips:
        key = clip_key(clip)
        done = cache / "harvest" / f"{key}.npz"
        if done.is_file():
            z = np.load(done, allow_pickle=False)
            pools[key] = Pool(clip, z["hr"], z["lr"], json.loads(str(z["meta"])))
            continue
        store = cache / "harvest" / key
        shutil.rmtree(store, ignore_errors=True)
        hr_frames = read_y(clip)
        shape = hr_frames.shape[1:]
        passes, usable = 0, 0
        while passes < max_passes and usable < min_patches:
            harvest_pass(clip, store)
            passes += 1
            memory = EpisodicMemory(store, MemoryConfig(capacity=100_000, durable=False))
            usable = sum(aligned(memory.meta(i), shape) for i in memory.ids())
        ids = [i for i in memory.ids() if aligned(memory.meta(i), shape) and memory.meta(i)["frame"] < len(hr_frames)]
        lr_frames = degrade(hr_frames, 2, RUNG, clip.fps)
        hr, lr, meta = [], [], []
        for i in ids:
            m = memory.meta(i)
            f, x, y = int(m["frame"]), int(m["x"]), int(m["y"])
            patch = memory.load(i)[0]
            if not np.array_equal(hr_frames[f, y : y + PATCH, x : x + PATCH], patch):
                continue  # not the decoded frame the harvester saw (should not happen)
            hr.append(patch)
            lr.append(lr_frames[f, y // 2 : y // 2 + PATCH // 2, x // 2 : x // 2 + PATCH // 2])
            meta.append(m)
        np.savez(done, hr=np.stack(hr), lr=np.stack(lr), meta=json.dumps(meta))
        log(f"harvested {clip.path}: {len(hr)} usable patches of {len(memory)} in {passes} pass(es)")
        pools[key] = Pool(clip, np.stack(hr), np.stack(lr), meta)
    return pools


@dataclass(frozen=True)
class Device:
    cid: int
    viewer: str
    memory: Path


def build_fleet(pools: dict[str, Pool], root: Path, clients: int, seed: int = 0, per_client: int = 0) -> list[Device]:
    """`clients` devices, as evenly as possible over the viewer types, each with its own episodic
    memory holding a distinct share of its type's pool (`per_client` patches, or all of its
    share when 0). Memories are written with the memory contract (npy + LR side + JSON)."""
    rng = np.random.default_rng(seed)
    shutil.rmtree(root, ignore_errors=True)
    viewers = list(VIEWER_TYPES)
    by_type: dict[str, list[tuple[str, int]]] = {v: [] for v in viewers}
    for key, pool in pools.items():
        by_type[viewer_of(pool.clip.content)] += [(key, i) for i in range(len(pool.hr))]
    assign = [viewers[c % len(viewers)] for c in range(clients)]
    devices = []
    for viewer in viewers:
        members = [c for c in range(clients) if assign[c] == viewer]
        items = by_type[viewer]
        order = rng.permutation(len(items))
        shares = np.array_split(order, len(members)) if members else []
        for c, share in zip(members, shares):
            if per_client:
                share = share[:per_client]
            mem = EpisodicMemory(root / f"device-{c:04d}", MemoryConfig(capacity=100_000, durable=False))
            batch = []
            for j in share:
                key, i = items[int(j)]
                pool = pools[key]
                m = {k: v for k, v in pool.meta[i].items() if k != "id"}
                m["codec"], m["crf"], m["frame"] = RUNG.name, RUNG.crf, int(pool.meta[i].get("frame", i))
                m["task"] = pool.clip.content
                batch.append((pool.hr[i], pool.lr[i], m))
            mem.add_many(batch)
            devices.append(Device(c, viewer, mem.root))
    devices.sort(key=lambda d: d.cid)
    # The experimenter's record of who is who (for the report only; no device sends its type).
    (root / "fleet.json").write_text(json.dumps([{"cid": d.cid, "viewer": d.viewer} for d in devices]))
    return devices


def load_fleet(root: Path) -> list[Device]:
    return [Device(d["cid"], d["viewer"], root / f"device-{d['cid']:04d}") for d in json.loads((root / "fleet.json").read_text())]


def split_memory(memory: EpisodicMemory, holdout: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train ids, held-back ids): whole frames of a source on one side (as the local trainer
    splits), at least one item on each side when the memory holds two."""
    ids = memory.ids()
    frames = sorted({(memory.meta(i).get("source", ""), memory.meta(i).get("frame", 0)) for i in ids})
    rng = np.random.default_rng(seed)
    held_frames = {frames[k] for k in rng.permutation(len(frames))[: max(1, int(round(holdout * len(frames))))]}
    held = [i for i in ids if (memory.meta(i).get("source", ""), memory.meta(i).get("frame", 0)) in held_frames]
    train = [i for i in ids if i not in set(held)]
    if not train and len(held) > 1:
        train, held = held[1:], held[:1]
    return train, held


def content_statistics(memory: EpisodicMemory) -> list[float]:
    """The agreed statistics a device shares: the mean of its patches' content features (luma
    mean, contrast, gradient, temporal change, scaled as the memory scales them). Four numbers;
    never a pixel, a position, a source name or a time."""
    f = np.stack([features(memory.meta(i)["stats"]) for i in memory.ids()])
    return [float(x) for x in f.mean(0)]


def read_y(clip: Clip, root: Path | None = None, max_frames: int = 100_000) -> np.ndarray:
    """The clip's Y plane as decoded (N, H, W), cropped to the x2 HR geometry: the plane nervesr
    upscales and its harvester cuts patches from (ffmpeg's `gray` output, which
    nerve_learning.data.degrade.read_luma uses, stretches limited-range luma to 0..255: the
    harvested patches would then not match the frames they came from.)"""
    root = root or data_root()
    w, h = probe_size(clip, root)
    cw, ch = hr_geometry((w, h), 2)
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", *_input_args(clip, root), "-frames:v", str(max_frames),
                          "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, w * h * 3 // 2)[:, : w * h].reshape(-1, h, w)
    return np.ascontiguousarray(frames[:, :ch, :cw])


def eval_set(viewer: str, frames: int = 6, cache: Path | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Whole frames of the viewer type's unharvested clips: (clip key, lr, hr), cached."""
    out = []
    for clip in eval_clips(viewer):
        path = cache / "eval" / f"{clip_key(clip)}-y{frames}.npz" if cache else None
        if path is not None and path.is_file():
            z = np.load(path)
            out.append((clip_key(clip), z["lr"], z["hr"]))
            continue
        hr = read_y(clip, max_frames=frames * 4)[::4][:frames]
        lr = degrade(np.ascontiguousarray(hr), 2, RUNG, clip.fps)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, lr=lr, hr=hr)
        out.append((clip_key(clip), lr, hr))
    return out
