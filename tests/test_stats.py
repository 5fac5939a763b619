"""The course's rule for "separated" (roberta_from_scratch/stats.py), against scipy.stats and hand computations."""

import itertools
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats

from roberta_from_scratch.stats import RULE, Difference, paired_bootstrap, paired_bootstrap_f1, seed_spread


def test_one_seed_matches_scipys_paired_percentile_bootstrap():
    """Catches: a resampling that is not scipy's paired percentile bootstrap of the mean difference (another
    statistic, unpaired draws, the wrong tails)."""
    rng = np.random.default_rng(1)
    a = rng.normal(0.3, 1.0, 400)
    b = a - 0.1 + rng.normal(0, 0.5, 400)  # the same items: b follows a
    ours = paired_bootstrap(a, b, resamples=20_000, seed=2)
    theirs = scipy_stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), paired=True,
                                   vectorized=True, method="percentile", n_resamples=20_000,
                                   random_state=np.random.default_rng(3)).confidence_interval
    standard_error = (a - b).std(ddof=1) / np.sqrt(len(a))
    # two Monte Carlo estimates of the same quantiles: their endpoints agree to a small share of a standard error
    assert abs(ours.low - theirs.low) < 0.1 * standard_error and abs(ours.high - theirs.high) < 0.1 * standard_error
    assert ours.difference == pytest.approx((a - b).mean(), abs=1e-12) and ours.seeds == 1 and ours.items == 400


def test_many_items_give_the_normal_interval():
    """Catches: an interval of the wrong width (a standard deviation for a standard error, a 68% interval)."""
    rng = np.random.default_rng(0)
    a, b = rng.binomial(1, 0.6, 3000), rng.binomial(1, 0.5, 3000)  # right (1) or wrong (0) per item
    result = paired_bootstrap(a, b, resamples=5000)
    d = a - b
    half = scipy_stats.norm.ppf(0.975) * d.std(ddof=1) / np.sqrt(len(d))
    assert result.low == pytest.approx(d.mean() - half, abs=0.08 * half)
    assert result.high == pytest.approx(d.mean() + half, abs=0.08 * half)


def test_pairing_narrows_the_interval_when_the_arms_share_their_hard_items():
    """Catches: arms resampled independently, which ignores that both were scored on the same items."""
    rng = np.random.default_rng(4)
    difficulty = rng.normal(0, 1, 500)  # some items are hard for every model
    a = difficulty + 0.05 + rng.normal(0, 0.1, 500)
    b = difficulty + rng.normal(0, 0.1, 500)
    paired = paired_bootstrap(a, b)
    unpaired_half = 1.96 * np.sqrt(a.var(ddof=1) / 500 + b.var(ddof=1) / 500)
    assert paired.separated and paired.high - paired.low < 0.3 * 2 * unpaired_half


def test_seeds_are_resampled_too():
    """Catches: a bootstrap over items alone, which calls three scattered seeds 'separated' with an interval of
    zero width when each seed scores every item alike."""
    offsets = np.array([0.1, -0.1, 0.3])  # the seeds disagree; within a seed, every item moves alike
    a = np.tile(offsets[:, None], (1, 50))
    b = np.zeros_like(a)
    result = paired_bootstrap(a, b, resamples=20_000)
    # exact: the mean of three seeds drawn with replacement from the three offsets, over all 27 draws
    means = sorted(np.mean(draw) for draw in itertools.product(offsets, repeat=3))
    assert result.low == pytest.approx(np.quantile(means, 0.025), abs=0.07)
    assert result.high == pytest.approx(np.quantile(means, 0.975), abs=0.07)
    assert result.low < 0 < result.high and not result.separated and result.seeds == 3


def test_exact_cases_and_the_rule():
    """Catches: a rule that calls equal arms different, or a shift that is exact anywhere not separated."""
    same = paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1])
    assert (same.difference, same.low, same.high, same.separated) == (0.0, 0.0, 0.0, False)
    shifted = paired_bootstrap([[0.5, 0.7, 0.9]] * 2, [[0.4, 0.6, 0.8]] * 2)
    assert shifted.low == pytest.approx(0.1) and shifted.high == pytest.approx(0.1) and shifted.separated
    assert Difference(-0.2, -0.3, -0.1, 3, 10).separated and not Difference(0.1, -0.01, 0.2, 3, 10).separated
    assert "separated" in str(shifted) and "excludes zero" in RULE


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="pair the arms"):
        paired_bootstrap([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match=r"\(items,\) or \(seeds, items\)"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="between 0 and 1"):
        paired_bootstrap([1, 0], [0, 1], confidence=95)


def test_seed_spread_is_the_sample_standard_deviation():
    values = [0.71, 0.74, 0.69, 0.80]
    mean, sd, n = seed_spread(values)
    assert (mean, n) == (pytest.approx(statistics.fmean(values)), 4) and sd == pytest.approx(statistics.stdev(values))
    assert np.isnan(seed_spread([0.5])[1])


def test_f1_bootstrap_matches_scipys_paired_bootstrap_of_the_same_statistic():
    """Catches: an F1 interval that averages per-sentence F1s (not the F1 of the summed counts), resamples the arms
    apart, or draws other tails than scipy's paired percentile bootstrap of the same statistic."""
    rng = np.random.default_rng(5)
    entities = rng.integers(0, 4, 300)  # gold entities per sentence
    found_a = rng.binomial(entities, 0.8)
    found_b = np.minimum(found_a, rng.binomial(entities, 0.6))  # b finds fewer, on the same sentences
    a = np.stack([found_a, rng.integers(0, 2, 300), entities - found_a], 1)  # tp, fp, fn
    b = np.stack([found_b, rng.integers(0, 2, 300), entities - found_b], 1)

    def f1(counts, axis=-1):
        tp, fp, fn = (counts[..., k].sum(axis) for k in range(3))
        return 2 * tp / (2 * tp + fp + fn)

    ours = paired_bootstrap_f1(a, b, resamples=20_000, seed=1)
    assert ours.difference == pytest.approx(f1(a, 0) - f1(b, 0), abs=1e-12)
    theirs = scipy_stats.bootstrap((a, b), _f1_difference, paired=True, vectorized=True, method="percentile",
                                   n_resamples=20_000, random_state=np.random.default_rng(2),
                                   axis=0).confidence_interval
    width = ours.high - ours.low
    assert abs(ours.low - theirs.low) < 0.05 * width and abs(ours.high - theirs.high) < 0.05 * width
    averaged = np.mean([2 * t / max(2 * t + p + n, 1) for t, p, n in a]) - \
        np.mean([2 * t / max(2 * t + p + n, 1) for t, p, n in b])
    assert abs(averaged - ours.difference) > 0.01  # the statistic is the F1 of sums, not a mean over sentences


def _f1_difference(x, y, axis):
    # scipy moves the items to `axis` (the last): the counts come as (3, resamples, items)
    def f1(counts):
        tp, fp, fn = (counts[k].sum(axis) for k in range(3))
        return 2 * tp / (2 * tp + fp + fn)
    return f1(x) - f1(y)


def test_f1_bootstrap_with_seeds_and_bad_counts():
    a = np.array([[[2, 0, 0], [1, 1, 0]], [[1, 0, 1], [0, 0, 1]]])  # 2 seeds x 2 sentences
    b = np.zeros_like(a)
    b[..., 2] = 1
    result = paired_bootstrap_f1(a, b, resamples=200)
    # F1 of the summed counts per seed (6/7 and 2/4), averaged, minus b's 0
    assert result.difference == pytest.approx((6 / 7 + 2 / 4) / 2, abs=1e-12) and (result.seeds, result.items) == (2, 2)
    with pytest.raises(ValueError, match="true positives"):
        paired_bootstrap_f1(np.ones((4, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="not negative"):
        paired_bootstrap_f1(-a, b)
