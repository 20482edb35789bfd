"""helpers.evaluation.metrics and helpers.cli.evaluate agree with the official ISIC scorer, and with hand computations.

The reference is ``isic_challenge_scoring`` (the package the ISIC 2018 challenge scored with): its Python API
per image and macro-averaged, and its command-line tool once, on small random masks written as 0/255 PNGs.
Only the tests that compare with it skip when it is missing (it is in the ``dev`` extra); the hand-computed
ones always run.
"""
import json
import math
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage

from helpers.cli import evaluate
from helpers.data import files
from helpers.evaluation import metrics
from helpers.evaluation.metrics import METRIC_NAMES

TOL = 1e-9
# the official package (5.6) calls a pandas method that pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword in Series.rename")


# ----------------------------------------------------------------------------------------------------------
# Mask factories
# ----------------------------------------------------------------------------------------------------------
def blob(rng: np.random.Generator, shape=(36, 48)) -> np.ndarray:
    """A random filled ellipse (bool), sometimes touching the border."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(1, h / 2), rng.uniform(1, w / 2)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def edge_cases(shape=(36, 48)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named (pred, truth) pairs for every convention the official scorer has."""
    empty, full = np.zeros(shape, bool), np.ones(shape, bool)
    tiny = empty.copy()
    tiny[5, 7] = True
    other_tiny = empty.copy()
    other_tiny[6, 7] = True
    box = empty.copy()
    box[8:20, 10:30] = True
    return {
        "both_empty": (empty, empty),
        "empty_truth_nonempty_pred": (box, empty),
        "empty_pred_nonempty_truth": (empty, box),
        "both_full": (full, full),
        "full_truth_empty_pred": (empty, full),
        "empty_truth_full_pred": (full, empty),
        "full_truth_partial_pred": (box, full),
        "tiny_exact": (tiny, tiny),
        "tiny_missed": (other_tiny, tiny),
        "dilated_by_one": (ndimage.binary_dilation(box), box),  # jaccard ~0.8: threshold_jaccard > 0
        "eroded_by_two": (ndimage.binary_erosion(box, iterations=2), box),
    }


def random_cases(n: int, seed: int = 0, shape=(36, 48)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random (pred, truth) pairs: independent blobs, perturbed truths, and noise."""
    rng = np.random.default_rng(seed)
    cases = {}
    for k in range(n):
        truth = blob(rng, shape)
        kind = k % 3
        if kind == 0:
            pred = blob(rng, shape)
        elif kind == 1:  # a good prediction: shifted truth, so Jaccard straddles 0.65
            pred = np.roll(truth, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        else:
            pred = rng.random(shape) < rng.uniform(0.05, 0.6)
        cases[f"random_{k}"] = (pred, truth)
    return cases


def write_pngs(cases: dict[str, tuple[np.ndarray, np.ndarray]], root: Path) -> tuple[Path, Path, dict[str, str]]:
    """Write cases as 0/255 ISIC PNGs under root/truth and root/pred; returns the folders and {id: case}."""
    truth_dir, pred_dir = root / "truth", root / "pred"
    truth_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    names = {}
    for k, (name, (pred, truth)) in enumerate(cases.items()):
        image_id = f"ISIC_{k:07d}"
        names[image_id] = name
        Image.fromarray(truth.astype(np.uint8) * 255).save(truth_dir / f"{image_id}_segmentation.png")
        Image.fromarray(pred.astype(np.uint8) * 255).save(pred_dir / f"{image_id}_segmentation.png")
    return truth_dir, pred_dir, names


def official_scorer() -> SimpleNamespace:
    """The official package's modules; skips the calling test when isic-challenge-scoring is not installed."""
    pytest.importorskip("isic_challenge_scoring")
    from isic_challenge_scoring import confusion, load_image, segmentation
    from isic_challenge_scoring import metrics as isic_metrics

    return SimpleNamespace(metrics=isic_metrics, confusion=confusion.create_binary_confusion_matrix,
                           pairs=load_image.iter_image_pairs, score=segmentation.SegmentationScore)


def official_per_image(truth_dir: Path, pred_dir: Path) -> pd.DataFrame:
    """Per-image scores with the official package's own loader, confusion matrix and metric functions."""
    official = official_scorer()
    isic_metrics = official.metrics
    rows = {}
    for pair in official.pairs(truth_dir, pred_dir):
        cm = official.confusion(pair.truth_image > 128, pair.prediction_image > 128)
        rows[pair.image_id] = {
            "accuracy": isic_metrics.binary_accuracy(cm), "sensitivity": isic_metrics.binary_sensitivity(cm),
            "specificity": isic_metrics.binary_specificity(cm), "jaccard": isic_metrics.binary_jaccard(cm),
            "threshold_jaccard": isic_metrics.binary_threshold_jaccard(cm, threshold=0.65),
            "dice": isic_metrics.binary_dice(cm),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """60 cases written as PNGs, with our scores."""
    cases = {**edge_cases(), **random_cases(49)}
    truth_dir, pred_dir, names = write_pngs(cases, tmp_path_factory.mktemp("isic"))
    per_image, summary = metrics.evaluate_folders(truth_dir, pred_dir)
    return {"cases": cases, "names": names, "truth": truth_dir, "pred": pred_dir, "ours": per_image,
            "summary": summary}


@pytest.fixture(scope="module")
def scored(ours):
    """:func:`ours` plus the official scores (skips without isic-challenge-scoring)."""
    official = official_per_image(ours["truth"], ours["pred"])
    macro = official_scorer().score.from_dir(ours["truth"], ours["pred"]).macro_average
    return {**ours, "official": official, "macro": macro}


# ----------------------------------------------------------------------------------------------------------
# Agreement with the official scorer
# ----------------------------------------------------------------------------------------------------------
def test_per_image_scores_match_official_scorer(scored):
    ours, official = scored["ours"], scored["official"]
    assert sorted(ours.index) == sorted(official.index) and len(ours) == 60
    for metric in METRIC_NAMES:
        diff = (ours[metric] - official.loc[ours.index, metric]).abs()
        worst = diff.idxmax()
        assert diff.max() <= TOL, f"{metric} differs on {scored['names'][worst]}: " \
                                  f"{ours.at[worst, metric]} vs official {official.at[worst, metric]}"


def test_macro_averages_match_official_scorer(scored):
    for metric in METRIC_NAMES:
        assert abs(scored["summary"][metric] - scored["macro"][metric]) <= TOL, metric
    assert scored["summary"]["n_images"] == 60


def test_cases_cover_the_interesting_regimes(scored):
    """Guard against a test set that never exercises the conventions (all-ones or all-zeros columns)."""
    official = scored["official"]
    tj = official["threshold_jaccard"]
    assert (tj == 0).sum() >= 5 and ((tj > 0) & (tj < 1)).sum() >= 5
    assert ((official["jaccard"] > 0.0) & (official["jaccard"] < 0.65)).sum() >= 5


def test_edge_case_conventions_match_official(scored):
    """The conventions spelled out in the metrics docstring, read off the official scorer's output."""
    by_name = {name: scored["official"].loc[image_id] for image_id, name in scored["names"].items()}
    assert by_name["both_empty"][list(METRIC_NAMES)].tolist() == [1.0] * 6
    e = by_name["empty_truth_nonempty_pred"]
    assert (e["jaccard"], e["dice"], e["sensitivity"], e["threshold_jaccard"]) == (0.0, 0.0, 1.0, 0.0)
    assert e["specificity"] < 1
    f = by_name["full_truth_partial_pred"]
    assert f["specificity"] == 1.0 and f["accuracy"] == f["sensitivity"] == f["jaccard"]
    assert by_name["empty_pred_nonempty_truth"]["sensitivity"] == 0.0
    assert by_name["empty_truth_full_pred"]["specificity"] == 0.0


def test_official_cli_agrees(scored):
    exe = shutil.which("isic-challenge-scoring")
    if exe is None:
        pytest.skip("isic-challenge-scoring command not on PATH")
    out = subprocess.run([exe, "-o", "json", "segmentation", str(scored["truth"]), str(scored["pred"])],
                         capture_output=True, text=True, check=True, timeout=120)
    macro = json.loads(out.stdout)["macro_average"]
    for metric in METRIC_NAMES:
        assert abs(scored["summary"][metric] - macro[metric]) <= TOL, metric


def test_png_binarised_above_128_like_official(tmp_path):
    """Grey levels 127, 128 and 129 (within the 1% tolerance): the scorer's `> 128` rule, not `>= 128` nor `> 127`."""
    rng = np.random.default_rng(3)
    truth = rng.choice(np.array([0, 255], dtype=np.uint8), size=(40, 50))
    pred = rng.choice(np.array([0, 255], dtype=np.uint8), size=(40, 50))
    for arr, values in ((truth, (127, 128, 129)), (pred, (1, 128, 129, 200))):
        spots = rng.choice(arr.size, size=18, replace=False)  # 18 of 2000 pixels: 0.9%
        arr.flat[spots] = np.resize(np.array(values, np.uint8), 18)
    for sub, arr in (("truth", truth), ("pred", pred)):
        (tmp_path / sub).mkdir()
        Image.fromarray(arr).save(tmp_path / sub / "ISIC_0000001_segmentation.png")
    ours, _ = metrics.evaluate_folders(tmp_path / "truth", tmp_path / "pred")
    official = official_per_image(tmp_path / "truth", tmp_path / "pred")
    for metric in METRIC_NAMES:
        assert abs(ours.iloc[0][metric] - official.iloc[0][metric]) <= TOL
    assert ours.iloc[0]["tp"] == np.count_nonzero((truth > 128) & (pred > 128))


def test_real_masks_perturbed_match_official(tmp_path, real_data_dir):
    """Real ISIC 0/255 masks (valid masks as the challenge ships them) pass the mask rule and score as officially."""
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    ops = [lambda m: ndimage.binary_erosion(m, iterations=6), lambda m: ndimage.binary_dilation(m, iterations=9),
           lambda m: np.roll(m, (12, -20), axis=(0, 1)), lambda m: ndimage.binary_erosion(m, iterations=40),
           lambda m: np.zeros_like(m)]
    for k, path in enumerate(sorted((real_data_dir / "val" / "masks").glob("*_segmentation.png"))[:20]):
        shutil.copy(path, truth_dir / path.name)
        truth = np.asarray(Image.open(path)) > 128
        Image.fromarray(ops[k % len(ops)](truth).astype(np.uint8) * 255).save(pred_dir / path.name)
    ours, summary = metrics.evaluate_folders(truth_dir, pred_dir)
    official = official_per_image(truth_dir, pred_dir)
    macro = official_scorer().score.from_dir(truth_dir, pred_dir).macro_average
    for metric in METRIC_NAMES:
        assert (ours[metric] - official.loc[ours.index, metric]).abs().max() <= TOL, metric
        assert abs(summary[metric] - macro[metric]) <= TOL, metric


# ----------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------------------
def test_hand_computed_small_case():
    pred = np.array([[1, 1, 0], [0, 0, 0]], bool)
    truth = np.array([[1, 0, 0], [1, 0, 0]], bool)
    assert metrics.confusion_counts(pred, truth) == (1, 1, 1, 3)
    s = metrics.image_scores(pred, truth)
    expected = {"jaccard": 1 / 3, "dice": 0.5, "accuracy": 4 / 6, "sensitivity": 0.5, "specificity": 0.75,
                "threshold_jaccard": 0.0}
    assert s == pytest.approx(expected, abs=1e-15)


def test_threshold_jaccard_keeps_exactly_065():
    truth = np.zeros(40, bool)
    truth[:20] = True
    pred = np.zeros(40, bool)
    pred[:13] = True  # tp 13, fn 7: jaccard 13 / 20 = 0.65
    assert metrics.image_scores(pred, truth)["threshold_jaccard"] == 0.65
    pred[12] = False  # 12 / 20 = 0.6
    assert metrics.image_scores(pred, truth)["threshold_jaccard"] == 0.0


def test_scores_from_counts_vectorised_equals_scalar():
    counts = np.array([[3, 1, 2, 10], [0, 0, 0, 5], [0, 4, 0, 1], [5, 0, 0, 0]])
    vec = metrics.scores_from_counts(*counts.T)
    for k, row in enumerate(counts):
        one = metrics.scores_from_counts(*row)
        for name in METRIC_NAMES:
            assert vec[name][k] == one[name]
    with pytest.raises(ValueError, match="no counted pixels"):
        metrics.scores_from_counts(0, 0, 0, 0)


def test_summarize_is_macro_mean_std_median():
    rows = [{"jaccard": 1.0, "dice": 1.0}, {"jaccard": 0.0, "dice": 0.0}, {"jaccard": 0.5, "dice": 2 / 3}]
    s = metrics.summarize(rows)
    assert s["n_images"] == 3 and s["jaccard"] == pytest.approx(0.5) and s["jaccard_median"] == 0.5
    assert s["jaccard_std"] == pytest.approx(math.sqrt(1 / 6)) and s["dice"] == pytest.approx(5 / 9)
    assert "accuracy" not in s
    with pytest.raises(ValueError, match="no per-image scores"):
        metrics.summarize([])


# ----------------------------------------------------------------------------------------------------------
# binarize and input checks
# ----------------------------------------------------------------------------------------------------------
def test_binarize_handles_01_0255_and_probabilities():
    expected = np.array([False, True, False, True])
    assert (metrics.binarize(np.array([0, 1, 0, 1], np.uint8)) == expected).all()
    assert (metrics.binarize(np.array([0, 255, 128, 129], np.uint8)) == np.array([0, 1, 0, 1], bool)).all()
    assert (metrics.binarize(np.array([0.1, 0.9, 0.5, 0.51])) == expected).all()
    assert (metrics.binarize(np.array([0.1, 0.9, 0.3, 0.8]), threshold=0.7) == expected).all()
    assert (metrics.binarize(expected) == expected).all() and metrics.binarize(expected) is not expected
    assert not metrics.binarize(np.zeros((2, 2), np.uint8)).any()


@pytest.mark.parametrize("bad, match", [(np.array([0, -1, 1]), "negative"), (np.array([0, 300]), "up to 300"),
                                        (np.array([0.2, np.nan]), "NaN"), (np.array(["a"]), "dtype")])
def test_binarize_rejects_ambiguous_input(bad, match):
    with pytest.raises(ValueError, match=match):
        metrics.binarize(bad)


def test_image_scores_input_errors():
    with pytest.raises(ValueError, match="differs from truth shape"):
        metrics.image_scores(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="binarize"):
        metrics.image_scores(np.full((4, 4), 255, np.uint8), np.zeros((4, 4), bool))
    # 0/1 integer masks are fine
    assert metrics.image_scores(np.eye(4, dtype=np.uint8), np.eye(4, dtype=np.uint8))["dice"] == 1.0


# ----------------------------------------------------------------------------------------------------------
# Ignore label
# ----------------------------------------------------------------------------------------------------------
def test_ignore_mask_excludes_pixels_from_counts():
    rng = np.random.default_rng(1)
    pred, truth, ignore = (rng.random((16, 20)) < 0.4 for _ in range(3))
    keep = ~ignore
    assert metrics.confusion_counts(pred, truth, ignore) == metrics.confusion_counts(pred[keep], truth[keep])
    assert sum(metrics.confusion_counts(pred, truth, ignore)) == keep.sum()
    with pytest.raises(ValueError, match="no counted pixels"):
        metrics.image_scores(pred, truth, np.ones_like(pred))


def test_pixel_confusion_matrix_with_ignore_label():
    truth = np.array([[1, 1, -1], [0, 0, -1]])
    pred = np.array([[1, 0, 1], [0, 1, 0]], bool)
    cm = metrics.pixel_confusion_matrix([pred], [truth])
    assert list(cm.index) == [-1, 0, 1] and list(cm.columns) == [-1, 0, 1]
    assert cm.loc[-1].tolist() == [0, 1, 1]  # where the ignored pixels went
    assert cm.loc[0].tolist() == [0, 1, 1] and cm.loc[1].tolist() == [0, 1, 1]
    # the binary counts leave -1 out entirely
    tp, fp, fn, tn = metrics.confusion_counts(pred, truth == 1, ignore=truth == -1)
    assert (tp, fp, fn, tn) == (cm.at[1, 1], cm.at[0, 1], cm.at[1, 0], cm.at[0, 0])
    binary = metrics.pixel_confusion_matrix(pred[:, :2], truth[:, :2])
    assert list(binary.index) == [0, 1] and binary.to_numpy().sum() == 4


def test_pixel_classification_report_supports_and_recall():
    truths = [np.array([[1, 1, -1], [0, 0, -1]]), np.array([[0, 1], [0, 0]])]
    preds = [np.array([[1, 0, 1], [0, 1, 0]], bool), np.array([[0, 1], [1, 0]], bool)]
    report = metrics.pixel_classification_report(preds, truths, output_dict=True)
    assert report["ignore (-1)"]["support"] == 2 and report["ignore (-1)"]["precision"] == 0
    assert report["lesion (1)"]["support"] == 3 and report["lesion (1)"]["recall"] == pytest.approx(2 / 3)
    assert report["background (0)"]["support"] == 5 and report["background (0)"]["recall"] == pytest.approx(3 / 5)
    text = metrics.pixel_classification_report(preds, truths)
    assert "ignore (-1)" in text and "lesion (1)" in text
    with pytest.raises(ValueError, match="truth labels"):
        metrics.pixel_confusion_matrix([preds[0]], [truths[0] * 2])
    with pytest.raises(ValueError, match="2 predictions for 1 truths"):
        metrics.pixel_confusion_matrix(preds, truths[:1])


# ----------------------------------------------------------------------------------------------------------
# Torch batch scores = NumPy image scores = folder evaluation
# ----------------------------------------------------------------------------------------------------------
def test_batch_scores_equal_image_scores():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 1, 24, 32, generator=g) * 3
    cases = list(edge_cases((24, 32)).values())[:8]
    target = torch.stack([torch.from_numpy(t).float()[None] for _, t in cases])
    logits[:3] = torch.where(torch.stack([torch.from_numpy(p)[None] for p, _ in cases[:3]]), 4.0, -4.0)
    got = metrics.batch_scores(logits, target)
    assert set(got) == set(METRIC_NAMES)
    pred = (torch.sigmoid(logits) > 0.5).numpy()[:, 0]
    for i in range(8):
        expected = metrics.image_scores(pred[i], target[i, 0].numpy().astype(bool))
        for name in METRIC_NAMES:
            assert got[name].shape == (8,) and got[name].dtype == torch.float64
            assert got[name][i].item() == expected[name], (i, name)


def test_batch_scores_threshold_and_ignore_index():
    logits = torch.tensor([[[[-1.0, 0.2, 1.0, 3.0]]]])
    target = torch.tensor([[[[0.0, 1.0, 1.0, -1.0]]]])
    s = metrics.batch_scores(logits, target, threshold=0.6, ignore_index=-1)  # sigmoid(0.2)=0.55 -> background
    assert s["jaccard"].item() == 0.5 and s["sensitivity"].item() == 0.5 and s["specificity"].item() == 1.0
    with pytest.raises(ValueError, match="ignore_index"):
        metrics.batch_scores(logits, target)
    # probability exactly 0.5 is background, as in binarize(): lesion means strictly above the threshold
    at_half = metrics.batch_counts(torch.zeros(1, 1, 1, 2), torch.tensor([[[[0.0, 1.0]]]]))
    assert (at_half["tp"].item(), at_half["fn"].item(), at_half["tn"].item()) == (0, 1, 1)
    with pytest.raises(ValueError, match="differs from target shape"):
        metrics.batch_scores(logits, target[..., :3])


def test_batch_scores_equal_folder_evaluation(ours):
    """Validation Dice in training == python -m helpers.evaluate on the same masks saved as PNGs."""
    ids = sorted(ours["names"])
    cases = [ours["cases"][ours["names"][i]] for i in ids]
    logits = torch.stack([torch.from_numpy(np.where(p, 3.0, -3.0)).float()[None] for p, _ in cases])
    target = torch.stack([torch.from_numpy(t).float()[None] for _, t in cases])
    got = metrics.batch_scores(logits, target)
    for name in METRIC_NAMES:
        assert np.abs(got[name].numpy() - ours["ours"].loc[ids, name].to_numpy()).max() == 0
        assert abs(got[name].mean().item() - ours["summary"][name]) <= TOL


# ----------------------------------------------------------------------------------------------------------
# evaluate_folders errors and the CLI
# ----------------------------------------------------------------------------------------------------------
def _write(folder: Path, image_id: str, array: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image_id}_segmentation.png"
    Image.fromarray(array).save(path)
    return path


def test_missing_predictions_are_listed(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    for k in range(3):
        _write(tmp_path / "truth", f"SYN_{k:07d}", mask)
    _write(tmp_path / "pred", "SYN_0000001", mask)
    with pytest.raises(ValueError, match=r"2 of 3 truth masks have no prediction.*SYN_0000000, SYN_0000002"):
        metrics.evaluate_folders(tmp_path / "truth", tmp_path / "pred")


def test_size_mismatch_names_the_file(tmp_path):
    _write(tmp_path / "truth", "SYN_0000000", np.zeros((8, 10), np.uint8))
    _write(tmp_path / "pred", "SYN_0000000", np.zeros((10, 8), np.uint8))
    with pytest.raises(ValueError, match=r"SYN_0000000_segmentation.png is 8x10 .*truth .* is 10x8"):
        metrics.evaluate_folders(tmp_path / "truth", tmp_path / "pred")


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        metrics.evaluate_folders(tmp_path / "nope", tmp_path / "empty")
    with pytest.raises(ValueError, match="empty is empty: point --truth at the folder of <id>_segmentation.png masks"):
        metrics.evaluate_folders(tmp_path / "empty", tmp_path / "empty")
    _write(tmp_path / "truth", "SYN_0000000", np.zeros((4, 4), np.uint8))
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "SYN_0000000_segmentation.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="SYN_0000000_segmentation.png: cannot decode"):
        metrics.evaluate_folders(tmp_path / "truth", tmp_path / "pred")


def test_grey_rgb_masks_read_and_16bit_rejected(tmp_path):
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[:3] = 255
    _write(tmp_path / "truth", "SYN_0000000", rgb)
    _write(tmp_path / "pred", "SYN_0000000", rgb[:, :, 0])
    per_image, _ = metrics.evaluate_folders(tmp_path / "truth", tmp_path / "pred")
    assert per_image.iloc[0]["tp"] == 18 and per_image.iloc[0]["dice"] == 1.0
    _write(tmp_path / "pred", "SYN_0000000", np.zeros((6, 6), np.uint16))
    with pytest.raises(files.DatasetError, match="16/32-bit"):
        metrics.evaluate_folders(tmp_path / "truth", tmp_path / "pred")


def test_cli_table_json_and_csv(ours, tmp_path, capsys):
    args = ["--truth", str(ours["truth"]), "--pred", str(ours["pred"])]
    assert evaluate.main(args) == 0
    table = capsys.readouterr().out
    assert "threshold_jaccard" in table and f"{ours['summary']['dice']:.4f}" in table and "images: 60" in table
    csv = tmp_path / "out" / "per_image.csv"
    assert evaluate.main(args + ["--json", "--per-image", str(csv)]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(ours["summary"])
    back = pd.read_csv(csv, index_col="id")
    assert np.allclose(back[list(METRIC_NAMES)], ours["ours"][list(METRIC_NAMES)], atol=1e-12)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    (tmp_path / "t").mkdir()
    (tmp_path / "p").mkdir()
    assert evaluate.main(["--truth", str(tmp_path / "t"), "--pred", str(tmp_path / "p")]) == 2
    assert f"error: truth folder {tmp_path / 't'} is empty" in capsys.readouterr().err


def test_threshold_grid_holds_the_default_threshold():
    """Notebook 05 reads its threshold curve at THRESHOLD: the grid must hold the default exactly, in order."""
    grid = metrics.THRESHOLD_GRID
    assert metrics.DEFAULT_THRESHOLD in grid and list(grid) == sorted(set(grid)) and 0 < grid[0] < grid[-1] < 1
    probs = np.array([[0.2, metrics.DEFAULT_THRESHOLD, 0.7]])
    np.testing.assert_array_equal(metrics.binarize(probs), probs > metrics.DEFAULT_THRESHOLD)  # > , not >=
