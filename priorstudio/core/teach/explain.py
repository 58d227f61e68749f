"""The "explain" panel's text: Miyasawa's relation and the sampler's update rule, with a step's numbers.

Given a StepRecord of the implicit-prior sampler and its parameters, :func:`explain_step` states

- Miyasawa / Tweedie: D(y) = E[x | y] = y + σ²∇log p_σ(y), so f(y) = D(y) − y points uphill on the blurred
  log-density and its size measures the noise left, σ_t = ‖d_t‖/√N;
- the step size h_t = h₀t / (1 + h₀(t − 1)) and the injected noise γ_t = σ_t√((1 − βh_t)² − (1 − h_t)²);
- the update y_{t+1} = y_t + h_t d_t + γ_t z_t;
- the predicted next noise level (1 − βh_t)σ_t next to the measured one, when the next record is known;

as plain text and as simple HTML (the subset Qt's rich text renders). Numbers come from the record where
it has them (σ_t, h_t, γ_t) and are recomputed from the parameters otherwise.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from typing import Protocol

from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.samplers.implicit_prior import noise_scale, step_size


class SamplerParamsLike(Protocol):
    """The fields of the sampler's parameters the explanation needs."""

    sigma_0: float
    sigma_L: float
    h_0: float
    beta: float


def injected_noise(sigma: float, h: float, beta: float) -> float:
    """γ_t = σ_t·√((1 − βh_t)² − (1 − h_t)²): zero for β = 1."""
    return sigma * noise_scale(h, beta)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def steps_to_target(sigma: float, t: int, params: SamplerParamsLike, cap: int = 100_000) -> int | None:
    """Steps left from σ_t at step t until (1 − βh)σ reaches σ_L on the ideal schedule (None beyond ``cap``).

    Like the sampler's ``expected_iterations`` but from any point of a run, for "how long still"."""
    if sigma <= params.sigma_L:
        return 0
    s = sigma
    for n in range(1, cap + 1):
        s *= 1 - params.beta * step_size(t + n - 1, params.h_0)
        if s <= params.sigma_L:
            return n
    return None


@dataclass
class Explanation:
    """The numbers of one step and their rendering."""

    numbers: dict[str, float | int | None] = field(default_factory=dict)
    text: str = ""
    html: str = ""


def explain_step(
    record: StepRecord,
    params: SamplerParamsLike,
    *,
    next_record: StepRecord | None = None,
    n_values: int | None = None,
    constrained: bool = False,
) -> Explanation:
    """Explain step ``record.t`` of an implicit-prior run with parameters ``params``.

    ``next_record`` supplies the measured σ_{t+1}; ``n_values`` is N = C·H·W (taken from the record's image
    when it has one); ``constrained`` says the run has measurements (inpainting, super-resolution …), so
    the step direction d_t mixes the prior's pull and the data's.
    """
    t = max(int(record.t), 1)
    sigma = float(record.sigma)
    beta, h0 = float(params.beta), float(params.h_0)
    h = float(record.h) if _finite(record.h) else step_size(t, h0)
    gamma = float(record.gamma) if _finite(record.gamma) else injected_noise(sigma, h, beta)
    factor = 1 - beta * h
    predicted = factor * sigma if _finite(sigma) else float("nan")
    measured = float(next_record.sigma) if next_record is not None and _finite(next_record.sigma) else None
    if n_values is None and record.image is not None:
        n_values = int(record.image[0].numel()) if record.image.dim() == 4 else int(record.image.numel())
    left = steps_to_target(sigma, t + 1, params) if _finite(sigma) else None
    numbers: dict[str, float | int | None] = {
        "t": t,
        "sigma": sigma,
        "h": h,
        "gamma": gamma,
        "beta": beta,
        "h_0": h0,
        "sigma_L": float(params.sigma_L),
        "predicted_next_sigma": predicted,
        "measured_next_sigma": measured,
        "n_values": n_values,
        "steps_left": left,
    }

    f4 = "{:.4f}".format
    d_rule = "d_t = (I − MMᵀ)f(y_t) + M(x_c − Mᵀy_t)" if constrained else "d_t = f(y_t)"
    norm = f"‖d_t‖ = {sigma * math.sqrt(n_values):.3f} over N = {n_values:,} values, so " if n_values else ""
    lines = [
        f"Step t = {t} of the implicit-prior sampler (β = {beta:g}, h₀ = {h0:g}, σ_L = {params.sigma_L:g}).",
        "",
        "Miyasawa / Tweedie: for a noisy image y = x + σz the least-squares denoiser satisfies",
        "    D(y) = E[x | y] = y + σ² ∇log p_σ(y),",
        "so f(y) = D(y) − y points uphill on the log-density of noisy images, towards more probable images, "
        "and its size says how much noise is left.",
        "",
        f"Direction: {d_rule}"
        + (" (the prior's pull where the data are silent, the data's pull elsewhere)." if constrained else "."),
        f"Noise left: σ_t = ‖d_t‖/√N: {norm}σ_t = {f4(sigma)}.",
        f"Step size: h_t = h₀·t/(1 + h₀(t − 1)) = {h0:g}·{t}/(1 + {h0:g}·{t - 1}) = {f4(h)}.",
        f"Injected noise: γ_t = σ_t·√((1 − βh_t)² − (1 − h_t)²) = {f4(sigma)}·√({f4(factor)}² − {f4(1 - h)}²)"
        f" = {f4(gamma)}.",
        f"Update: y_{{t+1}} = y_t + h_t·d_t + γ_t·z_t = y_t + {f4(h)}·d_t + {f4(gamma)}·z_t:",
        f"    move {100 * h:.1f} % of the way to the denoised image, then add fresh noise of std {gamma:.4g}.",
        f"Predicted: σ_{{t+1}} = (1 − βh_t)σ_t = {f4(factor)} × {f4(sigma)} = {f4(predicted)}"
        + (
            f"; measured {f4(measured)} ({100 * (measured / predicted - 1):+.1f} %)."
            if measured is not None and predicted > 0
            else "."
        ),
    ]
    if left is not None:
        lines.append(f"On the ideal (1 − βh_t) decay σ would reach σ_L = {params.sigma_L:g} in {left} more steps.")
    text = "\n".join(lines)
    return Explanation(numbers, text, _to_html(lines))


#: A subscript of the plain text: ``_{t+1}`` or one letter after a symbol (``σ_t``, ``p_σ``, ``x_c``).
_SUBSCRIPT = re.compile(r"_\{([^}]*)\}|(?<=\w)_(\w)")


def subscripts_to_html(text: str) -> str:
    """Escape ``text`` for Qt's rich text and set its subscripts as <sub>, so no raw underscore shows."""
    return _SUBSCRIPT.sub(lambda m: f"<sub>{m.group(1) or m.group(2)}</sub>", html.escape(text))


def _to_html(lines: list[str]) -> str:
    """Plain lines → paragraphs; indented lines become indented formulas; subscripts become <sub>."""
    out = []
    for line in lines:
        if not line:
            continue
        body = subscripts_to_html(line.strip())
        if line.startswith("    "):
            out.append(f'<p style="margin-left:2em"><i>{body}</i></p>')
        else:
            out.append(f"<p>{body}</p>")
    return "\n".join(out)
