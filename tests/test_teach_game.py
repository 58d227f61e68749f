""" "Real or sampled?": seeded rounds, hidden labels, honest scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from priorstudio.core.errors import ParameterError
from priorstudio.core.teach.game import (
    RealOrSampledRound,
    binomial_tail,
    cut_patches,
    needed_to_beat_chance,
    real_patches,
    wilson_interval,
)


def _round(n=10, seed=0):
    real = [np.full((1, 4, 4), 0.9) for _ in range(8)]
    fake = [np.full((1, 4, 4), 0.1) for _ in range(8)]
    return RealOrSampledRound(real, fake, n, seed=seed)


def test_round_is_balanced_seeded_and_shuffled():
    a, b, c = _round(seed=1), _round(seed=1), _round(seed=2)
    truth = [a._items[i].is_real for i in range(len(a))]
    assert len(a) == 10 and sum(truth) == 5
    assert truth == [b._items[i].is_real for i in range(len(b))]
    orders = {tuple(r._items[i].is_real for i in range(10)) for r in (_round(seed=s) for s in range(8))}
    assert len(orders) > 1 and c is not None
    odd = RealOrSampledRound([1, 2, 3], [4, 5, 6], 5)
    assert sum(odd._items[i].is_real for i in range(5)) == 2


def test_answers_scoring_and_honesty():
    game = _round()
    with pytest.raises(ParameterError):
        game.reveal(0)  # not before answering
    for i in range(len(game)):
        patch = game.patch(i)
        says_real = float(patch.mean()) > 0.5  # a perfect player
        assert game.answer(i, says_real)
        assert game.reveal(i).is_real == says_real
    with pytest.raises(ParameterError):
        game.answer(0, True)
    assert game.finished and game.next_unanswered() is None
    score = game.score()
    assert score.correct == 10 and score.accuracy == 1.0
    assert score.real_called_real == 5 and score.sampled_called_sampled == 5
    assert score.p_value == pytest.approx(1 / 1024)
    assert score.beats_chance and "beats guessing" in score.statement()
    with pytest.raises(IndexError):
        game.patch(10)


def test_a_guesser_does_not_beat_chance():
    game = _round(n=10)
    for i in range(len(game)):
        game.answer(i, True)  # always "real": half right
    score = game.score()
    assert score.correct == 5 and not score.beats_chance
    assert "fooled you" in score.statement() and "needs 9 of 10" in score.statement()
    partial = _round()
    assert partial.score().statement() == "No answers yet."
    assert partial.next_unanswered() == 0
    assert math.isnan(partial.score().accuracy)


def test_rounds_pool_into_one_score():
    perfect, guesser = _round(n=10, seed=1), _round(n=10, seed=2)
    for i in range(10):
        perfect.answer(i, float(perfect.patch(i).mean()) > 0.5)
        guesser.answer(i, True)
    a, b = perfect.score(), guesser.score()
    both = a + b
    assert (both.correct, both.answered) == (15, 20)
    assert (both.real_called_real, both.real_answered) == (10, 10)
    assert (both.sampled_called_sampled, both.sampled_answered) == (5, 10)
    assert both.p_value == pytest.approx(binomial_tail(15, 20))  # pooled answers are one binomial test
    assert a.beats_chance and not b.beats_chance and both.beats_chance
    assert "prior samples spotted 5 of 10" in both.breakdown()
    empty = _round().score()
    assert (empty + a).correct == a.correct


def test_statistics():
    assert binomial_tail(0, 5) == pytest.approx(1.0)
    assert binomial_tail(5, 5) == pytest.approx(1 / 32)
    assert binomial_tail(6, 5) == 0.0
    assert binomial_tail(15, 20) == pytest.approx(0.0207, abs=1e-4)
    assert needed_to_beat_chance(20) == 15 and needed_to_beat_chance(3) is None
    lo, hi = wilson_interval(15, 20)
    assert lo == pytest.approx(0.531, abs=1e-3) and hi == pytest.approx(0.888, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and 0.6 < lo < 0.8


def test_validation():
    with pytest.raises(ParameterError):
        RealOrSampledRound([1], [2], 1)
    with pytest.raises(ParameterError):
        RealOrSampledRound([1], [2, 3], 4)
    with pytest.raises(ParameterError):
        RealOrSampledRound([np.zeros((1, 4, 4))], [np.zeros((1, 5, 5))], 2)


def test_cut_patches_avoids_flat_regions_and_reports_sources():
    flat = np.zeros((1, 40, 40), dtype=np.float32)
    textured = flat.copy()
    textured[:, 20:, 20:] = np.random.default_rng(0).random((1, 20, 20))
    patches, sources = cut_patches([textured], 8, 5, seed=0, names=["t.png"])
    assert all(p.shape == (1, 8, 8) and p.std() >= 0.02 for p in patches)
    assert all(s.startswith("t.png (y ") for s in sources)
    with pytest.raises(ParameterError):
        cut_patches([flat], 64, 1)


def test_real_patches_from_bundled_samples():
    gray, names = real_patches(24, 4, channels=1, seed=3)
    color, _ = real_patches(24, 2, channels=3, seed=3)
    assert [p.shape for p in gray] == [(1, 24, 24)] * 4 and len(set(names)) == 4
    assert color[0].shape == (3, 24, 24) and color[0].min() >= 0 and color[0].max() <= 1
