"""The episodic memory against damaged directories: seeded random corruptions of item files.

Whatever is in `items/` (truncated or random JSON, JSON of the wrong shape, stats that are not
numbers, missing, truncated or foreign arrays, stray files), opening the store, sampling from it
and evicting must not fail: unusable items are skipped with a warning, untouched items all stay,
and an item whose array turns out unreadable when loaded is dropped with `UnreadableItem`. Plain
seeded `random` (hypothesis is not among the offline packages); the seed of a failing case is in
its test id: `pytest learning/tests/test_memory_fuzz.py -k "seed-17"`. The named tests at the end
hold the minimal inputs of the crashes these cases found.
"""

import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from nerve_learning.data.memory import EpisodicMemory, MemoryConfig, UnreadableItem, meta_problem

CODECS = ("x264", "x265", "vp9", None)
# More with NERVE_MEMORY_FUZZ_SEEDS=<n> (CI runs the default).
SEEDS = int(os.environ.get("NERVE_MEMORY_FUZZ_SEEDS", "200"))


def pristine(root: Path, n: int = 10) -> list[str]:
    """A store of `n` items, each with a low-resolution side, over a few codecs and contents."""
    mem = EpisodicMemory(root, MemoryConfig(capacity=100, durable=False))
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n):
        hr = (rng.random((16, 16)) * (40 + 20 * i)).astype(np.uint8)
        ids.append(mem.add(hr, hr[::2, ::2].copy(), codec=CODECS[i % len(CODECS)], source=f"clip{i}", task=str(i % 3)))
    return ids


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("pristine")
    return root, pristine(root)


# ---- corruptions ------------------------------------------------------------------------------

NASTY = [None, True, "12", "", [], {}, -1, -1e308, 1e308, 10**400, float("nan"), float("inf"), 256.0, 1000, 0]


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value))  # Python's json writes NaN and Infinity, as a careless writer would


def json_of(path: Path) -> dict[str, Any] | None:
    """The item's metadata as an object, None once an earlier corruption broke it."""
    try:
        value = json.loads(path.read_text())
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def truncate(path: Path, rng: random.Random) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data) + 1)])


def random_bytes(path: Path, rng: random.Random) -> None:
    path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))


def flip_bytes(path: Path, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    path.write_bytes(bytes(data))


def set_field(path: Path, rng: random.Random) -> None:
    meta = json_of(path)
    if meta is None:
        return
    key = rng.choice(["id", "created", "stats", "codec", "patch"])
    meta[key] = rng.choice(NASTY)
    write_json(path, meta)


def drop_field(path: Path, rng: random.Random) -> None:
    meta = json_of(path)
    if meta is None:
        return
    meta.pop(rng.choice(["id", "created", "stats"]), None)
    write_json(path, meta)


def set_stat(path: Path, rng: random.Random) -> None:
    meta = json_of(path)
    stats = None if meta is None else meta.get("stats")
    if meta is None or not isinstance(stats, dict):
        return
    key = rng.choice(["mean", "std", "grad", "temporal"])
    if rng.random() < 0.2:
        stats.pop(key, None)
    else:
        stats[key] = rng.choice(NASTY)
    write_json(path, meta)


def wrong_shape(path: Path, rng: random.Random) -> None:
    write_json(path, rng.choice([[], [1, 2], "item", 42, None, {"id": path.stem}]))


def deep_nesting(path: Path, rng: random.Random) -> None:
    depth = rng.choice([10_000, 100_000])
    path.write_text("[" * depth + "]" * depth)


def not_utf8(path: Path, rng: random.Random) -> None:
    path.write_bytes(b'{"id": "\xff\xfe' + path.stem.encode() + b'"}')


def directory_instead(path: Path, rng: random.Random) -> None:
    path.unlink()
    path.mkdir()


def delete(path: Path, rng: random.Random) -> None:
    path.unlink()


def foreign_array(path: Path, rng: random.Random) -> None:
    array = rng.choice([
        np.zeros((4, 4), np.float32),
        np.zeros((2, 4, 4), np.uint8),
        np.zeros((), np.uint8),
        np.zeros((0, 0), np.uint8),
        np.array(["text"]),
    ])
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def pickled_array(path: Path, rng: random.Random) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)


JSON_CORRUPTIONS: list[Callable[[Path, random.Random], None]] = [
    truncate, random_bytes, flip_bytes, set_field, drop_field, set_stat, set_stat, wrong_shape, deep_nesting,
    not_utf8, directory_instead, delete,
]
ARRAY_CORRUPTIONS: list[Callable[[Path, random.Random], None]] = [
    truncate, random_bytes, flip_bytes, foreign_array, pickled_array, directory_instead, delete,
]


def stray_file(items: Path, rng: random.Random) -> None:
    """Files no writer of the contract makes: JSON without arrays, odd names, temporaries."""
    name = rng.choice(["notes", "0" * 32, "x.lr", "..", "f" * 40])
    target = items / f"{name}.{rng.choice(['json', 'json.tmp', 'npy'])}"
    if target.exists():
        return
    target.write_bytes(rng.choice([b"{}", b'{"id": "' + name.encode() + b'"}', b"", b"\x00" * 8]))


def corrupt(items: Path, ids: list[str], rng: random.Random) -> set[str]:
    """Applies 1 to 4 corruptions; returns the ids of the items touched."""
    touched = set()
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.15:
            stray_file(items, rng)
            continue
        item = rng.choice(ids)
        touched.add(item)
        if kind < 0.65:
            path = items / f"{item}.json"
            if path.is_file():
                rng.choice(JSON_CORRUPTIONS)(path, rng)
        else:
            path = items / f"{item}{rng.choice(['.npy', '.lr.npy'])}"
            if path.is_file():
                rng.choice(ARRAY_CORRUPTIONS)(path, rng)
    return touched


# ---- the property -----------------------------------------------------------------------------

def config(rng: random.Random, capacity: int = 100) -> MemoryConfig:
    return MemoryConfig(capacity=capacity, eviction=rng.choice(["diverse", "fifo", "random"]),
                        sampling=rng.choice(["stratified", "uniform"]), clusters=rng.randint(1, 4),
                        durable=False, seed=rng.randrange(1000))


@pytest.mark.parametrize("seed", range(SEEDS), ids=lambda s: f"seed-{s}")
def test_a_damaged_store_opens_samples_and_evicts(template: tuple[Path, list[str]], tmp_path: Path, seed: int) -> None:
    # Prepare: a copy of the pristine store, damaged.
    source, ids = template
    root = tmp_path / "store"
    shutil.copytree(source, root)
    items = root / "items"
    rng = random.Random(seed)
    touched = corrupt(items, ids, rng)

    # Execute + Assert: opening never fails; what it skips it warns about; untouched items stay.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mem = EpisodicMemory(root, config(rng))
    assert bool(mem.skipped) == any("skipped" in str(w.message) for w in caught), (seed, mem.skipped)
    assert set(ids) - touched <= set(mem.ids()), f"seed {seed}: an untouched item was skipped"
    for item in mem.ids():
        assert meta_problem(mem.meta(item), item) is None
    json_files = [p for p in items.glob("*.json")]
    assert len(mem) + len(mem.skipped) == len(json_files), (seed, mem.skipped)

    # Sampling, both ways, never fails while there is something to sample.
    if len(mem) == 0:
        with pytest.raises(ValueError, match="empty"):
            mem.sample(1)
        return
    picked = mem.sample(16, np.random.default_rng(seed))
    assert set(picked) <= set(mem.ids())

    # Loading: a 2-D uint8 patch, or the item is dropped with UnreadableItem (and a warning).
    for item in sorted(set(picked)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                hr, lr = mem.load(item)
            except UnreadableItem as e:
                assert item in str(e) and item not in mem and item in mem.dropped, seed
                assert caught, f"seed {seed}: dropped without a warning"
                continue
        # (A deleted <id>.lr.npy leaves an item without its optional low-resolution side.)
        assert hr.dtype == np.uint8 and hr.ndim == 2 and (lr is None or (lr.dtype == np.uint8 and lr.ndim == 2)), seed

    # A batch leaves unreadable items out; sampling again only draws what is left.
    if len(mem):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                lrs, hrs = mem.batch(mem.sample(8, np.random.default_rng(seed + 1)))
                assert len(lrs) == len(hrs) >= 1
            except UnreadableItem:
                pass  # every item drawn was unreadable
            except ValueError as e:
                # Patches of different sizes do not stack (a store may mix sizes); a damaged header
                # that still describes a whole 2-D uint8 array can make one.
                assert "same shape" in str(e) or "low-resolution side" in str(e), (seed, e)

    # Eviction over whatever was kept, then a rescan of the damaged directory.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in mem.ids():
            try:
                mem.load(item)
            except UnreadableItem:
                pass
        if len(mem) > 2:
            small = EpisodicMemory(root, config(rng, capacity=2))
            small.enforce_capacity()
            assert len(small) <= 2
        mem.refresh()
        mem.gc(min_age_s=0)


# ---- regressions -------------------------------------------------------------------------------
# The minimal inputs of the failures the seeded cases found when run against memory.py before the
# fix (400 seeds: opening failed in 31, sampling in 19, eviction in 9, loading in 136).

@pytest.fixture()
def one_item(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path, pristine(tmp_path, 3)[0]


def meta_of(path: Path) -> dict[str, Any]:
    meta = json_of(path)
    assert meta is not None
    return meta


def reopen(root: Path, **config: Any) -> EpisodicMemory:
    with pytest.warns(UserWarning, match="skipped 1 unreadable items"):
        mem = EpisodicMemory(root, MemoryConfig(durable=False, **config))
    assert len(mem) == 2
    return mem


def edit_meta(root: Path, item: str, edit: Callable[[dict[str, Any]], None]) -> None:
    path = root / "items" / f"{item}.json"
    meta = meta_of(path)
    edit(meta)
    write_json(path, meta)


def test_regression_deeply_nested_json_is_skipped(one_item: tuple[Path, str]) -> None:
    # json.loads raised RecursionError, which is not a ValueError: opening the store failed.
    root, item = one_item
    (root / "items" / f"{item}.json").write_text("[" * 100_000 + "]" * 100_000)
    reopen(root)


def test_regression_missing_stats_are_skipped(one_item: tuple[Path, str]) -> None:
    # No `stats`: the store opened, then sampling failed with KeyError('stats').
    root, item = one_item
    edit_meta(root, item, lambda m: m.pop("stats"))
    reopen(root).sample(4)


def test_regression_stats_that_are_not_an_object_are_skipped(one_item: tuple[Path, str]) -> None:
    # `"stats": 1e308`: sampling failed in features() ('float' object has no attribute 'get').
    root, item = one_item
    edit_meta(root, item, lambda m: m.update(stats=1e308))
    reopen(root).sample(4)


def test_regression_infinite_stats_are_skipped(one_item: tuple[Path, str]) -> None:
    # `"grad": Infinity` (Python's json reads it) made the k-means++ seeding probabilities NaN:
    # sampling failed in Generator.choice ("Probabilities contain NaN").
    root, item = one_item
    edit_meta(root, item, lambda m: m["stats"].update(grad=float("inf")))
    reopen(root, clusters=3).sample(4)


def test_regression_huge_integer_stats_are_skipped(one_item: tuple[Path, str]) -> None:
    # `"mean": 10**400`: sampling (and diverse eviction) failed with OverflowError.
    root, item = one_item
    edit_meta(root, item, lambda m: m["stats"].update(mean=10**400))
    mem = reopen(root, capacity=1)
    mem.sample(4)
    mem.enforce_capacity()


@pytest.mark.parametrize("created", ["missing", {}])
def test_regression_missing_or_mistyped_created_is_skipped(one_item: tuple[Path, str], created: Any) -> None:
    # No `created` (KeyError), or `"created": {}` (TypeError comparing it): fifo eviction failed.
    root, item = one_item
    edit_meta(root, item, lambda m: m.pop("created") if created == "missing" else m.update(created=created))
    mem = reopen(root, capacity=1, eviction="fifo")
    mem.enforce_capacity()
    assert len(mem) == 1


def test_regression_truncated_array_drops_the_item(one_item: tuple[Path, str]) -> None:
    # A truncated <id>.npy raised numpy's ValueError ("EOF: reading array header") on load, and
    # the item stayed to be drawn again.
    root, item = one_item
    path = root / "items" / f"{item}.npy"
    path.write_bytes(path.read_bytes()[:90])
    mem = EpisodicMemory(root, MemoryConfig(durable=False))
    with pytest.warns(UserWarning, match="dropped"), pytest.raises(UnreadableItem, match=item):
        mem.load(item)
    assert item not in mem and len(mem) == 2
    with pytest.warns(UserWarning, match="dropped"):
        mem2 = EpisodicMemory(root, MemoryConfig(durable=False))
        lrs, hrs = mem2.batch([item, *mem2.ids()])
    assert len(lrs) == len(hrs) == 2


def test_regression_damaged_array_header_drops_the_item(one_item: tuple[Path, str]) -> None:
    # A flipped byte in the header's dict made numpy raise tokenize.TokenError (not a
    # ValueError); a directory in place of the array raised IsADirectoryError.
    root, item = one_item
    path = root / "items" / f"{item}.npy"
    data = path.read_bytes()
    path.write_bytes(data.replace(b"'descr': '|u1'", b"'descr': '|u1", 1))
    mem = EpisodicMemory(root, MemoryConfig(durable=False))
    with pytest.warns(UserWarning, match="dropped"), pytest.raises(UnreadableItem):
        mem.load(item)
    other = mem.ids()[0]
    (root / "items" / f"{other}.npy").unlink()
    (root / "items" / f"{other}.npy").mkdir()
    with pytest.warns(UserWarning, match="skipped 1"):
        assert other not in EpisodicMemory(root, MemoryConfig(durable=False))


def test_regression_directory_in_place_of_an_array_does_not_stop_eviction(one_item: tuple[Path, str]) -> None:
    # A directory named <id>.lr.npy made remove() (eviction) fail with IsADirectoryError after the
    # item's JSON was gone; gc() failed on it the same way.
    root, item = one_item
    lr = root / "items" / f"{item}.lr.npy"
    lr.unlink()
    lr.mkdir()
    mem = EpisodicMemory(root, MemoryConfig(durable=False, capacity=1, eviction="fifo"))
    with pytest.warns(UserWarning, match="cannot delete"):
        mem.remove(item)
    assert item not in mem and mem.gc(min_age_s=0) == 0 and lr.is_dir()


def test_array_of_another_type_drops_the_item(one_item: tuple[Path, str]) -> None:
    # Not a crash before: a float32 or 3-D <id>.npy loaded as it was and reached the trainer.
    root, item = one_item
    foreign_array(root / "items" / f"{item}.npy", random.Random(0))
    mem = EpisodicMemory(root, MemoryConfig(durable=False))
    with pytest.warns(UserWarning, match="dropped"), pytest.raises(UnreadableItem):
        mem.load(item)
