"""The episodic memory: the on-disk contract, crash safety, diverse eviction, stratified sampling."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
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


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from nerve_learning.data.memory import EpisodicMemory, MemoryConfig
    mem = EpisodicMemory(sys.argv[1], MemoryConfig(capacity=int(sys.argv[2])))
    n = int(sys.argv[3])
    while True:
        patch = np.random.default_rng(n).integers(0, 256, (256, 256), dtype=np.uint8)
        item = mem.add(patch, patch[::2, ::2].copy(), source=f"writer:{n}", codec="x264", task=str(n % 3))
        print(item, n, flush=True)  # acknowledged: add() has returned
        n += 1
""")


def run_and_kill(root: Path, capacity: int, start: int, after_s: float) -> dict[str, int]:
    """Starts a writer that adds patches forever, SIGKILLs it after `after_s` seconds (in the
    middle of some add), returns the items it acknowledged {id: seed}."""
    env = {**os.environ, "PYTHONPATH": str(LEARNING / "src")}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(capacity), str(start)],
                            stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(after_s)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    acked = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut by the kill is not an acknowledgement
            acked[parts[0]] = int(parts[1])
    return acked


def test_a_writer_killed_mid_write_loses_nothing_stored(tmp_path: Path) -> None:
    acked: dict[str, int] = {}
    for round_, after in enumerate((1.5, 2.0, 2.5)):
        acked.update(run_and_kill(tmp_path, 10_000, 1000 * round_, after))
        mem = EpisodicMemory(tmp_path)  # opens after every kill
        assert not mem.skipped
        assert set(acked) <= set(mem.ids()), "an acknowledged item was lost"
        for item, seed in acked.items():
            hr, lr = mem.load(item)
            expected = np.random.default_rng(seed).integers(0, 256, (256, 256), dtype=np.uint8)
            assert np.array_equal(hr, expected) and lr is not None and np.array_equal(lr, expected[::2, ::2])
        # At most one item per kill is visible but unacknowledged: the one stored when the kill
        # came before its acknowledgement was printed. (`<= 1` over all rounds failed once in CI,
        # when two of the three kills both landed there.)
        assert len(mem) - len(acked) <= round_ + 1
    assert len(acked) > 10


def test_a_killed_writer_with_eviction_leaves_an_openable_store(tmp_path: Path) -> None:
    for round_ in range(2):
        run_and_kill(tmp_path, 8, 1000 * round_, 1.5)
        mem = EpisodicMemory(tmp_path, MemoryConfig(capacity=8))
        assert not mem.skipped and 0 < len(mem) <= 9  # killed between its write and its eviction: one over
        for item in mem.ids():
            hr, _ = mem.load(item)
            assert hr.shape == (256, 256)
        mem.enforce_capacity()
        assert len(EpisodicMemory(tmp_path)) <= 8


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
