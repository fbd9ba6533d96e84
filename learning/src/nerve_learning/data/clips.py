"""The fixed split of ../shared/data clips into training and held-out evaluation clips.

Evaluation clips never feed training, distillation, calibration or model selection. One or more
per content type; where a content type has only one source (screen content: a single PDF
capture), the held-out clip is a different recording of it and the model cards say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..paths import REPO


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the data root
    content: str
    raw_size: tuple[int, int] | None = None  # headerless I420 needs its size
    fps: int = 25


TRAIN: tuple[Clip, ...] = (
    Clip("videos/talking_head/test_cif_I_CABAC_slice.264", "talking_head"),
    Clip("videos/talking_head/makeup_closeup_test.mp4", "talking_head"),
    Clip("videos/sports/basketball_test_video_structuralize.mp4", "sports"),
    Clip("videos/animation/big_buck_bunny_0_30.webm", "animation"),
    Clip("videos/natural_motion_texture/CVPCMNL1_SVA_C.264", "texture"),
    Clip("videos/natural_motion_texture/VID_1920x1080_cabac_temporal_direct.264", "texture"),
    Clip("videos/natural_motion_texture/cockatoo_yuv420.mp4", "texture"),
    Clip("videos/film_archival/chaplin.mp4", "film"),
    Clip("videos/screen_content/Adobe_PDF_sample_a_1024x768_50Frms.264", "screen"),
)

EVAL: tuple[Clip, ...] = (
    Clip("videos/talking_head/Zhling_1280x720.264", "talking_head"),
    Clip("videos/sports/armwrestling_demo.mp4", "sports"),
    Clip("videos/animation/sintel_excerpt_854x480.mp4", "animation"),
    Clip("videos/natural_motion_texture/VID_1280x720_cabac_temporal_direct.264", "texture"),
    Clip("videos/screen_content/Cisco_Adobe_PDF_sample_a_1024x768_CAVLC_Bframe_9.264", "screen"),
)


def data_root() -> Path:
    """`NERVE_DATA` or ../shared/data relative to the repository."""
    env = os.environ.get("NERVE_DATA")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data"
