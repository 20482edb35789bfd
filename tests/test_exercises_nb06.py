"""Notebook 06's exercises: each reference solution passes, each named mistake fails, a stub is reported."""
import numpy as np
import pytest

from helpers.course.exercises import nb06


def _stub(*args, **kwargs):
    ...  # your code here
    raise NotImplementedError


@pytest.mark.parametrize("number, checker", [(1, nb06.check_ece), (2, nb06.check_bootstrap_interval),
                                             (3, nb06.check_fit_temperature)])
def test_reference_passes_and_stub_is_not_attempted(number, checker, capsys):
    checker(nb06.EXERCISES.solutions[number])
    assert capsys.readouterr().out.startswith(f"exercise {number} passed")
    assert checker(_stub) is None
    assert capsys.readouterr().out.startswith(f"exercise {number} not attempted yet")


@pytest.mark.parametrize("number, checker", [(1, nb06.check_ece), (2, nb06.check_bootstrap_interval),
                                             (3, nb06.check_fit_temperature)])
def test_solutions_print_and_pass_as_pasted(number, checker, solution_round_trip):
    solution_round_trip(nb06, number, checker, {"np": np})


# -------------------------------------------------------------------------------- exercise 1: ECE
def _ece_unweighted(probs, truth, n_bins=10):
    which = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    gaps = [abs(probs[which == b].mean() - truth[which == b].mean()) for b in range(n_bins) if (which == b).any()]
    return float(np.mean(gaps))


def _ece_bin_centres(probs, truth, n_bins=10):
    which = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    return float(sum((which == b).mean() * abs((b + 0.5) / n_bins - truth[which == b].mean())
                     for b in range(n_bins) if (which == b).any()))


def _ece_nan_bins(probs, truth, n_bins=10):
    which = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    with np.errstate(invalid="ignore"):
        return float(sum((which == b).mean() * abs(np.mean(probs[which == b]) - np.mean(truth[which == b]))
                         for b in range(n_bins)))


def _ece_drops_ones(probs, truth, n_bins=10):
    which = (probs * n_bins).astype(int)  # p = 1.0 lands in bin n_bins, never counted
    return float(sum((which == b).mean() * abs(probs[which == b].mean() - truth[which == b].mean())
                     for b in range(n_bins) if (which == b).any()))


def _ece_signed(probs, truth, n_bins=10):
    which = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    return float(abs(sum((which == b).mean() * (probs[which == b].mean() - truth[which == b].mean())
                         for b in range(n_bins) if (which == b).any())))


@pytest.mark.parametrize("wrong, hint", [(_ece_unweighted, "equal weights"), (_ece_bin_centres, "bin centre"),
                                         (_ece_nan_bins, "NaN"), (_ece_drops_ones, "p = 1.0"),
                                         (_ece_signed, "absolute value")])
def test_ece_mistakes_are_named(wrong, hint):
    with pytest.warns(RuntimeWarning) if wrong is _ece_nan_bins else _nothing():
        with pytest.raises(AssertionError, match=hint):
            nb06.check_ece(wrong)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -------------------------------------------------------------------------------- exercise 2: bootstrap
def _without_replacement(scores, n_boot=2000, level=0.95, seed=0):
    rng = np.random.default_rng(seed)
    means = [rng.permutation(scores).mean() for _ in range(n_boot)]
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def _percentiles_of_scores(scores, n_boot=2000, level=0.95, seed=0):
    return tuple(np.quantile(scores, [(1 - level) / 2, (1 + level) / 2]))


def _ninety_percent(scores, n_boot=2000, level=0.95, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.choice(scores, size=(n_boot, len(scores))).mean(1)
    return tuple(np.quantile(means, [0.05, 0.95]))


def _unseeded(scores, n_boot=2000, level=0.95, seed=0):
    means = np.random.choice(scores, size=(n_boot, len(scores))).mean(1)
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


@pytest.mark.parametrize("wrong, hint", [(_without_replacement, "WITH replacement"),
                                         (_percentiles_of_scores, "percentiles of the scores"),
                                         (_ninety_percent, "90 %"), (_unseeded, "same seed")])
def test_bootstrap_mistakes_are_named(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb06.check_bootstrap_interval(wrong)


# -------------------------------------------------------------------------------- exercise 3: temperature
def _nll(logits, targets, t):
    z = logits / t
    return float(np.mean(np.logaddexp(0, z) - targets * z))


def _maximises(logits, targets, grid):
    return max(grid, key=lambda t: _nll(logits, targets, t))


def _multiplies(logits, targets, grid):
    return min(grid, key=lambda t: _nll(logits * t, targets, 1.0))


def _always_one(logits, targets, grid):
    return 1.0


@pytest.mark.parametrize("wrong, hint", [(_maximises, "HIGHEST"), (_multiplies, "divides"),
                                         (_always_one, "lowest mean")])
def test_temperature_mistakes_are_named(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb06.check_fit_temperature(wrong)


def _minimises_ece(logits, targets, grid):
    """Temperature chosen by the learner's own ECE (exercise 1's reference) instead of the NLL."""
    return min(grid, key=lambda t: nb06.expected_calibration_error(1 / (1 + np.exp(-logits / t)), targets, 10))


def test_temperature_minimising_the_ece_is_refused():
    with pytest.raises(AssertionError, match="you minimised the ECE; fit T by the mean binary cross-entropy"):
        nb06.check_fit_temperature(_minimises_ece)
