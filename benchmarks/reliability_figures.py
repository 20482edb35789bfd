"""Notebook 06's main figures outside the notebook, with the same public helpers, for any dataset folder.

What notebook 06 measures, printed as JSON and tables: bootstrap intervals of the test Dice and thresholded
Jaccard, median HD95, ECE before/after temperature scaling fitted on val, the best val threshold before/after,
the rank correlation of flip-TTA uncertainty with Dice, the subgroup table (ITA skin tone, size, border contact,
and the generator's artefacts on synthetic data); with ``--shift`` also the synthetic domain-shift experiment
(source-only training as is and with Shades-of-Grey on every image). The model is a checkpoint (``--checkpoint``)
or a short run of the ResNet-U-Net-ASPP (resnet18, small decoder) trained here on the folder's train/val.

    python benchmarks/reliability_figures.py --data ../shared/data/isic-real --home /tmp/nb06 --train-epochs 2
    python benchmarks/reliability_figures.py --home /tmp/nb06 --checkpoint runs/04_resnet_unet_aspp/best.pt --shift

``--home`` receives the runs and generated data (set ``SKINSEG_HOME`` to the same folder to keep caches there too).
``--data`` omitted: the embedded synthetic set (``SKINSEG_SMOKE=0`` for the full-size one). ``--json OUT`` also
writes everything printed as one JSON object (:data:`RESULT_KEYS`, plus ``subgroups`` and ``shift``).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import _common
import numpy as np
import pandas as pd
from PIL import Image
from torch import nn

from helpers import data, models
from helpers.cli.common import fail
from helpers.course import profiles
from helpers.data import files, layouts, synthetic, transforms
from helpers.evaluation import metrics, predict, reliability, subgroups
from helpers.models.checkpoint import trained_img_size
from helpers.train.fit import train_or_load
from helpers.train.loop import TrainConfig

#: The run profile of notebook 04's recipe (:func:`helpers.course.profiles.course_recipe`) whose ResNet-U-Net-ASPP is
#: trained when no ``--checkpoint`` is given: the smoke one (resnet18, small decoder).
RECIPE_PROFILE = "smoke"
#: Images per forward pass.
BATCH = 16
#: Keys of the printed JSON line (notebook 06's figures); the ``--json`` file has them too.
RESULT_KEYS: tuple[str, ...] = ("n_test", "dice", "threshold_jaccard", "hd95_median", "spearman_dice_hd95", "T",
                                "ece_before", "ece_after", "best_val_threshold_raw", "best_val_threshold_cal",
                                "spearman_uncertainty_dice")
#: Subgroup attributes, in the table's order (the artefact columns exist on synthetic data only).
SUBGROUP_ATTRIBUTES = ("skin_tone", "hair", "ruler", "gel bubbles", "vignette", "size", "border_contact")
#: ``--shift``: the source clinic, the target clinics, the sets drawn for them and the training run.
SHIFT_SOURCE = synthetic.Domain("source", skin_tones=(0.0, 0.45))
SHIFT_TARGETS = {"warm dermoscope": synthetic.Domain("warm", skin_tones=(0.0, 0.45), colour_cast=(1.0, 0.84, 0.62)),
                 "darker skin": synthetic.Domain("darker", skin_tones=(0.6, 1.0))}
SHIFT_SOURCE_N = 120
SHIFT_TARGET_N = 60
SHIFT_IMAGE_SIZE = 192
SHIFT_EPOCHS = 3
SHIFT_BATCH_SIZE = 8


def build_parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python benchmarks/reliability_figures.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dataset folder; default: the embedded synthetic set")
    p.add_argument("--home", required=True, help="folder for the runs and the generated data")
    p.add_argument("--checkpoint", default=None, help="a trained model's .pt instead of training one here")
    p.add_argument("--train-epochs", type=int, default=2)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--shift", action="store_true", help="also run the synthetic domain-shift experiment")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of every interval")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the result as JSON here")
    return p


def small_recipe(**overrides: Any) -> TrainConfig:
    """Notebook 04's ResNet-U-Net-ASPP recipe in :data:`RECIPE_PROFILE` with ``overrides`` (size, epochs, folder)."""
    return profiles.course_recipe("resnet_unet_aspp", RECIPE_PROFILE, **overrides)


def load(pairs: Sequence[layouts.Pair]) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """``(ids, images, masks)`` of ``pairs``, read with helpers.data.files."""
    return [p.id for p in pairs], [files.read_image(p.image) for p in pairs], [files.read_mask(p.mask) for p in pairs]


def predict_all(net: nn.Module, images: Sequence[np.ndarray], img_size: int) -> list[np.ndarray]:
    """Lesion probabilities of every image at its own size, :data:`BATCH` images at a time."""
    return [q for i in range(0, len(images), BATCH) for q in predict.predict_batch(net, images[i:i + BATCH], img_size)]


def load_checkpoint_model(path: str | Path) -> tuple[nn.Module, int]:
    """``(model, its training input size)`` of ``--checkpoint``.

    Raises:
        CheckpointError: missing, damaged, unsafe or foreign file, or one that records no training size.
    """
    ckpt = models.load_checkpoint(path)
    return models.load_model(ckpt), trained_img_size(ckpt, path)


def prepare_model(args: argparse.Namespace, splits: Mapping[str, Sequence[layouts.Pair]]) -> tuple[nn.Module, int]:
    """``(model, its input size)``: ``--checkpoint`` loaded, or :func:`small_recipe` trained (or reloaded) in --home."""
    if args.checkpoint:
        return load_checkpoint_model(args.checkpoint)
    cfg = small_recipe(img_size=args.img_size, epochs=args.train_epochs, batch_size=BATCH,
                       out=str(Path(args.home) / "runs" / "analysis_resnet"))
    run = train_or_load(cfg, splits=splits, progress=False)
    print("trained", run.history.round(4).to_dict("records"), flush=True)
    return models.load_model(run.best_path), args.img_size


def analyse(net: nn.Module, img: int, splits: Mapping[str, Sequence[layouts.Pair]], n_boot: int
            ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Notebook 06's figures on the test split (calibration and thresholds fitted on val) and the subgroup table."""
    ids, images, truths = load(splits["test"])
    views = reliability.flip_views(net, images, img, batch_size=BATCH)
    probs = [v[0] for v in views]
    per = pd.DataFrame([metrics.image_scores(q > metrics.DEFAULT_THRESHOLD, t) for q, t in zip(probs, truths)],
                       index=ids)
    out: dict[str, Any] = {"n_test": len(ids)}
    for m in ("dice", "threshold_jaccard"):
        ci = reliability.bootstrap_ci(per[m], n_boot=n_boot, seed=0)
        out[m] = [round(ci.estimate, 4), round(ci.low, 4), round(ci.high, 4), round(ci.width, 4)]
    per["hd95"] = [metrics.hausdorff95(q > metrics.DEFAULT_THRESHOLD, t) for q, t in zip(probs, truths)]
    out["hd95_median"] = round(float(per.hd95.median()), 1)
    out["spearman_dice_hd95"] = round(reliability.spearman(per.dice, per.hd95)[0], 3)
    _, vimages, vtruths = load(splits["val"])
    vprobs = predict_all(net, vimages, img)
    temperature = reliability.fit_temperature([reliability.probability_logits(q) for q in vprobs], vtruths)
    cal = [reliability.apply_temperature(q, temperature) for q in probs]
    out["T"] = round(temperature, 3)
    out["ece_before"] = round(reliability.expected_calibration_error(probs, truths), 4)
    out["ece_after"] = round(reliability.expected_calibration_error(cal, truths), 4)
    grid = np.array(metrics.THRESHOLD_GRID)
    vcal = [reliability.apply_temperature(q, temperature) for q in vprobs]

    def mean_dice(ps: Sequence[np.ndarray], t: float) -> float:
        return float(np.mean([metrics.image_scores(q > t, m)["dice"] for q, m in zip(ps, vtruths)]))

    raw_curve = [mean_dice(vprobs, t) for t in grid]
    cal_curve = [mean_dice(vcal, t) for t in grid]
    out["best_val_threshold_raw"] = [float(grid[int(np.argmax(raw_curve))]), round(max(raw_curve), 4)]
    out["best_val_threshold_cal"] = [float(grid[int(np.argmax(cal_curve))]), round(max(cal_curve), 4)]
    unc = [reliability.tta_uncertainty(v).mean() for v in views]
    out["spearman_uncertainty_dice"] = [round(x, 3) for x in reliability.spearman(unc, per.dice)]
    per = per.join(subgroups.mask_attributes(images, truths, ids=ids))
    files = {p.image.parent.parent / synthetic.ATTRIBUTES_FILE for p in splits["test"]}
    tables = [pd.read_csv(f, index_col="id") for f in files if f.is_file()]
    if tables:
        d = pd.concat(tables).loc[ids]
        per = per.join(pd.DataFrame({"hair": d.hairs > 0, "ruler": d.ruler, "gel bubbles": d.bubbles > 0,
                                     "vignette": d.vignette}))
    attributes = [c for c in SUBGROUP_ATTRIBUTES if c in per]
    groups = pd.concat({c: subgroups.subgroup_table(per, c, "dice", n_boot=n_boot, seed=0) for c in attributes})
    return out, groups


def shades_of_grey_copy(root: Path) -> Path:
    """``<root>-shades-of-grey``: the same pairs with Shades-of-Grey colour constancy applied to every image."""
    out_dir = root.with_name(root.name + "-shades-of-grey")
    with files.atomic_write(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        for pair in [q for s in data.course_splits(root, seed=0).values() for q in s]:
            Image.fromarray(transforms.shades_of_grey(files.read_image(pair.image))).save(
                tmp / "images" / pair.image.name, quality=95)
            (tmp / "masks" / pair.mask.name).write_bytes(pair.mask.read_bytes())
    return out_dir


def shift_experiment(home: Path, img_size: int, n_boot: int
                     ) -> tuple[pd.DataFrame, dict[str, reliability.PairedComparison]]:
    """Source-only training, as is and with Shades-of-Grey, scored on the source test split and each target.

    Returns:
        ``(table of Dice intervals indexed by (training, domain), {target: Shades-of-Grey minus as-is})``.
    """
    base = home / "data"
    roots = {"source": synthetic.ensure_synthetic(SHIFT_SOURCE_N, SHIFT_IMAGE_SIZE, seed=1, root=base,
                                                  domain=SHIFT_SOURCE)}
    roots |= {n: synthetic.ensure_synthetic(SHIFT_TARGET_N, SHIFT_IMAGE_SIZE, seed=2, root=base, domain=d)
              for n, d in SHIFT_TARGETS.items()}
    sroots = {n: shades_of_grey_copy(r) for n, r in roots.items()}
    res = {}
    for name, rr in (("as is", roots), ("Shades-of-Grey", sroots)):
        cfg = small_recipe(img_size=img_size, epochs=SHIFT_EPOCHS, batch_size=SHIFT_BATCH_SIZE,
                           out=str(home / "runs" / f"shift_{name.replace(' ', '_')}"))
        run = train_or_load(cfg, splits=data.course_splits(rr["source"], seed=0), progress=False)
        snet = models.load_model(run.best_path)
        for dom, root in rr.items():
            parts = data.course_splits(root, seed=0)
            pairs = parts["test"] if dom == "source" else [q for s in parts.values() for q in s]
            _, ims, trs = load(pairs)
            res[(name, dom)] = pd.Series([metrics.image_scores(q > metrics.DEFAULT_THRESHOLD, t)["dice"]
                                          for q, t in zip(predict_all(snet, ims, img_size), trs)])
    table = pd.DataFrame({k: vars(reliability.bootstrap_ci(v, n_boot=n_boot, seed=0)) for k, v in res.items()}).T
    paired = {dom: reliability.paired_bootstrap(res[("Shades-of-Grey", dom)], res[("as is", dom)], n_boot=n_boot,
                                                seed=0) for dom in SHIFT_TARGETS}
    return table, paired


def main(argv: list[str] | None = None) -> int:
    """Print the figures (and ``--shift``'s), write ``--json``. Returns the exit status: 2 with one ``error:``
    line for a bad ``--checkpoint`` (missing, damaged, unsafe, foreign) or data folder."""
    args = build_parser().parse_args(argv)
    try:
        return run_figures(args)
    except (models.CheckpointError, files.DatasetError, FileNotFoundError) as err:
        return fail(err)


def run_figures(args: argparse.Namespace) -> int:
    """What :func:`main` does once the arguments are parsed; the checkpoint is checked before any data is made."""
    t0 = time.perf_counter()
    loaded = load_checkpoint_model(args.checkpoint) if args.checkpoint else None
    splits = data.course_splits(args.data, seed=0)
    print({k: len(v) for k, v in splits.items()}, flush=True)
    net, img = loaded or prepare_model(args, splits)
    print(f"model ready {time.perf_counter() - t0:.0f} s, img {img}", flush=True)
    out, groups = analyse(net, img, splits, args.n_boot)
    print(json.dumps(out), flush=True)
    print(groups.round(3).to_string(), flush=True)
    print(f"analysis done {time.perf_counter() - t0:.0f} s", flush=True)
    result: dict[str, Any] = {**out, "splits": {k: len(v) for k, v in splits.items()}, "img_size": img,
                              "subgroups": [{"attribute": a, "group": g, **row}
                                            for (a, g), row in groups.to_dict("index").items()], "shift": None}
    if args.shift:
        table, paired = shift_experiment(Path(args.home), args.img_size, args.n_boot)
        print(table.drop(columns="level").astype(float).round(3).to_string())
        for dom, comparison in paired.items():
            print(dom, comparison)
        print(f"shift done {time.perf_counter() - t0:.0f} s", flush=True)
        rows = [{"training": t, "domain": d, **row} for (t, d), row in table.to_dict("index").items()]
        result["shift"] = {"dice": rows, "shades_of_grey_minus_as_is": {
            d: {**vars(c.difference), "p_not_better": c.p_not_better} for d, c in paired.items()}}
    if args.json is not None:
        _common.write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
