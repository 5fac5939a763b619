"""How the course decides that two arms of an experiment differ: one rule, used by every notebook that compares.

An experiment here scores two arms (pretrained against random weights, a model against a baseline) on the same test
items (questions, entities, queries, masked tokens), usually over a few seeds. Two sources of noise make the
difference of their means uncertain: the seeds (another seed, another run) and the items (another draw of test
questions). The paired bootstrap takes both into account without assuming a distribution (Efron & Tibshirani 1993,
*An Introduction to the Bootstrap*): redraw, with replacement, the seeds and the items, the same draws for both arms
(they saw the same items, and a seed gives both arms the same data order), recompute the difference, and read the
interval off the redrawn differences.

**The rule.** Two arms are *separated* when the 95% interval of the difference of their means excludes zero
(:data:`RULE`). An interval that straddles zero says the data cannot tell them apart at this size, not that they
are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
RULE = ("two arms are separated when the 95% paired bootstrap interval of the difference of their means, over "
        "seeds and test items, excludes zero")


@dataclass(frozen=True)
class Difference:
    """The difference of two arms' mean scores (``a`` minus ``b``) with its bootstrap interval."""

    difference: float
    low: float
    high: float
    seeds: int
    items: int
    confidence: float = CONFIDENCE

    @property
    def separated(self) -> bool:
        """The course's rule (:data:`RULE`): the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def scaled(self, factor: float) -> "Difference":
        """The same difference in other units: ``scaled(100)`` turns shares into percentage points."""
        if factor <= 0:
            raise ValueError(f"factor={factor}: give a positive factor (a negative one would swap the ends)")
        return Difference(self.difference * factor, self.low * factor, self.high * factor, self.seeds, self.items,
                          self.confidence)

    def __str__(self) -> str:
        verdict = "separated" if self.separated else "not separated"
        return (f"{self.difference:+.4g} ({self.confidence:.0%} interval {self.low:+.4g} to {self.high:+.4g}, "
                f"{self.seeds} seed{'s' * (self.seeds != 1)} x {self.items} items): {verdict}")


def _scores(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]  # one seed
    if array.ndim != 2 or array.shape[1] == 0 or array.shape[0] == 0:
        raise ValueError(f"{name} must hold one score per test item, as (items,) or (seeds, items); got shape "
                         f"{np.shape(values)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds a NaN or an infinity: every item needs a finite score")
    return array


def paired_bootstrap(a, b, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0) -> Difference:
    """The difference of the mean scores of arms ``a`` and ``b`` and its percentile bootstrap interval.

    ``a`` and ``b`` hold one score per test item (1 or 0 for right or wrong, an F1, a reciprocal rank), as
    ``(items,)`` or ``(seeds, items)``, the same items in the same order for both arms and, with several seeds, seed
    k of one arm paired with seed k of the other. Each resample draws the seeds and the items with replacement, the
    same draws for both arms, and takes the difference of the means; the interval holds the middle ``confidence`` of
    those differences.
    """
    a, b = _scores(a, "a"), _scores(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} and b {b.shape}: pair the arms on the same seeds and test items")
    diff = a - b  # paired: the per-seed, per-item differences
    return _bootstrap(lambda rows, cols: diff[np.ix_(rows, cols)].mean(), float(diff.mean()), a.shape, resamples,
                      confidence, seed)


def _bootstrap(statistic, observed: float, shape: tuple[int, int], resamples: int, confidence: float,
               seed: int) -> Difference:
    """Redraw the seeds and then the items with replacement, ``resamples`` times; ``statistic(rows, cols)`` is the
    difference on one redraw. The interval holds the middle ``confidence`` of the redrawn differences."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: give a share between 0 and 1, such as 0.95")
    if resamples < 100:
        raise ValueError(f"resamples={resamples}: take at least 100 (the default is {RESAMPLES:,})")
    seeds, items = shape
    rng = np.random.default_rng(seed)
    drawn = np.empty(resamples)
    for r in range(resamples):
        rows = rng.integers(0, seeds, seeds)
        cols = rng.integers(0, items, items)
        drawn[r] = statistic(rows, cols)
    tail = (1 - confidence) / 2
    low, high = np.quantile(drawn, [tail, 1 - tail])
    return Difference(observed, float(low), float(high), seeds, items, confidence)


def _f1(counts: np.ndarray) -> np.ndarray:
    """F1 from summed (true positives, false positives, false negatives) on the last axis; 0 where all are 0."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def paired_bootstrap_f1(a, b, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                        seed: int = 0) -> Difference:
    """Like :func:`paired_bootstrap`, for an F1 over entities, which is not a mean over items: ``a`` and ``b`` hold,
    per test item (a sentence), its counts of (true positives, false positives, false negatives), shaped
    ``(items, 3)`` or ``(seeds, items, 3)``. Each arm's F1 is computed per seed from the counts summed over the
    (redrawn) items and averaged over the (redrawn) seeds; the difference is a's minus b's."""
    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    a, b = (x[None] if x.ndim == 2 else x for x in (a, b))
    if a.ndim != 3 or a.shape[-1] != 3 or 0 in a.shape:
        raise ValueError(f"give (true positives, false positives, false negatives) per item, shaped (items, 3) or "
                         f"(seeds, items, 3); got {np.shape(a)}")
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} and b {b.shape}: pair the arms on the same seeds and test items")
    if (a < 0).any() or (b < 0).any() or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("counts must be finite and not negative")

    def statistic(rows, cols):
        return (_f1(a[np.ix_(rows, cols)].sum(1)).mean() - _f1(b[np.ix_(rows, cols)].sum(1)).mean())

    observed = float(_f1(a.sum(1)).mean() - _f1(b.sum(1)).mean())
    return _bootstrap(statistic, observed, a.shape[:2], resamples, confidence, seed)


def seed_spread(values) -> tuple[float, float, int]:
    """The mean, the sample standard deviation (n - 1; NaN for one value) and the number of ``values``: a result's
    spread over seeds, reported beside its interval."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("no values: give one result per seed")
    sd = float(array.std(ddof=1)) if array.size > 1 else float("nan")
    return float(array.mean()), sd, int(array.size)
