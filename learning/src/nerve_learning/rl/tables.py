"""Perturbed quality tables, for training a policy that reads the table rather than recognises it.

The policy's features carry the quality table (VMAF per rung and level, enhancement speeds). A
network that met one table in training (or the six measured ones) reads any other as something it
never saw: with nerveabr's tables re-measured on the active picture the shipped policy kept the
lowest rung on a fast link (docs/research/2026-12-07-abr-tables-active.md). Perturbed copies of
the measured tables spread the features over what a content type, a re-measurement or another
device may give; the planner that labels the imitation reads each one, so the labels follow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def perturb(table: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One copy of `table`: every rung's classical VMAF shifted (one shift for the table, plus a
    little per rung, kept increasing with the rung), every enhancement gain scaled by U(-0.6, 1.6)
    (so enhancement sometimes loses, as on the re-measured animation table), speeds scaled by
    U(0.4, 2.5) (another device)."""
    out: dict[str, Any] = json.loads(json.dumps(table))
    shift = rng.uniform(-20.0, 10.0)
    gain_scale = rng.uniform(-0.6, 1.6)
    speed = rng.uniform(0.4, 2.5)
    last = 0.0
    for r in out["rungs"]:
        base = float(np.clip(r["vmaf"] + shift + rng.normal(0.0, 2.0), 1.0, 99.0))
        base = max(base, last + 0.1)  # a higher rung never looks worse classically
        last = base
        for lv in r["levels"]:
            gain = (lv["vmaf"] - r["vmaf"]) * gain_scale * rng.uniform(0.8, 1.2)
            lv["vmaf"] = float(np.clip(base + gain, 0.5, 99.5))
            lv["fps"] = lv["fps"] * speed
            lv["fps_cpu"] = lv["fps_cpu"] * speed
        r["vmaf"] = base
    out["name"] = f"{table['name']}-perturbed"
    return out


def write_perturbed(sources: list[Path], n: int, out_dir: Path, seed: int = 0) -> tuple[str, ...]:
    """`n` perturbed copies drawn from `sources` (round robin), written to `out_dir`; their paths."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [json.loads(p.read_text()) for p in sources]
    paths = []
    for k in range(n):
        path = out_dir / f"perturbed-{k:03d}.json"
        path.write_text(json.dumps(perturb(tables[k % len(tables)], rng)))
        paths.append(str(path))
    return tuple(paths)
