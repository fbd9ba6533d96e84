"""The fixed split of ../shared/data clips into training, held-out and unseen clips, read from
learning/clips.toml (shared with nerve-eval).

Evaluation clips never feed training, distillation, calibration or model selection. One or more
per content type; where a content type has only one source (screen content: a single PDF
capture), the held-out clip is a different recording of it and the model cards say so.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import REPO


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the data root
    content: str
    raw_size: tuple[int, int] | None = None  # headerless I420 needs its size
    fps: int = 25
    # The film, camera or capture it comes from (leave-one-source-out). A label of the split, not
    # of the clip: left out of equality, so a Clip built from its path and content still matches.
    source: str = field(default="", compare=False)


CLIPS_TOML = REPO / "learning" / "clips.toml"
"""The one list of clips, their content and source, shared with nerve-eval."""


def _load(role: str) -> tuple[Clip, ...]:
    table = tomllib.loads(CLIPS_TOML.read_text())
    return tuple(
        Clip(c["path"], c["content"], tuple(c["raw_size"]) if "raw_size" in c else None, c.get("fps", 25), c["source"])
        for c in table["clip"] if c["role"] == role
    )


TRAIN: tuple[Clip, ...] = _load("train")
EVAL: tuple[Clip, ...] = _load("held-out")
UNSEEN: tuple[Clip, ...] = _load("unseen")
"""Clips in neither TRAIN nor EVAL: more unseen material of a content type (not copies of a
training clip: BA1_FT_C is "foreman" again and CVFC1_Sony_C "mobile & calendar" again, so they
are not listed)."""


def data_root() -> Path:
    """`NERVE_DATA` or ../shared/data relative to the repository."""
    env = os.environ.get("NERVE_DATA")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data"
