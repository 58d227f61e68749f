""" "Real or sampled?" — the Turing test of the implicit prior, playable, with an honest score.

A round shows patches, half cut at random from photographs and half drawn from the prior at the same
size, in a seeded random order; the player says "real" or "sampled" for each. The score says not just the
accuracy but whether it beats guessing: an exact one-sided binomial test against p = ½ and a Wilson 95 %
interval. With 20 items one needs 15 right (p ≈ 0.02) to claim one can tell them apart.

The round logic is plain Python (patches are opaque objects: arrays, tensors, anything); the helper that
cuts real patches from image files uses NumPy and Pillow.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from priorstudio.core.errors import ParameterError

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class GameItem:
    """One patch of a round with its hidden truth."""

    patch: Any
    is_real: bool
    source: str  # "chelsea.png (y 120, x 40)" or "prior sample 3": shown after answering


@dataclass(frozen=True)
class Answer:
    index: int
    says_real: bool
    is_real: bool

    @property
    def correct(self) -> bool:
        return self.says_real == self.is_real


def binomial_tail(k: int, n: int, p: float = 0.5) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p): the one-sided p-value of k successes out of n."""
    if n < 0 or not k >= 0 or not 0.0 <= p <= 1.0:
        raise ParameterError(f"invalid binomial tail arguments k={k}, n={n}, p={p}")
    if k > n:
        return 0.0
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion k/n (well-behaved for small n and for k = 0 or n)."""
    if n == 0:
        return 0.0, 1.0
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def needed_to_beat_chance(n: int, alpha: float = 0.05) -> int | None:
    """The fewest correct answers out of n that beat guessing at level ``alpha`` (None when impossible)."""
    for k in range(n + 1):
        if binomial_tail(k, n) < alpha:
            return k
    return None


@dataclass(frozen=True)
class Score:
    """The result so far: accuracy, its 95 % interval and whether it beats chance (one-sided, α = 0.05)."""

    correct: int
    answered: int
    real_called_real: int
    real_answered: int
    sampled_called_sampled: int
    sampled_answered: int
    alpha: float = 0.05

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.answered)

    @property
    def p_value(self) -> float:
        """Chance of doing at least this well by guessing."""
        return binomial_tail(self.correct, self.answered) if self.answered else 1.0

    @property
    def beats_chance(self) -> bool:
        return self.answered > 0 and self.p_value < self.alpha

    def __add__(self, other: Score) -> Score:
        """Both scores pooled: every answer is a fair coin under guessing, so rounds add up to one test."""
        if not isinstance(other, Score):
            return NotImplemented
        return Score(
            correct=self.correct + other.correct,
            answered=self.answered + other.answered,
            real_called_real=self.real_called_real + other.real_called_real,
            real_answered=self.real_answered + other.real_answered,
            sampled_called_sampled=self.sampled_called_sampled + other.sampled_called_sampled,
            sampled_answered=self.sampled_answered + other.sampled_answered,
            alpha=self.alpha,
        )

    def breakdown(self) -> str:
        """Which kind fooled the player: real patches called real, samples called sampled."""
        return (
            f"real photos recognised {self.real_called_real} of {self.real_answered}, "
            f"prior samples spotted {self.sampled_called_sampled} of {self.sampled_answered}"
        )

    def statement(self) -> str:
        """One or two sentences for the player."""
        if self.answered == 0:
            return "No answers yet."
        lo, hi = self.interval
        head = (
            f"{self.correct} of {self.answered} right ({100 * self.accuracy:.0f} %, "
            f"95 % interval {100 * lo:.0f}–{100 * hi:.0f} %)."
        )
        if self.beats_chance:
            return f"{head} That beats guessing (p = {self.p_value:.3g}): you can tell the prior's samples apart."
        if self.accuracy <= 0.5:
            verdict = "no better than guessing: the prior's samples fooled you"
        else:
            verdict = "not yet distinguishable from guessing"
        need = needed_to_beat_chance(self.answered, self.alpha)
        tail = f" Beating chance needs {need} of {self.answered}." if need is not None else ""
        return f"{head} That is {verdict} (p = {self.p_value:.3g}).{tail}"


class RealOrSampledRound:
    """A seeded round of ``n_items`` patches, half real and half sampled, in random order.

    Labels stay hidden until answered: :meth:`patch` gives only the image; :meth:`answer` records the
    player's call and returns whether it was right; :meth:`reveal` tells the truth of an answered item.
    """

    def __init__(
        self,
        real: Sequence[Any],
        sampled: Sequence[Any],
        n_items: int = 20,
        *,
        seed: int = 0,
        real_sources: Sequence[str] | None = None,
        sampled_sources: Sequence[str] | None = None,
    ) -> None:
        if n_items < 2:
            raise ParameterError(f"a round needs at least 2 items, got {n_items}")
        n_real = n_items // 2
        n_sampled = n_items - n_real
        if len(real) < n_real or len(sampled) < n_sampled:
            raise ParameterError(
                f"a round of {n_items} needs {n_real} real and {n_sampled} sampled patches; "
                f"got {len(real)} and {len(sampled)}"
            )
        shapes = {tuple(p.shape) for p in [*real, *sampled] if hasattr(p, "shape")}
        if len(shapes) > 1:
            raise ParameterError(f"real and sampled patches must have one size, got shapes {sorted(shapes)}")
        rs = list(real_sources) if real_sources is not None else [f"photo patch {i + 1}" for i in range(len(real))]
        ss = (
            list(sampled_sources)
            if sampled_sources is not None
            else [f"prior sample {i + 1}" for i in range(len(sampled))]
        )
        rng = random.Random(seed)
        picks_real = rng.sample(range(len(real)), n_real)
        picks_sampled = rng.sample(range(len(sampled)), n_sampled)
        items = [GameItem(real[i], True, rs[i]) for i in picks_real]
        items += [GameItem(sampled[i], False, ss[i]) for i in picks_sampled]
        rng.shuffle(items)
        self.seed = seed
        self._items = items
        self._answers: dict[int, Answer] = {}

    def __len__(self) -> int:
        return len(self._items)

    def patch(self, index: int) -> Any:
        return self._items[self._check(index)].patch

    def _check(self, index: int) -> int:
        if not 0 <= index < len(self._items):
            raise IndexError(f"item {index} is not in this round of {len(self._items)}")
        return index

    def answer(self, index: int, says_real: bool) -> bool:
        """Record the call for item ``index``; returns True when it was right. Each item is answered once."""
        item = self._items[self._check(index)]
        if index in self._answers:
            raise ParameterError(f"item {index + 1} was already answered")
        record = Answer(index, bool(says_real), item.is_real)
        self._answers[index] = record
        return record.correct

    def is_answered(self, index: int) -> bool:
        return self._check(index) in self._answers

    def reveal(self, index: int) -> GameItem:
        """The truth of an answered item (refused before answering, so the game stays honest)."""
        if not self.is_answered(index):
            raise ParameterError(f"item {index + 1} has not been answered yet")
        return self._items[index]

    def next_unanswered(self) -> int | None:
        return next((i for i in range(len(self._items)) if i not in self._answers), None)

    @property
    def finished(self) -> bool:
        return len(self._answers) == len(self._items)

    def answers(self) -> list[Answer]:
        return [self._answers[i] for i in sorted(self._answers)]

    def score(self) -> Score:
        answers = self._answers.values()
        real = [a for a in answers if a.is_real]
        fake = [a for a in answers if not a.is_real]
        return Score(
            correct=sum(a.correct for a in answers),
            answered=len(self._answers),
            real_called_real=sum(a.says_real for a in real),
            real_answered=len(real),
            sampled_called_sampled=sum(not a.says_real for a in fake),
            sampled_answered=len(fake),
        )


# -- real patches ----------------------------------------------------------------------------------------
def load_patch_source(path: str | Path, channels: int) -> np.ndarray:
    """An image file as float32 (C, H, W) in [0, 1], converted to gray (1) or RGB (3)."""
    from priorstudio.core.imageio import load_image

    if channels not in (1, 3):
        raise ParameterError(f"patches are gray (1 channel) or colour (3), not {channels}")
    return load_image(path, mode="gray" if channels == 1 else "color").numpy()


def cut_patches(
    images: Sequence[np.ndarray],
    size: int,
    n: int,
    *,
    seed: int = 0,
    names: Sequence[str] | None = None,
    min_std: float = 0.02,
    tries: int = 50,
) -> tuple[list[np.ndarray], list[str]]:
    """``n`` random ``size``×``size`` patches cut from (C, H, W) images, spread over the images in turn.

    Nearly flat patches (std < ``min_std``, e.g. empty sky) are redrawn up to ``tries`` times: they say
    nothing about the prior and would make the game a coin toss. Returns the patches and their sources.
    """
    usable = [(k, im) for k, im in enumerate(images) if im.shape[-2] >= size and im.shape[-1] >= size]
    if not usable:
        raise ParameterError(f"no image is at least {size}×{size} pixels")
    labels = list(names) if names is not None else [f"image {k + 1}" for k in range(len(images))]
    rng = np.random.default_rng(seed)
    patches: list[np.ndarray] = []
    sources: list[str] = []
    for m in range(n):
        k, im = usable[m % len(usable)]
        for _ in range(max(tries, 1)):
            i = int(rng.integers(0, im.shape[-2] - size + 1))
            j = int(rng.integers(0, im.shape[-1] - size + 1))
            patch = im[..., i : i + size, j : j + size]
            if float(patch.std()) >= min_std:
                break
        patches.append(np.ascontiguousarray(patch, dtype=np.float32))
        sources.append(f"{labels[k]} (y {i}, x {j})")
    return patches, sources


def real_patches(
    size: int, n: int, *, channels: int = 1, seed: int = 0, paths: Sequence[str | Path] | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """Random patches from the bundled sample photos (or ``paths``) for a round of the game."""
    if paths is None:
        from priorstudio.resources import sample_images

        paths = sample_images()
    images = [load_patch_source(p, channels) for p in paths]
    return cut_patches(images, size, n, seed=seed, names=[Path(p).name for p in paths])
