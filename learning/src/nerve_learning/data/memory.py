"""Episodic memory: a bounded store of training patches on disk that survives crashes.

The on-disk layout is a contract shared with the Rust harvester (docs/memory-format.md):
one `<id>.npy` (high-resolution luma patch), an optional `<id>.lr.npy` (its low-resolution side)
and `<id>.json` (metadata) per item under `<root>/items/`. The JSON is written last, through a
temporary file and rename(2), so an item exists exactly when its JSON does; a writer killed at
any point leaves at most unreferenced `.npy`/`.tmp` files, which readers ignore. Deletion removes
the JSON first for the same reason. No index file is kept: opening the store scans `items/`.

Reading never trusts the directory: an item whose JSON cannot be read, is not an object, names
another id, lacks its array, or whose `stats` or `created` are not numbers in the contract's ranges
is skipped with a warning when the store is opened (or refreshed), so opening and sampling do not
fail on it. Arrays are read only when an item is loaded: one that cannot be read as a 2-D uint8
array is dropped from the open store with a warning, and `load` raises `UnreadableItem` for it
(`batch` leaves it out).

Eviction keeps the store diverse: it takes from the most crowded group (by default the codec)
the patch that has the nearest neighbour in the content feature space (luma mean, contrast,
gradient, temporal change), instead of the oldest. Sampling is stratified: a stratum (codec x
content cluster, clusters by k-means over the same features) is drawn uniformly, then an item in
it, so rare content and rare codecs are replayed as often as common ones.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EVICTIONS = ("diverse", "fifo", "random")
SAMPLINGS = ("stratified", "uniform")
# Fixed feature scales (not fitted to the data) so distances do not change as items come and go:
# luma mean over its range, contrast, gradient and temporal change over typical textured values.
FEATURE_SCALE = np.array([255.0, 64.0, 16.0, 16.0])
# The contract's ranges of the content statistics: luma mean, std and temporal change in 0..255;
# the gradient sums a horizontal and a vertical difference, each at most 255.
STATS_RANGE = {"mean": 255.0, "std": 255.0, "grad": 510.0, "temporal": 255.0}
META_KEYS = ("id", "created", "source", "codec", "crf", "bitrate_kbps", "width", "height", "x", "y", "patch",
             "stats", "task")


class UnreadableItem(ValueError):
    """An item whose arrays cannot be read (a writer that ignored the contract, a damaged disk)."""


def _number(value: Any) -> bool:
    """A JSON number that is finite (JSON as Python reads it also has NaN, Infinity and integers
    too large for a float)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def meta_problem(meta: Any, item_id: str) -> str | None:
    """Why an item's metadata cannot be used (None when it can): the fields readers compute with."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if meta.get("id") != item_id:
        return f"its id is {meta.get('id')!r}"
    if not _number(meta.get("created")):
        return f"created {meta.get('created')!r} is not a time"
    stats = meta.get("stats")
    if not isinstance(stats, dict):
        return f"stats {stats!r} is not an object"
    for key, top in STATS_RANGE.items():
        value = stats.get(key)
        if key == "temporal" and value is None:
            continue
        if not (_number(value) and 0.0 <= value <= top):
            return f"stats.{key} {value!r} is not a number in 0..{top:g}"
    return None


@dataclass(frozen=True)
class MemoryConfig:
    capacity: int = 2000
    eviction: str = "diverse"  # diverse | fifo | random
    balance: tuple[str, ...] = ("codec",)  # metadata keys of the groups eviction keeps even
    sampling: str = "stratified"  # stratified | uniform
    strata: tuple[str, ...] = ("codec",)  # metadata keys crossed with the content clusters
    clusters: int = 8  # content clusters (k-means over the features)
    durable: bool = True  # fsync files and the directory (power loss); renames alone cover crashes
    seed: int = 0

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"memory capacity must be positive, got {self.capacity}")
        if self.eviction not in EVICTIONS:
            raise ValueError(f"unknown eviction {self.eviction!r}; one of {EVICTIONS}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r}; one of {SAMPLINGS}")
        if self.clusters < 1:
            raise ValueError(f"clusters must be positive, got {self.clusters}")


def patch_stats(patch: np.ndarray, previous: np.ndarray | None = None) -> dict[str, float | None]:
    """The contract's content statistics of a uint8 luma patch: mean, std (0..255), the absolute
    horizontal plus vertical neighbour differences summed and divided by the pixel count, and the
    mean absolute difference with the co-located patch of the previous frame (None without one).
    The same arithmetic as the harvester's `patch_stats` (gst-nerve/src/sr/harvest.rs)."""
    p = patch.astype(np.float64)
    grad = float((np.abs(np.diff(p, axis=1)).sum() + np.abs(np.diff(p, axis=0)).sum()) / p.size)
    temporal = None if previous is None else float(np.abs(p - previous.astype(np.float32)).mean())
    return {"mean": float(p.mean()), "std": float(p.std()), "grad": grad, "temporal": temporal}


def features(stats: dict[str, Any]) -> np.ndarray:
    """The point of a patch in the content feature space (a missing temporal change counts as 0)."""
    raw = [stats.get("mean") or 0.0, stats.get("std") or 0.0, stats.get("grad") or 0.0, stats.get("temporal") or 0.0]
    return np.asarray(raw, dtype=np.float64) / FEATURE_SCALE


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npy(path: Path, array: np.ndarray, durable: bool) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), version=(1, 0), allow_pickle=False)
        if durable:
            f.flush()
            os.fsync(f.fileno())


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Labels of `points` (N, D) in k clusters (k-means++ seeding, Lloyd iterations)."""
    n = len(points)
    k = min(k, n)
    centres = [points[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        if total <= 0:
            break  # fewer distinct points than k
        centres.append(points[rng.choice(n, p=d2 / total)])
    c = np.asarray(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        labels = ((points[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        moved = np.stack([points[labels == j].mean(0) if np.any(labels == j) else c[j] for j in range(len(c))])
        if np.allclose(moved, c):
            break
        c = moved
    return labels


class EpisodicMemory:
    """A store directory opened for reading and writing (see the module docstring)."""

    def __init__(self, root: Path | str, config: MemoryConfig | None = None) -> None:
        self.root = Path(root)
        self.config = config or MemoryConfig()
        self.items_dir = self.root / "items"
        self.items_dir.mkdir(parents=True, exist_ok=True)
        self._meta: dict[str, dict[str, Any]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self._labels: dict[str, int] | None = None
        self._rng = np.random.default_rng(self.config.seed)
        self.skipped: list[str] = []  # unreadable metadata files found by the last scan
        self.dropped: set[str] = set()  # items whose arrays could not be read when loaded
        self.refresh()

    # ---- reading ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Rescans `items/` (another process, e.g. the harvester, may have added or removed items).
        Items that cannot be used are skipped with one warning that names the first few and why."""
        meta: dict[str, dict[str, Any]] = {}
        skipped = []
        reasons = []
        for path in sorted(self.items_dir.glob("*.json")):  # *.json.tmp does not match
            item_id = path.stem
            try:
                m = json.loads(path.read_text())
            except (OSError, ValueError, RecursionError) as e:
                # Only a writer that ignores the contract (no rename) can leave this; skip, keep going.
                # (UnicodeDecodeError is a ValueError; RecursionError comes from deeply nested JSON.)
                problem: str | None = f"unreadable JSON ({type(e).__name__})"
            else:
                problem = meta_problem(m, item_id)
                if problem is None and not (self.items_dir / f"{item_id}.npy").is_file():
                    problem = "no array"
            if problem is not None:
                skipped.append(path.name)
                reasons.append(f"{path.name}: {problem}")
                continue
            meta[item_id] = m
        if skipped:
            warnings.warn(f"episodic memory {self.root}: skipped {len(skipped)} unreadable items: {reasons[:3]}")
        self.skipped = skipped
        self._meta = meta
        self._arrays = {k: v for k, v in self._arrays.items() if k in meta}
        self._labels = None

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._meta

    def ids(self) -> list[str]:
        return sorted(self._meta)

    def meta(self, item_id: str) -> dict[str, Any]:
        return self._meta[item_id]

    def _read_array(self, item_id: str, path: Path) -> np.ndarray:
        try:
            with open(path, "rb") as f:
                array = np.lib.format.read_array(f, allow_pickle=False)
                # A damaged header can describe a smaller array than the file holds.
                trailing = os.fstat(f.fileno()).st_size - f.tell()
        except Exception as e:  # noqa: BLE001 - numpy's header parser raises ValueError, EOFError,
            # OSError, but also tokenize.TokenError and SyntaxError for a damaged header.
            problem = f"{type(e).__name__}: {e}"
        else:
            if array.dtype == np.uint8 and array.ndim == 2 and array.size > 0 and trailing == 0:
                return array
            problem = f"not a 2-D uint8 patch ({array.dtype}, {array.shape}, {trailing} bytes after the data)"
        # Dropped from this open store only: the files stay for gc() or a look by hand.
        self.dropped.add(item_id)
        self._meta.pop(item_id, None)
        self._arrays.pop(item_id, None)
        self._labels = None
        message = f"episodic memory {self.root}: item {item_id} dropped, {path.name} is unreadable: {problem}"
        warnings.warn(message)
        raise UnreadableItem(message)

    def load(self, item_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(high-resolution patch, low-resolution side or None), cached in RAM after the first read.
        An item whose arrays cannot be read is dropped from the store (with a warning) and raises
        `UnreadableItem`."""
        if item_id not in self._meta:
            raise KeyError(f"no item {item_id} in {self.root}")
        cached = self._arrays.get(item_id)
        if cached is None:
            hr = self._read_array(item_id, self.items_dir / f"{item_id}.npy")
            lr_path = self.items_dir / f"{item_id}.lr.npy"
            lr = self._read_array(item_id, lr_path) if lr_path.exists() else None
            cached = (hr, lr)
            self._arrays[item_id] = cached
        return cached

    def batch(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Stacked (lr, hr) uint8 patches of items that carry their low-resolution side. Items that
        turn out unreadable are left out (`load` warns); if none is left, `UnreadableItem`."""
        lrs, hrs = [], []
        unreadable = 0
        for item_id in ids:
            if item_id in self.dropped and item_id not in self._meta:
                unreadable += 1  # dropped earlier in this batch (ids are drawn with replacement)
                continue
            try:
                hr, lr = self.load(item_id)
            except UnreadableItem:
                unreadable += 1
                continue
            if lr is None:
                raise ValueError(f"item {item_id} has no low-resolution side; degrade its patch first")
            lrs.append(lr)
            hrs.append(hr)
        if ids and not lrs:
            raise UnreadableItem(f"episodic memory {self.root}: none of the {unreadable} items asked for can be read")
        return np.stack(lrs), np.stack(hrs)

    # ---- writing ------------------------------------------------------------------------------

    def _write(self, hr: np.ndarray, lr: np.ndarray | None, meta: dict[str, Any]) -> str:
        if hr.dtype != np.uint8 or hr.ndim != 2:
            raise ValueError(f"a patch must be 2-D uint8 luma, got {hr.dtype} {hr.shape}")
        if lr is not None and (lr.dtype != np.uint8 or lr.ndim != 2):
            raise ValueError(f"a low-resolution side must be 2-D uint8 luma, got {lr.dtype} {lr.shape}")
        item_id = uuid.uuid4().hex
        durable = self.config.durable
        record: dict[str, Any] = {
            "id": item_id, "created": time.time(), "source": "", "codec": None, "crf": None, "bitrate_kbps": None,
            "width": int(hr.shape[1]), "height": int(hr.shape[0]), "x": 0, "y": 0, "patch": int(hr.shape[0]),
            "stats": None, "task": None,
        }
        record.update(meta)
        record["id"] = item_id
        if record["stats"] is None:
            record["stats"] = patch_stats(hr)
        _write_npy(self.items_dir / f"{item_id}.npy", hr, durable)
        if lr is not None:
            _write_npy(self.items_dir / f"{item_id}.lr.npy", lr, durable)
        tmp = self.items_dir / f"{item_id}.json.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.items_dir / f"{item_id}.json")  # the commit point
        if durable:
            _fsync_dir(self.items_dir)
        self._meta[item_id] = record
        self._arrays[item_id] = (hr, lr)
        self._labels = None
        return item_id

    def add(self, hr: np.ndarray, lr: np.ndarray | None = None, **meta: Any) -> str:
        """Stores one patch (metadata keys as in the contract; extra keys are kept), then evicts
        down to capacity. Returns the new id (which eviction may already have removed when the
        patch duplicates what is stored)."""
        item_id = self._write(hr, lr, meta)
        self.enforce_capacity()
        return item_id

    def add_many(self, items: list[tuple[np.ndarray, np.ndarray | None, dict[str, Any]]]) -> list[str]:
        """Stores several patches, then evicts once (cheaper than `add` in a loop)."""
        ids = [self._write(hr, lr, meta) for hr, lr, meta in items]
        self.enforce_capacity()
        return ids

    def remove(self, item_id: str) -> None:
        """Deletes an item: the JSON first (the item is gone from then on), then its arrays."""
        for suffix in (".json", ".npy", ".lr.npy"):
            try:
                (self.items_dir / f"{item_id}{suffix}").unlink()
            except FileNotFoundError:
                pass
            except OSError as e:  # a directory (or an undeletable file) where an item file should be
                warnings.warn(f"episodic memory {self.root}: cannot delete {item_id}{suffix}: {e}")
        self._meta.pop(item_id, None)
        self._arrays.pop(item_id, None)
        self._labels = None

    def gc(self, min_age_s: float = 60.0) -> int:
        """Deletes crash leftovers (arrays without metadata, `.tmp` files) older than `min_age_s`,
        the age guarding against a concurrent writer that is between its two writes."""
        now = time.time()
        removed = 0
        for path in self.items_dir.iterdir():
            name = path.name
            item_id = name.split(".")[0]
            orphan = name.endswith(".tmp") or (name.endswith(".npy") and not (self.items_dir / f"{item_id}.json").exists())
            if orphan and path.is_file() and now - path.stat().st_mtime >= min_age_s:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # ---- eviction -----------------------------------------------------------------------------

    def _group(self, item_id: str, keys: tuple[str, ...]) -> tuple[str, ...]:
        m = self._meta[item_id]
        return tuple(str(m.get(k)) for k in keys)

    def enforce_capacity(self) -> list[str]:
        """Evicts until the store holds at most `capacity` items; returns the evicted ids."""
        excess = len(self._meta) - self.config.capacity
        if excess <= 0:
            return []
        if self.config.eviction == "fifo":
            victims = sorted(self._meta, key=lambda i: self._meta[i]["created"])[:excess]
        elif self.config.eviction == "random":
            victims = list(self._rng.choice(sorted(self._meta), size=excess, replace=False))
        else:
            victims = self._diverse_victims(excess)
        for item_id in victims:
            self.remove(item_id)
        return victims

    def _diverse_victims(self, excess: int) -> list[str]:
        """Repeatedly, in the largest balance group, the item nearest to another one (ties: the one
        whose second-nearest neighbour is also nearer, i.e. the denser spot)."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for item_id in sorted(self._meta):
            groups.setdefault(self._group(item_id, self.config.balance), []).append(item_id)
        dists: dict[tuple[str, ...], np.ndarray] = {}
        dead = {g: np.zeros(len(ids), dtype=bool) for g, ids in groups.items()}
        victims: list[str] = []
        for _ in range(excess):
            g = max(groups, key=lambda k: (int((~dead[k]).sum()), k))
            if g not in dists:
                f = np.stack([features(self._meta[i]["stats"]) for i in groups[g]])
                d = np.sqrt(((f[:, None, :] - f[None]) ** 2).sum(-1))
                np.fill_diagonal(d, np.inf)
                dists[g] = d
            d = dists[g]
            two = np.partition(d, 1, axis=1)[:, :2] if len(d) > 1 else np.full((1, 2), np.inf)
            # lexsort: last key first; dead items sort after every live one.
            i = int(np.lexsort((two[:, 1], two[:, 0], dead[g]))[0])
            victims.append(groups[g][i])
            dead[g][i] = True
            d[i, :] = np.inf
            d[:, i] = np.inf
        return victims

    # ---- sampling -----------------------------------------------------------------------------

    def cluster_labels(self) -> dict[str, int]:
        """Content cluster of each item (k-means over the features), recomputed when items change."""
        if self._labels is None:
            ids = self.ids()
            if not ids:
                return {}
            f = np.stack([features(self._meta[i]["stats"]) for i in ids])
            labels = kmeans(f, self.config.clusters, np.random.default_rng(self.config.seed))
            self._labels = dict(zip(ids, (int(x) for x in labels)))
        return self._labels

    def strata(self) -> dict[tuple[Any, ...], list[str]]:
        """Items by stratum: the `strata` metadata keys and the content cluster."""
        labels = self.cluster_labels()
        out: dict[tuple[Any, ...], list[str]] = {}
        for item_id in self.ids():
            out.setdefault((*self._group(item_id, self.config.strata), labels[item_id]), []).append(item_id)
        return out

    def sample(self, n: int, rng: np.random.Generator | None = None) -> list[str]:
        """`n` ids drawn with replacement: stratified (a stratum uniformly, then an item in it) or
        uniform over items, as configured."""
        if not self._meta:
            raise ValueError(f"episodic memory {self.root} is empty")
        rng = rng or self._rng
        if self.config.sampling == "uniform":
            ids = self.ids()
            return [ids[i] for i in rng.integers(0, len(ids), n)]
        strata = list(self.strata().values())
        picks = rng.integers(0, len(strata), n)
        return [strata[s][int(rng.integers(0, len(strata[s])))] for s in picks]
