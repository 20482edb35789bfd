"""``python -m helpers.predict``: masks for a folder of images from a checkpoint (notebook 05).

A thin layer over :func:`helpers.evaluation.predict.predict_folder`::

    python -m helpers.predict --checkpoint runs/resnet_unet_aspp/best.pt --images data/test --out preds \\
        [--tta] [--postprocess] [--threshold 0.5] [--overlays] [--overwrite]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers import models, runfolder
from helpers.cli.common import OutputPathError, check_output_path, fail
from helpers.data.files import DatasetError
from helpers.evaluation.metrics import DEFAULT_THRESHOLD
from helpers.evaluation.predict import MANIFEST, OVERLAY_DIR, predict_folder
from helpers.runtime import DEVICE_CHOICES


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m helpers.predict``."""
    p = argparse.ArgumentParser(prog="python -m helpers.predict", description="Predict lesion masks for a folder of images with a trained checkpoint.")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help=f"{runfolder.BEST_FILE} or {runfolder.LAST_FILE} of a training run")
    p.add_argument("--images", type=Path, required=True,
                   help="folder of images, an ISIC folder with images/, or one image file")
    p.add_argument("--out", type=Path, required=True, help="folder for <id>_segmentation.png masks")
    p.add_argument("--img-size", type=int, default=None, help="default: the size the checkpoint was trained at")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (4 views)")
    p.add_argument("--postprocess", action="store_true", help="largest component only, holes filled")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="probability threshold")
    p.add_argument("--overlays", action="store_true", help="also write overlays/<id>_overlay.jpg")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=DEVICE_CHOICES, default=None, help="default: best available")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace masks in --out that helpers.evaluation.predict did not write (no {MANIFEST} lists them)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 1 for a bad checkpoint, folder or setting, 2 for an unwritable --out."""
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.out, "--out", folder=True)
        written = predict_folder(args.checkpoint, args.images, args.out, img_size=args.img_size, tta=args.tta,
                                 postprocess=args.postprocess, threshold=args.threshold, overlays=args.overlays,
                                 batch_size=args.batch_size, device=args.device, overwrite=args.overwrite)
    except OutputPathError as err:
        return fail(err)
    except (models.CheckpointError, DatasetError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    plural = "" if len(written) == 1 else "s"
    print(f"wrote {len(written)} mask{plural} to {args.out}" + (f" (overlays in {args.out / OVERLAY_DIR})"
                                                                if args.overlays else ""))
    return 0


