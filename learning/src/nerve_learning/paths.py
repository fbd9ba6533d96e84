"""Where the learning side finds the repository's shared directories.

The package runs from the source tree (an editable install in the project's `.venv`), so the
shipped models, the pair cache and the shared data are found relative to this file: one place to
change if the layout moves."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
"""The repository root (learning/src/nerve_learning -> up three)."""

MODELS = REPO / "models"
"""The shipped models, their manifest and cards: what `nervesr` loads by default."""

ABR_TABLES = REPO / "nerve-abr" / "tables"
"""nerveabr's measured quality tables, one per content type and a generic one (what the element
and the simulator plan with by default)."""

CACHE = REPO / "learning" / "cache"
"""Decoded training pairs and other products that are slow to make and safe to delete."""
