import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nerve_learning.sr.model import BicubicUpscale, EdgeConv, Student, bicubic_phase_weights, cubic


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


def test_edge_conv_merges_into_one_plain_conv_exactly() -> None:
    torch.manual_seed(0)
    block = EdgeConv(3, 5)
    for p in block.parameters():  # away from the small initial branches: every branch counts
        p.data.normal_()
    x = torch.rand(2, 3, 9, 7)
    # The branches computed one by one, as ECBSR writes them (zero padding at the borders).
    ref = block.conv(x) + F.conv2d(F.conv2d(x, block.expand[:, :, None, None]), block.squeeze, padding=1)
    for k in range(3):
        mid = F.conv2d(x, block.edge[k][:, :, None, None]) * block.edge_scale[k][None, :, :, None]
        ref = ref + F.conv2d(mid, block.masks[k].expand(5, 1, 3, 3).contiguous(), padding=1, groups=5)
    torch.testing.assert_close(block(x), ref, atol=1e-4, rtol=1e-4)


def test_rep_student_deploys_as_the_plain_student_of_the_same_function() -> None:
    torch.manual_seed(1)
    m = Student(4, channels=6, depth=1, frames=2, rep=True)
    x = torch.rand(1, 2, 8, 10)
    assert torch.allclose(m(x), m.upscale(x[:, -1:]), atol=1e-6)  # starts as the classical upscale
    for p in m.parameters():
        p.data.normal_(std=0.1)
    plain = m.plain()
    assert not plain.rep and all(not isinstance(b, EdgeConv) for b in plain.body)
    assert plain.macs_per_pixel() == m.macs_per_pixel()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), m(x), atol=1e-5, rtol=1e-4)


def test_as_rep_computes_the_same_function_and_merges_back() -> None:
    torch.manual_seed(2)
    plain = Student(2, channels=5, depth=1, frames=2)
    for p in plain.parameters():
        p.data.normal_(std=0.1)
    rep = plain.as_rep()
    x = torch.rand(1, 2, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(rep(x), plain(x), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(rep.plain()(x), plain(x), atol=1e-6, rtol=1e-5)
    # The zeroed branches still learn: their scales get gradients.
    rep(x).sum().backward()
    first = rep.body[0]
    assert isinstance(first, EdgeConv) and first.squeeze.grad is not None and first.squeeze.grad.abs().sum() > 0


def test_space_to_depth_student_starts_as_the_classical_upscale_at_any_size() -> None:
    # Folded 2x2 into channels, odd sizes are padded inside and cropped back: the untrained
    # network must still be exactly the element's Catmull-Rom, borders included.
    for scale, frames in ((2, 1), (3, 2), (4, 1)):
        m = Student(scale, channels=8, depth=1, frames=frames, block=2)
        for h, w in ((9, 11), (10, 7), (1, 1)):
            x = torch.rand(1, frames, h, w)
            out = m(x)
            assert out.shape == (1, 1, h * scale, w * scale)
            torch.testing.assert_close(out, m.upscale(x[:, -1:]), atol=1e-5, rtol=1e-5)


def test_space_to_depth_student_sees_its_neighbours_and_counts_its_cost() -> None:
    torch.manual_seed(3)
    m = Student(2, channels=8, depth=1, block=2)
    for p in m.body.parameters():
        p.data.normal_(std=0.1)
    # A change in one LR pixel reaches HR pixels a whole folded 3x3 window away (6 LR pixels),
    # and nothing beyond the network's reach.
    x = torch.rand(1, 1, 24, 24)
    y = x.clone()
    y[0, 0, 12, 12] += 0.5
    diff = (m(y) - m(x)).abs()[0, 0] > 1e-6
    rows = diff.any(1).nonzero().flatten()
    assert rows.min() < 2 * 12 - 8 and rows.max() > 2 * 12 + 8
    assert rows.min() >= 2 * (12 - 8) and rows.max() <= 2 * (12 + 8) + 1
    # Per LR pixel: the body at a quarter of the pixels, and the folded bicubic kernel.
    assert m.macs_per_pixel() == 9 * (4 * 8 + 8 * 8 + 8 * 16) // 4 + 9 * 16
    # Re-parameterised training deploys the same function.
    r = Student(2, channels=6, depth=1, rep=True, block=2)
    for p in r.parameters():
        p.data.normal_(std=0.1)
    with torch.no_grad():
        torch.testing.assert_close(r.plain()(x), r(x), atol=1e-5, rtol=1e-4)


def test_space_to_depth_student_round_trips_through_onnx(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nerve_learning.sr.export import export_onnx
    from nerve_learning.sr.export import student_from_onnx

    torch.manual_seed(4)
    m = Student(2, channels=8, depth=1, frames=2, block=2)
    for p in m.body.parameters():
        p.data.normal_(std=0.1)
    export_onnx(m, tmp_path / "s2d.onnx")  # checks the file against PyTorch at an odd size
    back = student_from_onnx(tmp_path / "s2d.onnx")
    assert back.shape() == m.shape()
    x = torch.rand(1, 2, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x))


def test_deepened_student_computes_the_same_function() -> None:
    torch.manual_seed(5)
    m = Student(4, channels=6, depth=1, frames=2, rep=True)
    for p in m.parameters():
        p.data.normal_(std=0.2)
    deep = m.deepened(3)
    assert deep.depth == 3 and not deep.rep and deep.macs_per_pixel() > m.macs_per_pixel()
    x = torch.rand(2, 2, 11, 13)
    with torch.no_grad():
        torch.testing.assert_close(deep(x), m(x), atol=1e-5, rtol=1e-4)
        # Its added layers are free to learn: perturbing one changes the output.
        deep.body[4].weight.add_(0.1)
        assert (deep(x) - m(x)).abs().max() > 1e-3
        # And re-parameterised for fine-tuning, still the same function.
        torch.testing.assert_close(m.deepened(3).as_rep()(x), m(x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="cannot deepen"):
        m.deepened(0)
    # A folded (space-to-depth) student grows the same way, odd frame sizes included.
    folded = Student(2, channels=8, depth=2, frames=2, block=2)
    for p in folded.parameters():
        p.data.normal_(std=0.2)
    with torch.no_grad():
        torch.testing.assert_close(folded.deepened(4).as_rep()(x), folded(x), atol=1e-5, rtol=1e-4)
