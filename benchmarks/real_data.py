"""Train, select on val, predict and score on a held-out split: our recipe against a plain reference.

    python benchmarks/real_data.py --data DATA_DIR --test holdout --budget-minutes 20 \\
        [--models resnet_unet_aspp,reference[,reference_bf16]] [--img-size S] [--loss L] [--no-augment] \\
        [--select-on-val] [--tta] [--postprocess] \\
        [--json OUT]

For each model in ``--models``:

* a :func:`helpers.models.build_model` name is trained on ``train`` with the course recipe
  (:func:`helpers.train.fit.fit`); ``best.pt`` (best validation Dice) is the model kept;
* ``reference`` is the plain baseline (``_reference.py``): the same smp U-Net with a ResNet34 encoder
  (``smp_unet``), built by :func:`helpers.train.fit.build_parts` from ``_reference.reference_config`` (Adam, i.e.
  AdamW without weight decay, at a constant lr 1e-3, BCE only, no augmentation) and trained by the short loop
  of ``_reference.reference_epoch`` (no schedule, no validation), same image size, batch, train split and
  time budget; its final weights,
  threshold 0.5. It trains in float32, as a user would write it; ``reference_bf16`` is the same loop under
  bf16 autocast, so a recipe trained in bf16 (``amp="auto"`` on a CPU with native bf16) can also be compared
  at equal precision. ``ratio``/``ratios`` are against the first reference in ``--models``;
  ``ratios_by_reference`` holds them against each.

``--budget-minutes`` is the training wall time per model: a probe (``_reference.py``) times a few steps (plus,
for the recipe, a validation pass and the two checkpoint writes of an epoch) and the epoch count is the number
of epochs that fits, at least one. The held-out split named by ``--test`` (``holdout``/``test``: the same split) is
predicted with :func:`helpers.evaluation.predict.predict_folder` at each image's own size and scored with
:func:`helpers.evaluation.metrics.evaluate_folders` and, when its ids are ISIC ids, the official
``isic-challenge-scoring``. ``--select-on-val`` also compares TTA x post-processing x threshold on the
*validation* predictions of each recipe model and applies the best combination once to the held-out split
(both rows are reported). Training and every choice use train and val only; the held-out split is
predicted once per reported row.

Without ``--data`` a synthetic set is drawn with a fixed seed and split 80/10/10; the output says so.
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
import _reference
import numpy as np
import torch

from helpers import config, data, models, runtime
from helpers.cli.common import json_object_arg
from helpers.data import files, layouts, synthetic
from helpers.data.splits import check_no_leak
from helpers.evaluation import metrics, predict
from helpers.train import fit, loop, losses

DEFAULT_MODELS = ("resnet_unet_aspp", _reference.REFERENCE)
#: Held-out split names ``--test`` accepts (course_splits calls a holdout/ folder "test").
TEST_NAMES = ("holdout", "test")
#: Thresholds compared by ``--select-on-val``.
VAL_THRESHOLDS: tuple[float, ...] = tuple(round(t, 2) for t in np.arange(0.30, 0.701, 0.05))
#: Truth file names the official scorer accepts.
OFFICIAL_TRUTH_NAME = re.compile(r"^ISIC_\d{7}_segmentation\.png$")
SYNTHETIC_DEFAULT = {"n": 200, "size": 256}
#: Keys of every row of the JSON ``rows`` list (documented in benchmarks/README.md).
ROW_KEYS: tuple[str, ...] = ("model", "trained_as", "settings", "tta", "postprocess", "threshold", "img_size",
                             "epochs", "train_seconds", "budget_seconds", "over_budget", "dice", "jaccard",
                             "threshold_jaccard", "official_threshold_jaccard")
#: Top-level keys of the JSON result.
RESULT_KEYS: tuple[str, ...] = ("benchmark", "data", "synthetic", "test_split", "n_train", "n_val", "n_test",
                                "img_size", "batch_size", "budget_minutes", "official_scorer", "rows", "ratio",
                                "ratios", "ratios_by_reference", "torch", "device", "threads")
TABLE_COLUMNS = [("model", "model"), ("settings", "settings"), ("img_size", "img"), ("epochs", "epochs"),
                 ("train_seconds", "train s"), ("dice", "Dice"), ("jaccard", "Jaccard"),
                 ("threshold_jaccard", "thr. Jaccard"), ("official_threshold_jaccard", "official thr. J")]


# --------------------------------------------------------------------------------------------------- arguments
def _model_list(text: str) -> list[str]:
    """Parse ``--models a,b``: non-empty, no duplicates."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--models needs distinct comma-separated names, got {text!r}")
    return names


def model_kwargs_map(text: str) -> dict[str, dict[str, Any]]:
    """Parse ``--model-kwargs``: a JSON object mapping a model name to its extra build_model arguments
    (each value a JSON object, as ``python -m helpers.train --model-kwargs`` takes for one model)."""
    value = json_object_arg(text)
    if not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError("--model-kwargs must map model names to objects, e.g. "
                                         "'{\"reference\": {\"encoder_name\": \"resnet18\"}}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python benchmarks/real_data.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder in any supported layout (e.g. with train/ val/ holdout/); "
                        "default: a synthetic set drawn with a fixed seed")
    p.add_argument("--test", default="holdout", choices=TEST_NAMES, help="the held-out split to score")
    p.add_argument("--budget-minutes", type=float, default=20.0, help="training wall time per model")
    p.add_argument("--models", type=_model_list, default=list(DEFAULT_MODELS),
                   help="comma-separated build_model names and/or 'reference' (float32), 'reference_bf16'")
    p.add_argument("--model-kwargs", type=model_kwargs_map, default={}, metavar="JSON",
                   help="per-model build arguments, e.g. '{\"se_unet\": {\"base\": 16}}' (reported numbers "
                        "use the defaults)")
    p.add_argument("--img-size", type=int, default=loop.TrainConfig().img_size, help="square training size")
    p.add_argument("--batch-size", type=int, default=loop.TrainConfig().batch_size)
    p.add_argument("--loss", default=loop.TrainConfig().loss, choices=losses.LOSS_NAMES,
                   help="training loss of the recipe models (the reference always uses BCE)")
    p.add_argument("--no-augment", action="store_true",
                   help="train the recipe models without augmentation (the reference never augments)")
    p.add_argument("--probe-steps", type=int, default=3, help="timed steps of the budget probe")
    p.add_argument("--tta", action="store_true", help="flip TTA when predicting (recipe models)")
    p.add_argument("--postprocess", action="store_true", help="largest component + holes filled (recipe models)")
    p.add_argument("--select-on-val", action="store_true",
                   help="choose TTA / post-processing / threshold on val, apply the best to the held-out split")
    p.add_argument("--pretrained", action="store_true", help="ImageNet encoder weights (all models)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: helpers.data's)")
    p.add_argument("--device", choices=runtime.DEVICE_CHOICES, default=None, help="default: best available")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-n", type=int, default=SYNTHETIC_DEFAULT["n"], help="pairs of the synthetic set")
    p.add_argument("--synthetic-size", type=int, default=SYNTHETIC_DEFAULT["size"], help="its image width")
    p.add_argument("--out", type=Path, default=None,
                   help="work folder for runs and predictions (default: runs/benchmarks/real_data)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the result as JSON here")
    return p


# -------------------------------------------------------------------------------------------------------- data
@dataclass
class Dataset:
    """The splits of one benchmark run and a plain description of where they came from."""

    splits: dict[str, list[layouts.Pair]]
    description: str
    synthetic: bool


def load_dataset(root: Path | None, n: int, size: int, seed: int) -> Dataset:
    """The user's dataset (``course_splits``), or a synthetic set of ``n`` pairs ``size`` px wide.

    Raises:
        DatasetError: the folder cannot be used, or two splits share an id.
    """
    if root is None:
        folder = synthetic.ensure_synthetic(n, size, seed=seed)
        splits = data.course_splits(folder, seed=seed)
        h = synthetic.image_shape(size)[0]
        text = (f"SYNTHETIC: {n} procedural images ({size}x{h} px, helpers.data.synthetic, seed {seed}) split 80/10/10 "
                f"by id in {_common.shown_path(folder)} -- not real dermoscopy; pass --data DIR for real images")
        return Dataset(splits, text, True)
    splits = data.course_splits(root, seed=seed)
    return Dataset(splits, _common.shown_path(root), False)


def materialize_split(pairs: Sequence[layouts.Pair], folder: Path) -> Path:
    """An ISIC-layout copy of ``pairs`` for prediction and scoring: ``images/`` and ``masks/``.

    Images are symbolic links to the originals (copies where links fail). Masks are read with the
    package's one mask rule (:func:`helpers.data.files.read_mask`) and written as single-channel 0/255
    ``<id>_segmentation.png`` (:func:`helpers.data.files.write_mask`), the names both scorers expect, whatever the
    layout called them. Returns ``folder``.
    """
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for pair in pairs:
        link = folder / "images" / f"{pair.id}{pair.image.suffix.lower()}"
        try:
            os.symlink(pair.image.resolve(), link)
        except OSError:
            shutil.copy2(pair.image, link)
        files.write_mask(folder / "masks" / files.mask_name(pair.id), files.read_mask(pair.mask))
    return folder



# ----------------------------------------------------------------------------------------------------- scoring
def official_threshold_jaccard(truth_dir: Path, pred_dir: Path) -> tuple[float | None, str]:
    """The official scorer's macro-averaged thresholded Jaccard, or ``(None, why not)``.

    ``isic-challenge-scoring`` only accepts truth files named ``ISIC_<7 digits>_segmentation.png`` (synthetic
    ``SYN_...`` ids are refused), and it is an optional (dev) dependency.
    """
    names = sorted(p.name for p in truth_dir.iterdir())
    odd = [n for n in names if not OFFICIAL_TRUTH_NAME.match(n)]
    if odd:
        return None, (f"not scored officially: isic-challenge-scoring only accepts ISIC_<7 digits> ids, this split "
                      f"has e.g. {odd[0]}; helpers.evaluation.metrics.evaluate_folders only")
    try:
        from isic_challenge_scoring.segmentation import SegmentationScore
    except ImportError:
        return None, "not scored officially: isic-challenge-scoring is not installed (pip install -e '.[dev]')"
    score = SegmentationScore.from_dir(truth_dir, pred_dir)
    return float(score.macro_average["threshold_jaccard"]), "isic-challenge-scoring (SegmentationScore.from_dir)"


def score_folder(truth_dir: Path, pred_dir: Path) -> dict[str, Any]:
    """Dice, Jaccard and thresholded Jaccard (macro means) by helpers and, when possible, officially."""
    _, summary = metrics.evaluate_folders(truth_dir, pred_dir)
    official, note = official_threshold_jaccard(truth_dir, pred_dir)
    return {"dice": summary["dice"], "jaccard": summary["jaccard"], "threshold_jaccard": summary["threshold_jaccard"],
            "official_threshold_jaccard": official, "official_note": note, "n_scored": int(summary["n_images"])}


# ---------------------------------------------------------------------------------------------- select on val
def val_probabilities(checkpoint: Path, pairs: Sequence[layouts.Pair], img_size: int, device: torch.device,
                      tta: bool, batch_size: int = 8) -> list[np.ndarray]:
    """``(H, W) float32`` lesion probabilities of every val image at its own size (predict.predict_batch)."""
    model = models.load_model(checkpoint, map_location="cpu").to(device)
    images = [files.read_image(p.image) for p in pairs]
    return predict.predict_batch(model, images, img_size, tta=tta, device=device, batch_size=batch_size)


def grid_scores(probs: Mapping[bool, Sequence[np.ndarray]], truths: Sequence[np.ndarray],
                thresholds: Sequence[float] = VAL_THRESHOLDS) -> list[dict[str, Any]]:
    """Mean val Dice and thresholded Jaccard for every (tta, postprocess, threshold) combination.

    Args:
        probs: ``{tta: [(H, W) probabilities per image]}`` for the TTA settings to compare.
        truths: the ``(H, W)`` {0, 1} truth masks, in the same order.
    """
    rows = []
    for tta, thr, clean in itertools.product(sorted(probs), thresholds, (False, True)):
        scores = []
        for prob, truth in zip(probs[tta], truths):
            mask = (prob > thr).astype(np.uint8)
            scores.append(metrics.image_scores((predict.postprocess(mask) if clean else mask) > 0, truth > 0))
        rows.append({"tta": tta, "postprocess": clean, "threshold": float(thr),
                     "val_dice": float(np.mean([s["dice"] for s in scores])),
                     "val_threshold_jaccard": float(np.mean([s["threshold_jaccard"] for s in scores]))})
    return rows


def best_settings(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The row with the best val thresholded Jaccard; ties go to the simpler setting (no TTA, no
    post-processing, threshold nearest 0.5)."""
    return dict(min(rows, key=lambda r: (-r["val_threshold_jaccard"], r["tta"], r["postprocess"],
                                         abs(r["threshold"] - metrics.DEFAULT_THRESHOLD))))


def select_on_val(checkpoint: Path, val: Sequence[layouts.Pair], img_size: int, device: torch.device
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compare TTA x post-processing x threshold on the val split; return ``(best row, all rows)``."""
    truths = [files.read_mask(p.mask) for p in val]
    probs = {tta: val_probabilities(checkpoint, val, img_size, device, tta) for tta in (False, True)}
    rows = grid_scores(probs, truths)
    return best_settings(rows), rows


# ------------------------------------------------------------------------------------------------------ a model
@dataclass
class Trained:
    """A trained model ready to predict: checkpoint, epochs, wall time and what was estimated beforehand."""

    checkpoint: Path
    trained_as: str
    epochs: int
    train_seconds: float
    probe: _reference.Probe
    probe_seconds: float
    best_epoch: int | None = None
    val_dice: float | None = None


def _announce(name: str, probe: _reference.Probe, epochs: int, budget_s: float) -> None:
    """Say on stderr how many epochs the probe allows, and warn when even one epoch overruns the budget."""
    _common.eprint(f"{name}: ~{probe.epoch_s:.1f} s/epoch -> {epochs} epoch(s) in {budget_s:.0f} s")
    if probe.epoch_s > budget_s:
        _common.eprint(f"  warning: one epoch (~{probe.epoch_s:.0f} s) is longer than the budget ({budget_s:.0f} s); "
                       "training one epoch anyway. Lower --img-size or raise --budget-minutes to stay within it.")


def train_model(name: str, args: argparse.Namespace, splits: Mapping[str, Sequence[layouts.Pair]],
                device: torch.device, out: Path) -> Trained:
    """Probe, choose the epochs for the budget, train ``name`` (recipe or reference) into ``out/name``."""
    budget_s = args.budget_minutes * 60
    kwargs = args.model_kwargs.get(name, {})
    run_dir = out / name
    start = time.perf_counter()
    if name in _reference.REFERENCE_AMP:
        amp = _reference.REFERENCE_AMP[name]
        common = (splits["train"], args.img_size, args.batch_size)
        rest = (device, args.seed, args.workers, args.pretrained, kwargs)
        probe = _reference.probe_reference(*common, *rest, steps=args.probe_steps, amp=amp)
        probe_s, epochs = time.perf_counter() - start, probe.epochs_for(budget_s)
        _announce(name, probe, epochs, budget_s)
        start = time.perf_counter()
        ckpt = _reference.train_reference(*common, epochs, *rest, out=run_dir, amp=amp)
        return Trained(ckpt, "reference", epochs, time.perf_counter() - start, probe, probe_s)
    cfg = loop.TrainConfig(model=name, model_kwargs=kwargs, pretrained=args.pretrained, img_size=args.img_size,
                               batch_size=args.batch_size, loss=args.loss, augment=not args.no_augment,
                               seed=args.seed, num_workers=args.workers, device=args.device, out=str(run_dir))
    probe = _reference.probe_recipe(cfg, splits, device, args.probe_steps)
    probe_s, cfg.epochs = time.perf_counter() - start, probe.epochs_for(budget_s)
    _announce(name, probe, cfg.epochs, budget_s)
    start = time.perf_counter()
    result = fit.fit(cfg, splits={"train": splits["train"], "val": splits["val"]}, progress=False,
                          callbacks=[_common.epoch_printer(cfg.epochs)])
    seconds = time.perf_counter() - start
    return Trained(result.best_path, "recipe", cfg.epochs, seconds, probe, probe_s, result.best_epoch,
                   float(result.best_score))


def evaluate_model(trained: Trained, name: str, heldout: Path, out: Path, device: torch.device, *, tta: bool,
                   postprocess: bool, threshold: float, settings: str, img_size: int, budget_s: float
                   ) -> dict[str, Any]:
    """Predict the held-out folder with the given settings and score it; one result row."""
    pred_dir = out / name / f"pred-{settings.replace(' ', '-')}"
    if pred_dir.exists():
        shutil.rmtree(pred_dir)
    start = time.perf_counter()
    predict.predict_folder(trained.checkpoint, heldout, pred_dir, tta=tta, postprocess=postprocess,
                           threshold=threshold, device=device)
    predict_s = time.perf_counter() - start
    scores = score_folder(heldout / "masks", pred_dir)
    return {"model": name if trained.trained_as == "recipe" else _reference.reference_label(name),
            "trained_as": trained.trained_as, "settings": settings, "tta": tta, "postprocess": postprocess,
            "threshold": threshold, "img_size": img_size, "epochs": trained.epochs,
            "train_seconds": trained.train_seconds, "budget_seconds": budget_s,
            "over_budget": trained.train_seconds > budget_s, "estimated_epoch_seconds": trained.probe.epoch_s,
            "probe_seconds": trained.probe_seconds, "best_epoch": trained.best_epoch,
            "val_dice": trained.val_dice, "predict_seconds": predict_s, **scores}



# -------------------------------------------------------------------------------------------------------- main
def _ratios(rows: Sequence[Mapping[str, Any]], reference: str | None = None
            ) -> tuple[dict[str, dict[str, float]], str]:
    """``({model: {settings: ours / reference thresholded Jaccard}}, note)`` for every recipe row.

    Args:
        rows: the result rows.
        reference: the model label of the reference row to divide by; None: the first reference row.

    The dict is empty, and the note says why, when there is no reference row, no recipe row, or the
    reference scored 0 (the ratio is then undefined).
    """
    ref = next((r for r in rows if r["trained_as"] == "reference" and reference in (None, r["model"])), None)
    if ref is None or not any(r["trained_as"] == "recipe" for r in rows):
        return {}, "needs 'reference' and a recipe model in --models"
    if not ref["threshold_jaccard"] > 0:
        return {}, "the reference's thresholded Jaccard is 0: the ratio is undefined (train longer or larger)"
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["trained_as"] == "recipe":
            out.setdefault(row["model"], {})[row["settings"]] = row["threshold_jaccard"] / ref["threshold_jaccard"]
    return out, "ours / reference, held-out thresholded Jaccard (helpers.evaluation.metrics)"


def settings_label(tta: bool, postprocess: bool, threshold: float) -> str:
    """``tta+pp@0.45``-style label of prediction settings."""
    parts = [p for p, on in (("tta", tta), ("pp", postprocess)) if on]
    return f"{'+'.join(parts) or 'plain'}@{threshold:g}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, (select,) predict and score every model of ``args``; return the result dict."""
    if args.img_size < 32 or args.batch_size < 1 or args.budget_minutes <= 0 or args.probe_steps < 1:
        raise ValueError(f"need --img-size >= 32, --batch-size >= 1, --budget-minutes > 0 and --probe-steps >= 1, "
                         f"got {args.img_size}, {args.batch_size}, {args.budget_minutes}, {args.probe_steps}")
    unknown = [m for m in args.models if m not in _reference.REFERENCE_AMP and m not in models.available_models()
               and not m.startswith("smp_")]
    if unknown:
        names = " or ".join(map(repr, _reference.REFERENCE_AMP))
        raise ValueError(f"unknown model(s) {unknown}: use {names} or one of {models.available_models()}")
    device = runtime.select_device(args.device)
    dataset = load_dataset(args.data, args.synthetic_n, args.synthetic_size, args.seed)
    splits = dataset.splits
    check_no_leak(splits, where=f"the benchmark's splits ({dataset.description})")
    _common.eprint(f"data: {dataset.description}\nsplits: train {len(splits['train'])}, val {len(splits['val'])}, "
                   f"held-out ({args.test}) {len(splits['test'])}; device {device}")
    out = Path(args.out) if args.out else config.runs_dir() / "benchmarks" / "real_data"
    heldout = materialize_split(splits["test"], out / "heldout")
    rows: list[dict[str, Any]] = []
    selections: dict[str, Any] = {}
    for name in args.models:
        _common.eprint(f"== {name}")
        trained = train_model(name, args, splits, device, out)
        recipe = trained.trained_as == "recipe"
        tta, clean = (args.tta, args.postprocess) if recipe else (False, False)
        common = dict(img_size=args.img_size, budget_s=args.budget_minutes * 60)
        rows.append(evaluate_model(trained, name, heldout, out, device, tta=tta, postprocess=clean,
                                   threshold=metrics.DEFAULT_THRESHOLD,
                                   settings=settings_label(tta, clean, metrics.DEFAULT_THRESHOLD), **common))
        if recipe and args.select_on_val:
            best, grid = select_on_val(trained.checkpoint, splits["val"], args.img_size, device)
            selections[name] = {"best": best, "grid": grid}
            _common.eprint(f"  selected on val: {best}")
            row = evaluate_model(trained, name, heldout, out, device, tta=best["tta"], postprocess=best["postprocess"],
                                 threshold=best["threshold"], settings="val-selected " + settings_label(
                                     best["tta"], best["postprocess"], best["threshold"]), **common)
            rows.append({**row, "val_threshold_jaccard": best["val_threshold_jaccard"]})
    ratios, ratio_note = _ratios(rows)
    by_reference = {r["model"]: _ratios(rows, r["model"])[0] for r in rows if r["trained_as"] == "reference"}
    first = next((m for m in args.models if m not in _reference.REFERENCE_AMP), None)
    default_label = settings_label(args.tta, args.postprocess, metrics.DEFAULT_THRESHOLD)
    official = next((r["official_note"] for r in rows), None)
    return {"benchmark": "real_data", "data": dataset.description, "synthetic": dataset.synthetic,
            "test_split": args.test, "n_train": len(splits["train"]), "n_val": len(splits["val"]),
            "n_test": len(splits["test"]), "img_size": args.img_size, "batch_size": args.batch_size,
            "budget_minutes": args.budget_minutes, "recipe_loss": args.loss, "recipe_augment": not args.no_augment,
            "official_scorer": official, "rows": rows,
            "ratio": ratios.get(first, {}).get(default_label) if first else None, "ratios": ratios,
            "ratio_note": ratio_note, "ratios_by_reference": by_reference, "selections": selections,
            "seed": args.seed,
            "work_dir": _common.shown_path(out),
            **_common.environment(device)}


def format_result(result: Mapping[str, Any]) -> str:
    """The result as text: the data line, the table, the official-scorer note and the ratio."""
    lines = [f"data: {result['data']}",
             f"held-out split '{result['test_split']}': {result['n_test']} images (train {result['n_train']}, "
             f"val {result['n_val']}); budget {result['budget_minutes']:g} min per model; recipe loss "
             f"{result['recipe_loss']}, augmentation {'on' if result['recipe_augment'] else 'off'}; torch "
             f"{result['torch']} on {result['device']} ({result['threads']} threads)",
             _common.format_table(result["rows"], TABLE_COLUMNS),
             f"official scorer: {result['official_scorer']}"]
    over = sorted({r["model"] for r in result["rows"] if r["over_budget"]})
    if over:
        lines.append(f"over the training budget (at least one epoch is always trained): {', '.join(over)}")
    for reference, ratios in result["ratios_by_reference"].items():
        for model, by_settings in ratios.items():
            for settings, ratio in by_settings.items():
                lines.append(f"ratio {model} [{settings}] / {reference}, thresholded Jaccard: {ratio:.3f}")
    if not result["ratios"]:
        lines.append("ratio: - (" + result["ratio_note"] + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write ``--json``. Returns the exit status (2 for a bad setting)."""
    args = build_parser().parse_args(argv)
    return _common.run_main(lambda: run(args), format_result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
