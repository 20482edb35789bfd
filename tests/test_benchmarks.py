"""Smoke and unit tests of the benchmark scripts in ``benchmarks/`` (tiny synthetic data, never timed).

Each script's ``main([...])`` runs in-process on a few 64 px synthetic images with tiny models; the tests
check the documented JSON keys and that the values are sane (finite, in range, consistent with each other),
not how fast anything is. The selection, ratio and scoring helpers get hand-made inputs with known answers.
"""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import _fake_ham

from helpers import runfolder
from helpers.data import files, layouts, synthetic
from helpers.data.splits import course_splits, source_pairs
from helpers.evaluation import metrics

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: Tiny models: a 4-channel SE-U-Net for the recipe, a MobileNetV2 U-Net for the reference.
TINY_KWARGS = json.dumps({"se_unet": {"base": 4, "depth": 3},
                          "reference": {"encoder_name": "mobilenet_v2", "decoder_channels": [8, 8, 8, 8, 8]}})


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Import the benchmark modules with their folder on sys.path and SKINSEG_HOME in a temporary folder."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("SKINSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SKINSEG_SMOKE", "1")

    class Modules:
        common = importlib.import_module("_common")
        reference = importlib.import_module("_reference")
        real_data = importlib.import_module("real_data")
        recipe_search = importlib.import_module("recipe_search")
        recipe_seeds = importlib.import_module("recipe_seeds")
        reliability_figures = importlib.import_module("reliability_figures")
        throughput = importlib.import_module("throughput")

    return Modules


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------------------------ real_data.py
def test_real_data_main_on_synthetic_set(bench, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    status = bench.real_data.main([
        "--synthetic-n", "12", "--synthetic-size", "64", "--img-size", "64", "--batch-size", "4",
        "--budget-minutes", "0.01", "--probe-steps", "1", "--models", "se_unet,reference",
        "--model-kwargs", TINY_KWARGS, "--select-on-val", "--out", str(tmp_path / "work"), "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    assert set(bench.real_data.RESULT_KEYS) <= set(result)
    assert result["synthetic"] is True and result["data"].startswith("SYNTHETIC")
    assert result["n_train"] + result["n_val"] + result["n_test"] == 12 and result["n_test"] >= 1
    assert "ISIC_<7 digits>" in result["official_scorer"]
    rows = result["rows"]
    assert [(r["trained_as"], r["settings"].startswith("val-selected")) for r in rows] == [
        ("recipe", False), ("recipe", True), ("reference", False)]
    for row in rows:
        assert set(bench.real_data.ROW_KEYS) <= set(row)
        assert row["img_size"] == 64 and row["epochs"] >= 1 and row["train_seconds"] > 0
        assert row["budget_seconds"] == pytest.approx(0.6)
        assert row["over_budget"] == (row["train_seconds"] > 0.6)
        assert row["n_scored"] == result["n_test"]
        for key in ("dice", "jaccard", "threshold_jaccard"):
            assert 0.0 <= row[key] <= 1.0
        assert row["jaccard"] <= row["dice"] + 1e-9  # J = D / (2 - D) <= D
        assert row["official_threshold_jaccard"] is None  # SYN_ ids: helpers' scores only
    plain, selected, reference = rows
    assert (plain["tta"], plain["postprocess"], plain["threshold"]) == (False, False, 0.5)
    assert reference["model"] == "reference (smp_unet)" and reference["best_epoch"] is None
    assert selected["threshold"] in bench.real_data.VAL_THRESHOLDS
    grid = result["selections"]["se_unet"]["grid"]
    assert len(grid) == 2 * 2 * len(bench.real_data.VAL_THRESHOLDS)
    assert selected["val_threshold_jaccard"] == max(g["val_threshold_jaccard"] for g in grid)
    if result["ratio"] is None:
        assert result["ratio_note"]
    else:
        assert result["ratio"] == pytest.approx(plain["threshold_jaccard"] / reference["threshold_jaccard"])
    assert (tmp_path / "work" / "se_unet" / runfolder.BEST_FILE).is_file()
    assert (tmp_path / "work" / "reference" / "final.pt").is_file()
    assert (result["recipe_loss"], result["recipe_augment"]) == ("bce+dice", True)
    saved = json.loads((tmp_path / "work" / "se_unet" / runfolder.CONFIG_FILE).read_text())
    assert (saved["loss"], saved["augment"], saved["img_size"]) == ("bce+dice", True, 64)


def test_real_data_passes_loss_and_augmentation_to_the_recipe(bench, tmp_path: Path) -> None:
    status = bench.real_data.main([
        "--synthetic-n", "12", "--synthetic-size", "64", "--img-size", "64", "--batch-size", "4",
        "--budget-minutes", "0.01", "--probe-steps", "1", "--models", "se_unet", "--loss", "dice", "--no-augment",
        "--model-kwargs", TINY_KWARGS, "--out", str(tmp_path / "work"), "--json", str(tmp_path / "r.json")])
    assert status == 0
    saved = json.loads((tmp_path / "work" / "se_unet" / runfolder.CONFIG_FILE).read_text())
    assert (saved["loss"], saved["augment"]) == ("dice", False)
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["recipe_loss"], result["recipe_augment"]) == ("dice", False)


def test_real_data_rejects_bad_settings(bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.real_data.main(["--img-size", "16", "--budget-minutes", "1"]) == 2
    assert "--img-size >= 32" in capsys.readouterr().err
    assert bench.real_data.main(["--models", "no_such_net", "--img-size", "64"]) == 2
    assert "unknown model(s) ['no_such_net']" in capsys.readouterr().err


def test_probe_fits_whole_epochs_in_the_budget(bench) -> None:
    probe = bench.reference.Probe(first_batch_s=2.0, step_s=1.0, val_s=3.0, save_s=1.0, steps_per_epoch=5)
    assert probe.epoch_s == pytest.approx(2 + 4 * 1 + 3 + 1)
    assert probe.epochs_for(100.0) == 10
    assert probe.epochs_for(109.9) == 10
    assert probe.epochs_for(1.0) == 1  # never zero epochs


def test_val_selection_prefers_the_best_then_the_simplest(bench) -> None:
    truth = np.zeros((40, 40), np.uint8)
    truth[10:30, 10:30] = 1
    prob = np.where(truth == 1, 0.42, 0.05).astype(np.float32)
    prob[0:3, 36:40] = 0.9  # a small false island: only post-processing removes it
    rows = bench.real_data.grid_scores({False: [prob], True: [prob.copy()]}, [truth])
    best = bench.real_data.best_settings(rows)
    # thresholds 0.30, 0.35, 0.40 all give a perfect mask once the island is gone: the one nearest 0.5 wins,
    # and TTA (same probabilities here) brings nothing, so it stays off
    assert (best["tta"], best["postprocess"], best["threshold"]) == (False, True, 0.4)
    assert best["val_threshold_jaccard"] == pytest.approx(1.0)
    no_pp = [r for r in rows if not r["postprocess"] and r["threshold"] == 0.4 and not r["tta"]][0]
    assert no_pp["val_dice"] < 1.0


def test_ratios_use_the_reference_row(bench) -> None:
    rows = [{"model": "a", "trained_as": "recipe", "settings": "plain@0.5", "threshold_jaccard": 0.6},
            {"model": "a", "trained_as": "recipe", "settings": "val-selected pp@0.4", "threshold_jaccard": 0.66},
            {"model": "reference (smp_unet)", "trained_as": "reference", "settings": "plain@0.5",
             "threshold_jaccard": 0.5}]
    ratios, _ = bench.real_data._ratios(rows)
    assert ratios == {"a": {"plain@0.5": pytest.approx(1.2), "val-selected pp@0.4": pytest.approx(1.32)}}
    rows[2]["threshold_jaccard"] = 0.0
    ratios, note = bench.real_data._ratios(rows)
    assert ratios == {} and "undefined" in note
    assert bench.real_data._ratios(rows[:2]) == ({}, "needs 'reference' and a recipe model in --models")


def test_ratios_against_a_named_reference(bench) -> None:
    label_fp32, label_bf16 = (bench.reference.reference_label(n) for n in ("reference", "reference_bf16"))
    assert (label_fp32, label_bf16) == ("reference (smp_unet)", "reference (smp_unet, bf16)")
    rows = [{"model": "a", "trained_as": "recipe", "settings": "plain@0.5", "threshold_jaccard": 0.6},
            {"model": label_fp32, "trained_as": "reference", "settings": "plain@0.5", "threshold_jaccard": 0.5},
            {"model": label_bf16, "trained_as": "reference", "settings": "plain@0.5", "threshold_jaccard": 0.4}]
    assert bench.real_data._ratios(rows)[0] == {"a": {"plain@0.5": pytest.approx(1.2)}}  # the first reference
    assert bench.real_data._ratios(rows, label_bf16)[0] == {"a": {"plain@0.5": pytest.approx(1.5)}}
    assert bench.real_data._ratios(rows, "no such reference")[0] == {}


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_reference_epoch_runs_under_the_asked_autocast(bench, amp_dtype) -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    seen: list[torch.dtype] = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    batch = {"image": torch.randn(2, 3, 16, 16), "mask": (torch.rand(2, 1, 16, 16) > 0.5).float()}
    before = model.weight.detach().clone()
    loss = bench.reference.reference_epoch(model, [batch, batch], torch.optim.Adam(model.parameters(), 1e-2),
                                           torch.nn.BCEWithLogitsLoss(), torch.device("cpu"), amp_dtype=amp_dtype)
    assert math.isfinite(loss) and loss > 0
    assert seen == [amp_dtype or torch.float32] * 2
    assert model.weight.dtype == torch.float32 and not torch.equal(model.weight, before)  # fp32 master weights moved


def test_materialized_split_has_isic_names_and_0_255_masks(bench, tmp_path: Path, write_pair) -> None:
    pairs = []
    for i, ident in enumerate(["ISIC_0000001", "ISIC_0000002"]):
        image, mask = tmp_path / "src" / f"{ident}.png", tmp_path / "src" / f"{ident}_mask.png"
        write_pair(image, mask, seed=i)  # a mask under another layout's name
        pairs.append(layouts.Pair(ident, image, mask))
    folder = bench.real_data.materialize_split(pairs, tmp_path / "heldout")
    assert sorted(p.name for p in (folder / "masks").iterdir()) == [
        "ISIC_0000001_segmentation.png", "ISIC_0000002_segmentation.png"]
    for pair in pairs:
        written = np.asarray(Image.open(folder / "masks" / files.mask_name(pair.id)))
        assert set(np.unique(written)) <= {0, 255}
        np.testing.assert_array_equal(written // 255, files.read_mask(pair.mask))
        assert files.read_image(folder / "images" / f"{pair.id}.png").shape == files.read_image(pair.image).shape


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_official_scorer_agrees_with_helpers(bench, tmp_path: Path, write_pair) -> None:
    pytest.importorskip("isic_challenge_scoring")
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    for i in range(3):
        _, truth = write_pair(tmp_path / "img.png", truth_dir / f"ISIC_000000{i}_segmentation.png", seed=i)
        pred = np.roll(truth, 3 * i, axis=1)  # 0, 3 and 6 px off: thresholded Jaccard differs per image
        Image.fromarray(pred * 255).save(pred_dir / f"ISIC_000000{i}_segmentation.png")
    official, note = bench.real_data.official_threshold_jaccard(truth_dir, pred_dir)
    _, summary = metrics.evaluate_folders(truth_dir, pred_dir)
    assert "isic-challenge-scoring" in note
    assert official == pytest.approx(summary["threshold_jaccard"])
    assert 0.0 < official < 1.0


# -------------------------------------------------------------------------------------------- recipe_search.py
def test_recipe_search_scores_on_val_and_never_reads_the_heldout_split(bench, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[Path] = []
    for name in ("read_image", "read_mask"):   # every image and mask read goes through these (load_pair too)
        original = getattr(files, name)
        monkeypatch.setattr(files, name, lambda path, *a, _f=original, **k: (read.append(Path(path)),
                                                                            _f(path, *a, **k))[1])
    out = tmp_path / "search.json"
    status = bench.recipe_search.main([
        "--synthetic-n", "12", "--synthetic-size", "64", "--batch-size", "4", "--budget-minutes", "0.01",
        "--probe-steps", "1", "--model", "se_unet", "--model-kwargs", TINY_KWARGS,
        "--configs", "64:bce+dice,64:dice:noaug", "--out", str(tmp_path / "work"), "--json", str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert sorted(r["config"] for r in rows) == ["64:bce+dice", "64:dice:noaug"]
    scores = [r["val_threshold_jaccard"] for r in rows]
    assert scores == sorted(scores, reverse=True) and result["best"] == rows[0]["config"]
    for row in rows:
        assert set(bench.recipe_search.ROW_KEYS) <= set(row)
        assert row["epochs"] >= 1 and row["train_seconds"] > 0
        assert row["val_threshold_jaccard"] == max(g["val_threshold_jaccard"] for g in row["grid"])
        assert 0.0 <= row["val_threshold_jaccard_plain"] <= row["val_threshold_jaccard"] <= 1.0
    saved = json.loads((tmp_path / "work" / "64_dice_noaug" / "se_unet" / runfolder.CONFIG_FILE).read_text())
    assert (saved["loss"], saved["augment"]) == ("dice", False)
    # the held-out split exists (the same split real_data.py scores) but no file of it was ever decoded
    splits = course_splits(synthetic.ensure_synthetic(12, 64, seed=0), seed=0)
    heldout = {p for pair in splits["test"] for p in (Path(pair.image), Path(pair.mask))}
    assert heldout and read and not heldout & set(read)
    assert result["final_command"].startswith("python benchmarks/real_data.py --test holdout --budget-minutes 20 ")


def test_recipe_search_configs_parse_and_reject(bench) -> None:
    parse = bench.recipe_search.parse_config
    assert parse("128:bce+dice") == bench.recipe_search.SearchConfig(128, "bce+dice", True)
    assert parse(" 96:Dice:noaug ").label == "96:dice:noaug"
    for bad in ("128", "abc:bce", "16:bce", "128:focal", "128:bce:aug"):
        with pytest.raises(ValueError, match="config"):
            parse(bad)
    with pytest.raises(SystemExit):
        bench.recipe_search.build_parser().parse_args(["--configs", "128:bce,128:bce"])


def test_recipe_search_final_command_parses_as_real_data_arguments(bench) -> None:
    best = {"img_size": 160, "loss": "dice", "augment": False}
    command = bench.recipe_search.final_command(best, Path("/data/isic"), 20.0)
    argv = command.split()[2:]
    args = bench.real_data.build_parser().parse_args(argv)
    assert (args.img_size, args.loss, args.no_augment, args.budget_minutes) == (160, "dice", True, 20.0)
    assert args.test == "holdout" and args.select_on_val and args.data == Path("/data/isic")


# ----------------------------------------------------------------------------------------------- throughput.py
def test_throughput_main_prints_one_json_object(bench, capsys: pytest.CaptureFixture[str]) -> None:
    status = bench.throughput.main(["--model", "se_unet", "--model-kwargs", '{"base": 4, "depth": 2}',
                                    "--img-size", "32", "--batch-size", "2", "--steps", "2", "--warmup", "1",
                                    "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    assert set(bench.throughput.RESULT_KEYS) <= set(result)
    assert (result["model"], result["img_size"], result["batch_size"]) == ("se_unet", 32, 2)
    assert result["workers"] == 0  # smoke mode: helpers.data's default
    assert result["threads"] == torch.get_num_threads() and result["device"] == "cpu"
    for key in ("train_images_per_s", "train_bare_images_per_s", "infer_images_per_s", "infer_bare_images_per_s",
                "infer_files_images_per_s", "infer_files_bare_images_per_s", "train_first_batch_s"):
        assert _finite(result[key]) and result[key] > 0, key
    details = result["details"]
    for kind in ("train", "infer"):  # the ratio is the median of the back-to-back pairs' ratios
        assert len(details[f"{kind}_pair_ratios"]) == 2 and all(r > 0 for r in details[f"{kind}_pair_ratios"])
        assert result[f"{kind}_ratio"] == pytest.approx(float(np.median(details[f"{kind}_pair_ratios"])))
    assert result["infer_files_ratio"] == pytest.approx(result["infer_files_images_per_s"]
                                                        / result["infer_files_bare_images_per_s"])
    assert result["infer_files_n"] == 2 * (1 + 2)  # every synthetic image was predicted from its file
    assert details["train_full"]["steps"] == 2 and details["train_bare"]["steps"] == 2
    assert result["meets_target"] == (min(result["train_ratio"], result["infer_ratio"]) >= 0.9)


def test_throughput_rejects_bad_settings(bench, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.throughput.main(["--img-size", "16", "--json"]) == 2
    assert "--img-size 16 is below 32" in capsys.readouterr().err
    assert bench.throughput.main(["--warmup", "0"]) == 2


def test_take_step_times_and_shown_paths(bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(bench.common.take(range(5), 3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="gave 2 batches, 3 needed"):
        list(bench.common.take(range(2), 3))
    times = bench.common.StepTimes([1.0, 2.0, 4.0], items_per_step=8)
    assert times.median == 2.0 and times.images_per_s == 4.0
    assert times.mean_images_per_s == pytest.approx(24 / 7)
    ratio, pairs = bench.common.paired_ratio(bench.common.StepTimes([2.0, 1.0, 4.0], 8),
                                             bench.common.StepTimes([1.0, 1.0, 1.0], 8))
    assert pairs == [0.5, 1.0, 0.25] and ratio == 0.5
    with pytest.raises(ValueError, match="as many full as bare"):
        bench.common.paired_ratio(bench.common.StepTimes([1.0], 8), bench.common.StepTimes([1.0, 1.0], 8))
    assert "yes" in bench.common.format_table([{"a": True, "b": None}], [("a", "A"), ("b", "B")])
    monkeypatch.chdir(tmp_path)
    assert bench.common.shown_path(tmp_path / "runs" / "x") == "runs/x"
    assert bench.common.shown_path("relative/dir") == "relative/dir"
    assert bench.common.shown_path(Path.home() / "data") == "~/data"
    assert bench.common.shown_path("/opt/somewhere/data/isic") == ".../data/isic"


def test_every_device_option_offers_select_devices_choices(bench) -> None:
    """The --device of every command line and select_device accept the same list: runtime.DEVICE_CHOICES."""
    from helpers import runtime
    from helpers.cli import predict, train
    parsers = [train.build_parser(), predict.build_parser(), bench.real_data.build_parser(),
               bench.recipe_search.build_parser(), bench.throughput.build_parser()]
    for parser in parsers:
        assert tuple(parser._option_string_actions["--device"].choices) == runtime.DEVICE_CHOICES, parser.prog
    assert runtime.select_device("CPU").type == "cpu"
    with pytest.raises(RuntimeError, match="use one of " + ", ".join(runtime.DEVICE_CHOICES)):
        runtime.select_device("tpu")


# -------------------------------------------------------------------------------------- reliability_figures.py
@pytest.mark.filterwarnings("ignore:An input array is constant")  # 1 epoch: Dice may be equal on every image
def test_reliability_figures_main_writes_its_figures(bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rf = bench.reliability_figures
    tiny = {"encoder_name": "mobilenet_v2", "aspp_channels": 8, "decoder_channels": [8, 8, 8, 8, 8]}
    recipe = rf.small_recipe
    monkeypatch.setattr(rf, "small_recipe", lambda **kw: recipe(**kw, model_kwargs=tiny))  # tiny, trained 1 epoch
    for name, value in (("SHIFT_SOURCE_N", 20), ("SHIFT_TARGET_N", 6), ("SHIFT_IMAGE_SIZE", 64),
                        ("SHIFT_EPOCHS", 1)):
        monkeypatch.setattr(rf, name, value)
    folder = tmp_path / "data"
    synthetic.write_dataset(folder, 30, size=64, seed=0, progress=False)  # 24 / 3 / 3, with attributes.csv
    home, out = tmp_path / "nb06", tmp_path / "figures.json"
    assert rf.main(["--data", str(folder), "--home", str(home), "--train-epochs", "1", "--img-size", "64",
                    "--n-boot", "50", "--shift", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(rf.RESULT_KEYS) <= set(result)
    figures = next(json.loads(line) for line in printed.splitlines() if line.startswith('{"n_test"'))
    assert list(figures) == list(rf.RESULT_KEYS)  # the printed line: exactly the figures, in order
    assert result["n_test"] == 3 and result["splits"] == {"train": 24, "val": 3, "test": 3}
    for key in ("dice", "threshold_jaccard"):  # [estimate, low, high, width] of a bootstrap interval
        estimate, low, high, width = result[key]
        assert 0.0 <= low <= estimate <= high <= 1.0 and width == pytest.approx(high - low, abs=1e-3)
    for key in ("ece_before", "ece_after"):
        assert 0.0 <= result[key] <= 1.0
    assert result["T"] > 0
    for rho in (result["spearman_dice_hd95"], *result["spearman_uncertainty_dice"][:1]):
        assert math.isnan(rho) or -1.0 <= rho <= 1.0  # NaN when every test image got the same Dice
    for key in ("best_val_threshold_raw", "best_val_threshold_cal"):
        threshold, dice = result[key]
        assert threshold in metrics.THRESHOLD_GRID and 0.0 <= dice <= 1.0
    attributes = {row["attribute"] for row in result["subgroups"]}
    assert {"skin_tone", "size", "border_contact", "hair", "ruler", "gel bubbles", "vignette"} == attributes
    assert all(sum(r["n"] for r in result["subgroups"] if r["attribute"] == a) == 3 for a in attributes)
    assert runfolder.best_path(home / "runs" / "analysis_resnet").is_file()
    shift = result["shift"]
    assert {(r["training"], r["domain"]) for r in shift["dice"]} == {
        (t, d) for t in ("as is", "Shades-of-Grey") for d in ("source", *rf.SHIFT_TARGETS)}
    assert all(0.0 <= r["low"] <= r["estimate"] <= r["high"] <= 1.0 for r in shift["dice"])
    assert set(shift["shades_of_grey_minus_as_is"]) == set(rf.SHIFT_TARGETS)
    assert all(0.0 <= c["p_not_better"] <= 1.0 for c in shift["shades_of_grey_minus_as_is"].values())
    assert "analysis done" in printed and "shift done" in printed


def test_reliability_figures_needs_a_home(bench, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.reliability_figures.main([])
    assert exit_info.value.code == 2 and "--home" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- recipe_seeds.py
#: Small models for both arms of recipe_seeds.py (ResNet18 encoders, 8-channel decoders and ASPP).
TINY_ARMS = json.dumps({"recipe": {"encoder_name": "resnet18", "aspp_channels": 8, "decoder_channels": [8] * 5},
                        "reference": {"encoder_name": "resnet18", "decoder_channels": [8] * 5}})
#: Pairs per split folder of the ISIC-like set (one batch of 4 per epoch); the last holdout id is also a HAM image.
ISIC_SPLITS = {"train": 4, "val": 2, "holdout": 3}


def _isic_split_folders(root: Path, write_pair) -> set[str]:
    """train/ val/ holdout/ in the ISIC layout (:data:`ISIC_SPLITS`); returns the ids. The last holdout id,
    ISIC_0024300, is the first image of the fake HAM folder too."""
    ids, k = set(), 0
    for split, n in ISIC_SPLITS.items():
        for i in range(n):
            ident = "ISIC_0024300" if split == "holdout" and i == n - 1 else f"ISIC_{k:07d}"
            write_pair(root / split / "images" / f"{ident}.jpg", root / split / "masks" / files.mask_name(ident), k)
            ids.add(ident)
            k += 1
    return ids


@pytest.fixture
def seeds_data(tmp_path: Path, write_pair) -> tuple[Path, Path, set[str]]:
    """(ISIC-like split folders, HAM-like folder with 20 images of 8 lesions from 3 sources, the ISIC ids).

    HAM lesion k has 1 + k % 4 images from source k % 3: rosendahl holds lesions 2 and 5 (5 images)."""
    isic_ids = _isic_split_folders(tmp_path / "isic", write_pair)
    _fake_ham(tmp_path / "ham", write_pair, n_lesions=8, sources=("vidir_modern", "vidir_molemax", "rosendahl"))
    return tmp_path / "isic", tmp_path / "ham", isic_ids


def test_recipe_seeds_main_on_tiny_isic_and_ham(bench, tmp_path: Path, seeds_data,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rs = bench.recipe_seeds
    isic, ham, isic_ids = seeds_data
    out, work = tmp_path / "seeds.json", tmp_path / "work"
    status = rs.main(["--isic", str(isic), "--ham", str(ham), "--seeds", "0,1", "--img-size", "64", "--epochs", "1",
                      "--batch-size", "4", "--ham-n", "4", "--model-kwargs", TINY_ARMS, "--n-boot", "200",
                      "--workers", "0", "--out", str(work), "--json", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "recipe - reference" in printed and "ham-clinic" in printed
    result = json.loads(out.read_text())
    assert set(rs.RESULT_KEYS) <= set(result) and result["skipped"] == {}
    assert (result["seeds"], result["img_size"], result["epochs"], result["reference_amp"]) == ([0, 1], 64, 1, "bf16")
    settings = result["settings"]
    assert list(settings) == list(rs.SETTINGS)
    rosendahl = [p.id for p in source_pairs(ham)["rosendahl"]]
    assert {n: s["n_images"] for n, s in settings.items()} == {"isic": 3, "ham-outside": 4, "ham-clinic": 5}
    assert result["per_image"]["ham-clinic"]["ids"] == rosendahl  # every image of the held-out source
    outside = set(result["per_image"]["ham-outside"]["ids"])
    assert len(outside) == 4 and not outside & isic_ids  # ISIC_0024300 (in the ISIC holdout) was left out
    assert "1 left out first" in settings["ham-outside"]["description"]
    trainings = result["trainings"]
    assert (trainings["isic"]["n_train"], trainings["isic"]["n_val"]) == (4, 2)
    assert trainings["ham-clinic"]["n_train"] == 4 and 1 <= trainings["ham-clinic"]["n_val"] <= 2  # capped to isic's
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 3  # seeds x arms x settings
    assert sorted((r["setting"], r["arm"], r["seed"]) for r in rows) == sorted(
        (n, a, s) for n in rs.SETTINGS for a in rs.ARMS for s in (0, 1))
    for row in rows:
        assert set(rs.ROW_KEYS) <= set(row) and row["n_images"] == settings[row["setting"]]["n_images"]
        assert 0.0 <= row["threshold_jaccard"] <= row["dice"] + 1e-9 <= 1.0 + 1e-9  # tJ <= J <= Dice
        assert (row["best_epoch"] is None) == (row["arm"] == "reference")
    for name, setting in settings.items():
        per_image = result["per_image"][name]
        for arm in rs.ARMS:
            for score in rs.SCORES:
                summary = setting["arms"][arm][score]
                assert 0.0 <= summary["mean"] <= 1.0 and summary["sd"] >= 0.0 and len(summary["per_seed"]) == 2
                seeds = [r[score] for r in rows if (r["setting"], r["arm"]) == (name, arm)]
                assert summary["mean"] == pytest.approx(np.mean(seeds))
                assert np.asarray(per_image[arm][score]).shape == (2, setting["n_images"])
        for score in rs.SCORES:
            diff = setting["difference"][score]
            arms = setting["arms"]
            assert diff["mean"] == pytest.approx(arms["recipe"][score]["mean"] - arms["reference"][score]["mean"])
            assert 0 <= diff["recipe_wins"] + diff["ties"] <= diff["n_seeds"] == 2 and diff["sd"] >= 0.0
            boot = diff["bootstrap"]
            assert boot["low"] - 1e-9 <= boot["estimate"] <= boot["high"] + 1e-9
            assert boot["estimate"] == pytest.approx(diff["mean"]) and boot["n_images"] == setting["n_images"]
            assert 0.0 <= boot["p_not_better"] <= 1.0
    for training in ("isic", "ham-clinic"):
        for seed in (0, 1):
            assert runfolder.best_path(work / training / "recipe" / f"seed{seed}").is_file()
            assert (work / training / "reference" / f"seed{seed}" / "final.pt").is_file()


def test_recipe_seeds_skips_what_it_lacks(bench, seeds_data, capsys: pytest.CaptureFixture[str]) -> None:
    rs = bench.recipe_seeds
    isic, ham, _ = seeds_data
    plan = rs.make_plan(rs.build_parser().parse_args(["--isic", str(isic)]))
    assert list(plan.tests) == ["isic"] and set(plan.skipped) == {"ham-outside", "ham-clinic"}
    assert all("--ham" in reason for reason in plan.skipped.values())
    plan = rs.make_plan(rs.build_parser().parse_args(["--ham", str(ham)]))  # no --isic: ham-clinic, uncapped
    assert list(plan.tests) == ["ham-clinic"] and set(plan.skipped) == {"isic", "ham-outside"}
    assert len(plan.trainings["ham-clinic"].train) + len(plan.trainings["ham-clinic"].val) == 15
    assert rs.main([]) == 2
    assert "nothing to run" in capsys.readouterr().err
    assert rs.main(["--ham", str(ham), "--settings", "isic"]) == 2
    assert "needs --isic" in capsys.readouterr().err
    assert rs.main(["--ham", str(ham), "--held-out-source", "nowhere"]) == 2
    assert "'nowhere' is not a source" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rs.build_parser().parse_args(["--settings", "isic,elsewhere"])
    with pytest.raises(SystemExit):
        rs.build_parser().parse_args(["--model-kwargs", '{"se_unet": {}}'])
