"""Non-local filters, twicing, and the neural tangent kernel filter (ALGORITHMS.md §4).

A non-local filter compares every pixel's k×k patch with the patches of the pixels in a search window
around it, turns the comparisons into affinities K_ij = k(patch_i, patch_j), and averages:
W = diag(1/K1)·K, so every row of W sums to 1. The affinities are computed once, from a *guide* image
(the noisy image itself), and then W is a fixed linear operator that can be applied to any image — that
is what makes twicing and the link with networks trained by gradient descent exact statements.

Two kernels over the patch vectors y_i (k·k·C values):
- ``nlm``: the non-local-means Gaussian exp(−d²_ij / h²), d²_ij the mean squared difference of the two
  patches, h = ``h_factor``·σ with σ the noise level (estimated when not given). Optionally the 2σ² that
  two noisy copies of one patch differ by is discounted first (``noise_offset``, as Buades et al. do):
  a better single filter (σ = 25, patch 5, window 15, a 128² crop of Set12's house: 30.1 dB with
  h = 0.8σ against 28.4 dB without the offset at h = 2σ), but an indefinite kernel; twicing without it
  peaks higher (29.9 dB at step 3) and provably converges, so that is the default.
- ``ntk``: the closed-form neural tangent kernel of a single hidden layer of ReLUs acting on patches,
  k(y_i, y_j) = ‖y_i‖‖y_j‖/π · (sin φ + (π − φ) cos φ), φ the angle between the patches. It is exactly
  the inner product of the gradients, with respect to the output weights, of a wide one-hidden-layer
  ReLU network f(y) = √(2/m) Σ_k v_k relu(w_kᵀy), w_k ~ N(0, I): E[2 relu(wᵀy_i) relu(wᵀy_j)]
  (the test suite checks it against such a network with autograd).

Every affinity is also weighted by a triangular taper of the offset (``window_taper``), which keeps K
positive semi-definite inside the search window.

Twicing iterates z_{k+1} = z_k + η·W(y − z_k) from z_0 = ½·1 (so z_1 = W y, the plain filter, since
W1 = 1): bias falls and variance rises with k, hence early stopping. With the eigenvalues of W in (0, 1]
(a positive-definite kernel: the NTK, or NLM without the noise offset) z_k → y. A wide CNN trained on y
by gradient descent follows exactly this iteration with its NTK as the filter (Tachella, Tang, Davies,
CVPR 2021).

Other measurements (inpainting, super-resolution, …): the same kernel-gradient-descent step on the data
term, z_{k+1} = z_k + η·W·M(c − Mᵀz_k) — the iteration a network trained by gradient descent on
‖Mᵀf − c‖² follows in the kernel regime; for denoising it is twicing. The guide is then
``operator.observed_image(c)``, except where pixels are missing (inpainting, random pixels): there the
holes are filled first from the known pixels nearby (:func:`fill_holes`), since patches of mid-gray holes
are all alike and the NLM kernel would match holes with holes. ``refresh_every`` > 0 re-computes the
affinities from the current estimate every so many steps (the filter is then no longer fixed, and the
iteration no longer linear; say so when reporting results).

The NLM bandwidth follows the noise level, estimated from the guide when not given. A noise-free
measurement leaves nothing to estimate (at 10% random pixels the estimate is 0, h falls to its floor and
W to the identity: the holes never fill), so for inverse problems σ is at least ``INVERSE_SIGMA_FLOOR``.
On a 96×96 crop of CBSD68's 101085, noise-free, 30 steps, NLM twicing (PSNR in dB, mid-gray guide and
estimated σ → filled guide and the floor): random pixels 10% kept 10.85 → 20.34, 50% kept 24.24 → 27.10,
a 24×24 hole 25.18 → 27.02, 4× super-resolution 22.66 → 23.76. NTK twicing (no bandwidth) with the filled
guide: 20.54 → 20.23, 24.40 → 24.51, 24.46 → 24.67.

Storage: the affinities of a W-wide search window are a (H·W, window²) table (``NonLocalFilter.table``),
with zeros for neighbours outside the image: a 256² image with a 15×15 window is 59 MB in float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.operators.base import Operator
from priorstudio.core.samplers.base import StepRecord, StopReason
from priorstudio.core.samplers.dip import StoppableRun, cpu_threads
from priorstudio.core.tensors import as_tensor

KERNELS = ("nlm", "ntk")
#: The least NLM noise level (on the [0, 1] scale) of an inverse problem when σ is not given; on the crop of
#: the module docstring 0.05–0.1 did best on every task, 0.02 left random pixels near the identity.
INVERSE_SIGMA_FLOOR = 0.05
#: Width (pixels) of the Gaussian that fills holes from the known pixels around them (:func:`fill_holes`).
FILL_WIDTH = 2.0
#: Offsets processed together when computing or applying a filter (bounds the temporary memory).
_CHUNK = 32


# -- kernels --------------------------------------------------------------------------------------------
def ntk_kernel(inner: Tensor, norm_i: Tensor, norm_j: Tensor) -> Tensor:
    """k = ‖y_i‖‖y_j‖/π · (sin φ + (π − φ) cos φ) from ⟨y_i, y_j⟩ and the two norms (0 for a zero patch)."""
    denom = norm_i * norm_j
    cos = (inner / denom.clamp_min(1e-30)).clamp(-1.0, 1.0)
    phi = torch.acos(cos)
    k = denom / math.pi * (torch.sin(phi) + (math.pi - phi) * cos)
    return torch.where(denom > 0, k, torch.zeros_like(k))


def ntk_kernel_vectors(a: Tensor, b: Tensor) -> Tensor:
    """The NTK kernel between vectors a (…, d) and b (…, d)."""
    return ntk_kernel((a * b).sum(-1), a.norm(dim=-1), b.norm(dim=-1))


def nlm_kernel(mean_sq_dist: Tensor, sigma: float, h: float, offset: bool = True) -> Tensor:
    """exp(−max(d² − 2σ², 0) / h²): 1 for patches that differ only by noise, falling with their distance.

    Without ``offset`` it is the plain Gaussian exp(−d²/h²), a positive-definite kernel; the offset (the
    expected distance of two noisy copies of one patch, as Buades et al. use it) averages better but makes
    the kernel indefinite, so W can have slightly negative eigenvalues and twicing then does not converge
    to y (it is stopped long before that matters).
    """
    d = mean_sq_dist - 2 * sigma * sigma if offset else mean_sq_dist
    return torch.exp(-d.clamp_min(0) / (h * h))


def estimate_noise_sigma(image: Tensor) -> float:
    """Noise standard deviation of an image (C, H, W) from the median of its finest diagonal Haar details.

    The classic robust estimate σ ≈ median(|HH|)/0.6745: edges are sparse, so the median sees noise.
    """
    x = image.detach().to(torch.float64)
    if x.dim() == 4:
        x = x[0]
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h < 2 or w < 2:
        return 0.0
    x = x[..., :h, :w]
    hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    return float(hh.abs().median() / 0.6745)


def fill_holes(image: Tensor, known: Tensor, width: float = FILL_WIDTH) -> Tensor:
    """``image`` (B, C, H, W) where ``known`` (C, H, W, bool) is True; elsewhere a Gaussian-weighted average
    of the known values nearby (normalised convolution), or their mean where none is within 3·``width``.

    A guide for the patch affinities of an image with holes: a hole's patch then resembles its neighbours'.
    """
    x = image.detach().to(torch.float32)
    k = known.to(torch.float32).expand_as(x)
    r = max(1, math.ceil(3 * width))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32).pow(2) / (2 * width * width))
    g = g / g.sum()
    channels = x.shape[1]
    rows = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    cols = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def blur(v: Tensor) -> Tensor:  # separable, zero outside the image: the weights' sum takes care of edges
        v = F.conv2d(F.pad(v, (r, r, 0, 0)), rows, groups=channels)
        return F.conv2d(F.pad(v, (0, 0, r, r)), cols, groups=channels)

    weight = blur(k)
    near = weight > 1e-6
    counts = k.sum(dim=(2, 3), keepdim=True)
    mean = (x * k).sum(dim=(2, 3), keepdim=True) / counts.clamp_min(1)
    mean = torch.where(counts > 0, mean, torch.full_like(mean, 0.5))
    filled = torch.where(near, blur(x * k) / weight.clamp_min(1e-6), mean.expand_as(x))
    return torch.where(k > 0, x, filled)


# -- the filter -----------------------------------------------------------------------------------------
class NonLocalFilter:
    """W = diag(1/K1)·K over a search window, as a linear operator on images of one size.

    ``table`` is (H·W, window²): row i holds the normalised weights of pixel i's neighbours at the
    offsets ``offsets`` (dy, dx), zero for neighbours outside the image.
    """

    def __init__(self, weights: Tensor, window: int, image_hw: tuple[int, int]) -> None:
        self._w = weights  # (window², H, W), the layout that applies fastest
        self.window = int(window)
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        r = self.window // 2
        self.offsets: list[tuple[int, int]] = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]

    @property
    def table(self) -> Tensor:
        """The weights as an (H·W, window²) table (a view, no copy)."""
        return self._w.flatten(1).T

    def apply(self, x: Tensor) -> Tensor:
        """W x for images (C, H, W) or (B, C, H, W) of the filter's size: every channel with the same weights."""
        with cpu_threads(1):
            return self._apply(x)

    def _apply(self, x: Tensor) -> Tensor:
        batched = x.dim() == 4
        xb = x if batched else x.unsqueeze(0)
        if tuple(xb.shape[-2:]) != self.image_hw:
            raise ParameterError(f"this filter was built for {self.image_hw} images, got {tuple(xb.shape[-2:])}")
        h, w = self.image_hw
        r = self.window // 2
        xp = F.pad(xb, (r, r, r, r))
        out = torch.zeros_like(xb)
        weights = self._w.to(xb.device, xb.dtype)
        for k, (dy, dx) in enumerate(self.offsets):
            out.addcmul_(weights[k], xp[..., r + dy : r + dy + h, r + dx : r + dx + w])
        return out if batched else out.squeeze(0)

    __call__ = apply

    def to_dense(self) -> Tensor:
        """The (H·W, H·W) matrix (small images only: tests and teaching)."""
        h, w = self.image_hw
        n = h * w
        if n > 4096:
            raise ParameterError(f"a dense {n}×{n} matrix is too large; use apply()")
        dense = torch.zeros(n, n, dtype=self._w.dtype)
        ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        rows = (ii * w + jj).reshape(-1)
        for k, (dy, dx) in enumerate(self.offsets):
            ni, nj = ii + dy, jj + dx
            inside = ((ni >= 0) & (ni < h) & (nj >= 0) & (nj < w)).reshape(-1)
            cols = (ni.clamp(0, h - 1) * w + nj.clamp(0, w - 1)).reshape(-1)
            dense[rows[inside], cols[inside]] += self._w[k].reshape(-1)[inside]
        return dense


def window_taper(dy: int, dx: int, radius: int) -> float:
    """The triangular (Bartlett) window (1 − |dy|/(r+1))·(1 − |dx|/(r+1)) that weights every affinity.

    Cutting a kernel off at a square window makes K indefinite (a box's Fourier transform, the Dirichlet
    kernel, has negative lobes): W then has eigenvalues down to about −0.2, and twicing amplifies those
    directions at every step — high-frequency ripples that grow without bound. The triangle's transform
    (the Fejér kernel) is non-negative, so the taper is a positive-definite function of the offset, and
    its entrywise product with a positive-definite patch kernel is positive semi-definite (Schur). W is
    then similar to D^-½KD^-½, its eigenvalues lie in [0, 1], and twicing converges.
    """
    return (1 - abs(dy) / (radius + 1)) * (1 - abs(dx) / (radius + 1))


def build_filter(
    guide: Tensor,
    *,
    kernel: str = "nlm",
    patch: int = 5,
    window: int = 15,
    sigma: float | None = None,
    h_factor: float = 2.0,
    offset: bool = False,
) -> NonLocalFilter:
    """The non-local filter whose affinities come from ``guide`` (C, H, W) (or (1, C, H, W)).

    ``sigma`` (NLM only): the guide's noise level; None estimates it (:func:`estimate_noise_sigma`).
    The NLM bandwidth is h = ``h_factor``·σ (at least 0.01, so a clean guide still averages similar
    patches). Runs on one CPU thread (see ``cpu_threads``).
    """
    with cpu_threads(1):
        return _build_filter(guide, kernel, patch, window, sigma, h_factor, offset)


def _build_filter(
    guide: Tensor, kernel: str, patch: int, window: int, sigma: float | None, h_factor: float, offset: bool
) -> NonLocalFilter:
    if kernel not in KERNELS:
        raise ParameterError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    for name, value in (("patch", patch), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
            raise ParameterError(f"{name} must be an odd integer ≥ 1, got {value!r}")
    g = guide.detach().to(torch.float32)
    if g.dim() == 4:
        if g.shape[0] != 1:
            raise ParameterError("the guide must be one image")
        g = g[0]
    if g.dim() != 3:
        raise ParameterError(f"the guide must be an image (C, H, W), got shape {tuple(guide.shape)}")
    c, h, w = g.shape
    r, p = window // 2, patch // 2
    pad = r + p
    gp = F.pad(g.unsqueeze(0), (pad, pad, pad, pad), mode="replicate")[0]  # (C, H+2pad, W+2pad)
    hp, wp = h + 2 * p, w + 2 * p
    centre = gp[:, r : r + hp, r : r + wp]  # the guide with a p-border: patch sums come from box filters
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    weights = torch.empty(len(offsets), h, w)
    if kernel == "nlm":
        s = estimate_noise_sigma(g) if sigma is None else float(sigma)
        if not s >= 0:
            raise ParameterError(f"sigma must be ≥ 0, got {sigma}")
        bandwidth = max(h_factor * s, 0.01)
    else:
        norms = F.avg_pool2d(gp.pow(2).sum(0, keepdim=True).unsqueeze(0), patch, stride=1)[0, 0] * (patch * patch)
        norms = norms.sqrt()  # (H+2r, W+2r): ‖patch‖ at every position of the r-border image
        norm_c = norms[r : r + h, r : r + w]
    for start in range(0, len(offsets), _CHUNK):
        chunk = offsets[start : start + _CHUNK]
        shifted = torch.stack([gp[:, r + dy : r + dy + hp, r + dx : r + dx + wp] for dy, dx in chunk])
        if kernel == "nlm":
            sq = (shifted - centre).pow(2).sum(1, keepdim=True)
            dist = F.avg_pool2d(sq, patch, stride=1)[:, 0] / c  # mean squared difference per value
            weights[start : start + len(chunk)] = nlm_kernel(dist, s, bandwidth, offset)
        else:
            prod = (shifted * centre).sum(1, keepdim=True)
            inner = F.avg_pool2d(prod, patch, stride=1)[:, 0] * (patch * patch)
            norm_j = torch.stack([norms[r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in chunk])
            weights[start : start + len(chunk)] = ntk_kernel(inner, norm_c, norm_j)
    # a positive-definite window (see ``window_taper``), and no neighbours outside the image
    ii = torch.arange(h).view(h, 1)
    jj = torch.arange(w).view(1, w)
    for k, (dy, dx) in enumerate(offsets):
        weights[k].mul_(window_taper(dy, dx, r))
        if dy or dx:
            outside = (ii + dy < 0) | (ii + dy >= h) | (jj + dx < 0) | (jj + dx >= w)
            weights[k].masked_fill_(outside, 0.0)
    total = weights.sum(0)
    empty = total <= 0  # e.g. an all-zero patch under the NTK kernel: keep the pixel as it is
    if bool(empty.any()):
        weights[len(offsets) // 2][empty] = 1.0
        total = torch.where(empty, torch.ones_like(total), total)
    weights /= total
    return NonLocalFilter(weights, window, (h, w))


# -- twicing as a step stream ---------------------------------------------------------------------------
@dataclass
class TwicingParams:
    """Parameters of non-local filtering and twicing (kernel ``nlm`` or ``ntk``)."""

    kernel: str = field(
        default="nlm",
        metadata={
            "label": "kernel",
            "help": "nlm: Gaussian patch similarity; ntk: a one-hidden-layer network's tangent kernel",
            "choices": KERNELS,
        },
    )
    patch: int = field(
        default=5,
        metadata={"label": "patch", "help": "side of the compared patches (odd)", "min": 1, "max": 15, "odd": True},
    )
    window: int = field(
        default=15,
        metadata={
            "label": "search window",
            "help": "side of the neighbourhood searched (odd)",
            "min": 1,
            "max": 41,
            "odd": True,
        },
    )
    h_factor: float = field(
        default=2.0,
        metadata={
            "label": "bandwidth h/σ",
            "help": "NLM: kernel width relative to the noise level (larger averages more)",
            "min": 0.05,
            "max": 5.0,
            "log": True,
        },
    )
    sigma: float = field(
        default=0.0,
        metadata={
            "label": "σ",
            "help": "NLM: noise level on the [0, 1] scale (0: estimated; at least 0.05 when not denoising)",
            "min": 0.0,
            "max": 1.0,
        },
    )
    noise_offset: bool = field(
        default=False,
        metadata={
            "label": "noise offset",
            "help": "NLM: discount the 2σ² two noisy copies differ by (better averaging; kernel not positive definite)",
        },
    )
    max_steps: int = field(
        default=20,
        metadata={"label": "steps", "help": "twicing iterations (1: the plain filter W y)", "min": 1, "max": 10_000},
    )
    step_size: float = field(
        default=1.0,
        metadata={"label": "step η", "help": "z ← z + η·W(y − z); 1 is classic twicing", "min": 0.01, "max": 1.99},
    )
    refresh_every: int = field(
        default=0,
        metadata={
            "label": "refresh filter",
            "help": "re-compute the affinities from the estimate every k steps (0: a fixed, linear filter)",
            "min": 0,
            "max": 10_000,
        },
    )
    emit_every: int = field(
        default=1,
        metadata={"label": "image every", "help": "attach the estimate to every k-th record", "min": 0, "max": 10_000},
    )

    def validate(self) -> None:
        """Raise ParameterError naming the first field outside its valid range."""
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if "choices" in meta:
                if value not in meta["choices"]:
                    raise ParameterError(
                        f"{f.name} must be one of {', '.join(meta['choices'])}, got {value!r}", field=f.name
                    )
                continue
            if isinstance(f.default, bool):
                if not isinstance(value, bool):
                    raise ParameterError(f"{f.name} must be True or False, got {value!r}", field=f.name)
                continue
            if isinstance(f.default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ParameterError(f"{f.name} must be an integer, got {value!r}", field=f.name)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParameterError(f"{f.name} must be a finite number, got {value!r}", field=f.name)
            lo, hi = meta["min"], meta["max"]
            if not lo <= value <= hi:
                raise ParameterError(f"{f.name} ({meta['label']}) must be in [{lo}, {hi}], got {value}", field=f.name)
        for name in ("patch", "window"):
            if getattr(self, name) % 2 == 0:
                raise ParameterError(f"{name} must be odd, got {getattr(self, name)}", field=name)


class TwicingRun(StoppableRun):
    """Plain non-local filtering (step 1) and twicing (steps 2, 3, …). See :func:`twicing_sampler`."""

    def __init__(
        self,
        operator: Operator | None,
        measurement: Tensor | None,
        params: TwicingParams,
        *,
        truth: Tensor | None = None,
        init: Tensor | None = None,
    ) -> None:
        params.validate()
        self.params = params
        denoising = operator is None or operator.name == "denoise"
        if denoising:
            if init is None:
                raise ParameterError("non-local denoising filters the noisy image: pass it as init (C, H, W)")
            y = as_tensor(init).to(torch.float32)
            self.y = y.unsqueeze(0) if y.dim() == 3 else y
            if self.y.dim() != 4 or self.y.shape[0] != 1:
                raise ParameterError(f"init must be one image (C, H, W), got shape {tuple(y.shape)}")
            self.operator: Operator | None = None
            self.measurement: Tensor | None = None
            guide = self.y
        else:
            if measurement is None:
                raise ParameterError(f"the {operator.name} operator needs its measurement")
            self.operator = operator
            c = operator.measurement_batch(measurement)
            if c.shape[0] != 1:
                raise ParameterError(f"twicing restores one measurement, got a batch of {c.shape[0]}")
            self.measurement = c.to(torch.float32)
            self.y = None
            known = getattr(operator, "known_mask", None)
            if known is not None:  # missing pixels: fill the holes, or their patches would all match
                guide = fill_holes(operator.adjoint(self.measurement), known())
            else:
                try:
                    guide = operator.observed_image(self.measurement)
                except NotImplementedError:
                    guide = operator.pinv(self.measurement)
            guide = guide.clamp(0, 1)
        shape = operator.image_shape if operator is not None else tuple(self.y.shape[1:])
        self.image_shape = tuple(int(v) for v in shape)
        self.truth = None if truth is None else _one_image("truth", truth, self.image_shape)
        # The bandwidth follows the data's noise, estimated once from the first guide: re-estimated from a
        # refreshed (already smoothed) estimate it would shrink several-fold and W would approach I.
        if params.sigma > 0:
            self.sigma: float | None = params.sigma
        elif params.kernel == "nlm":
            estimate = estimate_noise_sigma(guide)
            self.sigma = estimate if denoising else max(estimate, INVERSE_SIGMA_FLOOR)
        else:
            self.sigma = None
        self.filter = self._build(guide)
        super().__init__()

    def _build(self, guide: Tensor) -> NonLocalFilter:
        p = self.params
        return build_filter(
            guide,
            kernel=p.kernel,
            patch=p.patch,
            window=p.window,
            sigma=self.sigma,
            h_factor=p.h_factor,
            offset=p.noise_offset,
        )

    def _residual(self, z: Tensor) -> Tensor:
        """The data term's negative gradient in image space: y − z, or M(c − Mᵀz)."""
        if self.operator is None:
            return self.y - z
        return self.operator.adjoint(self.measurement - self.operator.forward(z))

    def _run(self) -> Iterator[StepRecord]:
        p = self.params
        z = torch.full((1, *self.image_shape), 0.5)
        for t in range(1, p.max_steps + 1):
            if p.refresh_every > 0 and t > 1 and (t - 1) % p.refresh_every == 0:
                self.filter = self._build(z.clamp(0, 1))
            good = z  # the state a NaN falls back to (the update makes a new tensor)
            with cpu_threads(1):
                r = self._residual(z)
                step = self.filter.apply(r)
                z = z + p.step_size * step
            last = t == p.max_steps or self._stop_requested
            record = StepRecord(t=t)
            n = math.sqrt(z.numel())
            record.residual_norm = float(r.norm()) / n
            record.extra["loss"] = float(r.pow(2).mean())
            record.extra["step_norm"] = float(step.norm()) / n
            if self.operator is not None:
                record.data_error = float(self.operator.consistency_error(z, self.measurement).mean())
            if not bool(torch.isfinite(z).all()):
                record.stop_reason = StopReason.DIVERGED_NAN
                record.message = f"the iteration became NaN at step {t}; the estimate of step {t - 1} is kept"
                record.image = good.clamp(0, 1).to(torch.float32, copy=True)
                yield record
                return
            if self.truth is not None:
                from priorstudio.core.metrics import psnr

                record.psnr = psnr(z.clamp(0, 1), self.truth)
            if last or (p.emit_every > 0 and t % p.emit_every == 0):
                record.image = z.clamp(0, 1).to(torch.float32, copy=True)
            if last:
                if self.truth is not None:
                    from priorstudio.core.metrics import ssim

                    record.ssim = ssim(z.clamp(0, 1), self.truth)
                record.stop_reason = StopReason.CANCELLED if self._stop_requested else StopReason.STEP_CAP
                record.message = "stopped on request" if self._stop_requested else f"{p.max_steps} steps done"
            yield record
            if last:
                return


def _one_image(name: str, x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``x`` (C, H, W) or (1, C, H, W) as (1, C, H, W) float32, or a ParameterError naming both shapes."""
    t = as_tensor(x).to(torch.float32)
    if tuple(t.shape) == tuple(shape):
        return t.unsqueeze(0)
    if tuple(t.shape) == (1, *shape):
        return t
    raise ParameterError(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}")


def twicing_sampler(
    operator: Operator | None,
    measurement: Tensor | None,
    params: TwicingParams,
    *,
    truth: Tensor | None = None,
    init: Tensor | None = None,
) -> TwicingRun:
    """Non-local filtering and twicing as a step stream (a :class:`TwicingRun` with ``stop()``).

    Denoising (no operator or the ``denoise`` operator): ``init`` is the noisy image y; record 1 holds the
    plain filter W y, record k the k-th twicing iterate. Other operators: kernel gradient descent on the
    data term (module docstring). The filter is built when the run is made (``run.filter``).
    """
    return TwicingRun(operator, measurement, params, truth=truth, init=init)


def filter_image(image: Tensor, **options: Any) -> Tensor:
    """Plain non-local filtering W y of one image (C, H, W); ``options`` go to :func:`build_filter`."""
    return build_filter(image, **options).apply(image)
