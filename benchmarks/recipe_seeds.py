"""The course recipe against the plain reference over several seeds, in and outside its training data (issue 21).

    python benchmarks/recipe_seeds.py --isic ISIC_DIR --ham HAM_DIR [--settings isic,ham-outside,ham-clinic] \\
        [--seeds 0,1,2] [--img-size 96] [--epochs 2] [--batch-size 8] [--reference-amp bf16|off] \\
        [--ham-n 1000] [--held-out-source rosendahl] [--json OUT]

Two arms, trained with every seed of ``--seeds`` on the same images, epochs and batch size:

* ``recipe``: :class:`helpers.train.loop.TrainConfig` for ``resnet_unet_aspp`` with the course defaults
  (AdamW, warm-up + cosine, BCE + Dice, augmentation, ``amp="auto"``), no pretrained weights, trained by
  :func:`helpers.train.fit.fit`; ``best.pt`` (best validation Dice) is kept;
* ``reference``: the plain loop of ``_reference.train_reference`` (smp U-Net, Adam at lr 1e-3, BCE, no
  augmentation, no validation), under ``--reference-amp`` (``bf16``: the precision the recipe trains in on a CPU
  with native bf16; ``off``: float32); its final weights.

Three test settings (:data:`SETTINGS`):

* ``isic``: trained on ``--isic`` (``train/``, ``val/``, ``holdout/`` split folders), scored on its holdout;
* ``ham-outside``: the same models, scored on ``--ham-n`` HAM10000 images (a subset seeded by ``--ham-seed``;
  images whose id or lesion is in the ISIC folder are left out first);
* ``ham-clinic``: trained on the HAM10000 images of every source but ``--held-out-source``, split by lesion
  (:func:`helpers.data.split_pairs`; its test part goes back into train), train and val capped to the ISIC
  train and val counts (seeded subsets) so both trainings cost the same; scored on every image of the held-out
  source.

Every model is predicted at each image's own size (:func:`helpers.evaluation.predict.predict_batch`, threshold
0.5, no TTA) and scored per image with :func:`helpers.evaluation.metrics.image_scores` (thresholded Jaccard: the
Jaccard, 0 below 0.65, as the official ISIC scorer; and Dice). Reported per setting: each arm's mean and standard
deviation over seeds, the seed-level paired difference recipe - reference (mean, sd, seeds won), and a paired
bootstrap interval over images of the seed-averaged per-image difference
(:func:`helpers.evaluation.reliability.paired_bootstrap`). Test images are only predicted once per model, at the
end; training and model selection see train and val only.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
import _reference
import numpy as np
import torch

from helpers import config, models, runtime
from helpers.cli.common import json_object_arg
from helpers.data import files, layouts
from helpers.data.splits import (
    check_no_leak,
    course_splits,
    resolve_dataset,
    source_pairs,
    split_pairs,
    subset_pairs,
)
from helpers.evaluation import metrics, predict, reliability
from helpers.train import fit, loop

#: Test settings, in report order, and the training whose models each one scores.
SETTINGS: dict[str, str] = {"isic": "isic", "ham-outside": "isic", "ham-clinic": "ham-clinic"}
#: The two arms, in report order.
ARMS = ("recipe", "reference")
#: What the recipe arm builds.
RECIPE_MODEL = "resnet_unet_aspp"
#: Per-image scores reported (keys of metrics.image_scores).
SCORES = ("threshold_jaccard", "dice")
#: Coverage of the paired bootstrap interval.
LEVEL = 0.95
#: The recipe's resolved autocast dtype, by its amp name (None, float32, is "off").
AMP_NAMES: dict[torch.dtype | None, str] = {torch.bfloat16: "bf16", torch.float16: "fp16"}
#: Images read and predicted at a time (memory stays flat on large test sets).
CHUNK = 64
DEFAULTS: dict[str, Any] = {"seeds": "0,1,2", "img_size": 96, "epochs": 2, "batch_size": 8, "ham_n": 1000,
                            "held_out_source": "rosendahl", "reference_amp": "bf16"}
#: Top-level keys of the JSON result.
RESULT_KEYS: tuple[str, ...] = ("benchmark", "settings", "skipped", "trainings", "rows", "per_image", "seeds",
                                "img_size", "epochs", "batch_size", "recipe_model", "recipe_amp", "reference_amp",
                                "model_kwargs", "threshold", "ham_seed", "split_seed", "ham_n", "held_out_source",
                                "n_boot", "level", "work_dir", "torch", "device", "threads")
#: Keys of every per-seed row.
ROW_KEYS: tuple[str, ...] = ("setting", "training", "arm", "seed", "model", "n_images", "threshold_jaccard", "dice",
                             "epochs", "best_epoch", "val_dice", "train_seconds", "checkpoint")
TABLE_COLUMNS = [("setting", "setting"), ("row", "arm"), ("n_images", "images"), ("tj_mean", "thr. Jaccard"),
                 ("tj_sd", "sd"), ("dice_mean", "Dice"), ("dice_sd", "sd"), ("wins", "seeds won"),
                 ("tj_ci", "95% CI (images)"), ("p_not_better", "P(diff <= 0)")]


# --------------------------------------------------------------------------------------------------- arguments
def seed_list(text: str) -> list[int]:
    """Parse ``--seeds 0,1,2``: distinct integers, at least one."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds needs comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs distinct comma-separated integers, got {text!r}")
    return seeds


def setting_list(text: str) -> list[str]:
    """Parse ``--settings isic,ham-clinic``: known, distinct names, in report order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SETTINGS))
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--settings needs distinct names from {', '.join(SETTINGS)}, got {text!r}")
    return [n for n in SETTINGS if n in names]


def arm_kwargs(text: str) -> dict[str, dict[str, Any]]:
    """Parse ``--model-kwargs``: a JSON object mapping an arm (``recipe``, ``reference``) to build arguments."""
    value = json_object_arg(text)
    if not set(value) <= set(ARMS) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError("--model-kwargs maps 'recipe' and/or 'reference' to objects, e.g. "
                                         "'{\"recipe\": {\"encoder_name\": \"resnet18\"}}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python benchmarks/recipe_seeds.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--isic", type=Path, default=None, help="ISIC folder with train/ val/ holdout/ (isic, ham-outside)")
    p.add_argument("--ham", type=Path, default=None,
                   help="HAM10000 folder whose metadata CSV has a dataset column (ham-outside, ham-clinic)")
    p.add_argument("--settings", type=setting_list, default=list(SETTINGS), help="comma-separated subset to run")
    p.add_argument("--seeds", type=seed_list, default=seed_list(DEFAULTS["seeds"]), help="training seeds")
    p.add_argument("--img-size", type=int, default=DEFAULTS["img_size"], help="square training size")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--reference-amp", choices=("bf16", "off"), default=DEFAULTS["reference_amp"],
                   help="the reference's autocast (bf16: the recipe's amp='auto' precision on a bf16 CPU)")
    p.add_argument("--ham-n", type=int, default=DEFAULTS["ham_n"], help="HAM images scored by ham-outside")
    p.add_argument("--ham-seed", type=int, default=0,
                   help="seed of the ham-outside subset, the ham-clinic lesion split and its capped subsets")
    p.add_argument("--split-seed", type=int, default=0, help="seed of course_splits (splits it has to carve)")
    p.add_argument("--held-out-source", default=DEFAULTS["held_out_source"],
                   help="HAM source (metadata 'dataset' value) ham-clinic scores on and never trains on")
    p.add_argument("--clinic-train-n", type=int, default=None,
                   help="ham-clinic training images (default: as many as --isic's train, else all)")
    p.add_argument("--clinic-val-n", type=int, default=None,
                   help="ham-clinic validation images (default: as many as --isic's val, else all)")
    p.add_argument("--model-kwargs", type=arm_kwargs, default={}, metavar="JSON",
                   help="per-arm build arguments, e.g. '{\"recipe\": {\"encoder_name\": \"resnet18\"}}' "
                        "(reported numbers use the defaults)")
    p.add_argument("--n-boot", type=int, default=reliability.N_BOOT, help="bootstrap resamples")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: helpers.data's)")
    p.add_argument("--device", choices=runtime.DEVICE_CHOICES, default=None, help="default: best available")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the models (default: runs/benchmarks/recipe_seeds)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the result as JSON here")
    return p


# -------------------------------------------------------------------------------------------------------- data
@dataclass
class Training:
    """The train and val pairs of one training setting and where they came from."""

    train: list[layouts.Pair]
    val: list[layouts.Pair]
    description: str


@dataclass
class Plan:
    """What one run trains and scores: trainings by name, test pairs per setting, and the skipped settings."""

    trainings: dict[str, Training]
    tests: dict[str, list[layouts.Pair]]
    descriptions: dict[str, str]
    skipped: dict[str, str]


def load_isic(root: Path, seed: int) -> dict[str, list[layouts.Pair]]:
    """``course_splits`` of a split-folder ISIC set; its ``test`` is the ``holdout/`` (or ``test/``) folder.

    Raises:
        DatasetError: no split folders, no held-out folder, or an id in two splits.
    """
    resolved = resolve_dataset(root)
    if "test" not in resolved.folders:
        raise files.DatasetError(f"--isic {_common.shown_path(root)}: needs train/, val/ and holdout/ sub-folders "
                                 "(the held-out split is scored as given, never carved out of train)")
    splits = course_splits(resolved, seed=seed)
    check_no_leak(splits, where=f"--isic {_common.shown_path(root)}")
    return splits


def ham_outside(ham: Sequence[layouts.Pair], isic: Mapping[str, Sequence[layouts.Pair]],
                groups: Mapping[str, str] | None, n: int, seed: int) -> tuple[list[layouts.Pair], int]:
    """``n`` HAM pairs (``subset_pairs``, ``seed``) after leaving out every id or lesion also in the ISIC splits;
    returns ``(pairs, how many were left out)``."""
    groups = groups or {}
    isic_ids = {p.id for pairs in isic.values() for p in pairs}
    isic_lesions = {groups[i] for i in isic_ids if i in groups}
    pool = [p for p in ham if p.id not in isic_ids and groups.get(p.id) not in isic_lesions]
    if not pool:
        raise ValueError(f"--ham: all {len(ham)} images share an id or lesion with --isic; ham-outside has none left")
    chosen = subset_pairs(pool, min(n, len(pool)), seed=seed)
    check_no_leak({**{f"isic {k}": v for k, v in isic.items()}, "ham-outside": chosen}, dict(groups),
                  where="the ISIC splits and the ham-outside images")
    return chosen, len(ham) - len(pool)


def ham_clinic(sources: Mapping[str, Sequence[layouts.Pair]], groups: Mapping[str, str] | None, held_out: str,
               caps: tuple[int | None, int | None], seed: int) -> tuple[Training, list[layouts.Pair], str]:
    """Train / val from every source but ``held_out`` (split by lesion; the split's test part back into train;
    each capped to ``caps`` by a seeded subset), and every pair of ``held_out`` as the test set.

    Raises:
        ValueError: ``held_out`` is not a source, or nothing is left to train on.
    """
    if held_out not in sources:
        raise ValueError(f"--held-out-source {held_out!r} is not a source of --ham: use one of {', '.join(sources)}")
    test = list(sources[held_out])
    held_lesions = {(groups or {}).get(p.id, p.id) for p in test}
    pool = [p for name, pairs in sources.items() if name != held_out for p in pairs
            if (groups or {}).get(p.id, p.id) not in held_lesions]
    if len(pool) < 2:
        raise ValueError(f"--ham: {len(pool)} image(s) outside {held_out!r}, at least 2 needed to train and validate")
    parts = split_pairs(pool, seed=seed, groups=groups)
    train, val = sorted(parts["train"] + parts["test"], key=lambda p: p.id), parts["val"]
    sizes = (len(train), len(val))
    train, val = (subset_pairs(pairs, cap, seed=seed) if cap is not None and cap < len(pairs) else pairs
                  for pairs, cap in zip((train, val), caps))
    check_no_leak({"train": train, "val": val, "test": test}, groups, where="the ham-clinic splits")
    others = ", ".join(n for n in sources if n != held_out)
    text = (f"HAM sources {others} split by lesion (seed {seed}; split_pairs' test part put back into train), "
            f"train {len(train)} of {sizes[0]}, val {len(val)} of {sizes[1]}")
    return Training(train, val, text), test, f"every {held_out!r} image of --ham ({len(test)}), never trained on"


def make_plan(args: argparse.Namespace) -> Plan:
    """Load the data the asked settings need; settings whose data was not given are skipped with the reason.

    Raises:
        ValueError: no setting can run, or a HAM folder without sources / held-out source.
        DatasetError: a folder cannot be used, or an id or lesion is in two splits.
    """
    skipped: dict[str, str] = {}
    for name in args.settings:
        if args.isic is None and SETTINGS[name] == "isic":
            skipped[name] = "needs --isic DIR (the models it scores are trained on the ISIC train split)"
        elif args.ham is None and name.startswith("ham"):
            skipped[name] = f"needs --ham DIR (HAM10000 with {layouts.HAM_METADATA})"
    wanted = [n for n in args.settings if n not in skipped]
    if not wanted:
        raise ValueError("nothing to run: give at least one training source, --isic DIR (settings isic, "
                         "ham-outside) or --ham DIR (ham-clinic); " + "; ".join(f"{k} {v}" for k, v in skipped.items()))
    plan = Plan({}, {}, {}, skipped)
    isic = load_isic(args.isic, args.split_seed) if args.isic is not None else None
    if isic is not None and "isic" in [SETTINGS[n] for n in wanted]:
        plan.trainings["isic"] = Training(isic["train"], isic["val"],
                                          f"--isic {_common.shown_path(args.isic)} train / val as given")
    if "isic" in wanted:
        plan.tests["isic"] = isic["test"]
        plan.descriptions["isic"] = f"the holdout of --isic ({len(isic['test'])} images)"
    if args.ham is not None and {"ham-outside", "ham-clinic"} & set(wanted):
        resolved = resolve_dataset(args.ham)
        sources = source_pairs(resolved, seed=args.split_seed)
        if not sources:
            raise ValueError(f"--ham {_common.shown_path(args.ham)}: its metadata CSV names no source "
                             f"(column {layouts.SOURCE_COLUMN!r}); HAM10000's {layouts.HAM_METADATA} has one")
        if "ham-outside" in wanted:
            everything = [p for pairs in sources.values() for p in pairs]
            chosen, left_out = ham_outside(everything, isic, resolved.groups, args.ham_n, args.ham_seed)
            plan.tests["ham-outside"] = chosen
            plan.descriptions["ham-outside"] = (
                f"{len(chosen)} of the {len(everything)} --ham images (subset_pairs, seed {args.ham_seed}; "
                f"{left_out} left out first for sharing an id or lesion with --isic), scored by the isic models")
        if "ham-clinic" in wanted:
            caps = (args.clinic_train_n if args.clinic_train_n is not None else len(isic["train"]) if isic else None,
                    args.clinic_val_n if args.clinic_val_n is not None else len(isic["val"]) if isic else None)
            training, test, text = ham_clinic(sources, resolved.groups, args.held_out_source, caps, args.ham_seed)
            plan.trainings["ham-clinic"], plan.tests["ham-clinic"] = training, test
            plan.descriptions["ham-clinic"] = text
    for name, training in plan.trainings.items():
        if not training.train or not training.val:
            raise ValueError(f"training {name!r} has {len(training.train)} train and {len(training.val)} val images: "
                             "both need at least one")
    return plan


# ------------------------------------------------------------------------------------------- training, scoring
def train_arm(arm: str, training: Training, seed: int, args: argparse.Namespace, device: torch.device,
              run_dir: Path) -> dict[str, Any]:
    """Train one arm with one seed into ``run_dir``; ``{"checkpoint", "model", "epochs", "best_epoch", ...}``."""
    kwargs = args.model_kwargs.get(arm, {})
    start = time.perf_counter()
    if arm == "reference":
        ckpt = _reference.train_reference(training.train, args.img_size, args.batch_size, args.epochs, device, seed,
                                          args.workers, False, kwargs, out=run_dir, amp=args.reference_amp)
        return {"checkpoint": ckpt, "model": _reference.REFERENCE_MODEL, "epochs": args.epochs, "best_epoch": None,
                "val_dice": None, "train_seconds": time.perf_counter() - start}
    cfg = loop.TrainConfig(model=RECIPE_MODEL, model_kwargs=kwargs, pretrained=False, img_size=args.img_size,
                           epochs=args.epochs, batch_size=args.batch_size, seed=seed, num_workers=args.workers,
                           device=args.device, out=str(run_dir))
    result = fit.fit(cfg, splits={"train": training.train, "val": training.val}, progress=False,
                     callbacks=[_common.epoch_printer(args.epochs, arm)])
    return {"checkpoint": result.best_path, "model": RECIPE_MODEL, "epochs": args.epochs,
            "best_epoch": result.best_epoch, "val_dice": float(result.best_score),
            "train_seconds": time.perf_counter() - start}


def score_pairs(model: torch.nn.Module, pairs: Sequence[layouts.Pair], img_size: int, device: torch.device,
                batch_size: int) -> dict[str, np.ndarray]:
    """Per-image scores (:data:`SCORES`) of ``model`` on ``pairs``: predicted at each image's own size,
    threshold 0.5, no TTA; masks read with the package's mask rule."""
    found: dict[str, list[float]] = {name: [] for name in SCORES}
    for start in range(0, len(pairs), CHUNK):
        part = pairs[start:start + CHUNK]
        probs = predict.predict_batch(model, [files.read_image(p.image) for p in part], img_size, device=device,
                                      batch_size=batch_size)
        for prob, pair in zip(probs, part):
            pred = metrics.binarize(prob, metrics.DEFAULT_THRESHOLD)
            scores = metrics.image_scores(pred, files.read_mask(pair.mask))
            for name in SCORES:
                found[name].append(scores[name])
    return {name: np.asarray(values, dtype=np.float64) for name, values in found.items()}


def _sd(values: np.ndarray) -> float | None:
    """Sample standard deviation (ddof 1); None for a single value."""
    return float(np.std(values, ddof=1)) if values.size > 1 else None


def compare(scores: Mapping[str, Mapping[str, np.ndarray]], n_boot: int) -> dict[str, Any]:
    """Summary of one setting from ``{arm: {score: (n_seeds, n_images) array}}``.

    ``arms[arm][score]``: mean, sd and per-seed values of the seed means. ``difference[score]``: the seed-level
    paired difference recipe - reference (mean, sd, per seed, seeds won and tied) and the paired bootstrap over
    images of the seed-averaged per-image scores (``estimate`` equals the mean difference).
    """
    out: dict[str, Any] = {"arms": {arm: {} for arm in ARMS}, "difference": {}}
    for name in SCORES:
        per_seed = {arm: scores[arm][name].mean(axis=1) for arm in ARMS}
        for arm in ARMS:
            out["arms"][arm][name] = {"mean": float(per_seed[arm].mean()), "sd": _sd(per_seed[arm]),
                                      "per_seed": per_seed[arm].tolist()}
        diff = per_seed["recipe"] - per_seed["reference"]
        paired = reliability.paired_bootstrap(scores["recipe"][name].mean(axis=0),
                                              scores["reference"][name].mean(axis=0), n_boot=n_boot, level=LEVEL,
                                              seed=0)
        interval = paired.difference
        out["difference"][name] = {
            "mean": float(diff.mean()), "sd": _sd(diff), "per_seed": diff.tolist(),
            "recipe_wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()), "n_seeds": int(diff.size),
            "bootstrap": {"estimate": interval.estimate, "low": interval.low, "high": interval.high,
                          "level": interval.level, "n_images": interval.n, "n_boot": n_boot,
                          "p_not_better": paired.p_not_better}}
    return out


# -------------------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace, progress: Callable[..., None] = _common.eprint) -> dict[str, Any]:
    """Train every arm with every seed for the planned trainings, score each setting, return the result."""
    loop.TrainConfig(model=RECIPE_MODEL, model_kwargs=args.model_kwargs.get("recipe", {}), img_size=args.img_size,
                     epochs=args.epochs, batch_size=args.batch_size)  # a bad size or count fails here, not later
    if args.ham_n < 1 or args.n_boot < 1:
        raise ValueError(f"need --ham-n >= 1 and --n-boot >= 1, got {args.ham_n} and {args.n_boot}")
    device = runtime.select_device(args.device)
    plan = make_plan(args)
    for name, reason in plan.skipped.items():
        progress(f"skipped {name}: {reason}")
    for name, training in plan.trainings.items():
        progress(f"training {name}: {training.description} ({len(training.train)} train, {len(training.val)} val)")
    for name, text in plan.descriptions.items():
        progress(f"setting {name}: {text}")
    out = Path(args.out) if args.out else config.runs_dir() / "benchmarks" / "recipe_seeds"
    names = list(plan.tests)
    scores = {n: {arm: {s: [] for s in SCORES} for arm in ARMS} for n in names}
    rows: list[dict[str, Any]] = []
    for training_name, training in plan.trainings.items():
        for seed in args.seeds:
            for arm in ARMS:
                progress(f"== {training_name}, seed {seed}, {arm}")
                trained = train_arm(arm, training, seed, args, device, out / training_name / arm / f"seed{seed}")
                model = models.load_model(trained["checkpoint"], map_location="cpu").to(device)
                for name in (n for n in names if SETTINGS[n] == training_name):
                    found = score_pairs(model, plan.tests[name], args.img_size, device, args.batch_size)
                    for s in SCORES:
                        scores[name][arm][s].append(found[s])
                    rows.append({"setting": name, "training": training_name, "arm": arm, "seed": seed,
                                 "n_images": len(plan.tests[name]),
                                 **{s: float(found[s].mean()) for s in SCORES}, **trained,
                                 "checkpoint": _common.shown_path(trained["checkpoint"])})
                    progress(f"  {name}: thresholded Jaccard {rows[-1]['threshold_jaccard']:.4f}, "
                             f"Dice {rows[-1]['dice']:.4f} ({len(plan.tests[name])} images)")
    stacked = {n: {arm: {s: np.stack(v) for s, v in by_arm.items()} for arm, by_arm in arms.items()}
               for n, arms in scores.items()}
    settings = {n: {"training": SETTINGS[n], "description": plan.descriptions[n], "n_images": len(plan.tests[n]),
                    "n_train": len(plan.trainings[SETTINGS[n]].train), "n_val": len(plan.trainings[SETTINGS[n]].val),
                    **compare(stacked[n], args.n_boot)} for n in names}
    per_image = {n: {"ids": [p.id for p in plan.tests[n]],
                     **{arm: {s: np.round(stacked[n][arm][s], 6).tolist() for s in SCORES} for arm in ARMS}}
                 for n in names}
    amp = AMP_NAMES.get(runtime.resolve_amp("auto", device), "off")
    return {"benchmark": "recipe_seeds", "settings": settings, "skipped": plan.skipped,
            "trainings": {k: {"description": t.description, "n_train": len(t.train), "n_val": len(t.val)}
                          for k, t in plan.trainings.items()},
            "rows": rows, "per_image": per_image, "seeds": list(args.seeds), "img_size": args.img_size,
            "epochs": args.epochs, "batch_size": args.batch_size, "recipe_model": RECIPE_MODEL,
            "recipe_amp": amp,
            "reference_amp": args.reference_amp, "model_kwargs": args.model_kwargs,
            "threshold": metrics.DEFAULT_THRESHOLD, "ham_seed": args.ham_seed, "split_seed": args.split_seed,
            "ham_n": args.ham_n, "held_out_source": args.held_out_source, "n_boot": args.n_boot, "level": LEVEL,
            "work_dir": _common.shown_path(out), **_common.environment(device)}


def table_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Three table rows per setting: each arm's mean and sd over seeds, then the paired difference."""
    rows = []
    for name, setting in result["settings"].items():
        for arm in ARMS:
            tj, dice = (setting["arms"][arm][s] for s in SCORES)
            rows.append({"setting": name, "row": arm, "n_images": setting["n_images"], "tj_mean": tj["mean"],
                         "tj_sd": tj["sd"], "dice_mean": dice["mean"], "dice_sd": dice["sd"]})
        tj, dice = (setting["difference"][s] for s in SCORES)
        boot = tj["bootstrap"]
        rows.append({"setting": name, "row": "recipe - reference", "n_images": setting["n_images"],
                     "tj_mean": tj["mean"], "tj_sd": tj["sd"], "dice_mean": dice["mean"], "dice_sd": dice["sd"],
                     "wins": f"{tj['recipe_wins']}/{tj['n_seeds']}",
                     "tj_ci": f"[{boot['low']:+.4f}, {boot['high']:+.4f}]", "p_not_better": boot["p_not_better"]})
    return rows


def format_result(result: Mapping[str, Any]) -> str:
    """The result as text: what each setting is, the table, and what was skipped."""
    lines = [(f"recipe ({result['recipe_model']}, amp auto = {result['recipe_amp']}) vs reference "
              f"({_reference.REFERENCE_MODEL}, amp {result['reference_amp']}); seeds {result['seeds']}, "
              f"{result['img_size']} px, {result['epochs']} epoch(s), batch {result['batch_size']}; threshold "
              f"{result['threshold']:g}, no TTA; torch {result['torch']} on {result['device']} "
              f"({result['threads']} threads)")]
    lines += [f"training {k}: {t['description']}" for k, t in result["trainings"].items()]
    lines += [f"setting {k}: {s['description']}" for k, s in result["settings"].items()]
    lines.append(_common.format_table(table_rows(result), TABLE_COLUMNS))
    lines.append(f"sd: over seeds; difference row: seed-level recipe - reference; CI: paired bootstrap over images "
                 f"of the seed-averaged thresholded-Jaccard difference ({result['level']:.0%}, {result['n_boot']} "
                 "resamples)")
    lines += [f"skipped {k}: {v}" for k, v in result["skipped"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write ``--json``. Returns the exit status (2 for a bad setting)."""
    args = build_parser().parse_args(argv)
    return _common.run_main(lambda: run(args), format_result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
