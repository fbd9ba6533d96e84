"""Faults: `kill -9` at random points (seeded) of a registry export, a harvest write by the Rust
harvester (`nervesr harvest-location=` in a gst-launch-1.0 process) and an episodic-memory
eviction, each repeated; after every kill the store is reopened as a restart would: nothing is
corrupt (everything it lists loads, the exported manifest parses and names a complete file of
the right sha256) and at most the item being written or evicted is lost.

The kill points follow the workload's own progress (the child reports each finished item; the
kill comes a random time into a later one), not the machine's speed. CI runs a few kills per
workload; `NERVE_FAULT_KILLS=200 scripts/fault_loop.sh` runs the issue's 200 and prints the
figures (`NERVE_FAULT_SEED` picks another schedule).

A fourth loop kills the local trainer (ondevice/local_trainer.py) while it fine-tunes, registers or
promotes (`NERVE_FAULT_KILLS_TRAINING`, 3 in CI).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from nerve_learning.data.memory import EpisodicMemory, MemoryConfig

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
KILLS = int(os.environ.get("NERVE_FAULT_KILLS", "4"))
# Each registry child imports MLflow (seconds): its loop may be given fewer kills.
REGISTRY_KILLS = int(os.environ.get("NERVE_FAULT_KILLS_REGISTRY", str(KILLS)))
SEED = int(os.environ.get("NERVE_FAULT_SEED", "29"))
REPORT = os.environ.get("NERVE_FAULT_REPORT")


def report(workload: str, figures: dict[str, object], kills: int = KILLS) -> None:
    line = json.dumps({"workload": workload, "kills": kills, "seed": SEED, **figures})
    print(line)
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(line + "\n")


def kill_after(proc: subprocess.Popen[str], lines_wanted: int, extra_s: float, seen: list[str],
               timeout_s: float = 120.0) -> None:
    """Reads the child's progress lines until `lines_wanted` arrived, waits `extra_s` more (into
    the next item) and kills it with SIGKILL. Complete lines read are appended to `seen`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while len(seen) < lines_wanted:
        line = proc.stdout.readline()
        if not line:
            break
        if line.endswith("\n"):
            seen.append(line.strip())
        assert time.monotonic() < deadline, "the child made no progress"
    time.sleep(extra_s)
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    # Lines the child finished before the kill are acknowledged too; a cut last line is not.
    seen.extend(line for line in rest.splitlines(keepends=True) if line.endswith("\n"))
    seen[:] = [s.strip() for s in seen]


def child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


# ---- episodic-memory eviction ---------------------------------------------------------------

EVICTING_WRITER = """
    import sys
    import numpy as np
    from nerve_learning.data.memory import EpisodicMemory, MemoryConfig
    root, eviction, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mem = EpisodicMemory(root, MemoryConfig(capacity=6, eviction=eviction))
    for i in range(start, start + 10_000):
        rng = np.random.default_rng(i)
        hr = (rng.random((32, 32)) * rng.uniform(20, 255)).astype(np.uint8)
        before = set(mem.ids())
        item = mem.add(hr, hr[::2, ::2].copy(), source=f"clip{i % 5}", codec="x264", crf=23 + i % 9,
                       width=640, height=360, x=i % 17, y=i % 13, task=f"t{i % 3}")
        gone = (before | {item}) - set(mem.ids())
        print("added", item, *sorted(gone), flush=True)
"""


@pytest.mark.parametrize("eviction", ["diverse", "fifo"])
def test_kills_during_writes_and_evictions_leave_a_sound_store(tmp_path: Path, eviction: str) -> None:
    rng = np.random.default_rng(SEED)
    root = tmp_path / "memory"
    acked: set[str] = set()
    evicted: set[str] = set()
    lost_total = 0
    start = 0
    for k in range(KILLS):
        seen: list[str] = []
        proc = child(EVICTING_WRITER, str(root), eviction, str(start))
        kill_after(proc, int(rng.integers(1, 12)), float(rng.uniform(0, 0.03)), seen)
        for line in seen:
            _, item, *gone = line.split()
            acked.add(item)
            evicted.update(gone)
        start += 10_000
        # The restart: the store opens, and everything it lists loads.
        mem = EpisodicMemory(root, MemoryConfig(capacity=6, eviction=eviction))
        for item in mem.ids():
            hr, lr = mem.load(item)
            assert hr.shape == (32, 32) and lr is not None and lr.shape == (16, 16), f"kill {k}: item {item}"
        # Acknowledged items not reported evicted are all there, but for the one eviction the
        # kill interrupted (it may have removed its victim before reporting it).
        lost = acked - evicted - set(mem.ids())
        assert len(lost) <= 1, f"kill {k}: {len(lost)} acknowledged items lost: {sorted(lost)}"
        lost_total += len(lost)
        evicted |= lost
        mem.gc(min_age_s=0.0)
    report(f"memory-eviction-{eviction}", {"items_acknowledged": len(acked), "lost_to_interrupted_eviction": lost_total,
                                           "corrupt": 0})


# ---- registry export --------------------------------------------------------------------------

EXPORTER = """
    import sys
    from pathlib import Path
    from nerve_learning.registry.store import Registry
    reg, directory = Registry(Path(sys.argv[1])), Path(sys.argv[2])
    print("ready", flush=True)
    for i in range(10_000):
        reg.materialize("sr-x2", 1 + i % 2, directory)
        print("exported", 1 + i % 2, flush=True)
"""


def check_location(directory: Path) -> str | None:
    """The exported model location as nervesr reads it: None before the first export, else the
    file its manifest names, which must be complete (sha256 as the manifest says)."""
    manifest = directory / "manifest.toml"
    if not manifest.exists():
        return None
    entries = tomllib.loads(manifest.read_text())["model"]
    assert len(entries) == 1
    file = directory / entries[0]["file"]
    assert file.is_file(), f"the manifest names {file.name}, which is not there"
    assert hashlib.sha256(file.read_bytes()).hexdigest() == entries[0]["sha256"], f"{file.name} is incomplete"
    return file.name


def test_kills_during_registry_exports_leave_a_followable_location(tmp_path: Path) -> None:
    from nerve_learning.registry.store import Registry

    reg = Registry(tmp_path / "registry")
    reg.register(MODELS / "nerve-sr-x2.onnx", "sr-x2", scale=2, frames=1, alias="champion")
    reg.register(MODELS / "nerve-sr-x2-kd.onnx", "sr-x2", scale=2, frames=1, parent=1)
    location = tmp_path / "location"
    rng = np.random.default_rng(SEED)
    exports = 0
    kinds: dict[str, int] = {}
    for k in range(REGISTRY_KILLS):
        seen: list[str] = []
        proc = child(EXPORTER, str(tmp_path / "registry"), str(location))
        # "ready" and 0-3 exports, then a random point of the next one (an export takes ~50 ms).
        kill_after(proc, 1 + int(rng.integers(0, 4)), float(rng.uniform(0, 0.08)), seen)
        exports += sum(1 for s in seen if s.startswith("exported"))
        named = check_location(location)
        last = [s for s in seen if s.startswith("exported")]
        if last:
            # At most the export in progress is lost: the location names the last acknowledged
            # version or the one being written.
            assert named is not None
        kinds[str(named)] = kinds.get(str(named), 0) + 1
        # The registry itself is intact: both versions still download with their sha256.
        if k == REGISTRY_KILLS - 1:
            for v in (1, 2):
                reg.download(reg.get("sr-x2", v), tmp_path / f"check-{v}")
    report("registry-export", {"exports_completed": exports, "location_after_kill": kinds, "corrupt": 0}, REGISTRY_KILLS)


# ---- harvest write (the Rust harvester in gst-launch-1.0) -------------------------------------

def test_kills_during_harvest_writes_leave_a_sound_store(tmp_path: Path) -> None:
    gst = shutil.which("gst-launch-1.0")
    plugin = ROOT / "target" / "release" / "libgstnerve.so"
    if gst is None or not plugin.exists():
        pytest.fail("gst-launch-1.0 and target/release/libgstnerve.so are needed (cargo build --release)")
    root = tmp_path / "harvest"
    env = {**os.environ, "GST_PLUGIN_PATH": str(plugin.parent)}
    rng = np.random.default_rng(SEED)
    items_seen: list[int] = []
    orphans_max = 0
    for k in range(KILLS):
        proc = subprocess.Popen(
            [gst, "-q", "videotestsrc", "pattern=snow", "num-buffers=100000", "!",
             "video/x-raw,width=160,height=90,framerate=30/1,format=I420", "!",
             "nervesr", "scale=1", f"harvest-location={root}", "harvest-budget=6000", "harvest-patch=32", "!",
             "fakesink"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Wait until the writer has stored something this time, then kill at a random point.
        before = len(list((root / "items").glob("*.json"))) if (root / "items").exists() else 0
        deadline = time.monotonic() + 60
        while (len(list((root / "items").glob("*.json"))) if (root / "items").exists() else 0) <= before:
            assert proc.poll() is None, f"gst-launch-1.0 ended: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "the harvester wrote nothing in 60 s"
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        mem = EpisodicMemory(root)
        for item in mem.ids():
            hr, _ = mem.load(item)
            assert hr.shape == (32, 32), f"kill {k}: {item}"
        # Crash leftovers: at most the one item being written (its arrays, its temporary JSON).
        names = {p.name.split(".")[0] for p in (root / "items").iterdir()}
        orphans = names - set(mem.ids())
        assert len(orphans) <= 1, f"kill {k}: leftovers of {len(orphans)} items: {sorted(orphans)}"
        orphans_max = max(orphans_max, len(orphans))
        items_seen.append(len(mem))
        mem.gc(min_age_s=0.0)
    report("harvest-write", {"items_after_last_kill": items_seen[-1], "most_leftover_items_after_a_kill": orphans_max,
                             "corrupt": 0})


# ---- local training (ondevice/local_trainer.py: fine-tune, register, promote) ------------------

# Each child imports PyTorch and MLflow and trains for seconds: its loop has its own count.
TRAINING_KILLS = int(os.environ.get("NERVE_FAULT_KILLS_TRAINING", "3"))

TRAINER = """
    import sys
    from pathlib import Path
    from nerve_learning.data.dataset import PairConfig
    from nerve_learning.data.degrade import Codec
    from nerve_learning.data.memory import EpisodicMemory
    from nerve_learning.ondevice.local_trainer import LocalTrainConfig, Policy, local_train
    from nerve_learning.registry.store import Registry
    registry_root, memory_root, cache = map(Path, sys.argv[1:4])
    registry = Registry(registry_root)
    # Markers before the two steps that write to the registry, so the parent can kill inside them.
    for step in ("register", "promote"):
        def marked(*args, _step=step, _call=getattr(registry, step), **kwargs):
            print(_step, flush=True)
            return _call(*args, **kwargs)
        setattr(registry, step, marked)
    cfg = LocalTrainConfig(name="sr", rungs=(Codec("x264", 28),), steps=6, batch=4, lrs=(1e-3,),
                           replay_fraction=0.0, max_forget_db=-1.0, min_gain_db=-50.0, holdout=0.3)
    assume = Policy(assume_idle=True, assume_charging=True, assume_wifi=True)
    print("ready", flush=True)
    while True:
        report = local_train(registry, EpisodicMemory(memory_root), cfg, assume, cache, promote=True)
        print("trained", report["candidate"], flush=True)
"""


def kill_at(proc: subprocess.Popen[str], marker: str, extra_s: float, seen: list[str], timeout_s: float = 180.0) -> None:
    """Reads the child's lines until one equal to `marker` (a step it is starting), waits `extra_s`
    into that step and kills the child with SIGKILL."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while True:
        line = proc.stdout.readline()
        assert line, f"the child ended before '{marker}' (after {seen})"
        seen.append(line.strip())
        if seen[-1] == marker:
            break
        assert time.monotonic() < deadline, f"no '{marker}' in {timeout_s} s"
    time.sleep(extra_s)
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    seen.extend(line.strip() for line in rest.splitlines(keepends=True) if line.endswith("\n"))


def test_kills_during_local_training_leave_a_sound_registry(tmp_path: Path) -> None:
    """A device killed while it fine-tunes, registers or promotes: after restart the registry opens,
    every version it lists downloads with its sha256, `champion` names one of them and the
    champion stack agrees with it (so a rollback goes where it should), the memory it trained on
    is untouched, and the next run trains again. At most the run in progress is lost."""
    from nerve_learning.ondevice.local_trainer import harvest_clip
    from nerve_learning.data.clips import Clip
    from nerve_learning.registry.store import Registry

    memory = EpisodicMemory(tmp_path / "mem", MemoryConfig(capacity=1000, durable=False))
    harvest_clip(memory, Clip("videos/talking_head/makeup_closeup_test.mp4", "talking_head"),
                 max_frames=10, frame_step=2, patches_per_frame=4, patch=64)
    items = sorted(memory.ids())
    reg_root = tmp_path / "registry"
    Registry(reg_root).register(MODELS / "nerve-sr-x2.onnx", "sr", scale=2, alias="champion")
    rng = np.random.default_rng(SEED)
    phases: dict[str, int] = {}
    runs_completed = 0
    for k in range(TRAINING_KILLS):
        # Kill while training (a random time after start), inside register or inside promote.
        phase = ["ready", "register", "promote"][k % 3] if k < 3 else str(rng.choice(["ready", "register", "promote"]))
        extra = {"ready": rng.uniform(0.5, 6.0), "register": rng.uniform(0, 0.4), "promote": rng.uniform(0, 0.15)}[phase]
        seen: list[str] = []
        proc = child(TRAINER, str(reg_root), str(tmp_path / "mem"), str(tmp_path / "cache"))
        kill_at(proc, phase, float(extra), seen)
        phases[phase] = phases.get(phase, 0) + 1
        runs_completed += sum(1 for s in seen if s.startswith("trained"))

        reg = Registry(reg_root)
        versions = reg.versions("sr")
        champion = reg.champion("sr")
        assert champion is not None, f"kill {k} ({phase}): no champion"
        assert champion.version in {v.version for v in versions}
        # The stack is what rollback pops: its top must be the champion players run.
        assert reg._stack("sr")[-1] == champion.version, \
            f"kill {k} ({phase}): champion v{champion.version}, stack {reg._stack('sr')}"
        for v in versions[-3:] + [champion]:
            reg.download(v, tmp_path / "check" / f"{k}-{v.version}")
        shutil.rmtree(tmp_path / "check")
        assert sorted(EpisodicMemory(tmp_path / "mem").ids()) == items

    # After the last kill the device trains, registers and promotes again.
    seen = []
    proc = child(TRAINER, str(reg_root), str(tmp_path / "mem"), str(tmp_path / "cache"))
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    while not any(s.startswith("trained") for s in seen):
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, f"no run completed after the kills: {seen}"
        seen.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    reg = Registry(reg_root)
    after = reg.champion("sr")
    assert after is not None and after.version == max(v.version for v in reg.versions("sr"))
    report("local-training", {"phases": phases, "runs_completed_before_kills": runs_completed,
                              "versions": len(reg.versions("sr")), "corrupt": 0}, TRAINING_KILLS)
