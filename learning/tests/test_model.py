import numpy as np
import torch

from nerve_learning.model import BicubicUpscale, Student, bicubic_phase_weights, cubic


def catmull_rom_reference(img: np.ndarray, scale: int) -> np.ndarray:
    """Separable Catmull-Rom with clamped borders and half-pixel centres, as in the Rust
    engine's resample.rs: the element's fallback and chroma path."""

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        idx, w = [], []
        for o in range(n * scale):
            c = (o + 0.5) / scale - 0.5
            b = int(np.floor(c))
            t = c - b
            ws = np.array([cubic(t + 1), cubic(t), cubic(1 - t), cubic(2 - t)])
            idx.append(np.clip(np.arange(b - 1, b + 3), 0, n - 1))
            w.append(ws / ws.sum())
        return np.array(idx), np.array(w)

    h, w = img.shape
    iy, wy = axis(h)
    ix, wx = axis(w)
    rows = (img[:, ix] * wx[None]).sum(-1)
    return (rows[iy] * wy[:, :, None]).sum(1)


def test_phase_weights_sum_to_one() -> None:
    for s in (2, 3, 4):
        assert torch.allclose(bicubic_phase_weights(s).sum(1), torch.ones(s))


def test_built_in_upscale_is_the_elements_catmull_rom() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((13, 17)).astype(np.float32)
    for s in (2, 3, 4):
        got = BicubicUpscale(s)(torch.from_numpy(img)[None, None])[0, 0].numpy()
        np.testing.assert_allclose(got, catmull_rom_reference(img, s), atol=1e-5)


def test_untrained_student_is_exactly_the_classical_upscale() -> None:
    x = torch.rand(1, 1, 9, 11)
    m = Student(3)
    assert torch.allclose(m(x), m.upscale(x), atol=1e-6)
    assert m(x).shape == (1, 1, 27, 33)


def test_macs_count_matches_the_architecture() -> None:
    m = Student(2, channels=16, depth=2)
    convs = 9 * (1 * 16 + 2 * 16 * 16 + 16 * 4)
    assert m.macs_per_pixel() == convs + 25 * 4
