"""A Gaussian prior and its exact blind denoiser: a world where we know the answer.

For x ~ N(μ, Σ) and y = x + σz the least-squares denoiser is linear and known in closed form,

    D(y) = E[x | y] = μ + Σ(Σ + σ²I)⁻¹(y − μ).

A trained network is *blind*: it is never told σ and reads it off y. ``GaussianBlindDenoiser`` does the
same, estimating σ² from y in Σ's eigen-coordinates z = Vᵀ(y − μ), where z_i ~ N(0, λ_i + σ²): it solves

    mean_i z_i² / (λ_i + σ²) = 1        for σ² ≥ 0 (σ² = 0 when the left side at σ² = 0 is ≤ 1).

Driving the implicit-prior sampler with this oracle separates what the *algorithm* does from what a
network learned, which makes it the reference for the sampler's tests and a teaching example: the
samples can be compared with a prior whose mean, covariance and conditionals are exact.

Everything is computed in float64; the denoiser returns the dtype and device it was given.
"""

from __future__ import annotations

import torch
from torch import Tensor

from priorstudio.core.errors import ParameterError
from priorstudio.core.tensors import as_tensor

#: Newton iterations for the blind σ² estimate; it converges monotonically from a lower bound, and far
#: fewer are needed in practice (the loop ends as soon as the whole batch has converged).
_NEWTON_ITERATIONS = 60


class GaussianPrior:
    """x ~ N(mean, cov) on N values, with the eigen-decomposition cov = V diag(λ) Vᵀ kept for the oracle."""

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        mean = as_tensor(mean, dtype=torch.float64).flatten()
        cov = as_tensor(cov, dtype=torch.float64)
        n = mean.numel()
        if cov.shape != (n, n):
            raise ParameterError(f"the covariance must be {n}×{n} for a mean of {n} values, got {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.T, atol=1e-10 * max(float(cov.abs().max()), 1.0)):
            raise ParameterError("the covariance must be symmetric")
        cov = 0.5 * (cov + cov.T)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        if float(eigenvalues.min()) < -1e-10 * max(float(eigenvalues.max()), 1.0):
            smallest = float(eigenvalues.min())
            raise ParameterError(f"the covariance must be positive semi-definite (smallest eigenvalue {smallest:.3g})")
        self.mean = mean
        self.cov = cov
        #: Eigenvalues λ (ascending) and orthonormal eigenvectors V (columns) of the covariance.
        self.eigenvalues = eigenvalues.clamp_min(0.0)
        self.eigenvectors = eigenvectors

    @property
    def dim(self) -> int:
        return self.mean.numel()

    @classmethod
    def isotropic(cls, n: int, mean: float, variance: float) -> GaussianPrior:
        """N(mean·1, variance·I) on n values."""
        return cls(torch.full((n,), float(mean)), float(variance) * torch.eye(n, dtype=torch.float64))

    @classmethod
    def with_spectrum(cls, mean: Tensor | float, eigenvalues: Tensor, seed: int = 0) -> GaussianPrior:
        """A covariance with the given eigenvalues along a random orthonormal basis (seeded)."""
        lam = as_tensor(eigenvalues, dtype=torch.float64).flatten()
        n = lam.numel()
        gen = torch.Generator().manual_seed(int(seed))
        q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # a uniformly random rotation
        cov = (q * lam.unsqueeze(0)) @ q.T
        mu = as_tensor(mean, dtype=torch.float64)
        return cls(mu.expand(n).clone() if mu.dim() == 0 else mu, cov)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws as an (n, N) float64 tensor."""
        eps = torch.randn(int(n), self.dim, generator=generator, dtype=torch.float64)
        return self.mean + (eps * self.eigenvalues.sqrt()) @ self.eigenvectors.T

    def conditional_mean(self, observed_idx: Tensor, values: Tensor) -> Tensor:
        """E[x | x_o = values] as a full vector (…, N): the observed entries are ``values`` themselves.

        ``observed_idx`` indexes the N values; ``values`` is (n_obs,) or a batch (B, n_obs).
        """
        idx = as_tensor(observed_idx, dtype=torch.long).flatten()
        values = as_tensor(values, dtype=torch.float64)
        hidden = torch.ones(self.dim, dtype=torch.bool)
        hidden[idx] = False
        u = torch.nonzero(hidden).squeeze(1)
        s_oo = self.cov[idx][:, idx]
        s_uo = self.cov[u][:, idx]
        delta = values - self.mean[idx]
        # Σ_uo Σ_oo⁻¹ (x_o − μ_o), solved rather than inverted; lstsq copes with a singular Σ_oo.
        coef = torch.linalg.lstsq(s_oo, delta.reshape(-1, idx.numel()).T).solution
        out = self.mean.expand(*values.shape[:-1], self.dim).clone()
        out[..., u] = self.mean[u] + (s_uo @ coef).T.reshape(*values.shape[:-1], u.numel())
        out[..., idx] = values
        return out

    def conditional_cov(self, observed_idx: Tensor) -> Tensor:
        """Cov[x_u | x_o] = Σ_uu − Σ_uo Σ_oo⁻¹ Σ_ou of the unobserved values (in index order)."""
        idx = as_tensor(observed_idx, dtype=torch.long).flatten()
        hidden = torch.ones(self.dim, dtype=torch.bool)
        hidden[idx] = False
        u = torch.nonzero(hidden).squeeze(1)
        s_oo = self.cov[idx][:, idx]
        s_uo = self.cov[u][:, idx]
        return self.cov[u][:, u] - s_uo @ torch.linalg.lstsq(s_oo, s_uo.T).solution


class GaussianBlindDenoiser:
    """The exact least-squares denoiser of a :class:`GaussianPrior`, made blind by estimating σ from y.

    Callable on (B, C, H, W) (or one (C, H, W) image) like :class:`~priorstudio.core.denoisers.Denoiser`.
    """

    def __init__(self, prior: GaussianPrior, image_shape: tuple[int, int, int]) -> None:
        c, h, w = (int(v) for v in image_shape)
        if c * h * w != prior.dim:
            raise ParameterError(f"an image of shape {(c, h, w)} has {c * h * w} values, the prior {prior.dim}")
        self.prior = prior
        self.image_shape = (c, h, w)
        self.channels = c
        self.name = "gaussian-oracle"
        self.device = torch.device("cpu")

    @property
    def description(self) -> str:
        return f"{self.name} (exact blind denoiser of a {self.prior.dim}-dimensional Gaussian)"

    def _coordinates(self, y: Tensor) -> Tensor:
        """z = Vᵀ(y − μ), one row per image, float64 on the CPU."""
        flat = y.detach().to("cpu", torch.float64).reshape(y.shape[0], -1)
        if flat.shape[1] != self.prior.dim:
            raise ValueError(f"{self.name} expects images of shape {self.image_shape}, got {tuple(y.shape[1:])}")
        return (flat - self.prior.mean) @ self.prior.eigenvectors

    def estimate_noise_variance(self, y: Tensor) -> Tensor:
        """σ̂² per image (B,) float64: the root of mean_i z_i²/(λ_i + s) = 1, or 0 when there is none ≥ 0."""
        return self._noise_variance(self._coordinates(y))

    def _noise_variance(self, z: Tensor) -> Tensor:
        lam = self.prior.eigenvalues
        z2 = z * z
        # g(s) = mean z²/(λ + s) − 1 is convex and decreasing, so Newton from a point left of the root
        # climbs to it monotonically. s₀ = max(0, mean z² − λ_max) is such a point: there g(s₀) ≥ 0.
        s = (z2.mean(1) - lam.max()).clamp_min(0.0)
        zero = lam <= 0
        if bool(zero.any()):
            # a direction without prior variance: the root also satisfies s ≥ z_j²/N there
            s = torch.maximum(s, z2[:, zero].max(1).values / lam.numel())
        g0 = (z2 / (lam.unsqueeze(0) + s.unsqueeze(1)).clamp_min(1e-300)).mean(1) - 1.0
        active = g0 > 0
        for _ in range(_NEWTON_ITERATIONS):
            if not bool(active.any()):
                break
            denom = lam.unsqueeze(0) + s[active].unsqueeze(1)
            g = (z2[active] / denom).mean(1) - 1.0
            dg = -(z2[active] / denom**2).mean(1)
            step = torch.where(dg < 0, -g / dg, torch.zeros_like(g))
            new_s = (s[active] + step).clamp_min(0.0)
            done = (step.abs() <= 1e-13 * new_s.clamp_min(1e-30)) | (g <= 0)
            s[active] = new_s
            idx = torch.nonzero(active).squeeze(1)
            active[idx[done]] = False
        return s

    def __call__(self, y: Tensor) -> Tensor:
        return self.denoise(y)

    def denoise(self, y: Tensor) -> Tensor:
        """μ + V diag(λ/(λ + σ̂²)) Vᵀ(y − μ) with σ̂ estimated per image; same dtype and device as y."""
        if y.dim() == 3:
            return self.denoise(y.unsqueeze(0)).squeeze(0)
        z = self._coordinates(y)
        s = self._noise_variance(z)
        lam = self.prior.eigenvalues
        denom = lam.unsqueeze(0) + s.unsqueeze(1)
        gain = torch.where(denom > 0, lam.unsqueeze(0) / denom.clamp_min(1e-300), torch.ones_like(denom))
        x = self.prior.mean + (gain * z) @ self.prior.eigenvectors.T
        return x.reshape(y.shape).to(device=y.device, dtype=y.dtype)
