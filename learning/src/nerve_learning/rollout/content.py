"""The content the fleet simulator plays and the candidates are made from (fixed frame ranges of
../shared/data clips, so nothing a candidate trains on is what it is judged on)."""

from __future__ import annotations

from ..data.clips import EVAL, TRAIN, Clip
from .candidates import ContentSpec


def clip(path: str) -> Clip:
    for c in TRAIN + EVAL:
        if c.path == path:
            return c
    raise KeyError(path)


BBB = clip("videos/animation/big_buck_bunny_0_30.webm")
SINTEL = clip("videos/animation/sintel_excerpt_854x480.mp4")
PDF = clip("videos/screen_content/Adobe_PDF_sample_a_1024x768_50Frms.264")
MAKEUP = clip("videos/talking_head/makeup_closeup_test.mp4")
BASKET = clip("videos/sports/basketball_test_video_structuralize.mp4")
CHAPLIN = clip("videos/film_archival/chaplin.mp4")

# The good candidate learns the fleet's content type (animation) from the first 10 s of Big Buck
# Bunny; the fleet watches its last 15 s and Sintel (a held-out clip).
GOOD_TRAIN_CONTENT = ContentSpec(((BBB, 0, 12, 20),))
FLEET_CONTENT = ContentSpec(((BBB, 400, 8, 30), (SINTEL, 0, 8, 6)))
# The bad candidate learns from the wrong data: screen content, clean bicubic (no codec).
WRONG_CONTENT = ContentSpec(((PDF, 0, 10, 5),))

# Segments a device plays: (clip, first frame, frames). The animation mix is the fleet's content;
# the mixed one is the champion's training mix (the drift experiment's "before").
ANIMATION_SEGMENTS = ((BBB, 400, 16), (BBB, 500, 16), (BBB, 600, 16), (SINTEL, 0, 16), (SINTEL, 24, 16))
MIXED_SEGMENTS = ((MAKEUP, 0, 16), (BASKET, 0, 16), (CHAPLIN, 0, 16), (MAKEUP, 150, 16), (BASKET, 150, 16))
# The champion's other content (the pipeline's forgetting gate): talking head, sports, film.
MIXED_OTHER = ContentSpec(((MAKEUP, 0, 6, 20), (BASKET, 0, 6, 20), (CHAPLIN, 0, 6, 20)))


def _demo() -> None:  # pragma: no cover - a manual check: python -m nerve_learning.rollout.content
    """Trains the good and the bad candidate and prints their dB against the champion."""
    import tempfile
    from pathlib import Path

    from ..paths import REPO
    from .candidates import CandidateConfig, measure, train_bad, train_good

    cfg = CandidateConfig()
    champ = REPO / "models" / "nerve-sr-x2.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        good = train_good(champ, GOOD_TRAIN_CONTENT, Path(tmp) / "good.onnx", cfg, REPO / "learning" / "cache")
        bad = train_bad(champ, WRONG_CONTENT, Path(tmp) / "bad.onnx", cfg)
        print(measure(champ, {"good": good, "bad": bad}, FLEET_CONTENT, cfg))


if __name__ == "__main__":
    _demo()
