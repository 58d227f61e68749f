"""Measurement operators: adjointness, orthonormality, projectors, data steps, errors.

Every identity is checked on random inputs in float64, for gray and color images of an even and an odd
size (and a one-pixel-wide strip), so a wrong transpose, a wrong normalisation or a crop bug shows.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from priorstudio.core.errors import MaskError, ParameterError
from priorstudio.core.operators import (
    TASKS,
    Blur,
    CompressiveSensing,
    Identity,
    Inpaint,
    Operator,
    RandomPixels,
    SpectralLowPass,
    SuperResolution,
    box_kernel,
    dct,
    gaussian_kernel,
    idct,
    make_operator,
    motion_kernel,
)

SHAPES = {"even": (16, 12), "odd": (17, 23), "strip": (1, 9)}
CHANNELS = {"gray": 1, "color": 3}


def _hole(h: int, w: int) -> torch.Tensor:
    missing = torch.zeros(h, w, dtype=torch.bool)
    missing[h // 4 : h // 4 + max(1, h // 2), w // 3 : w // 3 + max(1, w // 3)] = True
    missing[0, 0] = False
    if missing.all():
        missing[-1, -1] = False
    return missing


BUILDERS = {
    "denoise": lambda shape: Identity(shape),
    "inpaint": lambda shape: Inpaint(shape, _hole(shape[1], shape[2])),
    "random_pixels": lambda shape: RandomPixels(shape, 0.3, seed=1),
    "super_resolution": lambda shape: SuperResolution(shape, 4),
    "super_resolution_3": lambda shape: SuperResolution(shape, 3),
    "spectral": lambda shape: SpectralLowPass(shape, 0.2),
    "compressive": lambda shape: CompressiveSensing(shape, 0.25, seed=2),
}


def _cases():
    for name in BUILDERS:
        for cname, c in CHANNELS.items():
            for sname, (h, w) in SHAPES.items():
                yield pytest.param(name, (c, h, w), id=f"{name}-{cname}-{sname}")


CASES = list(_cases())


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _op(name: str, shape) -> Operator:
    return BUILDERS[name](shape)


def _measure_like(op: Operator, batch: int, seed: int = 1) -> torch.Tensor:
    probe = op.forward(torch.zeros(batch, *op.image_shape, dtype=torch.float64))
    return _rand(*probe.shape, seed=seed)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.flatten(1) * b.flatten(1)).sum(1)


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_adjoint_is_the_transpose(name, shape):
    op = _op(name, shape)
    x = _rand(2, *shape, seed=0)
    c = _measure_like(op, 2)
    lhs, rhs = _dot(op.forward(x), c), _dot(x, op.adjoint(c))
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)
    assert op.adjoint(c).shape == (2, *shape)


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_orthonormal_columns(name, shape):
    op = _op(name, shape)
    assert op.orthonormal
    c = _measure_like(op, 3)
    torch.testing.assert_close(op.forward(op.adjoint(c)), c, rtol=1e-10, atol=1e-10)
    # the columns are not trivially zero: ‖Mc‖ = ‖c‖
    torch.testing.assert_close(op.adjoint(c).flatten(1).norm(dim=1), c.flatten(1).norm(dim=1))


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_projector_idempotent_symmetric_and_complement_orthogonal(name, shape):
    op = _op(name, shape)
    x, v = _rand(2, *shape, seed=3), _rand(2, *shape, seed=4)
    px = op.project(x)
    torch.testing.assert_close(op.project(px), px, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(_dot(op.project(x), v), _dot(x, op.project(v)), rtol=1e-10, atol=1e-10)
    comp = op.complement(v)
    torch.testing.assert_close(_dot(comp, px), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-9)
    torch.testing.assert_close(comp + op.project(v), v)
    assert float(op.forward(comp).abs().sum()) < 1e-9


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_data_step_makes_the_estimate_consistent(name, shape):
    op = _op(name, shape)
    truth, y = _rand(2, *shape, seed=5), _rand(2, *shape, seed=6)
    c = op.forward(truth)
    fixed = y + op.data_step(y, c)
    torch.testing.assert_close(op.forward(fixed), c, rtol=1e-10, atol=1e-10)
    # and it moves y only inside the measured subspace
    torch.testing.assert_close(op.complement(fixed), op.complement(y), rtol=1e-10, atol=1e-10)
    assert float(op.consistency_error(fixed, c).max()) < 1e-10


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_simulate_observed_and_restore_roundtrip(name, shape):
    op = _op(name, shape)
    x = torch.rand(1, *shape)
    c = op.simulate(x)
    torch.testing.assert_close(c, op.forward(x))
    noisy = op.simulate(x, 0.1, torch.Generator().manual_seed(0))
    again = op.simulate(x, 0.1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy, again)
    if c.numel() >= 20:
        assert 0.05 < float((noisy - c).std()) < 0.2
    elif c.numel():
        assert not torch.equal(noisy, c)
    if name == "denoise":
        return
    seen = op.observed_image(c)
    assert seen.shape == (1, *shape) and seen.dtype == x.dtype
    torch.testing.assert_close(op.measurement_from_observed(seen), c)
    assert 0.0 <= op.measurement_fraction() <= 1.0


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_measurement_shape_and_batch_check(name, shape):
    op = _op(name, shape)
    c = op.forward(_rand(2, *shape))
    assert op.measurement_shape == tuple(c.shape[1:])
    assert op.measurement_batch(c) is c or torch.equal(op.measurement_batch(c), c)
    assert torch.equal(op.measurement_batch(c[0]), c[:1])  # one unbatched measurement gains its axis
    for bad in (c[..., :-1] if c.shape[-1] > 1 else torch.zeros(2, 5, 5, 5, 5), c.flatten()[None, None]):
        with pytest.raises(ParameterError, match=r"has shape .* measures \(B, "):
            op.measurement_batch(bad)


def test_numpy_views_with_negative_strides_are_valid_kernels_and_masks():
    import numpy as np

    k = np.arange(1.0, 10.0).reshape(3, 3)
    flipped = Blur((1, 8, 8), np.flipud(k))
    assert torch.equal(flipped.kernel, Blur((1, 8, 8), np.flipud(k).copy()).kernel)
    missing = np.zeros((8, 8), dtype=bool)
    missing[1:3, 2:5] = True
    op = Inpaint((1, 8, 8), missing[::-1])
    assert torch.equal(op.observed_image(op.forward(torch.ones(1, 1, 8, 8)))[0, 0, 5:7, 2:5], torch.full((2, 3), 0.5))


def test_identity_measures_nothing():
    op = make_operator("denoise", (3, 5, 4))
    x = torch.rand(2, 3, 5, 4)
    assert op.forward(x).shape == (2, 0)
    assert op.adjoint(op.forward(x)).abs().max() == 0
    torch.testing.assert_close(op.complement(x), x)
    assert op.measurement_fraction() == 0.0
    assert op.initial_mean(op.forward(x)).eq(0.5).all()


def test_inpaint_keeps_known_pixels_and_fills_holes_with_gray():
    missing = torch.zeros(5, 6, dtype=torch.bool)
    missing[1:3, 2:5] = True
    op = Inpaint((3, 5, 6), missing)
    x = torch.rand(1, 3, 5, 6)
    c = op.forward(x)
    assert c.shape == (1, 3 * (30 - 6))
    seen = op.observed_image(c)
    assert seen[:, :, missing].eq(0.5).all()
    torch.testing.assert_close(seen[:, :, ~missing], x[:, :, ~missing])
    assert op.known_mask().eq(~missing).all()


def test_inpaint_accepts_per_channel_and_numeric_masks():
    per_channel = torch.zeros(3, 4, 4, dtype=torch.bool)
    per_channel[1, 1, 1] = True
    op = Inpaint((3, 4, 4), per_channel)
    assert op.forward(torch.rand(1, 3, 4, 4)).shape == (1, 47)
    import numpy as np

    op2 = Inpaint((1, 4, 4), np.eye(4, dtype=np.uint8))
    assert op2.forward(torch.rand(1, 1, 4, 4)).shape == (1, 12)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (torch.zeros(4, 6, dtype=torch.bool), "empty"),
        (torch.ones(4, 6, dtype=torch.bool), "whole image"),
        (torch.zeros(5, 4, dtype=torch.bool), "5×4 but the image is 4×6"),
        (torch.zeros(2, 4, 6, dtype=torch.bool), "2×4×6 but the image is 4×6"),
        (torch.full((4, 6), 0.5), "0/1"),
        (torch.zeros(24, dtype=torch.bool), "2-D"),
    ],
)
def test_inpaint_refuses_bad_masks(missing, message):
    with pytest.raises(MaskError, match=message):
        Inpaint((3, 4, 6), missing)


def test_inpaint_needs_a_mask_from_the_factory():
    with pytest.raises(MaskError):
        make_operator("inpaint", (1, 4, 4))


def test_random_pixels_seeded_same_in_every_channel():
    a = RandomPixels((3, 20, 30), 0.25, seed=7)
    b = RandomPixels((3, 20, 30), 0.25, seed=7)
    other = RandomPixels((3, 20, 30), 0.25, seed=8)
    assert torch.equal(a.index, b.index)
    assert not torch.equal(a.index, other.index)
    known = a.known_mask()
    assert known[0].sum() == 150 and known.eq(known[0:1]).all()
    assert a.measurement_fraction() == pytest.approx(0.25)


def test_random_pixels_keeps_at_least_one_pixel():
    op = RandomPixels((1, 1, 3), 0.01, seed=0)
    assert op.forward(torch.rand(1, 1, 1, 3)).shape == (1, 1)


def test_wrong_image_shape_is_refused():
    op = RandomPixels((1, 8, 8), 0.5)
    with pytest.raises(ParameterError, match="expected images of shape"):
        op.forward(torch.rand(1, 1, 8, 9))


def test_make_operator_knows_every_task_and_refuses_the_rest():
    assert set(TASKS) == {"denoise", "inpaint", "random_pixels", "super_resolution", "spectral", "compressive", "blur"}
    for info in TASKS.values():
        assert info.description and all(p.help for p in info.params)
    with pytest.raises(ParameterError, match="unknown task"):
        make_operator("deblur", (1, 8, 8))
    with pytest.raises(ParameterError, match="does not take"):
        make_operator("random_pixels", (1, 8, 8), factor=2)
    with pytest.raises(ParameterError, match="image shape"):
        make_operator("denoise", (1, 0, 8))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan"), "0.1", True])
def test_fractions_out_of_range_are_refused(fraction):
    with pytest.raises(ParameterError, match="fraction"):
        make_operator("random_pixels", (1, 8, 8), fraction=fraction)


def test_negative_seed_is_refused():
    with pytest.raises(ParameterError, match="seed"):
        make_operator("random_pixels", (1, 8, 8), seed=-1)


# -- super-resolution ------------------------------------------------------------------------------
def test_super_resolution_is_scaled_block_mean_on_divisible_sizes():
    op = SuperResolution((3, 12, 8), 4)
    x = torch.rand(2, 3, 12, 8, dtype=torch.float64)
    c = op.forward(x)
    torch.testing.assert_close(c, 4 * torch.nn.functional.avg_pool2d(x, 4))
    torch.testing.assert_close(op.low_res_image(c), torch.nn.functional.avg_pool2d(x, 4))
    upsampled = torch.nn.functional.interpolate(op.low_res_image(c), scale_factor=4, mode="nearest")
    torch.testing.assert_close(op.observed_image(c), upsampled)


def test_super_resolution_partial_edge_blocks_are_means_of_what_they_cover():
    op = SuperResolution((1, 17, 23), 4)
    assert op.low_res_shape == (5, 6)
    x = torch.rand(1, 1, 17, 23, dtype=torch.float64)
    low = op.low_res_image(op.forward(x))
    assert low.shape == (1, 1, 5, 6)
    torch.testing.assert_close(low[0, 0, -1, -1], x[0, 0, 16:, 20:].mean())
    torch.testing.assert_close(low[0, 0, -1, 0], x[0, 0, 16:, :4].mean())
    torch.testing.assert_close(low[0, 0, 1, -1], x[0, 0, 4:8, 20:].mean())
    # a constant image gives a constant low-resolution image, edges included
    flat = op.low_res_image(op.forward(torch.full((1, 1, 17, 23), 0.3, dtype=torch.float64)))
    torch.testing.assert_close(flat, torch.full_like(flat, 0.3))


def test_super_resolution_restore_mode_reads_the_low_res_image():
    op = make_operator("super_resolution", (3, 20, 28), factor=4)
    low = torch.rand(1, 3, 5, 7)
    c = op.measurement_from_observed(low)
    torch.testing.assert_close(op.low_res_image(c), low)
    torch.testing.assert_close(op.measurement_from_low_res(low), c)
    with pytest.raises(ParameterError, match="5×7 low-resolution"):
        op.measurement_from_observed(torch.rand(1, 3, 6, 7))


def test_super_resolution_factor_one_measures_every_pixel():
    x = torch.rand(1, 2, 5, 3)
    torch.testing.assert_close(SuperResolution((2, 5, 3), 1).forward(x), x)


def test_super_resolution_factor_as_large_as_the_image_is_one_block():
    op = SuperResolution((1, 3, 9), 9)
    x = torch.rand(1, 1, 3, 9, dtype=torch.float64)
    torch.testing.assert_close(op.low_res_image(op.forward(x)).squeeze(), x.mean())


@pytest.mark.parametrize(("factor", "message"), [(0, "factor"), (-2, "factor"), (10, r"\[1, 9\]"), (2.5, "integer")])
def test_super_resolution_refuses_bad_factors(factor, message):
    with pytest.raises(ParameterError, match=message):
        make_operator("super_resolution", (1, 9, 6), factor=factor)


# -- spectral low-pass -----------------------------------------------------------------------------
def test_spectral_keeps_a_centred_square_and_its_projector_is_real():
    op = SpectralLowPass((1, 64, 64), 0.1)
    shifted = torch.fft.fftshift(op.kept)
    rows, cols = torch.nonzero(shifted, as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (21, 21)  # 441 ≈ 10% of 4096
    assert int(op.kept.sum()) == 441 and int(shifted[22:43, 22:43].sum()) == 441
    assert op.measurement_fraction() == pytest.approx(441 / 4096)


@pytest.mark.parametrize("shape", [(16, 12), (17, 23), (1, 9), (8, 1)])
def test_spectral_set_is_conjugate_symmetric(shape):
    import numpy as np

    h, w = shape
    op = SpectralLowPass((1, h, w), 0.3)
    kept = op.kept.numpy()
    mirrored = np.roll(np.flip(kept, (0, 1)), (1, 1), axis=(0, 1))  # k -> -k mod (H, W)
    assert (kept == mirrored).all()
    x = np.random.default_rng(0).standard_normal((h, w))
    low = np.fft.ifft2(np.fft.fft2(x) * kept)
    assert np.abs(low.imag).max() < 1e-12
    projected = op.project(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert np.abs(projected - low.real).max() < 1e-12
    assert abs(kept.mean() - 0.3) < 0.3  # the set is a level set of frequency, so only near the target


def test_spectral_extremes_keep_only_the_mean_or_everything():
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    tiny = SpectralLowPass((3, 9, 7), 1e-4)
    torch.testing.assert_close(tiny.project(x), x.mean(dim=(2, 3), keepdim=True).expand_as(x))
    torch.testing.assert_close(SpectralLowPass((3, 9, 7), 1.0).project(x), x)


# -- compressive sensing ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 8, 33])
def test_dct_matches_the_dense_orthonormal_matrix(n):
    import numpy as np

    k, j = np.arange(n)[:, None], np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * j + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    x = _rand(3, n)
    np.testing.assert_allclose(dct(x).numpy(), x.numpy() @ matrix.T, atol=1e-12)
    np.testing.assert_allclose(idct(x).numpy(), x.numpy() @ matrix, atol=1e-12)


def test_compressive_rows_are_spread_over_the_whole_image():
    op = CompressiveSensing((3, 10, 12), 0.2, seed=0)
    n = 360
    rows = op.adjoint(torch.eye(op.index.numel(), dtype=torch.float64)).flatten(1)  # each row of Mᵀ
    # incoherent with pixels: no entry above the DCT's bound √(2/N), and every row touches every pixel
    assert float(rows.abs().max()) <= (2.0 / n) ** 0.5 + 1e-12
    assert float((rows.abs() > 1e-9).float().mean()) > 0.95


def test_compressive_is_seeded():
    x = torch.rand(1, 3, 9, 11)
    a = CompressiveSensing((3, 9, 11), 0.3, seed=5).forward(x)
    b = CompressiveSensing((3, 9, 11), 0.3, seed=5).forward(x)
    c = CompressiveSensing((3, 9, 11), 0.3, seed=6).forward(x)
    assert torch.equal(a, b)
    assert a.shape == c.shape and not torch.allclose(a, c)
    assert a.shape == (1, round(0.3 * 297))


def test_compressive_scales_to_a_512_color_image():
    op = make_operator("compressive", (3, 512, 512), fraction=0.1, seed=0)
    x = torch.rand(1, 3, 512, 512)
    c = op.forward(x)
    assert c.shape == (1, round(0.1 * 3 * 512 * 512))
    torch.testing.assert_close(op.forward(op.adjoint(c)), c, rtol=0, atol=2e-5)
    px = op.project(x)
    # ‖MMᵀx‖² = ‖Mᵀx‖², and a random 10% subspace holds about 10% of the energy around the mean
    torch.testing.assert_close(px.norm(), c.norm(), rtol=1e-4, atol=0)
    assert float(op.complement(x).norm()) < float(x.norm())


# -- blur ------------------------------------------------------------------------------------------
def _circular_convolution(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Reference: Σ_ij k[i, j]·x[n − (i − ci), m − (j − cj)] with periodic wrap, one roll per tap."""
    kh, kw = kernel.shape
    out = torch.zeros_like(x)
    for i in range(kh):
        for j in range(kw):
            out += float(kernel[i, j]) * torch.roll(x, shifts=(i - kh // 2, j - kw // 2), dims=(2, 3))
    return out


KERNELS = {
    "gaussian": lambda: gaussian_kernel(1.2),
    "motion30": lambda: motion_kernel(6, 30.0),
    "box4": lambda: box_kernel(4),
    "user": lambda: torch.tensor([[0.0, 3.0], [1.0, 0.0], [0.0, 2.0]]),
}


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [(1, 16, 12), (3, 17, 23), (1, 1, 9)], ids=["gray-even", "color-odd", "strip"])
def test_blur_is_circular_convolution_and_its_adjoint(kernel, shape):
    k = KERNELS[kernel]()
    op = Blur(shape, k)
    x, c = _rand(2, *shape, seed=0), _rand(2, *shape, seed=1)
    if shape[1] >= k.shape[0] and shape[2] >= k.shape[1]:
        expected = _circular_convolution(x, k.double() / k.double().sum())
        torch.testing.assert_close(op.forward(x), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_dot(op.forward(x), c), _dot(x, op.adjoint(c)), rtol=1e-10, atol=1e-10)
    # a normalised kernel keeps a constant image, even when it is larger than the image and folds
    flat = torch.full((1, *shape), 0.4, dtype=torch.float64)
    torch.testing.assert_close(op.forward(flat), flat)


def test_blur_pseudo_inverse_recovers_the_band_the_blur_keeps():
    op = Blur((1, 32, 32), gaussian_kernel(1.5), eps=1e-3)
    x = _rand(1, 1, 32, 32, seed=2)
    gain = op.transfer.abs() ** 2
    band = gain > 100 * op.eps
    assert 0.05 < float(band.float().mean()) < 0.9  # the blur keeps some frequencies and destroys others
    x_band = torch.fft.irfft2(torch.fft.rfft2(x) * band, s=(32, 32))
    ax = op.forward(x_band)
    err = (op.forward(op.pinv(ax)) - ax).norm() / ax.norm()
    assert float(err) < 1e-2
    torch.testing.assert_close(op.pinv(ax), x_band, rtol=0, atol=2e-2 * float(x_band.abs().max()))
    # outside that band the regularised inverse does not recover x, as it should not
    x_high = x - x_band
    assert float((op.pinv(op.forward(x_high)) - x_high).norm()) > 0.5 * float(x_high.norm())


def test_blur_pseudo_inverse_is_the_inverse_as_eps_vanishes():
    kernel = torch.tensor([[0.0, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.0]])  # |Â| ≥ 0.2: invertible
    op = Blur((3, 15, 10), kernel, eps=1e-14)
    x = _rand(2, 3, 15, 10, seed=3)
    torch.testing.assert_close(op.pinv(op.forward(x)), x, rtol=0, atol=1e-9)
    loose = Blur((3, 15, 10), kernel, eps=1e-1)
    assert float((loose.pinv(loose.forward(x)) - x).abs().max()) > 1e-2


def test_blur_data_steps_drive_the_estimate_to_the_data():
    op = make_operator("blur", (1, 24, 24), kernel=gaussian_kernel(1.0))
    truth = _rand(1, 1, 24, 24, seed=7)
    c = op.forward(truth)
    y = torch.zeros_like(truth)
    errors = [float(op.consistency_error(y, c))]
    for _ in range(4):
        y = y + op.data_step(y, c)
        errors.append(float(op.consistency_error(y, c)))
    assert all(b < a for a, b in itertools.pairwise(errors))
    assert errors[1] < 0.05 * errors[0]
    # where the blur keeps the frequency (|Â|² ≫ ε) the residual is gone: shrunk by ε/(|Â|²+ε) per step
    band = op.transfer.abs() ** 2 > 100 * op.eps
    residual = torch.fft.rfft2(op.forward(y) - c) * band
    assert float(residual.abs().max()) < 1e-6 * float(torch.fft.rfft2(c).abs().max())


def test_blur_projector_and_complement_split_the_image():
    op = Blur((1, 12, 13), motion_kernel(5, 60.0))
    assert not op.orthonormal
    x, v = _rand(2, 1, 12, 13, seed=4), _rand(2, 1, 12, 13, seed=5)
    torch.testing.assert_close(op.project(x) + op.complement(x), x)
    torch.testing.assert_close(_dot(op.project(x), v), _dot(x, op.project(v)), rtol=1e-10, atol=1e-10)
    assert bool((op.project(x).flatten(1).norm(dim=1) <= x.flatten(1).norm(dim=1)).all())


def test_blur_observed_image_is_the_measurement():
    op = make_operator("blur", (3, 8, 9), kernel=box_kernel(3))
    x = torch.rand(1, 3, 8, 9)
    c = op.forward(x)
    assert op.observed_image(c) is c
    assert op.measurement_from_observed(c) is c
    assert op.measurement_fraction() == 1.0
    assert c.dtype == torch.float32


def test_kernels_are_normalised_and_oriented():
    for k in (gaussian_kernel(0.7), gaussian_kernel(3.0), box_kernel(5), motion_kernel(9, 0), motion_kernel(4.5, 45)):
        assert k.dim() == 2 and k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-6) and float(k.min()) >= 0
    g = gaussian_kernel(3.0)
    assert g.shape == (19, 19) and torch.allclose(g, g.T) and g.argmax() == 19 * 9 + 9
    horizontal = motion_kernel(9, 0)
    assert horizontal.shape == (9, 9) and float(horizontal[4].sum()) == pytest.approx(1.0)
    vertical = motion_kernel(9, 90)
    assert float(vertical[:, 4].sum()) == pytest.approx(1.0, abs=1e-6)
    diagonal = motion_kernel(9, 45)  # up and to the right on screen: row index falls as column rises
    assert float(diagonal[:4, 5:].sum()) > 0.3 and float(diagonal[5:, :4].sum()) > 0.3
    assert float(diagonal[:4, :4].sum()) == 0 and float(diagonal[5:, 5:].sum()) == 0
    assert torch.equal(box_kernel(3), torch.full((3, 3), 1 / 9))


def test_user_kernels_are_normalised():
    op = Blur((1, 8, 8), 2 * torch.ones(3, 3))
    assert float(op.kernel.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        (torch.zeros(0, 3), "non-empty"),
        (torch.ones(5), "2-D"),
        (-torch.ones(3, 3), "positive sum"),
        (torch.tensor([[1.0, -1.0]]), "positive sum"),
        (torch.tensor([[1.0, float("nan")]]), "NaN"),
        ("gaussian", "2-D array"),
    ],
)
def test_bad_user_kernels_are_refused(kernel, message):
    with pytest.raises(ParameterError, match=message):
        Blur((1, 8, 8), kernel)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gaussian_kernel(0),
        lambda: gaussian_kernel(-1),
        lambda: box_kernel(0),
        lambda: box_kernel(-3),
        lambda: motion_kernel(-2, 0),
        lambda: motion_kernel(5, float("inf")),
        lambda: make_operator("blur", (1, 8, 8)),
        lambda: make_operator("blur", (1, 8, 8), kernel=box_kernel(3), eps=-1e-3),
    ],
)
def test_bad_kernel_parameters_are_refused(make):
    with pytest.raises(ParameterError):
        make()


# -- the factory -----------------------------------------------------------------------------------
def test_make_operator_builds_each_task_with_its_parameters():
    shape = (3, 20, 24)
    missing = torch.zeros(20, 24, dtype=torch.bool)
    missing[5:9, 5:9] = True
    built = {
        "denoise": make_operator("denoise", shape),
        "inpaint": make_operator("inpaint", shape, missing=missing),
        "random_pixels": make_operator("random_pixels", shape, fraction=0.5, seed=3),
        "super_resolution": make_operator("super_resolution", shape, factor=2),
        "spectral": make_operator("spectral", shape, fraction=0.25),
        "compressive": make_operator("compressive", shape, fraction=0.05, seed=1),
        "blur": make_operator("blur", shape, kernel=gaussian_kernel(1.0), eps=1e-2),
    }
    kinds = {
        "denoise": Identity,
        "inpaint": Inpaint,
        "random_pixels": RandomPixels,
        "super_resolution": SuperResolution,
        "spectral": SpectralLowPass,
        "compressive": CompressiveSensing,
        "blur": Blur,
    }
    for task, op in built.items():
        assert type(op) is kinds[task] and op.name == task and op.image_shape == shape
        assert op.describe().startswith(task.split("_")[0])
    assert built["random_pixels"].measurement_fraction() == pytest.approx(0.5)
    assert built["super_resolution"].factor == 2 and built["blur"].eps == 1e-2
    assert built["compressive"].measurement_fraction() == pytest.approx(0.05, abs=1e-3)
    # defaults come from TASKS
    assert make_operator("random_pixels", shape).fraction == TASKS["random_pixels"].defaults["fraction"]
    assert make_operator("super_resolution", shape).factor == 4


def test_operators_follow_their_inputs_device():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    shape = (3, 9, 10)
    for device in devices:
        for name, build in {**BUILDERS, "blur": lambda s: Blur(s, gaussian_kernel(1.0))}.items():
            op = build(shape)
            x = torch.rand(2, *shape, device=device)
            c = op.forward(x)  # buffers still on the CPU: they follow the input
            assert c.device.type == device, name
            moved = build(shape).to(device)
            assert moved.device.type == device
            torch.testing.assert_close(moved.forward(x), c)
            assert moved.adjoint(c).device.type == device
            assert 0.0 <= moved.measurement_fraction() <= 1.0


@pytest.mark.parametrize("name", [*BUILDERS, "blur"])
def test_gradients_flow_through_forward(name):
    """Methods that fit a network through the measurement (Deep Image Prior) backpropagate through Mᵀ."""
    shape = (3, 9, 10)
    op = Blur(shape, motion_kernel(4, 20)) if name == "blur" else BUILDERS[name](shape)
    x = _rand(1, *shape, seed=8).requires_grad_(True)
    c = _measure_like(op, 1, seed=9) if name != "blur" else _rand(1, *shape, seed=9)
    (op.forward(x) * c).sum().backward()
    torch.testing.assert_close(x.grad, op.adjoint(c), rtol=1e-10, atol=1e-12)
