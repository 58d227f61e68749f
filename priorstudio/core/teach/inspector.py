"""Look inside a bias-free denoiser: its adaptive filters, the singular values of its Jacobian, its score.

A bias-free network is positively homogeneous and piecewise linear, so at any input it *is* a linear map:
D(y) = A(y)·y, with A(y) = ∂D/∂y its Jacobian (Euler's theorem for degree-1 homogeneous functions).

- Row (c, i, j) of A(y) is the **adaptive filter** the network applies at that pixel: the output pixel is
  the dot product of this filter with the noisy image. One vector–Jacobian product gives it.
- The **singular values** of A(y) show the local signal subspace: A behaves like a projection onto a
  subspace that shrinks as the noise grows (Mohan et al., ICLR 2020). We get the leading ones without
  forming A (N × N) by a randomized SVD whose products A·V are Jacobian–vector products and Aᵀ·U
  vector–Jacobian products, each evaluated for a whole block of vectors as one batch.
- The **effective dimensionality** is d = Σᵢ sᵢ² = ‖A(y)‖²_F = tr(AᵀA): exactly the rank for an orthogonal
  projection, and the factor by which the network keeps white noise (E‖A σz‖² = σ²d). From leading
  singular values it is a lower bound; :func:`estimate_effective_dimensionality` gives the full value by
  Hutchinson's estimator E‖A z‖² with random probes z.
- The **score image** f(y) = D(y) − y = σ²∇log p_σ(y) (Miyasawa) is the direction the sampler steps along.

Everything here runs the fp32 network with autograd: ``Denoiser.differentiable()`` (the fast path's bf16
would make the identity A(y)y = D(y) hold only to bf16 precision).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from priorstudio.core.denoisers.inference import Denoiser
from priorstudio.core.errors import ParameterError, ResourceLimitError
from priorstudio.core.teach.history import FrameHistory, KeepPolicy

NetLike = Denoiser | nn.Module | Callable[[Tensor], Tensor]


def as_network(net: NetLike) -> Callable[[Tensor], Tensor]:
    """The differentiable fp32 function behind ``net`` (a Denoiser, an nn.Module or any torch function)."""
    if isinstance(net, Denoiser):
        return net.differentiable()
    if isinstance(net, nn.Module):
        return net.eval()
    return net


def _device_of(net: NetLike) -> torch.device:
    if isinstance(net, Denoiser):
        return net.device
    if isinstance(net, nn.Module):
        for p in net.parameters():
            return p.device
    return torch.device("cpu")


def _batched(y: Tensor) -> Tensor:
    if y.dim() == 3:
        return y.unsqueeze(0)
    if y.dim() == 4 and y.shape[0] == 1:
        return y
    raise ParameterError(f"the inspector works on one image (C, H, W) or (1, C, H, W), got {tuple(y.shape)}")


def add_noise(x: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """x + σz with a seeded z, so a noise-level slider changes the level but not the noise pattern."""
    if sigma < 0:
        raise ParameterError(f"noise level must be ≥ 0, got {sigma}")
    gen = torch.Generator().manual_seed(int(seed))
    return x + sigma * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)


def denoise_fp32(net: NetLike, y: Tensor) -> Tensor:
    """D(y) from the same fp32 network the Jacobian is taken of (for identities and displays)."""
    f = as_network(net)
    yb = _batched(y).to(_device_of(net), torch.float32)
    with torch.no_grad():
        return f(yb).reshape(y.shape).cpu()


def jacobian_row(net: NetLike, y: Tensor, pixel: tuple[int, int, int]) -> Tensor:
    """Row (c, i, j) of A(y) = ∂D/∂y: the adaptive filter at that pixel, an image shaped like ``y``.

    For a bias-free network ``(row * y).sum() == D(y)[c, i, j]`` up to floating-point rounding.
    """
    f = as_network(net)
    yb = _batched(y)
    c, i, j = (int(v) for v in pixel)
    _, C, H, W = yb.shape
    if not (0 <= c < C and 0 <= i < H and 0 <= j < W):
        raise ParameterError(f"pixel (c, i, j) = {pixel} is outside the image of shape {(C, H, W)}")
    x = yb.detach().to(_device_of(net), torch.float32).clone().requires_grad_(True)
    with torch.enable_grad():
        out = f(x)
        (grad,) = torch.autograd.grad(out[0, c, i, j], x)
    return grad.reshape(y.shape).detach().cpu()


def filter_sweep(
    net: NetLike,
    x: Tensor,
    pixel: tuple[int, int, int],
    sigmas: Sequence[float],
    *,
    noise: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """The adaptive filter at one pixel for y = x + σz at each σ, one z for all: (len(sigmas), C, H, W).

    ``z`` is ``noise`` when given (e.g. a crop of the noise the slider adds to the whole image), else the
    pattern :func:`add_noise` draws with ``seed``. Side by side the filters show what the noise-level
    slider does: the filter averages over a wider neighbourhood as the noise grows.
    """
    if len(sigmas) == 0:
        raise ParameterError("give at least one noise level")
    z = noise if noise is not None else add_noise(torch.zeros_like(x), 1.0, seed)
    if z.shape != x.shape:
        raise ParameterError(f"the noise has shape {tuple(z.shape)}, the image {tuple(x.shape)}")
    return torch.stack([jacobian_row(net, x + float(s) * z, pixel) for s in sigmas])


def crop_window(shape: tuple[int, int], center: tuple[int, int], size: int) -> tuple[slice, slice]:
    """Row and column slices of a ``size``×``size`` window around ``center``, shifted to stay inside.

    The GUI shows a filter as the patch around its pixel; the inspector may also compute on such a window
    of a large photo (exact for a CNN when the window reaches twice its receptive field past the pixel).
    """
    h, w = shape
    i, j = center
    sh, sw = min(size, h), min(size, w)
    top = min(max(i - sh // 2, 0), h - sh)
    left = min(max(j - sw // 2, 0), w - sw)
    return slice(top, top + sh), slice(left, left + sw)


# -- matrix-free products --------------------------------------------------------------------------------
class LocalLinearMap:
    """A(y) as an operator on batches of image-shaped vectors, without ever forming it.

    ``matvec(V)`` = A·vᵢ for each vᵢ in the batch V (K, C, H, W) — Jacobian–vector products through the
    network evaluated at K copies of y. ``rmatvec(U)`` = Aᵀ·uᵢ — vector–Jacobian products. Both treat the batch
    items independently, which holds for any network in eval mode (no cross-batch statistics).
    """

    def __init__(self, net: NetLike, y: Tensor) -> None:
        self.f = as_network(net)
        self.device = _device_of(net)
        self.y = _batched(y).detach().to(self.device, torch.float32)
        self.shape = tuple(self.y.shape[1:])
        self.n = int(self.y[0].numel())

    def _at(self, k: int) -> Tensor:
        return self.y.expand(k, *self.shape).contiguous()

    def matvec(self, v: Tensor) -> Tensor:
        """A·vᵢ for each vᵢ, by the double-backward trick: A v = ∂⟨Aᵀu, v⟩/∂u (exact, as A is linear in u).

        Two reverse passes instead of one forward-mode pass: forward-mode AD costs seconds to initialise
        on first use in this PyTorch, which a click in the GUI should not wait for.
        """
        v = v.to(self.device, torch.float32).reshape(-1, *self.shape)
        with torch.enable_grad():
            x = self._at(v.shape[0]).requires_grad_(True)
            out = self.f(x)
            u = torch.zeros_like(out, requires_grad=True)
            (at_u,) = torch.autograd.grad(out, x, u, create_graph=True)
            (av,) = torch.autograd.grad(at_u, u, v)
        return av.detach()

    def rmatvec(self, u: Tensor) -> Tensor:
        """Aᵀ·uᵢ for each uᵢ: one reverse pass (a vector–Jacobian product)."""
        u = u.to(self.device, torch.float32).reshape(-1, *self.shape)
        with torch.enable_grad():
            x = self._at(u.shape[0]).requires_grad_(True)
            (out,) = torch.autograd.grad(self.f(x), x, u)
        return out.detach()


def _orthonormal_rows(m: Tensor) -> Tensor:
    """Orthonormalise the rows of m (K, N) in float64 (QR of mᵀ)."""
    q, _ = torch.linalg.qr(m.double().T)
    return q.T


@dataclass
class SpectrumResult:
    """Leading singular values of A(y) (descending) and the right singular vectors as images."""

    singular_values: Tensor  # (k,)
    vectors: Tensor  # (k, C, H, W): right singular vectors vᵢ (A vᵢ = sᵢ uᵢ)

    @property
    def effective_dimensionality_lower_bound(self) -> float:
        return effective_dimensionality(self.singular_values)


def leading_singular_values(
    net: NetLike,
    y: Tensor,
    k: int = 16,
    *,
    oversample: int = 10,
    power_iterations: int = 2,
    block: int = 64,
    seed: int = 0,
    return_vectors: bool = False,
) -> Tensor | SpectrumResult:
    """The ``k`` largest singular values of A(y), by a randomized SVD (Halko, Martinsson & Tropp 2011).

    A Gaussian block Ω of k + ``oversample`` vectors is pushed through A (JVPs), refined by
    ``power_iterations`` rounds of Aᵀ then A (VJPs and JVPs), orthonormalised, and the small projected
    matrix QᵀA is decomposed exactly. The products are batched ``block`` vectors at a time. Exact when
    k + oversample ≥ N; otherwise accurate for the leading values, more so with more power iterations.
    """
    if k < 1:
        raise ParameterError(f"need k ≥ 1 singular values, got {k}")
    if oversample < 0 or power_iterations < 0:
        raise ParameterError("oversample and power_iterations must be ≥ 0")
    op = LocalLinearMap(net, y)
    width = min(k + oversample, op.n)
    k = min(k, op.n)
    gen = torch.Generator().manual_seed(int(seed))
    omega = torch.randn((width, op.n), generator=gen, dtype=torch.float64)

    def apply(fn: Callable[[Tensor], Tensor], rows: Tensor) -> Tensor:
        parts = [fn(rows[s : s + block].float()).reshape(-1, op.n).double().cpu() for s in range(0, len(rows), block)]
        return torch.cat(parts, 0)

    q = _orthonormal_rows(apply(op.matvec, omega))  # rows span the range of A Ω
    for _ in range(power_iterations):
        z = _orthonormal_rows(apply(op.rmatvec, q))
        q = _orthonormal_rows(apply(op.matvec, z))
    b = apply(op.rmatvec, q)  # rows are (Aᵀ qᵢ)ᵀ = rows of QᵀA
    _, s, vh = torch.linalg.svd(b, full_matrices=False)
    values = s[:k].float()
    if not return_vectors:
        return values
    return SpectrumResult(values, vh[:k].float().reshape(k, *op.shape))


def explicit_jacobian(net: NetLike, y: Tensor) -> Tensor:
    """The full N × N Jacobian of D at y (only for tiny images: tests and teaching examples)."""
    op = LocalLinearMap(net, y)
    if op.n > 4096:
        raise ParameterError(f"the explicit Jacobian of a {op.n}-value image would be too large; use a crop ≤ 64²")
    eye = torch.eye(op.n)
    cols = torch.cat([op.matvec(eye[s : s + 256]).reshape(-1, op.n).cpu() for s in range(0, op.n, 256)], 0)
    return cols.T  # column j is A e_j


def effective_dimensionality(singular_values: Tensor) -> float:
    """d = Σ sᵢ² (= ‖A‖²_F): the rank of A when it is an orthogonal projection; a lower bound from a few sᵢ."""
    s = torch.as_tensor(singular_values, dtype=torch.float64)
    return float((s * s).sum())


def participation_ratio(singular_values: Tensor) -> float:
    """(Σ sᵢ²)² / Σ sᵢ⁴: how many singular values carry the energy (also the rank for a projection)."""
    s2 = torch.as_tensor(singular_values, dtype=torch.float64) ** 2
    denom = float((s2 * s2).sum())
    return float(s2.sum() ** 2 / denom) if denom > 0 else 0.0


def estimate_effective_dimensionality(net: NetLike, y: Tensor, probes: int = 16, *, seed: int = 0) -> float:
    """Hutchinson's unbiased estimate of d = tr(AᵀA) = E‖A z‖² over z ~ N(0, I), with ``probes`` JVPs."""
    if probes < 1:
        raise ParameterError(f"need at least one probe, got {probes}")
    op = LocalLinearMap(net, y)
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn((probes, *op.shape), generator=gen)
    az = op.matvec(z).reshape(probes, -1).double()
    return float((az * az).sum(1).mean())


def score_image(denoiser: NetLike, y: Tensor) -> Tensor:
    """f(y) = D(y) − y = σ²∇log p_σ(y): the step direction of the implicit-prior sampler, for display."""
    if isinstance(denoiser, Denoiser):
        return denoiser(y) - y
    return denoise_fp32(denoiser, y) - y.cpu()


def score_display(score: Tensor) -> Tensor:
    """Map a score image to [0, 1] around mid-gray (0 ↦ 0.5), symmetric in sign, for showing it."""
    scale = float(score.abs().max().clamp_min(1e-12))
    return (0.5 + 0.5 * score / scale).clamp(0, 1)


def filter_display(row: Tensor) -> Tensor:
    """Map a filter (a Jacobian row) to [0, 1] with zero at mid-gray, like :func:`score_display`."""
    return score_display(row)


#: Between the steps the history keeps, the newest score is made at most this often (seconds): enough for a
#: live view, and the run's worker thread does not pay a copy and a compaction for every step.
LATEST_EVERY_S = 0.2


class ScoreTap:
    """Wraps a denoiser to keep the score f(y_t) = D(y_t) − y_t of the sampler's steps.

    The sampler's records carry the estimate D(y_t), not the iterate y_t, so the score of a past step cannot
    be recomputed from them. Hand the sampler ``ScoreTap(denoiser)`` instead of the denoiser: call n is the
    sampler's step t = n. Its score goes, compactly and thinned under a memory cap, into ``history`` (a
    FrameHistory in float16, so the sign survives) when step n lands on the history's grid; between those
    steps a score is made only every ``latest_every_s`` seconds (it fills the history's latest slot and
    ``latest``), since making one costs the run a copy off the device and a compaction. :meth:`flush` keeps
    the score of the final call once the run has ended. With a batch, the sampler passes only the samples
    still running, so a frame holds those.
    """

    def __init__(
        self,
        denoiser: Callable[[Tensor], Tensor],
        history: FrameHistory | None = None,
        *,
        latest_every_s: float = LATEST_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.denoiser = denoiser
        self.history = history if history is not None else FrameHistory(dtype="float16")
        self.policy = KeepPolicy(self.history, latest_every_s=latest_every_s, clock=clock)
        self.calls = 0
        #: the newest score made and its step: at most ``latest_every_s`` seconds behind the newest call
        self.latest: Tensor | None = None
        self.latest_t = 0
        #: why the scores stopped being kept (a frame larger than the cap allows), or "" while they are
        self.dropped = ""
        self._skipped: tuple[int, Tensor, Tensor] | None = None  # the last call, while its score is not made

    # the attributes the sampler and the GUI read from a Denoiser, stated explicitly
    @property
    def device(self) -> torch.device:
        return getattr(self.denoiser, "device", torch.device("cpu"))

    @property
    def channels(self) -> int:
        return int(getattr(self.denoiser, "channels", 1))

    @property
    def name(self) -> str:
        return str(getattr(self.denoiser, "name", "denoiser"))

    @property
    def description(self) -> str:
        return str(getattr(self.denoiser, "description", self.name))

    def __call__(self, y: Tensor) -> Tensor:
        out = self.denoiser(y)
        self._pass_skipped()
        self.calls += 1
        if self.policy.keep(y.numel() * self.history.itemsize, grid=not self.dropped):
            self._keep(self.calls, y, out)
        else:  # held (no copy) so that flush() can still make it if this is the run's last call
            self._skipped = (self.calls, y.detach(), out.detach())
        return out

    def flush(self) -> None:
        """Make and keep the score of the last call if it was skipped; call once the run has ended, so the
        final step's score can be shown."""
        skipped, self._skipped = self._skipped, None
        if skipped is not None:
            self._keep(*skipped)

    def _pass_skipped(self) -> None:
        """The previous call was not the last: its score stays unmade, and the history counts it."""
        if self._skipped is not None:
            self._skipped = None
            if not self.dropped:
                self.history.skip()

    def _keep(self, t: int, y: Tensor, out: Tensor) -> None:
        score = (out - y).detach().to("cpu", torch.float32)
        self.latest, self.latest_t = score, t
        if self.dropped:
            return
        try:
            self.history.push(t, score)
        except ResourceLimitError as error:  # keeping scores is for display: never fail the run for it
            self.dropped = str(error)

    def score_at(self, t: int) -> Tensor:
        """The kept score nearest step ``t`` (float32)."""
        return self.history.nearest(t).tensor()

    def sample_score(self, t: int, k: int, last_steps: Sequence[int] | Tensor) -> tuple[int, Tensor] | None:
        """(step, score (C, H, W)) of sample ``k`` of a batched run at the kept step nearest ``t``.

        ``last_steps`` is each sample's last step (the run's ``steps``); a kept step after sample ``k``
        stopped falls back to its last kept score. None when nothing of sample ``k`` was kept.
        """
        steps = [int(v) for v in torch.as_tensor(last_steps).tolist()]
        if not 0 <= k < len(steps):
            raise ParameterError(f"sample {k} is not in this batch of {len(steps)}")
        frames = [f for f in self.history.frames() if f.t <= steps[k]]
        if not frames:
            return None
        frame = min(frames, key=lambda f: (abs(f.t - t), f.t))
        data = frame.tensor()
        if data.dim() == 4:
            row = active_row(steps, frame.t, k)
            if row is None or row >= data.shape[0]:
                return None
            data = data[row]
        return frame.t, data


def active_row(last_steps: Sequence[int] | Tensor, t: int, k: int) -> int | None:
    """The row of sample ``k`` in the batch the denoiser saw at step ``t`` (None if it had stopped by then).

    The sampler calls the denoiser on the samples still running, in index order; sample i runs at step t
    exactly when its last step is ≥ t.
    """
    steps = [int(v) for v in torch.as_tensor(last_steps).tolist()]
    if steps[k] < t:
        return None
    return sum(1 for s in steps[:k] if s >= t)
