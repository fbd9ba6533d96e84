"""The on-device loop end to end, with the real element: `nervesr` harvests while a high rung
plays, the local trainer fine-tunes the champion on what it harvested, the registry versions and
promotes the candidate, and a running `nervesr` pipeline that follows the registry's model
location swaps to it live, losing no frame."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from nerve_learning.data.clips import TRAIN, data_root
from nerve_learning.data.dataset import PairConfig
from nerve_learning.data.degrade import Codec
from nerve_learning.ondevice.local_trainer import LocalTrainConfig, Policy, local_train
from nerve_learning.data.memory import EpisodicMemory, MemoryConfig
from nerve_learning.registry.store import Registry

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "target" / "release"
# A training clip (clips.TRAIN): harvesting never touches the held-out clips.
CLIP = "videos/talking_head/test_cif_I_CABAC_slice.264"
STATS = re.compile(r"nervesr-stats, (.*)")


def gst_env() -> dict[str, str]:
    if not (PLUGIN_DIR / "libgstnerve.so").is_file() or shutil.which("gst-launch-1.0") is None:
        pytest.fail(f"needs gst-launch-1.0 and the built plugin in {PLUGIN_DIR} (cargo build --release)")
    return {**os.environ, "GST_PLUGIN_PATH": str(PLUGIN_DIR)}


def field(stats: str, name: str) -> str:
    m = re.search(rf"{re.escape(name)}=\([a-z0-9]+\)([^,;]+)", stats)
    assert m, f"{name} not in {stats}"
    return m.group(1).strip('"')


def test_harvest_train_register_and_swap_live(tmp_path: Path) -> None:
    env = gst_env()
    # 1. Play the high rung (display size: scale=1) with harvesting on.
    memory_dir = tmp_path / "memory"
    harvest = subprocess.run(
        ["gst-launch-1.0", "-q", "filesrc", f"location={data_root() / CLIP}", "!", "h264parse", "!", "avdec_h264", "!",
         "videoconvert", "!", "video/x-raw,format=I420", "!", "nervesr", "scale=1", f"harvest-location={memory_dir}",
         "harvest-budget=600", "harvest-patch=64", "!", "fakesink"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert harvest.returncode == 0, harvest.stderr
    memory = EpisodicMemory(memory_dir, MemoryConfig(capacity=10_000))
    items = memory.ids()
    assert len(items) >= 40, f"{len(items)} patches harvested"
    assert all(memory.meta(i)["source"].startswith("harvest:") for i in items)

    # 2. The shipped model is the champion; the local trainer makes and registers a candidate.
    registry = Registry(tmp_path / "registry")
    v1 = registry.register(REPO / "models" / "nerve-sr-x2.onnx", "sr", scale=2, alias="champion")
    # Tiny on purpose (the quality this loop reaches is measured by `nerve-learn ondevice-loop`, see
    # the README); every candidate is registered here so that the swap is always exercised.
    replay = PairConfig(scale=2, codecs=(Codec("x264", 23),), frames_per_clip=2, frame_step=1, patch_lr=24,
                        patches_per_frame=4, clips=TRAIN[:1])
    cfg = LocalTrainConfig(name="sr", rungs=(Codec("x264", 28),), steps=30, batch=8, replay=replay, replay_pairs=16,
                           fisher_samples=4, holdout=0.3, min_gain_db=-100.0, guard_pairs=8, max_forget_db=-1.0)
    assume = Policy(assume_idle=True, assume_charging=True, assume_wifi=True)
    report = local_train(registry, memory, cfg, assume, tmp_path / "cache")
    assert report["ran"] and report["candidate"] == 2, report
    v2 = registry.get("sr", "candidate")
    assert v2.parent == v1.version and v2.sha256 != v1.sha256

    # 3. A running pipeline follows the champion's model location; promoting swaps it live.
    location = tmp_path / "location"
    registry.materialize("sr", "champion", location)
    frames = 240
    player = subprocess.Popen(
        ["gst-launch-1.0", "-m", "videotestsrc", f"num-buffers={frames}", "pattern=ball", "!",
         "video/x-raw,format=I420,width=160,height=96,framerate=30/1", "!", "nervesr",
         f"model-location={location}", "watch-interval=50", "stats-interval=5", "!", "fakesink", "sync=true"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert player.stdout is not None
    seen: list[str] = []
    promoted = threading.Event()
    for line in player.stdout:
        m = STATS.search(line)
        if m is None:
            continue
        seen.append(m.group(1))
        if not promoted.is_set() and field(m.group(1), "model-sha256") == v1.sha256:
            registry.promote("sr", v2.version)
            registry.materialize("sr", "champion", location)
            promoted.set()
    assert player.wait(timeout=60) == 0
    assert promoted.is_set(), "the pipeline never reported the first champion"
    last = seen[-1]  # posted at EOS
    assert field(last, "model-sha256") == v2.sha256, "the running pipeline did not switch to the new champion"
    assert int(field(last, "model-swaps")) == 1 and int(field(last, "swaps-refused")) == 0
    done = int(field(last, "frames-enhanced")) + int(field(last, "frames-classical"))
    assert done == frames, f"{done} of {frames} frames came out"
