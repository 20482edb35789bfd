"""Notebook 07's exercise: the reference passes, named mistakes fail with their hint, a stub is 'not attempted'."""
import numpy as np
import pytest

from helpers.course.exercises import nb07
from helpers.course.exercises.base import ExerciseFailed

VAL = list(np.random.default_rng(0).gamma(2.0, 0.001, size=40))


def test_the_reference_passes(capsys):
    nb07.check_unsure_threshold(nb07.unsure_threshold, VAL)
    assert "exercise 1 passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda u, f: float(np.quantile(u, f)), "quantile"),
    (lambda u, f: float(np.mean(u)), "mean uncertainty"),
    (lambda u, f: float(np.max(u)), "no image would ever be flagged"),
    (lambda u, f: float(np.quantile(u, 1 - f)) * 0.5, "flagged instead of"),
])
def test_named_mistakes_fail_with_their_hint(wrong, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        nb07.check_unsure_threshold(wrong, VAL)


def test_a_stub_is_not_attempted(capsys):
    def stub(u, f):
        raise NotImplementedError

    nb07.check_unsure_threshold(stub, VAL)
    assert "not attempted" in capsys.readouterr().out


def test_solution_and_answers_are_shown(capsys):
    nb07.show_solution(1)
    nb07.show_answer(5)
    out = capsys.readouterr().out
    assert "np.quantile" in out and "validation" in out


def test_mask_agreement_reference_passes_and_pooling_fails(capsys):
    rng = np.random.default_rng(1)
    pa = [rng.random((10, 10)), rng.random((30, 30))]
    pb = [np.clip(x + 0.1, 0, 1) for x in pa]
    nb07.check_mask_agreement(nb07.mask_agreement, pa, pb)
    assert "exercise 2 passed" in capsys.readouterr().out

    def pooled(x, y):
        mx = np.concatenate([m.ravel() > 0.5 for m in x])
        my = np.concatenate([m.ravel() > 0.5 for m in y])
        return float(2 * (mx & my).sum() / (mx.sum() + my.sum()))

    with pytest.raises(ExerciseFailed, match="pooled every pixel"):
        nb07.check_mask_agreement(pooled, pa, pb)
    with pytest.raises(ExerciseFailed, match="expected"):
        nb07.check_mask_agreement(lambda x, y: 1.0 - float(np.mean([np.abs(p - q).mean() for p, q in zip(x, y)])),
                                  pa, pb)
