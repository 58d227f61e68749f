"""The explain text: Miyasawa's relation and the update rule with the step's numbers filled in."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.teach.explain import explain_step, injected_noise, step_size, steps_to_target


def _params(beta=0.5):
    return SimpleNamespace(sigma_0=1.0, sigma_L=0.01, h_0=0.01, beta=beta)


def test_formulas():
    assert step_size(1, 0.01) == pytest.approx(0.01)
    assert step_size(37, 0.01) == pytest.approx(0.37 / 1.36)
    assert injected_noise(0.3, 0.2, 1.0) == 0.0
    h, s, b = 0.2, 0.3, 0.5
    g = injected_noise(s, h, b)
    # the effective noise after the update: (1 − h)σ of the old noise plus γ of fresh noise = (1 − βh)σ
    assert math.hypot((1 - h) * s, g) == pytest.approx((1 - b * h) * s)


def test_steps_to_target_matches_the_documented_counts():
    # ALGORITHMS.md §2: from σ_0 = 1 to σ_L = 0.01 about 33 steps at β = 1, 48 at β = 0.5, 660 at β = 0.01
    assert abs(steps_to_target(1.0, 1, _params(1.0)) - 33) <= 1
    assert abs(steps_to_target(1.0, 1, _params(0.5)) - 48) <= 1
    assert abs(steps_to_target(1.0, 1, _params(0.01)) - 660) <= 2
    assert steps_to_target(0.005, 10, _params()) == 0


def test_explanation_fills_in_the_numbers():
    rec = StepRecord(t=37, sigma=0.2345, image=torch.zeros(2, 1, 64, 64))
    nxt = StepRecord(t=38, sigma=0.2050)
    e = explain_step(rec, _params(0.5), next_record=nxt)
    n = e.numbers
    assert n["h"] == pytest.approx(0.37 / 1.36)
    assert n["predicted_next_sigma"] == pytest.approx((1 - 0.5 * n["h"]) * 0.2345)
    assert n["measured_next_sigma"] == pytest.approx(0.205)
    assert n["n_values"] == 4096
    assert "D(y) = E[x | y] = y + σ² ∇log p_σ(y)" in e.text
    assert "y_{t+1} = y_t + h_t·d_t + γ_t·z_t = y_t + 0.2721·d_t + 0.1091·z_t" in e.text
    assert "(1 − βh_t)σ_t = 0.8640 × 0.2345 = 0.2026; measured 0.2050 (+1.2 %)" in e.text
    assert "d_t = f(y_t)." in e.text
    assert "<sub>t+1</sub>" in e.html and "<p>" in e.html and "&#x27;" not in e.text


def test_record_values_win_and_constrained_direction():
    rec = StepRecord(t=5, sigma=0.5, h=0.123, gamma=0.0)
    e = explain_step(rec, _params(1.0), constrained=True, n_values=100)
    assert e.numbers["h"] == 0.123 and e.numbers["gamma"] == 0.0
    assert "(I − MMᵀ)f(y_t) + M(x_c − Mᵀy_t)" in e.text
    assert "‖d_t‖ = 5.000 over N = 100 values" in e.text
    assert e.numbers["measured_next_sigma"] is None and "measured" not in e.text


def test_html_sets_every_subscript_and_shows_no_raw_underscore():
    rec = StepRecord(t=4, sigma=0.3, image=torch.zeros(1, 1, 8, 8))
    e = explain_step(rec, _params(0.5), next_record=StepRecord(t=5, sigma=0.25), constrained=True)
    assert "p_σ(y)" in e.text and "x_c" in e.text  # the plain text keeps the underscores …
    assert "_" not in e.html  # … the rich text sets them all as subscripts
    assert "∇log p<sub>σ</sub>(y)" in e.html and "M(x<sub>c</sub> − Mᵀy<sub>t</sub>)" in e.html
    assert "σ<sub>t+1</sub> = (1 − βh<sub>t</sub>)σ<sub>t</sub>" in e.html and "σ<sub>L</sub> = 0.01" in e.html
