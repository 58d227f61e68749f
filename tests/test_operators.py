"""Measurement operators: adjointness, orthonormality, projectors, data steps, errors.

Every identity is checked on random inputs in float64, for gray and color images of an even and an odd
size (and a one-pixel-wide strip), so a wrong transpose, a wrong normalisation or a crop bug shows.
"""

from __future__ import annotations

import pytest
import torch

from priorstudio.core.errors import MaskError, ParameterError
from priorstudio.core.operators import (
    TASKS,
    Identity,
    Inpaint,
    Operator,
    RandomPixels,
    make_operator,
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
    if c.numel():
        assert 0.05 < float((noisy - c).std()) < 0.2
    if name == "denoise":
        return
    seen = op.observed_image(c)
    assert seen.shape == (1, *shape) and seen.dtype == x.dtype
    torch.testing.assert_close(op.measurement_from_observed(seen), c)
    assert 0.0 <= op.measurement_fraction() <= 1.0


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
