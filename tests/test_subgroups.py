"""Skin tone by ITA on known colours, mask attributes, and subgroup tables with intervals."""
import numpy as np
import pandas as pd
import pytest

from helpers.evaluation import subgroups
from helpers.evaluation.subgroups import (
    ita_category,
    ita_degrees,
    lesion_fraction,
    mask_attributes,
    rgb_to_lab,
    size_group,
    skin_ita,
    skin_mask,
    subgroup_table,
    touches_border,
)


def test_rgb_to_lab_matches_published_values():
    # reference values of the CIE formulas with D65 white (e.g. Bruce Lindbloom's calculator)
    np.testing.assert_allclose(rgb_to_lab(np.array([255, 255, 255], np.uint8)), [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(rgb_to_lab(np.array([255, 0, 0], np.uint8)), [53.2408, 80.0925, 67.2032], atol=1e-3)
    np.testing.assert_allclose(rgb_to_lab(np.array([128, 128, 128], np.uint8)), [53.5850, 0, 0], atol=1e-3)
    np.testing.assert_allclose(rgb_to_lab(np.array([0.0, 0.0, 1.0])), [32.2970, 79.1875, -107.8602], atol=1e-3)
    assert rgb_to_lab(np.zeros((5, 7, 3), np.uint8)).shape == (5, 7, 3)


def test_ita_formula_and_categories():
    assert ita_degrees(70, 20) == pytest.approx(45.0)       # arctan(20 / 20)
    assert ita_degrees(50, 15) == pytest.approx(0.0)
    assert ita_degrees(30, 20) == pytest.approx(-45.0)
    assert ita_degrees(80, 0) == pytest.approx(90.0)         # b* = 0 stays defined
    expected = {60: "very light", 55.0: "light", 45: "light", 41.0: "intermediate", 30: "intermediate",
                20: "tan", 0: "brown", -30.0: "dark", -50: "dark"}
    assert {angle: ita_category(angle) for angle in expected} == expected
    with pytest.raises(ValueError, match="NaN"):
        ita_category(float("nan"))


def _skin_and_lesion(skin_rgb, lesion_rgb=(60, 30, 20), size=(60, 80)):
    image = np.empty((*size, 3), np.uint8)
    image[:] = skin_rgb
    mask = np.zeros(size, np.uint8)
    mask[20:40, 25:55] = 1
    image[mask == 1] = lesion_rgb
    return image, mask


def test_skin_ita_of_a_known_colour_ignores_the_lesion():
    image, mask = _skin_and_lesion((255, 0, 0))              # "skin" of pure red: L* 53.24, b* 67.20
    assert skin_ita(image, mask) == pytest.approx(np.degrees(np.arctan((53.2408 - 50) / 67.2032)), abs=1e-3)
    light, mask = _skin_and_lesion((232, 196, 178))
    dark, _ = _skin_and_lesion((95, 62, 45))
    assert ita_category(skin_ita(light, mask)) in ("very light", "light")
    assert ita_category(skin_ita(dark, mask)) == "dark"
    assert np.isnan(skin_ita(light, np.ones(mask.shape)))    # no skin left
    bluish, _ = _skin_and_lesion((150, 160, 200))             # b* < 0: a dermoscope's cold white balance, not skin
    assert subgroups.rgb_to_lab(np.array([150, 160, 200], np.uint8))[2] < 0
    assert np.isnan(skin_ita(bluish, mask))                   # undefined, not "very light" (arctan2 gives 100+ degrees)


def test_skin_mask_keeps_a_margin_around_the_lesion():
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 40:60] = 1
    skin = skin_mask(mask, margin=0.05)                      # 5 px
    assert not skin[40:60, 40:60].any() and not skin[50, 36] and skin[50, 30] and skin[0, 0]
    np.testing.assert_array_equal(skin_mask(mask, 0), mask == 0)


def test_skin_ita_is_robust_to_hairs():
    image, mask = _skin_and_lesion((232, 196, 178))
    clean = skin_ita(image, mask)
    image[::6] = (20, 15, 10)                                # dark hairs across a sixth of the rows
    assert skin_ita(image, mask) == pytest.approx(clean, abs=0.5)


def test_mask_attributes():
    assert lesion_fraction(np.eye(4)) == 0.25
    inside = np.zeros((10, 10))
    inside[3:6, 3:6] = 1
    edge = np.zeros((10, 10))
    edge[0:3, 4:6] = 1
    assert not touches_border(inside) and touches_border(edge) and not touches_border(np.zeros((3, 3)))
    assert [size_group(f) for f in (0.01, 0.1, 0.5, 1.0)] == [name for name, _ in subgroups.SIZE_GROUPS] + \
        [subgroups.SIZE_GROUPS[-1][0]]
    image, mask = _skin_and_lesion((232, 196, 178))
    table = mask_attributes([image, image], [mask, np.ones_like(mask)], ids=["a", "b"])
    assert list(table.index) == ["a", "b"] and table.loc["b", "skin_tone"] == "unknown"
    assert table.loc["a", "lesion_fraction"] == pytest.approx(600 / 4800) and not table.loc["a", "border_contact"]
    with pytest.raises(ValueError, match="one of each"):
        mask_attributes([image], [mask, mask])


def test_subgroup_table_means_counts_and_intervals():
    per_image = pd.DataFrame({"dice": [0.9, 0.8, 0.85, 0.3, 0.5, 0.4, 0.45],
                              "hair": [False, False, False, True, True, True, True]})
    table = subgroup_table(per_image, "hair", order=[True, False])
    assert list(table.index) == [True, False]
    assert table.loc[True, "n"] == 4 and table.loc[False, "mean"] == pytest.approx(0.85)
    assert (table["low"] <= table["mean"]).all() and (table["mean"] <= table["high"]).all()
    assert (table["width"] > 0).all()
    with pytest.raises(KeyError, match="columns"):
        subgroup_table(per_image, "ruler")
