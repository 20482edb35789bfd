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
``--data`` omitted: the embedded synthetic set (``SKINSEG_SMOKE=0`` for the full-size one).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from helpers import data, io, metrics, models, predict, reliability, subgroups, synthetic, transforms
from helpers.fit import train_or_load
from helpers.training import TrainConfig

p = argparse.ArgumentParser()
p.add_argument("--data", default=None)
p.add_argument("--home", required=True)
p.add_argument("--checkpoint", default=None)
p.add_argument("--train-epochs", type=int, default=2)
p.add_argument("--img-size", type=int, default=64)
p.add_argument("--shift", action="store_true")
p.add_argument("--n-boot", type=int, default=2000)
a = p.parse_args()
SMALL = dict(encoder_name="resnet18", aspp_channels=64, decoder_channels=[64, 32, 16, 16, 8])
t0 = time.perf_counter()
splits = data.course_splits(a.data, seed=0)
print({k: len(v) for k, v in splits.items()}, flush=True)
if a.checkpoint:
    ckpt = models.load_checkpoint(a.checkpoint)
    img = ckpt["config"]["img_size"]
    net = models.load_model(ckpt)
else:
    img = a.img_size
    cfg = TrainConfig(model="resnet_unet_aspp", model_kwargs=SMALL, img_size=img, epochs=a.train_epochs, batch_size=16,
                      seed=0, out=str(Path(a.home) / "runs" / "analysis_resnet"))
    run = train_or_load(cfg, splits=splits, progress=False)
    print("trained", run.history.round(4).to_dict("records"), flush=True)
    net = models.load_model(run.best_path)
print(f"model ready {time.perf_counter() - t0:.0f} s, img {img}", flush=True)


def load(pairs):
    return [p.id for p in pairs], [io.read_image(p.image) for p in pairs], [io.read_mask(p.mask) for p in pairs]


def predict_all(net, images):
    return [q for i in range(0, len(images), 16) for q in predict.predict_batch(net, images[i:i + 16], img)]


ids, images, truths = load(splits["test"])
views = reliability.flip_views(net, images, img, batch_size=16)
probs = [v[0] for v in views]
per = pd.DataFrame([metrics.image_scores(q > metrics.DEFAULT_THRESHOLD, t) for q, t in zip(probs, truths)], index=ids)
out = {"n_test": len(ids)}
for m in ("dice", "threshold_jaccard"):
    ci = reliability.bootstrap_ci(per[m], n_boot=a.n_boot, seed=0)
    out[m] = [round(ci.estimate, 4), round(ci.low, 4), round(ci.high, 4), round(ci.width, 4)]
per["hd95"] = [metrics.hausdorff95(q > metrics.DEFAULT_THRESHOLD, t) for q, t in zip(probs, truths)]
out["hd95_median"] = round(float(per.hd95.median()), 1)
out["spearman_dice_hd95"] = round(reliability.spearman(per.dice, per.hd95)[0], 3)
vids, vimages, vtruths = load(splits["val"])
vprobs = predict_all(net, vimages)
T = reliability.fit_temperature([reliability.probability_logits(q) for q in vprobs], vtruths)
cal = [reliability.apply_temperature(q, T) for q in probs]
out["T"] = round(T, 3)
out["ece_before"] = round(reliability.expected_calibration_error(probs, truths), 4)
out["ece_after"] = round(reliability.expected_calibration_error(cal, truths), 4)
grid = np.array(metrics.THRESHOLD_GRID)
vcal = [reliability.apply_temperature(q, T) for q in vprobs]
md = lambda ps, t: float(np.mean([metrics.image_scores(q > t, m)["dice"] for q, m in zip(ps, vtruths)]))
raw_curve = [md(vprobs, t) for t in grid]; cal_curve = [md(vcal, t) for t in grid]
out["best_val_threshold_raw"] = [float(grid[int(np.argmax(raw_curve))]), round(max(raw_curve), 4)]
out["best_val_threshold_cal"] = [float(grid[int(np.argmax(cal_curve))]), round(max(cal_curve), 4)]
unc = [reliability.tta_uncertainty(v).mean() for v in views]
out["spearman_uncertainty_dice"] = [round(x, 3) for x in reliability.spearman(unc, per.dice)]
attrs = subgroups.mask_attributes(images, truths, ids=ids)
per = per.join(attrs)
files = {p.image.parent.parent / synthetic.ATTRIBUTES_FILE for p in splits["test"]}
tables = [pd.read_csv(f, index_col="id") for f in files if f.is_file()]
if tables:
    d = pd.concat(tables).loc[ids]
    per = per.join(pd.DataFrame({"hair": d.hairs > 0, "ruler": d.ruler, "gel bubbles": d.bubbles > 0, "vignette": d.vignette}))
attributes = [c for c in ("skin_tone", "hair", "ruler", "gel bubbles", "vignette", "size", "border_contact") if c in per]
groups = pd.concat({c: subgroups.subgroup_table(per, c, "dice", n_boot=a.n_boot, seed=0) for c in attributes})
print(json.dumps(out), flush=True)
print(groups.round(3).to_string(), flush=True)
print(f"analysis done {time.perf_counter() - t0:.0f} s", flush=True)
if a.shift:
    SOURCE = synthetic.Domain("source", skin_tones=(0.0, 0.45))
    TARGETS = {"warm dermoscope": synthetic.Domain("warm", skin_tones=(0.0, 0.45), colour_cast=(1.0, 0.84, 0.62)),
               "darker skin": synthetic.Domain("darker", skin_tones=(0.6, 1.0))}
    base = Path(a.home) / "data"
    roots = {"source": synthetic.ensure_synthetic(120, 192, seed=1, root=base, domain=SOURCE)}
    roots |= {n: synthetic.ensure_synthetic(60, 192, seed=2, root=base, domain=d) for n, d in TARGETS.items()}

    def sog(root):
        out_dir = root.with_name(root.name + "-shades-of-grey")
        with io.atomic_write(out_dir) as tmp:
            (tmp / "images").mkdir(parents=True); (tmp / "masks").mkdir()
            for pair in [q for s in data.course_splits(root, seed=0).values() for q in s]:
                Image.fromarray(transforms.shades_of_grey(io.read_image(pair.image))).save(tmp / "images" / pair.image.name, quality=95)
                (tmp / "masks" / pair.mask.name).write_bytes(pair.mask.read_bytes())
        return out_dir
    sroots = {n: sog(r) for n, r in roots.items()}
    res = {}
    for name, rr in (("as is", roots), ("Shades-of-Grey", sroots)):
        cfg = TrainConfig(model="resnet_unet_aspp", model_kwargs=SMALL, img_size=a.img_size, epochs=3, batch_size=8, seed=0,
                          out=str(Path(a.home) / "runs" / f"shift_{name.replace(' ', '_')}"))
        run = train_or_load(cfg, splits=data.course_splits(rr["source"], seed=0), progress=False)
        snet = models.load_model(run.best_path)
        for dom, root in rr.items():
            parts = data.course_splits(root, seed=0)
            pairs = parts["test"] if dom == "source" else [q for s in parts.values() for q in s]
            _, ims, trs = load(pairs)
            pr = [q for i in range(0, len(ims), 16) for q in predict.predict_batch(snet, ims[i:i + 16], a.img_size)]
            res[(name, dom)] = pd.Series([metrics.image_scores(q > metrics.DEFAULT_THRESHOLD, t)["dice"]
                                          for q, t in zip(pr, trs)])
    table = pd.DataFrame({k: vars(reliability.bootstrap_ci(v, n_boot=a.n_boot, seed=0)) for k, v in res.items()}).T
    print(table.drop(columns="level").astype(float).round(3).to_string())
    for dom in TARGETS:
        print(dom, reliability.paired_bootstrap(res[("Shades-of-Grey", dom)], res[("as is", dom)], n_boot=a.n_boot, seed=0))
    print(f"shift done {time.perf_counter() - t0:.0f} s", flush=True)
