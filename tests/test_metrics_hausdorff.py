"""hausdorff95: known distances between squares, robustness to one stray pixel, empty-mask conventions."""
import numpy as np
import pytest

from helpers.evaluation.metrics import hausdorff95


def _square(top: int, left: int, side: int = 20, shape=(64, 64)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top:top + side, left:left + side] = True
    return mask


@pytest.mark.parametrize("k", [1, 3, 6])
def test_two_squares_offset_by_k_pixels_are_k_apart(k):
    a, b = _square(10, 10), _square(10, 10 + k)
    assert hausdorff95(a, b) == pytest.approx(k)
    assert hausdorff95(b, a) == pytest.approx(k)               # symmetric
    assert hausdorff95(a, _square(10 + k, 10)) == pytest.approx(k)  # vertical offset


def test_identical_masks_score_zero_and_one_stray_pixel_is_ignored():
    a = _square(10, 10)
    assert hausdorff95(a, a) == 0.0
    stray = a.copy()
    stray[60, 60] = True                                       # one false-positive pixel 40 px away
    assert hausdorff95(stray, a) == 0.0                        # 1 of 77 boundary pixels: beyond the 95th percentile
    many = a.copy()
    many[55:64, 55:64] = True                                  # a large far island is 36 boundary pixels: it counts
    assert hausdorff95(many, a) > 20


def test_empty_mask_conventions():
    empty = np.zeros((30, 40), bool)
    assert hausdorff95(empty, empty) == 0.0
    lesion = _square(5, 5, side=10, shape=(30, 40))
    assert hausdorff95(empty, lesion) == pytest.approx(50.0)   # hypot(30, 40): the image diagonal
    assert hausdorff95(lesion, empty) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="shape"):
        hausdorff95(empty, np.zeros((30, 41), bool))
    with pytest.raises(ValueError, match="bool"):
        hausdorff95(np.full((30, 40), 0.7), lesion)
