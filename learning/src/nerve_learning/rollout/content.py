"""The content the fleet simulator plays and the candidates are made from (fixed frame ranges of
../shared/data clips, so nothing a candidate trains on is what it is judged on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..data.clips import EVAL, TRAIN, Clip


@dataclass(frozen=True)
class ContentSpec:
    """Frames of clips as (clip, first frame, frame count, frame step)."""

    clips: tuple[tuple[Clip, int, int, int], ...]


class Segment(NamedTuple):
    """What a device plays in one session: `frames` frames of `clip` from `first`, the whole
    picture or the `box` (x, y, width, height in the clip's pixels) of it."""

    clip: Clip
    first: int
    frames: int
    box: tuple[int, int, int, int] | None = None


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
ANIMATION_SEGMENTS = tuple(Segment(c, f, 16) for c, f in ((BBB, 400), (BBB, 500), (BBB, 600), (SINTEL, 0), (SINTEL, 24)))
MIXED_SEGMENTS = tuple(Segment(c, f, 16) for c, f in ((MAKEUP, 0), (BASKET, 0), (CHAPLIN, 0), (MAKEUP, 150), (BASKET, 150)))
# The champion's other content (the pipeline's forgetting gate): talking head, sports, film.
MIXED_OTHER = ContentSpec(((MAKEUP, 0, 6, 20), (BASKET, 0, 6, 20), (CHAPLIN, 0, 6, 20)))

# The small profile (the CI test of the whole loop, test_rollout_loop.py): the same clips, fewer
# frames, and devices play 320x176 boxes of them (8 frames), three across Sintel's lower
# letterbox edge, so a session costs a device a fraction of a second of CPU. The good candidate's
# gain there is more even (+0.6 to +1.4 dB a session; +0.1 on the Big Buck Bunny box) than on
# whole frames (Sintel's upper edge: +3.5), which the canary's confidence sequence needs to decide
# on a handful of reports.
SMALL_SEGMENTS = (Segment(BBB, 400, 8, (480, 272, 320, 176)), Segment(SINTEL, 0, 8, (100, 304, 320, 176)),
                  Segment(SINTEL, 0, 8, (500, 304, 320, 176)), Segment(SINTEL, 24, 8, (500, 304, 320, 176)))
SMALL_GOOD_TRAIN_CONTENT = ContentSpec(((BBB, 0, 8, 30),))
SMALL_FLEET_CONTENT = ContentSpec(((BBB, 400, 2, 100), (SINTEL, 0, 3, 8)))
SMALL_OTHER = ContentSpec(((MAKEUP, 0, 2, 60), (BASKET, 0, 2, 60), (CHAPLIN, 0, 2, 60)))


@dataclass(frozen=True)
class Profile:
    """What a pipeline trains on, is gated on and what its fleet plays (`nerve-learn pipeline
    run --content`)."""

    train: ContentSpec
    heldout: ContentSpec
    other: ContentSpec
    mix: str


PROFILES = {"fleet": Profile(GOOD_TRAIN_CONTENT, FLEET_CONTENT, MIXED_OTHER, "animation"),
            "small": Profile(SMALL_GOOD_TRAIN_CONTENT, SMALL_FLEET_CONTENT, SMALL_OTHER, "small")}
