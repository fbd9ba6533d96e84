"""The episodic memory: the on-disk contract, crash safety, diverse eviction, stratified sampling."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nerve_learning.data.memory import EpisodicMemory, MemoryConfig, patch_stats

LEARNING = Path(__file__).resolve().parents[1]


def flat(value: int, size: int = 16) -> np.ndarray:
    return np.full((size, size), value, np.uint8)


def textured(seed: int, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((size, size)) * rng.uniform(20, 255)).astype(np.uint8)


def test_items_follow_the_contract_and_survive_reopening(tmp_path: Path) -> None:
    mem = EpisodicMemory(tmp_path, MemoryConfig(capacity=10))
    hr, lr = textured(1, 32), textured(2, 16)
    item = mem.add(hr, lr, source="videos/a.mp4", codec="x265", crf=28, width=640, height=360, x=8, y=16,
                   task="animation/hevc", camera="extra keys are kept")
    files = sorted(p.name for p in (tmp_path / "items").iterdir())
    assert files == [f"{item}.json", f"{item}.lr.npy", f"{item}.npy"]
    assert len(item) == 32 and all(c in "0123456789abcdef" for c in item)
    with open(tmp_path / "items" / f"{item}.npy", "rb") as f:
        assert np.lib.format.read_magic(f) == (1, 0)
    meta = json.loads((tmp_path / "items" / f"{item}.json").read_text())
    for key in ("id", "created", "source", "codec", "crf", "bitrate_kbps", "width", "height", "x", "y", "patch",
                "stats", "task"):
        assert key in meta
    assert meta["codec"] == "x265" and meta["patch"] == 32 and meta["camera"] == "extra keys are kept"
    assert set(meta["stats"]) == {"mean", "std", "grad", "temporal"} and meta["stats"]["temporal"] is None
    again = EpisodicMemory(tmp_path, MemoryConfig(capacity=10))
    assert again.ids() == [item]
    got_hr, got_lr = again.load(item)
    assert np.array_equal(got_hr, hr) and got_lr is not None and np.array_equal(got_lr, lr)


def test_patch_stats_measure_contrast_gradient_and_motion() -> None:
    stripes = np.tile(np.array([0, 255], np.uint8), (8, 4))
    s = patch_stats(stripes, previous=255 - stripes)
    assert s["mean"] == pytest.approx(127.5) and s["std"] == pytest.approx(127.5)
    assert s["grad"] == pytest.approx(255.0 * 7 * 8 / 64)  # 7 horizontal steps of 255 per row, none vertical
    assert s["temporal"] == pytest.approx(255.0)
    assert patch_stats(flat(7))["grad"] == 0.0


def test_crash_leftovers_are_ignored_and_collected(tmp_path: Path) -> None:
    mem = EpisodicMemory(tmp_path)
    kept = mem.add(textured(0))
    items = tmp_path / "items"
    np.save(items / ("a" * 32 + ".npy"), flat(1))  # arrays written, killed before the metadata
    (items / ("b" * 32 + ".json.tmp")).write_text('{"id": "bbbb')  # killed while writing metadata
    again = EpisodicMemory(tmp_path)
    assert again.ids() == [kept]
    assert again.gc(min_age_s=3600) == 0  # too young: a concurrent writer may be mid-item
    assert again.gc(min_age_s=0) == 2
    assert sorted(p.name for p in items.iterdir()) == [f"{kept}.json", f"{kept}.npy"]


# A writer that adds 256x256 patches (seeded by their number) and stops dead at one chosen point of
# its progress. Its file operations are watched where memory.py makes them (its `open`, `os.replace`
# and `Path.unlink`) and reported as events on stdout: "<kind>-partial" in the middle of writing a
# file (the header and half of the data of an array, half of the JSON), "<kind>" once the file is
# closed, "commit" after the rename of the JSON, "unlink-<kind>" after a deletion, "ack <id> <n>"
# once add() has returned. Kinds: hr (<id>.npy), lr (<id>.lr.npy), json (<id>.json.tmp or .json).
# At the kill point the writer reports "at <n> <event>" and waits there; the parent SIGKILLs it.
# The kill lands exactly at that point whatever the machine's speed.
WRITER = textwrap.dedent("""
    import os, pathlib, sys, time
    import numpy as np
    from nerve_learning.data import memory
    from nerve_learning.data.memory import EpisodicMemory, MemoryConfig

    root, capacity, start, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    kill_n, kill_event = int(sys.argv[5]), sys.argv[6]
    current = None

    def event(name):
        print(current, name, flush=True)
        if (current, name) == (kill_n, kill_event):
            print("at", current, name, flush=True)
            while True:
                time.sleep(60)

    def kind(path):
        name = os.path.basename(str(path))
        return "lr" if name.endswith(".lr.npy") else "hr" if name.endswith(".npy") else "json" if ".json" in name else name

    class Watched:
        # A file memory.py writes, passed through, that reports its progress.
        def __init__(self, f, kind):
            self.f, self.k, self.writes = f, kind, 0
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.close()
        def write(self, data):
            self.writes += 1
            if self.writes != 2:
                return self.f.write(data)
            # mid-file: the first write (a header, a JSON token) and half of this one are on disk
            half = len(data) // 2
            self.f.write(data[:half])
            self.f.flush()
            event(self.k + "-partial")
            self.f.write(data[half:])
            return len(data)
        def flush(self):
            self.f.flush()
        def fileno(self):
            return self.f.fileno()
        @property
        def closed(self):
            return self.f.closed
        def close(self):
            if self.f.closed:
                return
            self.f.flush()
            if self.writes < 2 and (current, self.k + "-partial") == (kill_n, kill_event):
                # written in one go: stop with half of it on disk
                os.truncate(self.f.name, os.fstat(self.f.fileno()).st_size // 2)
                event(self.k + "-partial")
            self.f.close()
            event(self.k)

    def watched_open(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return Watched(f, kind(path)) if "w" in mode else f

    real_replace, real_unlink = os.replace, pathlib.Path.unlink
    def watched_replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        event("commit")
    def watched_unlink(self, *args, **kwargs):
        real_unlink(self, *args, **kwargs)
        event("unlink-" + kind(self))
    memory.open = watched_open
    os.replace = watched_replace
    pathlib.Path.unlink = watched_unlink

    mem = EpisodicMemory(root, MemoryConfig(capacity=capacity))
    for n in range(start, start + count):
        current = n
        patch = np.random.default_rng(n).integers(0, 256, (256, 256), dtype=np.uint8)
        item = mem.add(patch, patch[::2, ::2].copy(), source=f"writer:{n}", codec="x264", task=str(n % 3))
        print("ack", item, n, flush=True)  # acknowledged: add() has returned
""")


def kill_at(root: Path, capacity: int, start: int, kill_n: int, kill_event: str) -> dict[str, int]:
    """Runs a writer that adds patches `start`, `start + 1`, ... and SIGKILLs it when it reaches
    `kill_event` while adding patch `kill_n`; returns the items it acknowledged {id: seed}."""
    env = {**os.environ, "PYTHONPATH": str(LEARNING / "src")}
    count = kill_n - start + 2  # the writer ends by itself if the kill point never comes
    args = [str(root), str(capacity), str(start), str(count), str(kill_n), kill_event]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    acked, events, reached = {}, [], False
    for line in proc.stdout:
        parts = line.split()
        if parts[0] == "ack":
            acked[parts[1]] = int(parts[2])
        elif parts[0] == "at":
            reached = True
            proc.send_signal(signal.SIGKILL)
            break
        else:
            events.append(line.strip())
    _, err = proc.communicate(timeout=60)
    assert reached, f"the writer never reached {kill_event} of patch {kill_n} (events {events[-8:]}): {err}"
    assert proc.returncode == -signal.SIGKILL
    return acked


def seed_of(mem: EpisodicMemory, item: str) -> int:
    return int(mem.meta(item)["source"].split(":")[1])


def assert_items_intact(mem: EpisodicMemory) -> None:
    """Every item the store shows loads, with the arrays the writer stored for it."""
    for item in mem.ids():
        hr, lr = mem.load(item)
        expected = np.random.default_rng(seed_of(mem, item)).integers(0, 256, (256, 256), dtype=np.uint8)
        assert np.array_equal(hr, expected) and lr is not None and np.array_equal(lr, expected[::2, ::2]), item


def assert_only_whole_items(root: Path, mem: EpisodicMemory) -> None:
    names = sorted(p.name for p in (root / "items").iterdir())
    assert names == sorted(f"{i}{suffix}" for i in mem.ids() for suffix in (".json", ".npy", ".lr.npy"))


# (point of add() the writer is killed at, whether the item is stored then, crash leftovers): every
# stage of one add, from the middle of its first array to just after its commit.
ADD_STAGES = [
    ("hr-partial", False, 1),  # half an array: <id>.npy
    ("hr", False, 1),
    ("lr-partial", False, 2),  # + half of <id>.lr.npy
    ("lr", False, 2),
    ("json-partial", False, 3),  # + half of <id>.json.tmp
    ("json", False, 3),  # the whole <id>.json.tmp, not renamed
    ("commit", True, 0),  # renamed: stored, though never acknowledged
]


def test_a_writer_killed_mid_write_loses_nothing_stored(tmp_path: Path) -> None:
    acked: dict[str, int] = {}
    for round_, (stage, stored, leftovers) in enumerate(ADD_STAGES):
        start = 100 * round_
        before = set(EpisodicMemory(tmp_path).ids())
        acked.update(kill_at(tmp_path, 10_000, start, start + 2 + round_ % 3, stage))
        mem = EpisodicMemory(tmp_path)  # opens after every kill
        assert not mem.skipped, stage
        assert set(acked) <= set(mem.ids()), f"{stage}: an acknowledged item was lost"
        assert_items_intact(mem)
        unacknowledged = set(mem.ids()) - set(acked) - before
        assert len(unacknowledged) == int(stored), f"{stage}: items stored but not acknowledged {unacknowledged}"
        assert mem.gc(min_age_s=0) == leftovers, f"{stage}: crash leftovers"
        assert_only_whole_items(tmp_path, mem)
        acked.update({i: seed_of(mem, i) for i in unacknowledged})
    assert len(EpisodicMemory(tmp_path)) == len(acked) == sum(2 + r % 3 for r in range(len(ADD_STAGES))) + 1


# Killed around an eviction (capacity 8, so every add past the 8th evicts one item): (point,
# items stored then, crash leftovers).
EVICTION_STAGES = [
    ("commit", 9, 0),  # the new item is in, no eviction yet: one over
    ("unlink-json", 8, 2),  # the victim's JSON is gone (so is the victim), its arrays are left
    ("unlink-hr", 8, 1),  # and its <id>.npy
]


def test_a_killed_writer_with_eviction_leaves_an_openable_store(tmp_path: Path) -> None:
    for round_, (stage, stored, leftovers) in enumerate(EVICTION_STAGES):
        start = 100 * round_
        kill_at(tmp_path, 8, start, start + 9, stage)
        mem = EpisodicMemory(tmp_path, MemoryConfig(capacity=8))
        assert not mem.skipped and len(mem) == stored, (stage, len(mem))
        assert_items_intact(mem)
        assert mem.gc(min_age_s=0) == leftovers, f"{stage}: crash leftovers"
        assert_only_whole_items(tmp_path, mem)
        mem.enforce_capacity()
        assert len(EpisodicMemory(tmp_path)) == 8


def test_diverse_eviction_keeps_rare_content_where_fifo_drops_it(tmp_path: Path) -> None:
    def fill(eviction: str) -> tuple[EpisodicMemory, list[str]]:
        mem = EpisodicMemory(tmp_path / eviction, MemoryConfig(capacity=20, eviction=eviction))
        rare = [mem.add(textured(s), task="rare") for s in range(8)]  # oldest, all different
        mem.add_many([(flat(100 + (k % 3)), None, {"task": "common"}) for k in range(40)])  # near-duplicates
        assert len(mem) == 20
        return mem, rare

    diverse, rare = fill("diverse")
    assert set(rare) <= set(diverse.ids())
    fifo, rare_fifo = fill("fifo")
    assert not set(rare_fifo) & set(fifo.ids())
    assert len(EpisodicMemory(tmp_path / "diverse")) == 20  # evictions reached the disk


def test_eviction_keeps_the_balance_groups_even(tmp_path: Path) -> None:
    mem = EpisodicMemory(tmp_path, MemoryConfig(capacity=30, balance=("codec",)))
    mem.add_many([(textured(s), None, {"codec": "x264"}) for s in range(60)])
    mem.add_many([(textured(100 + s), None, {"codec": "av1"}) for s in range(12)])
    counts = {c: sum(mem.meta(i)["codec"] == c for i in mem.ids()) for c in ("x264", "av1")}
    assert counts == {"x264": 18, "av1": 12}  # only the crowded group gave items up


def test_stratified_sampling_replays_rare_codecs_as_often_as_common_ones(tmp_path: Path) -> None:
    def share(sampling: str) -> float:
        mem = EpisodicMemory(tmp_path / sampling, MemoryConfig(capacity=1000, sampling=sampling, clusters=1))
        mem.add_many([(textured(s), None, {"codec": "x264"}) for s in range(90)])
        mem.add_many([(textured(500 + s), None, {"codec": "vp9"}) for s in range(10)])
        ids = mem.sample(4000, np.random.default_rng(0))
        return sum(mem.meta(i)["codec"] == "vp9" for i in ids) / len(ids)

    assert share("stratified") == pytest.approx(0.5, abs=0.04)
    assert share("uniform") == pytest.approx(0.1, abs=0.03)


def test_sampling_is_stratified_over_content_clusters(tmp_path: Path) -> None:
    mem = EpisodicMemory(tmp_path, MemoryConfig(capacity=1000, clusters=2))
    mem.add_many([(flat(10 + k % 5), None, {"codec": "x264", "task": "dark"}) for k in range(95)])
    mem.add_many([(textured(k, 16), None, {"codec": "x264", "task": "busy"}) for k in range(5)])
    ids = mem.sample(2000, np.random.default_rng(1))
    assert sum(mem.meta(i)["task"] == "busy" for i in ids) / len(ids) == pytest.approx(0.5, abs=0.05)


def test_bad_configuration_and_input_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="eviction"):
        MemoryConfig(eviction="lru")
    with pytest.raises(ValueError, match="capacity"):
        MemoryConfig(capacity=0)
    mem = EpisodicMemory(tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        mem.add(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="empty"):
        mem.sample(1)
