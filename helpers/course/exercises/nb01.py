"""Exercises of notebook 01 (data exploration): reference solutions and checkers.

1. ``lesion_box(mask)``: the lesion's bounding box as NumPy slice bounds (what a crop-to-lesion step needs).
2. ``pos_weight(masks)``: the BCE ``pos_weight`` that makes lesion and background pixels weigh the same.
3. ``two_side_ids(masks)``: the ids of lesions cut by the image frame on two or more sides.

Each ``check_*`` recomputes the right answer from the data it is given (never from a stored number), says
"not attempted yet" to a stub and raises ``AssertionError`` with a hint naming the mistake it sees.
``show_solution(K)`` prints the reference solution. Conventions: :mod:`helpers.course.exercises.base`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from helpers.course.exercises.base import Exercises

EXERCISES = Exercises("01")
show_solution = EXERCISES.show_solution


def _binary(mask: np.ndarray) -> np.ndarray:
    """A mask as a boolean array: accepts {0, 1} and {0, 255} masks ``(H, W)``."""
    return np.asarray(mask) > 0


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the lesion's bounding box
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(1)
def lesion_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (row0, col0, row1, col1) of the lesion, ends exclusive: mask[row0:row1, col0:col1]."""
    rows = np.flatnonzero((mask > 0).any(axis=1))  # rows holding at least one lesion pixel
    cols = np.flatnonzero((mask > 0).any(axis=0))
    if rows.size == 0:
        return None  # an empty mask has no box
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _box_masks() -> list[tuple[str, np.ndarray]]:
    """(description, mask) with known boxes: off-centre, 0/255-coded, touching borders, non-square, empty."""
    tall = np.zeros((12, 9), np.uint8)
    tall[2:10, 5:7] = 1  # taller than wide: catches swapped rows and columns
    coded = np.zeros((8, 14), np.uint8)
    coded[1:4, 3:12] = 255  # wider than tall, 0/255 as on disk
    corner = np.zeros((7, 7), np.uint8)
    corner[4:, 5:] = 1  # reaches the bottom-right corner
    two = np.zeros((10, 10), np.uint8)
    two[1, 1] = two[6, 8] = 1  # two separate regions: the box holds both
    return [("a tall lesion", tall), ("a 0/255 mask", coded), ("a lesion in the bottom-right corner", corner),
            ("two separate lesion pixels", two), ("an empty mask", np.zeros((5, 6), np.uint8))]


@EXERCISES.checker(1, "write lesion_box(mask) returning (row0, col0, row1, col1) with exclusive ends, "
                      "None for an empty mask")
def check_lesion_box(fn: Callable[[np.ndarray], tuple[int, int, int, int] | None]) -> None:
    """Check the learner's ``fn(mask) -> (row0, col0, row1, col1) | None`` on masks with known boxes.

    Raises:
        AssertionError: with a hint, on the first mask where ``fn`` is wrong (an ``IndexError`` on the empty
            mask included).
    """
    for what, mask in _box_masks():
        expected = lesion_box(mask)
        try:
            got = fn(mask.copy())
        except (IndexError, ValueError) as err:
            if expected is not None:
                raise
            raise AssertionError(f"on {what} your function raised {type(err).__name__} ({err}): a mask without "
                                 "lesion pixels has no first row or column to index; test for it first "
                                 "(`if rows.size == 0: return None`)") from err
        if expected is None:
            assert got is None, f"on {what} you returned {got}: a mask without lesion pixels has no box, return None"
            continue
        assert got is not None, f"on {what} your function returned None: end it with `return row0, col0, row1, col1`"
        assert len(got) == 4, f"on {what} you returned {got}: return four numbers (row0, col0, row1, col1)"
        got = tuple(int(v) for v in got)
        r0, c0, r1, c1 = expected
        if got == (c0, r0, c1, r1):
            raise AssertionError(f"on {what} you returned {got}: rows and columns are swapped; axis 0 of an "
                                 "(H, W) array is the row (y), axis 1 the column (x)")
        if got == (r0, c0, r1 - 1, c1 - 1):
            raise AssertionError(f"on {what} you returned {got}: the ends must be exclusive, like a slice, so that "
                                 "mask[row0:row1, col0:col1] holds the last row and column too: add 1")
        assert got == expected, (f"on {what} you returned {got}, expected {expected}: the first and last rows "
                                 "(and columns) holding a lesion pixel, ends + 1")
    EXERCISES.passed(1, "mask[row0:row1, col0:col1] is the tightest crop that holds the whole lesion.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: a BCE weight from the class imbalance
# ----------------------------------------------------------------------------------------------------------
@EXERCISES.solution(2)
def pos_weight(masks: list[np.ndarray]) -> float:
    """Background pixels / lesion pixels, pooled over all masks (0/1 or 0/255)."""
    lesion = sum(int((m > 0).sum()) for m in masks)
    background = sum(int((m == 0).sum()) for m in masks)
    return background / lesion


def _weight_masks() -> list[np.ndarray]:
    """Masks of different sizes, one 0/255-coded and one empty, with a known pooled ratio."""
    a = np.zeros((10, 10), np.uint8)
    a[2:6, 2:7] = 1          # 20 lesion, 80 background
    b = np.zeros((6, 8), np.uint8)
    b[:, :4] = 255           # 24 lesion, 24 background, 0/255 as on disk
    return [a, b, np.zeros((4, 5), np.uint8)]  # 0 lesion, 20 background


@EXERCISES.checker(2, "write pos_weight(masks) returning background pixels / lesion pixels, pooled over all masks")
def check_pos_weight(fn: Callable[[list[np.ndarray]], float], masks: Iterable[np.ndarray] | None = None) -> None:
    """Check the learner's ``fn(masks) -> float`` on test masks and, if given, on the notebook's ``masks``.

    Raises:
        AssertionError: with a hint (inverted ratio, per-image average, 0/255 counted as 255, lesion counted
            as ``m == 1``, a fraction).
    """
    cases = [("the test masks", _weight_masks())]
    if masks is not None:
        cases.append(("the training masks", list(masks)))
    for what, ms in cases:
        expected = pos_weight(ms)
        with np.errstate(divide="ignore", invalid="ignore"):
            got = fn([m.copy() for m in ms])
        assert got is not None, "your function returns None: end it with `return ...`"
        got = float(got)
        lesion = sum(int(_binary(m).sum()) for m in ms)
        total = sum(m.size for m in ms)
        if np.isclose(got, 1 / expected):
            raise AssertionError(f"on {what} you returned {got:.4f} = lesion / background: pos_weight multiplies "
                                 "the loss of the rare LESION pixels, so it is background / lesion (> 1)")
        if np.isclose(got, lesion / total) or np.isclose(got, 1 - lesion / total):
            raise AssertionError(f"on {what} you returned a fraction of all pixels ({got:.4f}): divide the "
                                 "background count by the lesion count")
        if not np.isfinite(got):
            raise AssertionError(f"on {what} you returned {got}: one mask has no lesion, so a per-image ratio "
                                 "divides by zero; pool the pixels of all masks first, then divide once")
        ones = sum(int((np.asarray(m) == 1).sum()) for m in ms)
        if ones != lesion and any(np.isclose(got, b / ones) for b in (total - lesion, total - ones) if ones):
            raise AssertionError(f"on {what} you counted lesion pixels as `m == 1`: one test mask is 0/255 "
                                 "(as mask files on disk are), where a lesion pixel is 255; `(m > 0).sum()` counts "
                                 "lesion in 0/1 and 0/255 masks alike")
        raw = sum(int(m.astype(np.int64).sum()) for m in ms)
        if raw != lesion and np.isclose(got, (total - lesion) / raw):
            raise AssertionError(f"on {what} you summed the raw mask values: a 0/255 mask counts 255 per lesion "
                                 "pixel; count pixels with `(m > 0).sum()`")
        assert np.isclose(got, expected, rtol=1e-6), (
            f"on {what} you returned {got:.4f}, expected {expected:.4f}: count background and lesion pixels over "
            "ALL masks (pooled, not per image), then divide background by lesion")
    EXERCISES.passed(2, f"BCEWithLogitsLoss(pos_weight=torch.tensor({expected:.2f})) would weigh the two classes "
                        "the same on these masks.")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: lesions cut by the frame on two or more sides
# ----------------------------------------------------------------------------------------------------------
def border_sides(mask: np.ndarray) -> int:
    """How many image sides (0-4) a mask's lesion touches: lesion pixels in the first/last row/column."""
    m = _binary(mask)
    return int(m[0].any()) + int(m[-1].any()) + int(m[:, 0].any()) + int(m[:, -1].any())


@EXERCISES.solution(3)
def two_side_ids(masks: dict[str, np.ndarray]) -> list[str]:
    """Ids whose lesion touches at least two of the four image sides (top, bottom, left, right)."""
    def sides(mask: np.ndarray) -> int:
        m = mask > 0
        return int(m[0].any()) + int(m[-1].any()) + int(m[:, 0].any()) + int(m[:, -1].any())
    return [image_id for image_id, mask in masks.items() if sides(mask) >= 2]


def _side_masks() -> dict[str, np.ndarray]:
    """Masks touching 0, 1, 2 (opposite and adjacent) and 4 sides, one 0/255-coded."""
    masks = {}
    for name, box in {"inside": (slice(2, 5), slice(2, 5)), "left": (slice(2, 5), slice(0, 3)),
                      "top_bottom": (slice(0, 8), slice(3, 5)), "corner": (slice(5, 8), slice(6, 9)),
                      "all": (slice(0, 8), slice(0, 9))}.items():
        m = np.zeros((8, 9), np.uint8)
        m[box] = 255 if name == "corner" else 1
        masks[name] = m
    return masks


def _check_side_ids(got: Iterable[str] | None, masks: Mapping[str, np.ndarray], what: str) -> int:
    """Compare one answer with the right ids; return how many there are."""
    assert got is not None, "your function returns None: end it with `return [...]`"
    if isinstance(got, str):
        raise AssertionError("return a list of ids, not a single string")
    got = set(got)
    expected = {image_id for image_id, mask in masks.items() if border_sides(mask) >= 2}
    unknown = got - set(masks)
    assert not unknown, f"on {what}: {sorted(unknown)[:3]} are not ids of the masks you were given"
    missing, extra = expected - got, got - expected
    if missing and not extra and all(border_sides(masks[i]) > 2 for i in missing):
        raise AssertionError(f"on {what} you missed lesions touching more than two sides ({sorted(missing)[0]}): "
                             "keep every lesion touching AT LEAST two sides (>= 2, not == 2)")
    one_side = {i for i in extra if border_sides(masks[i]) == 1}
    if one_side:
        raise AssertionError(f"on {what} {sorted(one_side)[0]} touches only one side: keep lesions touching at "
                             "least TWO sides")
    assert not missing and not extra, (
        f"on {what}: {len(missing)} missing, {len(extra)} extra (e.g. {sorted(missing or extra)[0]}): a lesion "
        "touches a side when any pixel of that first/last row or first/last column is lesion")
    return len(expected)


@EXERCISES.checker(3, "write two_side_ids(masks) returning the ids whose lesion touches two or more image sides")
def check_two_side_ids(fn: Callable[[dict[str, np.ndarray]], list[str]],
                       masks: Mapping[str, np.ndarray] | None = None) -> None:
    """Check the learner's ``fn(masks) -> ids`` on test masks and, if given, on the notebook's ``masks``.

    Raises:
        AssertionError: with a hint naming the ids missing or extra.
    """
    _check_side_ids(fn(dict(_side_masks())), _side_masks(), "the test masks")
    count = None
    if masks is not None:
        masks = dict(masks)
        count = _check_side_ids(fn(dict(masks)), masks, "the training masks")
    EXERCISES.passed(3, "a lesion cut on two sides is larger than the field of view"
                        + (f"; {count} of {len(masks)} training lesions are." if count is not None else "."))


# ----------------------------------------------------------------------------------------------------------
# Answers to the notebook's questions (nb01.show_answer(K))
# ----------------------------------------------------------------------------------------------------------
ANSWERS: dict[int, str] = {
    1: "HAM10000 (10,015 dermoscopy images, 600 x 450, from two clinics; lesion masks for all of them published "
       "by Tschandl, Sinz & Kittler 2019) and ISIC 2018 Task 1 (2,594 training images with expert masks, plus "
       "validation and test sets, in many sizes). CC BY-NC 4.0 allows using, sharing and adapting the images with "
       "attribution for non-commercial purposes such as teaching and research; commercial use is not allowed.",
    2: "Neither dataset may ship inside the repository, and a course must run anywhere without a download; the "
       "synthetic set is drawn by code, with exact masks. It is easier than real data and has no real patients, "
       "devices or skin tones, so its scores say that the code works, not how well a model segments real lesions "
       "or which model or recipe is better on them.",
    3: "On disk: a single-channel PNG <id>_segmentation.png, 0 for background and 255 for lesion, the same size as "
       "its image. In memory (files.read_mask): an (H, W) uint8 array in {0, 1}. Averaging the raw 0/255 PNG gives "
       "255 times the lesion fraction (51 instead of 0.2), and sums count 255 per lesion pixel.",
    4: "Their true border lies outside the picture. Crops and shifts can cut them further or push most of the lesion "
       "out of the frame, so a crop must not be trusted to keep the lesion; a post-processing rule (keep the largest "
       "component, fill holes, drop regions touching the border) must not delete or reshape a lesion just because it "
       "reaches the edge.",
    5: "Hairs, ruler tick marks, gel or air bubbles, ink marks and the dark round vignette of the dermoscope (any "
       "four). The black-hat transform also responds to the lesion's own pigment network and its border, which are "
       "dark and thin too; counting only pixels outside the dilated lesion measures artefacts on the skin, not the "
       "lesion's texture.",
    6: "Every pixel predicted background: accuracy = the background share = 80%, while TP = 0, so Jaccard = 0 and "
       "Dice = 0 on every image that has a lesion. Accuracy rewards doing nothing; Jaccard and Dice do not.",
    7: "Flips, rotations and warps move pixels, so the mask must move the same way or it no longer outlines the "
       "lesion. Colour changes move nothing, and the mask holds labels, not colours: recolouring it would corrupt "
       "the labels (and interpolating a mask would create values between 0 and 1).",
    8: "A hash of each id gives the same split on every run and machine, whatever the order the files are listed "
       "in, so results are comparable and the test images stay unseen. A pair in both training and test lets the "
       "model score what it memorised: the test score rises and no longer measures new images (the same holds for "
       "two photographs of one lesion, hence the split by lesion_id when it is known).",
    9: "At the original image size: the prediction is resized back to the image (and mask) size before scoring, "
       "because the ground truth and the official scorer work at that size; scoring the squeezed square would "
       "change the lesion shapes and the pixel counts, and the numbers would not be the challenge's.",
}
EXERCISES.answers(ANSWERS)
show_answer = EXERCISES.show_answer
