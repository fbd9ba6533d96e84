"""PSNR on luma, the measure every model is selected and reported by."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 (or 0..255 float) arrays of the same shape; identical arrays
    score 100 dB, as in nerve-eval (a clip's black frames would otherwise make a mean infinite)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))
