"""Bootstrap intervals, calibration, temperature scaling and flip-TTA uncertainty on cases with known answers."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from helpers.evaluation import predict, reliability
from helpers.evaluation.reliability import (
    apply_temperature,
    bootstrap_ci,
    expected_calibration_error,
    fit_temperature,
    flip_views,
    paired_bootstrap,
    probability_logits,
    reliability_bins,
    TemperatureBoundWarning,
    spearman,
    tta_uncertainty,
)


# ------------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_ci_of_constant_scores_has_zero_width():
    ci = bootstrap_ci([0.7] * 20)
    assert ci.estimate == pytest.approx(0.7) and ci.low == pytest.approx(0.7) and ci.high == pytest.approx(0.7)


def test_bootstrap_ci_matches_the_standard_error_of_the_mean():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, 400)
    ci = bootstrap_ci(values, n_boot=4000, seed=3)
    se = values.std(ddof=0) / np.sqrt(values.size)
    assert ci.low < values.mean() < ci.high
    assert ci.width == pytest.approx(2 * 1.96 * se, rel=0.08)  # the CLT interval for a mean of 400 values
    assert bootstrap_ci(values, level=0.5, seed=3).width < ci.width


def test_bootstrap_is_seeded_and_resamples_with_replacement():
    values = np.arange(10.0)
    assert bootstrap_ci(values, seed=5) == bootstrap_ci(values, seed=5)
    assert bootstrap_ci(values, seed=5) != bootstrap_ci(values, seed=6)
    means = reliability.bootstrap_means(values, n_boot=500, seed=0)
    assert means.std() > 0.5  # resampling without replacement would give the same mean every time


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.5, np.nan])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([0.5, 0.6], level=95)


def test_paired_bootstrap_sees_a_consistent_small_gain_that_unpaired_intervals_hide():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.3, 0.95, 60)  # images vary a lot, the gain of model a is small but constant
    a, b = difficulty + 0.02, difficulty
    paired = paired_bootstrap(a, b, seed=1)
    assert paired.difference.estimate == pytest.approx(0.02)
    assert paired.difference.low == pytest.approx(0.02) and paired.p_not_better == 0.0
    ci_a, ci_b = bootstrap_ci(a, seed=1), bootstrap_ci(b, seed=1)
    assert ci_a.low < ci_b.high  # the two separate intervals overlap
    swapped = paired_bootstrap(b, a, seed=1)
    assert swapped.difference.estimate == pytest.approx(-0.02) and swapped.p_not_better == 1.0
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(a, b[:-1])


# ------------------------------------------------------------------------------------------ calibration
def test_ece_of_a_known_miscalibration():
    # 1000 pixels say p = 0.8 but only 70 % are lesion; 1000 say p = 0.1 and 10 % are lesion (calibrated)
    probs = np.r_[np.full(1000, 0.8), np.full(1000, 0.1)].reshape(40, 50)
    truth = np.r_[np.arange(1000) < 700, np.arange(1000) < 100].reshape(40, 50)
    table = reliability_bins(probs, truth, n_bins=10)
    assert table["count"].sum() == 2000 and table.loc[8, "count"] == 1000 and table.loc[1, "count"] == 1000
    assert table.loc[8, "lesion_fraction"] == pytest.approx(0.7) and table.loc[8, "gap"] == pytest.approx(0.1)
    assert np.isnan(table.loc[5, "mean_probability"])  # empty bin
    assert expected_calibration_error(probs, truth) == pytest.approx(0.05)  # (1000 * 0.1 + 1000 * 0) / 2000


def test_ece_weighs_bins_by_their_pixels_and_accepts_lists_of_images():
    probs = [np.full((10, 10), 0.95), np.full((2, 5), 0.25)]          # 100 and 10 pixels
    truths = [np.ones((10, 10)), np.zeros((2, 5))]                    # gaps 0.05 and 0.25
    assert expected_calibration_error(probs, truths) == pytest.approx((100 * 0.05 + 10 * 0.25) / 110)
    assert expected_calibration_error(np.ones((4, 4)), np.ones((4, 4))) == 0.0  # p = 1.0 falls in the last bin


def test_calibrated_random_probabilities_have_small_ece():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (300, 300))
    truth = rng.uniform(0, 1, p.shape) < p
    assert expected_calibration_error(p, truth) < 0.01
    assert expected_calibration_error(np.clip(p * 1.6 - 0.3, 0, 1), truth) > 0.05  # over-confident


def test_calibration_rejects_mismatched_shapes_and_logits():
    with pytest.raises(ValueError, match="shape"):
        reliability_bins([np.zeros((3, 3))], [np.zeros((3, 4))])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_bins(np.full((2, 2), 3.0), np.zeros((2, 2)))


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 3, 200_000)
    labels = rng.uniform(0, 1, true_logits.size) < 1 / (1 + np.exp(-true_logits))
    overconfident = true_logits * 2.5          # the model's logits are 2.5x too large
    assert fit_temperature(overconfident, labels) == pytest.approx(2.5, rel=0.03)
    assert fit_temperature(true_logits, labels) == pytest.approx(1.0, rel=0.03)
    assert fit_temperature(true_logits / 2, labels) == pytest.approx(0.5, rel=0.03)  # under-confident: T < 1


def test_a_temperature_at_its_search_bound_warns_and_one_inside_does_not():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 3, 50_000)
    labels = rng.uniform(0, 1, true_logits.size) < 1 / (1 + np.exp(-true_logits))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TemperatureBoundWarning)   # a fit inside the interval: no warning
        assert fit_temperature(true_logits * 2, labels) == pytest.approx(2.0, rel=0.05)
    # an untrained model: logits 100x too small, every probability near 0.5 -> T wants to go below 0.05
    with pytest.warns(TemperatureBoundWarning, match=r"lower end .*\[0.05, 20\].*is the model trained"):
        t = fit_temperature(true_logits / 100, labels)
    assert t == pytest.approx(0.05, rel=0.01)
    with pytest.warns(TemperatureBoundWarning, match="upper end"):   # far over-confident: T wants to exceed 20
        fit_temperature(true_logits * 60, labels)
    assert [reliability.temperature_at_bound(t) for t in (0.05, 0.0501, 0.07, 2.0, 19.999, 20.0)] == \
        ["lower", "lower", None, None, "upper", "upper"]


def test_temperature_scaling_lowers_the_ece_and_keeps_the_ranking():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (200, 200))
    truth = rng.uniform(0, 1, z.shape) < 1 / (1 + np.exp(-z))
    probs = 1 / (1 + np.exp(-3 * z))                     # over-confident by a factor 3
    t = fit_temperature(probability_logits(probs), truth)
    scaled = apply_temperature(probs, t)
    assert t == pytest.approx(3.0, rel=0.05)
    assert expected_calibration_error(scaled, truth) < 0.3 * expected_calibration_error(probs, truth)
    order = np.argsort(probs.ravel(), kind="stable")
    assert np.all(np.diff(scaled.ravel()[order]) >= 0)  # monotone: same ranking of pixels
    assert apply_temperature(np.array([0.5]), 4.0)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(probs, 0.0)


def test_probability_logits_are_finite_at_saturated_probabilities():
    z = probability_logits(np.array([0.0, 0.5, 1.0]))
    assert np.isfinite(z).all() and z[1] == 0 and z[0] == pytest.approx(-z[2])


# ------------------------------------------------------------------------------------------ TTA uncertainty
class _LeftHalf(nn.Module):
    """A 'model' that calls the left half of its input lesion, whatever it sees: not flip-equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0], 1, *x.shape[2:]), -8.0)
        out[..., : x.shape[3] // 2] = 8.0
        return out


class _Brightness(nn.Module):
    """A flip-equivariant 'model': the logit of each pixel is its (normalised) red channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 2.0


def test_flip_views_are_aligned_and_average_to_predict_batch_tta():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)]
    model = _Brightness()
    views = flip_views(model, images, 16, batch_size=1)
    assert [v.shape for v in views] == [(4, 24, 32), (4, 16, 16)]
    for v, tta in zip(views, predict.predict_batch(model, images, 16, tta=True)):
        np.testing.assert_allclose(v.mean(axis=0), tta, atol=1e-5)
        assert tta_uncertainty(v).max() < 1e-3  # an equivariant model agrees with itself under flips


def test_uncertainty_is_high_where_flipped_views_disagree():
    image = np.full((16, 16, 3), 128, np.uint8)
    views = flip_views(_LeftHalf(), [image], 16)[0]
    # identity and vertical flip say "left half", the horizontal flips say "right half": every pixel is 2 vs 2
    var = tta_uncertainty(views, "variance")
    ent = tta_uncertainty(views, "entropy")
    assert var.min() == pytest.approx(0.25, abs=1e-3) and ent.min() == pytest.approx(1.0, abs=1e-3)
    agree = np.stack([np.full((4, 4), 0.99)] * 4)
    assert tta_uncertainty(agree).max() == pytest.approx(0.0) and tta_uncertainty(agree, "entropy").max() < 0.1
    with pytest.raises(ValueError, match="kind"):
        tta_uncertainty(agree, "std")


def test_spearman_is_a_rank_correlation():
    x = np.arange(10.0)
    rho, p = spearman(x, np.exp(x))           # monotone but not linear
    assert rho == pytest.approx(1.0) and p < 1e-6
    assert spearman(x, -x**3)[0] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 3"):
        spearman([1, 2], [2, 1])


def test_binary_cross_entropy_matches_the_formula():
    z = np.array([-2.0, 0.0, 3.0, 9.0])
    y = np.array([0, 1, 1, 0])
    p = 1 / (1 + np.exp(-z))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    assert reliability.binary_cross_entropy(z, y) == pytest.approx(expected)
    assert np.isfinite(reliability.binary_cross_entropy(np.array([60.0]), np.array([0])))  # no overflow
