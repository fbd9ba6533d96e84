"""Federated learning parts without a network: robust aggregation, the privacy accountant, the
fleet's split of the harvest, and registering federated models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from nerve_learning.data.clips import EVAL, TRAIN, UNSEEN
from nerve_learning.federated.fleet import VIEWER_TYPES, Pool, build_fleet, eval_clips, load_fleet
from nerve_learning.federated.privacy import PrivacyLedger, epsilon_of, noise_for
from nerve_learning.federated.robust import RobustMean, problem
from nerve_learning.federated.task import get_weights, load_shipped
from nerve_learning.data.memory import EpisodicMemory, MemoryConfig


def _updates(rng: np.random.Generator, ref: list[np.ndarray], n: int, scale: float = 1e-3) -> list[list[np.ndarray]]:
    drift = [rng.normal(0, scale, r.shape) for r in ref]  # what honest devices agree on
    return [[(r + d + rng.normal(0, scale / 2, r.shape)).astype(np.float32) for r, d in zip(ref, drift)] for _ in range(n)]


def test_nan_and_inf_updates_are_rejected_with_a_logged_reason(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    ref = get_weights(load_shipped())
    ups = _updates(rng, ref, 5)
    ups[1][0].flat[3] = np.nan
    ups[3][-1].flat[0] = np.inf
    agg = RobustMean()
    with caplog.at_level(logging.WARNING, logger="nerve.federated.robust"):
        out = agg(7, ref, [(str(i), u) for i, u in enumerate(ups)])
    assert out is not None and all(np.isfinite(a).all() for a in out)
    assert [(r.device, r.round) for r in agg.rejections] == [("1", 7), ("3", 7)]
    assert "NaN" in agg.rejections[0].reason and "Inf" in agg.rejections[1].reason
    assert "device 1 rejected" in caplog.text and "non-finite" in caplog.text
    assert problem([ref[0]], ref) is not None  # wrong number of arrays


def test_poisoned_tenth_moves_the_robust_mean_little_and_the_plain_mean_a_lot() -> None:
    rng = np.random.default_rng(1)
    ref = get_weights(load_shipped())
    honest = _updates(rng, ref, 18)
    clean = RobustMean()(1, ref, [(str(i), u) for i, u in enumerate(honest)])
    scaled = [r - 20.0 * (u - r) for u, r in zip(honest[0], ref)]
    noise = [r + rng.normal(0, 1.0, r.shape).astype(np.float32) for r in ref]
    poisoned = [(str(i), u) for i, u in enumerate(honest[:16])] + [("s", scaled), ("r", noise)]
    robust = RobustMean()(1, ref, poisoned)
    plain = RobustMean(clip_to_median=False)(1, ref, poisoned)
    assert clean is not None and robust is not None and plain is not None

    def dist(a: list[np.ndarray]) -> float:
        return float(np.sqrt(sum(((x - c) ** 2).sum() for x, c in zip(a, clean))))

    step = float(np.sqrt(sum(((c - r) ** 2).sum() for c, r in zip(clean, ref))))
    assert dist(robust) < 0.5 * step < dist(plain)


def test_accountant_grows_with_rounds_and_shrinks_with_noise() -> None:
    assert epsilon_of(1.0, 0.2, 10) < epsilon_of(1.0, 0.2, 30) < epsilon_of(0.8, 0.2, 30)
    z = noise_for(8.0, 0.2, 30)
    assert epsilon_of(z, 0.2, 30) <= 8.0 < epsilon_of(z - 0.05, 0.2, 30)
    ledger = PrivacyLedger(1e-5)
    ledger.add(z, 0.2, 20)
    one = ledger.epsilon()
    ledger.add(z, 0.25, 10)  # the cluster phase costs more
    assert ledger.epsilon() > one


def test_no_harvested_clip_is_an_evaluation_clip_and_devices_share_no_patch(tmp_path: Path) -> None:
    held = {c.path for c in (*EVAL, *UNSEEN)}
    assert not held & {c.path for c in TRAIN}
    for v in VIEWER_TYPES:
        assert eval_clips(v) and {c.path for c in eval_clips(v)} <= held
    rng = np.random.default_rng(0)
    pools = {}
    for clip in TRAIN:
        n = 12
        hr = rng.integers(0, 255, (n, 64, 64), dtype=np.uint8)
        meta = [{"source": f"harvest:{clip.path}", "frame": i, "x": 0, "y": 0,
                 "stats": {"mean": float(hr[i].mean()), "std": float(hr[i].std()), "grad": 1.0, "temporal": None}}
                for i in range(n)]
        pools[clip.path] = Pool(clip, hr, hr[:, ::2, ::2].copy(), meta)
    build_fleet(pools, tmp_path / "fleet", 10)
    devices = load_fleet(tmp_path / "fleet")
    assert len(devices) == 10 and {d.viewer for d in devices} == set(VIEWER_TYPES)
    seen: set[bytes] = set()
    for d in devices:
        mem = EpisodicMemory(d.memory, MemoryConfig(capacity=10_000, durable=False))
        assert len(mem) > 0
        for i in mem.ids():
            hr, lr = mem.load(i)
            assert lr is not None and hr.tobytes() not in seen
            seen.add(hr.tobytes())


def test_federated_models_are_registered_with_lineage_and_exportable(tmp_path: Path) -> None:
    from nerve_learning.federated.report import register_run
    from nerve_learning.registry.store import Registry

    run = tmp_path / "run"
    run.mkdir()
    w = get_weights(load_shipped())
    np.savez(run / "global.npz", *w)
    np.savez(run / "cluster-1.npz", *[a * 1.001 for a in w])
    (run / "history.json").write_text(json.dumps({"settings": {"rounds": 20, "cluster_rounds": 10}, "devices": 100,
                                                  "epsilon": 7.9, "delta": 1e-5}))
    lines = register_run(run, tmp_path / "reg", "fed")
    assert len(lines) == 2
    reg = Registry(tmp_path / "reg")
    g, c = reg.get("fed", 1), reg.get("fed-cluster1", 1)
    tags = reg.client.get_model_version("fed-cluster1", "1").tags
    assert tags["nerve.federated.cluster"] == "1" and tags["nerve.federated.round"] == "30"
    assert tags["nerve.federated.clients"] == "100" and tags["nerve.federated.epsilon"] == "7.9"
    assert g.sha256 != c.sha256
    reg.materialize("fed-cluster1", 1, tmp_path / "location")  # a model-location nervesr follows
    loc = tmp_path / "location"
    assert (loc / "manifest.toml").is_file() and c.sha256 in (loc / "manifest.toml").read_text()
