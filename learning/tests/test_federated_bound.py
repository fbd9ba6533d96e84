"""The personalisation bound (federated/bound.py) on a synthetic fleet: every type trains on its
own patches only, each grid point is scored, the best is the best on the type's own clips, and
the JSON and PNG are written (a tiny real student; seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nerve_learning.data.clips import TRAIN
from nerve_learning.federated import bound
from nerve_learning.federated.fleet import Pool, viewer_of
from nerve_learning.sr.model import Student


def _pools() -> dict[str, Pool]:
    rng = np.random.default_rng(0)
    pools = {}
    for k, clip in enumerate(TRAIN):
        n = 4 + k  # a different count per clip, so pooling mistakes show in the totals
        hr = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
        pools[clip.path] = Pool(clip, hr, hr[:, ::2, ::2].copy(), [{} for _ in range(n)])
    return pools


def test_the_bound_pools_each_type_alone_and_picks_its_best_grid_point(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pools = _pools()
    seen: list[int] = []
    real_train = bound.train_local

    def train(model, lr, hr, steps, batch, rate, seed=0):  # type: ignore[no-untyped-def]
        seen.append(len(lr))
        return real_train(model, lr, hr, steps, batch, rate, seed)

    rng = np.random.default_rng(1)
    frames = {v: [(f"{v}-clip", rng.integers(0, 256, (2, 12, 12), dtype=np.uint8),
                   rng.integers(0, 256, (2, 24, 24), dtype=np.uint8))] for v in bound.VIEWER_TYPES}
    monkeypatch.setattr(bound, "harvest_fleet", lambda cache, log=print: pools)
    monkeypatch.setattr(bound, "eval_set", lambda v, cache=None: frames[v])
    monkeypatch.setattr(bound, "load_shipped", lambda: Student(2, 4, 1).eval())
    monkeypatch.setattr(bound, "train_local", train)
    grid = ((1e-3, 3), (1e-2, 3))
    monkeypatch.setattr(bound, "GRID", grid)

    result = bound.personalisation_bound(tmp_path, grid=grid, batch=4, log=lambda *_: None)
    expected = {}
    for p in pools.values():
        expected[viewer_of(p.clip.content)] = expected.get(viewer_of(p.clip.content), 0) + len(p.hr)
    assert {v: b["patches"] for v, b in result["viewers"].items()} == expected
    assert sorted(set(seen)) == sorted(set(expected.values()))  # trained on one type's pool at a time
    for v, b in result["viewers"].items():
        assert len(b["runs"]) == len(grid)
        assert b["best"]["own_minus_shipped_db"] == max(r["own_minus_shipped_db"] for r in b["runs"])
        assert v not in b["best"]["other_minus_shipped_db"]
        assert set(b["best"]["own_per_clip_db"]) == {f"{v}-clip"}

    one = bound.personalisation_bound(tmp_path, grid=grid[:1], batch=4, log=lambda *_: None, only=("screen",))
    assert list(one["viewers"]) == ["screen"]

    monkeypatch.setattr(bound, "personalisation_bound", lambda cache, log=print: result)
    bound.write_bound(tmp_path, tmp_path / "out", log=lambda *_: None)
    assert json.loads((tmp_path / "out" / "personalisation_bound.json").read_text())["viewers"].keys() == result["viewers"].keys()
    assert (tmp_path / "out" / "personalisation_bound.png").stat().st_size > 1000
