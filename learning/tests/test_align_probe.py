"""scripts/sr_align_probe.py's block matcher (research tooling behind
docs/research/2026-12-07-sr-align.md): it must find a known shift and keep zero motion where a shift wins by less than its bias."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from pathlib import Path

import numpy as np
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sr_align_probe.py"


def probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sr_align_probe", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_shifted_texture_is_aligned_back() -> None:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (60, 76)).astype(np.uint8)  # not multiples of the block
    cur = texture[6:46, 6:70]
    prev = texture[8:48, 3:67]  # the same content 2 rows down and 3 columns left of cur's
    aligned = probe().align_u8(prev[None], cur[None])[0]
    inner = (slice(8, 32), slice(8, 56))  # away from the replicated edges
    assert np.array_equal(aligned[inner], cur[inner])
    assert not np.array_equal(prev[inner], cur[inner])


def test_a_shift_that_wins_by_less_than_the_bias_is_not_taken() -> None:
    # One faint pixel in the previous frame: moving it out of its block matches the black current
    # frame better by 6/64 of a level, less than the bias of any shift, so the block stays put;
    # without the bias it moves.
    cur = torch.zeros((1, 16, 16))
    prev = cur.clone()
    prev[0, 4, 4] = 6.0
    m = probe()
    assert torch.equal(m.align(prev, cur), prev)
    assert not torch.equal(m.align(prev, cur, bias=0.0), prev)
