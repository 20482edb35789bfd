"""Notebook 01's exercises: reference solutions pass, named wrong answers fail with their hint, stubs are reported."""
import numpy as np
import pytest

from helpers.course.exercises import nb01


def stub(*args):
    ...  # your code here
    raise NotImplementedError


def _masks() -> dict[str, np.ndarray]:
    """Three masks of different sizes: one touching left and top, one inside, one touching the bottom."""
    corner = np.zeros((6, 8), np.uint8)
    corner[0:4, 0:3] = 1
    inside = np.zeros((10, 10), np.uint8)
    inside[3:7, 3:7] = 1
    bottom = np.zeros((4, 4), np.uint8)
    bottom[2:4, 1:3] = 255  # 0/255-coded as on disk
    return {"A": corner, "B": inside, "C": bottom}


@pytest.mark.parametrize("check, args", [
    (nb01.check_lesion_box, ()), (nb01.check_pos_weight, (list(_masks().values()),)),
    (nb01.check_two_side_ids, (_masks(),))])
def test_stub_is_reported_not_raised(check, args, capsys):
    assert check(stub, *args) is None
    out = capsys.readouterr().out
    assert out.startswith(f"exercise {check.exercise} not attempted yet: ") and out.count("\n") == 1


def test_reference_solutions_pass(capsys):
    nb01.check_lesion_box(nb01.lesion_box)
    nb01.check_pos_weight(nb01.pos_weight, list(_masks().values()))
    nb01.check_two_side_ids(nb01.two_side_ids, _masks())
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()] == [f"exercise {k} passed" for k in (1, 2, 3)]
    assert "1 of 3 training lesions" in out


def test_reference_answers_on_known_masks():
    m = _masks()
    assert nb01.lesion_box(m["B"]) == (3, 3, 7, 7) and nb01.lesion_box(m["C"]) == (2, 1, 4, 3)
    assert nb01.lesion_box(np.zeros((3, 3))) is None
    assert nb01.pos_weight(list(m.values())) == pytest.approx((36 + 84 + 12) / (12 + 16 + 4))
    assert nb01.two_side_ids(m) == ["A"]
    assert [nb01.border_sides(x) for x in m.values()] == [2, 0, 1]


def _swapped(mask):
    box = nb01.lesion_box(mask)
    return None if box is None else (box[1], box[0], box[3], box[2])


def _inclusive(mask):
    box = nb01.lesion_box(mask)
    return None if box is None else (box[0], box[1], box[2] - 1, box[3] - 1)


@pytest.mark.parametrize("wrong, hint", [
    (_swapped, "swapped"),
    (_inclusive, "exclusive"),
    (lambda m: nb01.lesion_box(m) or (0, 0, 0, 0), "return None"),
    (lambda m: (0, 0) + m.shape, "expected"),           # the whole image
    (lambda m: None, "end it with"),
])
def test_lesion_box_rejects_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb01.check_lesion_box(wrong)


def _per_image(masks):
    return float(np.mean([(m == 0).sum() / (m > 0).sum() for m in masks]))


@pytest.mark.parametrize("wrong, hint", [
    (lambda ms: 1 / nb01.pos_weight(ms), "lesion / background"),
    (_per_image, "pool the pixels"),
    (lambda ms: sum(int((m == 0).sum()) for m in ms) / sum(int(m.astype(int).sum()) for m in ms), "raw mask values"),
    (lambda ms: sum(int((m > 0).sum()) for m in ms) / sum(m.size for m in ms), "fraction"),
    (lambda ms: nb01.pos_weight(ms) + 0.5, "expected"),
    (lambda ms: None, "end it with"),
])
def test_pos_weight_rejects_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb01.check_pos_weight(wrong)


def _any_side(masks):
    return [i for i, m in masks.items() if nb01.border_sides(m) >= 1]


@pytest.mark.parametrize("wrong, hint", [
    (_any_side, "only one side"),
    (lambda ms: [i for i, m in ms.items() if nb01.border_sides(m) == 2], "more than two sides"),
    (lambda ms: [i for i, m in ms.items() if nb01.border_sides(m) >= 3], "missing"),
    (lambda ms: "A", "not a single string"),
    (lambda ms: list(nb01.two_side_ids(ms)) + ["Z"], "not ids"),
    (lambda ms: None, "end it with"),
])
def test_two_side_ids_rejects_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb01.check_two_side_ids(wrong, _masks())


def test_show_solution_prints_runnable_reference(solution_round_trip):
    masks = _masks()
    checks = {1: nb01.check_lesion_box, 2: lambda f: nb01.check_pos_weight(f, list(masks.values())),
              3: lambda f: nb01.check_two_side_ids(f, masks)}
    for k, check in checks.items():
        solution_round_trip(nb01, k, check, {"np": np})


def _box_without_empty_case(mask):
    """The lesion box with no test for an empty mask: indexing rows[0] raises IndexError there."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def test_lesion_box_crash_on_an_empty_mask_is_named():
    with pytest.raises(AssertionError, match=r"on an empty mask your function raised IndexError .*no first row"):
        nb01.check_lesion_box(_box_without_empty_case)


@pytest.mark.parametrize("background", [lambda m: (m == 0).sum(), lambda m: (m != 1).sum()])
def test_pos_weight_counting_lesion_as_one_is_named(background):
    def wrong(ms):
        return sum(int(background(m)) for m in ms) / sum(int((m == 1).sum()) for m in ms)
    with pytest.raises(AssertionError, match=r"counted lesion pixels as `m == 1`.*0/255"):
        nb01.check_pos_weight(wrong, list(_masks().values()))
