"""What the generator drew (attributes.csv) and generator domains for the domain-shift lesson."""
import json

import numpy as np
import pandas as pd
import pytest

from helpers.data.synthetic import (
    ATTRIBUTE_COLUMNS,
    ATTRIBUTES_FILE,
    Domain,
    ensure_synthetic,
    generate_pair,
    generate_sample,
    sample_seed,
    write_dataset,
)
from helpers.evaluation import subgroups

SIZE = 64


def test_attributes_describe_the_drawn_sample():
    for i in range(12):
        image, mask, attrs = generate_sample(sample_seed(0, i), SIZE)
        assert set(attrs) == set(ATTRIBUTE_COLUMNS) - {"id"}
        assert attrs["lesion_area"] == pytest.approx(mask.mean(), abs=1e-5)
        assert attrs["border_contact"] == subgroups.touches_border(mask)
        assert 0 <= attrs["skin_tone"] <= 1 and attrs["hairs"] >= 0 and attrs["bubbles"] >= 0
        np.testing.assert_array_equal(generate_pair(sample_seed(0, i), SIZE)[0], image)


def test_artefacts_occur_at_plausible_rates():
    """Each artefact is present in some images and absent in others, so each subgroup has members."""
    flags = pd.DataFrame([generate_sample(sample_seed(3, i), SIZE)[2] for i in range(60)])
    for column, low, high in (("hairs", 0.3, 0.8), ("ruler", 0.05, 0.45), ("vignette", 0.15, 0.7),
                              ("bubbles", 0.05, 0.5)):
        share = (flags[column] > 0).mean()
        assert low < share < high, f"{column}: {share:.0%} of images"


def test_skin_tone_attribute_matches_the_measured_ita():
    tones, itas = [], []
    for i in range(30):
        image, mask, attrs = generate_sample(sample_seed(1, i), 96)
        tones.append(attrs["skin_tone"])
        itas.append(subgroups.skin_ita(image, mask))
    rho = pd.Series(tones).corr(pd.Series(itas), method="spearman")
    assert rho < -0.8, f"darker drawn tone should mean lower measured ITA, Spearman {rho:.2f}"


def test_domain_restricts_skin_tones_and_casts_colour():
    dark = Domain("dark", skin_tones=(0.7, 1.0))
    tones = [generate_sample(sample_seed(0, i), SIZE, dark)[2]["skin_tone"] for i in range(20)]
    assert min(tones) >= 0.7
    warm = Domain("warm", colour_cast=(1.0, 0.8, 0.6))
    plain, _, _ = generate_sample(5, SIZE)
    cast, mask, _ = generate_sample(5, SIZE, warm)
    np.testing.assert_array_equal(mask, generate_pair(5, SIZE)[1])  # same lesion, only the colour differs
    ratio = cast.reshape(-1, 3).mean(0) / plain.reshape(-1, 3).mean(0)
    assert ratio[0] > 0.95 and ratio[2] < 0.7
    with pytest.raises(ValueError, match="skin_tones"):
        Domain("bad", skin_tones=(0.8, 0.2))
    with pytest.raises(ValueError, match="colour_cast"):
        Domain("bad", colour_cast=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="name"):
        Domain("a/b")


def test_write_dataset_writes_the_attribute_table(tmp_path):
    ids = write_dataset(tmp_path / "a", n=4, size=SIZE, seed=2, progress=False)
    table = pd.read_csv(tmp_path / "a" / ATTRIBUTES_FILE)
    assert tuple(table.columns) == ATTRIBUTE_COLUMNS and list(table["id"]) == ids
    assert table["ruler"].dtype == bool and table["border_contact"].dtype == bool
    expected = generate_sample(sample_seed(2, 3), SIZE)[2]
    assert table.iloc[3]["hairs"] == expected["hairs"]
    assert table.iloc[3]["lesion_area"] == pytest.approx(expected["lesion_area"])
    write_dataset(tmp_path / "b", n=4, size=SIZE, seed=2, progress=False)
    assert (tmp_path / "a" / ATTRIBUTES_FILE).read_bytes() == (tmp_path / "b" / ATTRIBUTES_FILE).read_bytes()
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")], "no temporary files left"


def test_ensure_synthetic_keeps_domains_apart_and_needs_the_table(tmp_path):
    plain = ensure_synthetic(3, SIZE, seed=0, root=tmp_path)
    warm = Domain("warm", colour_cast=(1.0, 0.8, 0.6))
    shifted = ensure_synthetic(3, SIZE, seed=0, root=tmp_path, domain=warm)
    assert plain.name == f"synthetic-n3-s{SIZE}-seed0" and shifted.name == f"synthetic-n3-s{SIZE}-seed0-warm"
    assert json.loads((shifted / "manifest.json").read_text())["domain"]["colour_cast"] == [1.0, 0.8, 0.6]
    assert "domain" not in json.loads((plain / "manifest.json").read_text())
    assert (plain / "images" / "SYN_0000000.jpg").read_bytes() != (shifted / "images" / "SYN_0000000.jpg").read_bytes()
    (plain / ATTRIBUTES_FILE).unlink()                      # a cache drawn before attributes existed
    ensure_synthetic(3, SIZE, seed=0, root=tmp_path)
    assert (plain / ATTRIBUTES_FILE).is_file()
    # same name, other settings: the manifest differs, so the set is drawn again
    other = ensure_synthetic(3, SIZE, seed=0, root=tmp_path, domain=Domain("warm", colour_cast=(0.7, 0.9, 1.0)))
    assert other == shifted
    assert json.loads((other / "manifest.json").read_text())["domain"]["colour_cast"] == [0.7, 0.9, 1.0]
