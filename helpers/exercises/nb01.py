"""Checkers for the exercises of notebook 01 (data exploration).

Each ``check_*`` recomputes the right answer from the data it is given (never from a stored number) and raises
``AssertionError`` with a hint when the learner's answer differs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np


def _binary(mask: np.ndarray) -> np.ndarray:
    """A mask as a boolean array: accepts {0, 1} and {0, 255} masks ``(H, W)``."""
    mask = np.asarray(mask)
    return mask > (127 if mask.max(initial=0) > 1 else 0)


def lesion_area_fraction(mask: np.ndarray) -> float:
    """Reference answer of exercise 1: fraction of the mask's pixels that are lesion, in [0, 1]."""
    return float(_binary(mask).mean())


def background_accuracy(masks: Iterable[np.ndarray]) -> float:
    """Reference answer of exercise 2: pixel accuracy of predicting "no lesion" everywhere, pooled over all masks."""
    background = total = 0
    for mask in masks:
        m = _binary(mask)
        background += int((~m).sum())
        total += m.size
    if total == 0:
        raise ValueError("no masks given: pass the masks of a split, e.g. the training masks")
    return background / total


def border_sides(mask: np.ndarray) -> int:
    """How many image sides (0-4) a mask's lesion touches: lesion pixels in the first/last row/column."""
    m = _binary(mask)
    return int(m[0].any()) + int(m[-1].any()) + int(m[:, 0].any()) + int(m[:, -1].any())


def touches_border(mask: np.ndarray) -> bool:
    """Reference answer of exercise 3 for one mask: True when any lesion pixel lies in the outermost row/column."""
    return border_sides(mask) > 0


def _test_masks() -> list[np.ndarray]:
    """Small masks with known answers: empty, full, a quarter, 0/255-coded, a non-square one."""
    quarter = np.zeros((8, 8), np.uint8)
    quarter[:4, :4] = 1
    coded = np.zeros((6, 10), np.uint8)
    coded[2:4, 3:8] = 255
    ring = np.zeros((9, 12), np.uint8)
    ring[1:8, 2:10] = 1
    return [np.zeros((5, 7), np.uint8), np.ones((4, 4), np.uint8), quarter, coded, ring]


def check_area_fraction(fn: Callable[[np.ndarray], float]) -> None:
    """Check the learner's ``fn(mask) -> float`` lesion-area fraction on masks with known answers.

    Raises:
        AssertionError: with a hint, on the first mask where ``fn`` is wrong.
    """
    for mask in _test_masks():
        expected = lesion_area_fraction(mask)
        got = fn(mask.copy())
        assert got is not None, "your function returns None: end it with `return ...`"
        got = float(got)
        if mask.max() == 255 and np.isclose(got, expected * 255):
            raise AssertionError("this mask is stored as 0/255 (like the PNG files): binarise it first, "
                                 "e.g. `mask > 0`, before taking the mean")
        assert 0.0 <= got <= 1.0, (f"a fraction lies in [0, 1], got {got} for a {mask.shape} mask: divide the "
                                   "number of lesion pixels by ALL pixels (height x width)")
        assert np.isclose(got, expected, atol=1e-6), (
            f"for a {mask.shape} mask with {int(_binary(mask).sum())} lesion pixels of {mask.size} you returned "
            f"{got:.4f}, expected {expected:.4f}: divide lesion pixels by ALL pixels (height x width)")
    print("Correct: the area fraction is the mean of the binary mask.")


def check_background_accuracy(answer: float, masks: Iterable[np.ndarray]) -> None:
    """Check the learner's all-background pixel accuracy, pooled over every pixel of ``masks``.

    Raises:
        AssertionError: with a hint when ``answer`` is not the pooled accuracy.
    """
    masks = list(masks)
    expected = background_accuracy(masks)
    answer = float(answer)
    per_image = float(np.mean([1 - lesion_area_fraction(m) for m in masks]))
    if not np.isclose(answer, expected, atol=1e-4):
        if np.isclose(answer, 1 - expected, atol=1e-4):
            raise AssertionError("that is the fraction of LESION pixels: an all-background prediction is right "
                                 "on the background pixels")
        if np.isclose(answer, per_image, atol=1e-4) and not np.isclose(per_image, expected, atol=1e-4):
            raise AssertionError("you averaged per-image accuracies; pool the pixels instead: count background "
                                 "pixels over all masks and divide by the total pixel count")
        raise AssertionError(f"got {answer:.4f}: count the pixels where the mask is 0 over all masks and divide "
                             "by the total number of pixels")
    print(f"Correct: predicting 'no lesion' everywhere is already {expected:.1%} accurate.")


def check_border_ids(answer: Iterable[str], masks: Mapping[str, np.ndarray], min_sides: int = 1) -> None:
    """Check the learner's ids of the lesions touching at least ``min_sides`` sides of the image.

    A lesion touches a side when any pixel of that outermost row or column is lesion.

    Args:
        answer: the ids the learner found (list, set, ...).
        masks: ``{id: mask}`` the learner searched.
        min_sides: 1 = touches the border at all; 2 = cut by the frame on two or more sides.

    Raises:
        AssertionError: with a hint naming how many ids are missing or extra.
    """
    if isinstance(answer, str):
        raise AssertionError("give a list or set of ids, not a single string")
    got = set(answer)
    expected = {image_id for image_id, mask in masks.items() if border_sides(mask) >= min_sides}
    unknown = got - set(masks)
    assert not unknown, f"{sorted(unknown)[:3]} are not ids of the masks you were given"
    missing, extra = expected - got, got - expected
    assert not missing and not extra, (
        f"{len(missing)} missing, {len(extra)} extra (e.g. {sorted(missing or extra)[0]}): a lesion touches a "
        f"side when any pixel of that first/last row or first/last column is lesion; count the sides it touches "
        f"(top, bottom, left, right) and keep the ids with at least {min_sides}")
    print(f"Correct: {len(expected)} of {len(masks)} lesions touch at least {min_sides} side(s) of the image.")
