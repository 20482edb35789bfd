"""``python -m helpers.predict``: masks for a folder of images from a checkpoint (notebook 05).

A thin layer over :func:`helpers.evaluation.predict.predict_folder`::

    python -m helpers.predict --checkpoint runs/resnet_unet_aspp/best.pt --images data/test --out preds \\
        [--tta] [--postprocess] [--threshold 0.5] [--overlays] [--overwrite]
    python -m helpers.predict --checkpoint runs/resnet_unet_aspp/best.pt --export-onnx model.onnx
    python -m helpers.predict --onnx model.onnx --images data/test --out preds      # ONNX Runtime (notebook 07)

Every failure is one ``error:`` line on stderr with exit status 2 (a full or read-only disk names the file it
could not write); Ctrl-C says how many masks were written, exit status 130; rerunning completes the folder.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from helpers import models, runfolder
from helpers.cli.common import OutputPathError, check_output_path, fail, interrupted
from helpers.data.files import DatasetError
from helpers.evaluation import export
from helpers.evaluation.metrics import DEFAULT_THRESHOLD
from helpers.evaluation.predict import (
    MANIFEST,
    OVERLAY_DIR,
    ImageSizeWarning,
    PredictionInterrupted,
    predict_folder,
)
from helpers.models.factory import MAX_IMG_SIZE
from helpers.runtime import DEVICE_CHOICES



def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m helpers.predict``."""
    p = argparse.ArgumentParser(prog="python -m helpers.predict", description="Predict lesion masks for a folder of images with a trained checkpoint.")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help=f"{runfolder.BEST_FILE} or {runfolder.LAST_FILE} of a training run")
    model.add_argument("--onnx", type=Path, help="a model exported with --export-onnx, run by ONNX Runtime (pip install -e '.[demo]')")
    p.add_argument("--export-onnx", type=Path, default=None, metavar="MODEL.onnx",
                   help="write --checkpoint's model as ONNX (dynamic batch and size); without --images, only that")
    p.add_argument("--images", type=Path, default=None,
                   help="folder of images, an ISIC folder with images/, or one image file")
    p.add_argument("--out", type=Path, default=None, help="folder for <id>_segmentation.png masks")
    p.add_argument("--img-size", type=int, default=None,
                   help=f"default: the size the checkpoint was trained at (at most {MAX_IMG_SIZE}; another size warns)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (4 views)")
    p.add_argument("--postprocess", action="store_true", help="largest component only, holes filled")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="probability threshold")
    p.add_argument("--overlays", action="store_true", help="also write overlays/<id>_overlay.jpg")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=DEVICE_CHOICES, default=None, help="default: best available")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace masks in --out that helpers.evaluation.predict did not write (no {MANIFEST} lists them)")
    return p


def _one_line(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """``warnings.showwarning`` for the CLI: ``warning: <message>`` as one line on stderr (no source line)."""
    print(f"warning: {message}", file=sys.stderr)


def _interrupted(stop: KeyboardInterrupt, out: Path) -> int:
    """Say what Ctrl-C left in ``out`` (one line on stderr, :func:`~helpers.cli.common.interrupted`)."""
    if isinstance(stop, PredictionInterrupted):
        done = f"{stop.written} of {stop.total} masks were written to {out}, each complete"
    else:
        done = f"no mask was written to {out}"
    return interrupted(f"interrupted (Ctrl-C): {done}. Run the same command again to complete it: it replaces "
                       "the masks it wrote itself, so no --overwrite is needed")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 2 for a bad checkpoint, folder, setting or a failed write (one
    ``error:`` line on stderr), 130 after Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.export_onnx is not None and args.checkpoint is None:
        parser.error("--export-onnx needs --checkpoint (the model to export)")
    if (args.export_onnx is None or args.images or args.out) and (args.images is None or args.out is None):
        parser.error("the following arguments are required: --images, --out")
    if args.export_onnx is not None:
        try:
            written_onnx = export.export_checkpoint(args.checkpoint, args.export_onnx)
        except (models.CheckpointError, ImportError, OSError) as err:
            return fail(err)
        print(f"wrote {written_onnx} (ONNX; predict with --onnx {written_onnx})")
        if args.images is None:
            return 0
    try:
        check_output_path(args.out, "--out", folder=True)
        with warnings.catch_warnings():
            warnings.simplefilter("always", ImageSizeWarning)
            warnings.showwarning = _one_line
            written = predict_folder(args.onnx or args.checkpoint, args.images, args.out, img_size=args.img_size, tta=args.tta,
                                     postprocess=args.postprocess, threshold=args.threshold, overlays=args.overlays,
                                     batch_size=args.batch_size, device=args.device, overwrite=args.overwrite)
    except KeyboardInterrupt as stop:
        return _interrupted(stop, args.out)
    except (OutputPathError, models.CheckpointError, DatasetError, FileNotFoundError, ValueError, ImportError) as err:
        return fail(err)
    plural = "" if len(written) == 1 else "s"
    print(f"wrote {len(written)} mask{plural} to {args.out}" + (f" (overlays in {args.out / OVERLAY_DIR})"
                                                                if args.overlays else ""))
    return 0
