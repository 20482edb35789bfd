"""Notebook 01's exercise checkers accept the right answer and reject typical wrong ones with a hint."""
import numpy as np
import pytest

from helpers.exercises import nb01


def _masks() -> dict[str, np.ndarray]:
    """Three masks of different sizes: one touching the left border, one inside, one touching the bottom."""
    left = np.zeros((6, 8), np.uint8)
    left[2:4, 0:3] = 1
    inside = np.zeros((10, 10), np.uint8)
    inside[3:7, 3:7] = 1
    bottom = np.zeros((4, 4), np.uint8)
    bottom[2:4, 1:3] = 255  # 0/255-coded as on disk
    return {"A": left, "B": inside, "C": bottom}


def test_area_fraction_accepts_the_mean_of_the_binary_mask(capsys):
    nb01.check_area_fraction(lambda m: (m > 0).mean())
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda m: m.mean(), "0/255"),                       # forgets that PNG masks are 0/255
    (lambda m: float((m > 0).sum()), "fraction"),        # a count, not a fraction
    (lambda m: (m > 0).sum() / m.shape[0], "ALL pixels"),  # divides by the height only
    (lambda m: None, "return"),
])
def test_area_fraction_rejects_wrong_functions(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb01.check_area_fraction(wrong)


def test_background_accuracy_pools_pixels():
    masks = list(_masks().values())
    lesion = 6 + 16 + 4
    total = 48 + 100 + 16
    right = 1 - lesion / total
    nb01.check_background_accuracy(right, masks)
    per_image = np.mean([1 - (m > 0).mean() for m in masks])
    with pytest.raises(AssertionError, match="pool"):
        nb01.check_background_accuracy(per_image, masks)
    with pytest.raises(AssertionError, match="LESION"):
        nb01.check_background_accuracy(1 - right, masks)
    with pytest.raises(AssertionError, match="got 0.5000"):
        nb01.check_background_accuracy(0.5, masks)


def test_border_ids():
    masks = _masks()
    nb01.check_border_ids(["A", "C"], masks)
    nb01.check_border_ids({"C", "A"}, masks)
    with pytest.raises(AssertionError, match="1 missing, 0 extra"):
        nb01.check_border_ids(["A"], masks)
    with pytest.raises(AssertionError, match="0 missing, 1 extra"):
        nb01.check_border_ids(["A", "B", "C"], masks)
    with pytest.raises(AssertionError, match="not ids"):
        nb01.check_border_ids(["A", "C", "Z"], masks)
    with pytest.raises(AssertionError, match="list or set"):
        nb01.check_border_ids("A", masks)


def test_border_ids_with_two_sides():
    masks = _masks()
    corner = np.zeros((5, 5), np.uint8)
    corner[:2, :2] = 1  # top and left
    masks["D"] = corner
    nb01.check_border_ids(["D"], masks, min_sides=2)
    with pytest.raises(AssertionError, match="0 missing, 2 extra"):
        nb01.check_border_ids(["A", "C", "D"], masks, min_sides=2)
    with pytest.raises(AssertionError, match="1 missing"):
        nb01.check_border_ids([], masks, min_sides=2)


def test_reference_answers_on_known_masks():
    masks = _masks()
    assert nb01.lesion_area_fraction(masks["C"]) == 0.25
    assert [nb01.touches_border(m) for m in masks.values()] == [True, False, True]
    assert [nb01.border_sides(m) for m in masks.values()] == [1, 0, 1]
    assert nb01.border_sides(np.ones((3, 3), np.uint8)) == 4
    with pytest.raises(ValueError, match="no masks"):
        nb01.background_accuracy([])
