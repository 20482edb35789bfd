"""Predict lesion masks with a trained checkpoint: probabilities, flip TTA, post-processing, ISIC mask files.

In memory, :func:`predict_probabilities` maps one ``(H, W, 3) uint8`` image to an ``(H, W) float32`` map of
lesion probabilities at the image's own size: the image is resized to the model's square input with the
evaluation pipeline (:func:`helpers.transforms.eval_transforms`), and the probabilities are resized back
with bilinear interpolation, so thresholding happens at full resolution.

On disk, :func:`predict_folder` writes one ISIC-format mask per image, ``<id>_segmentation.png`` (single
channel, 0/255, the image's original size), ready for ``python -m helpers.evaluate`` or the official
``isic-challenge-scoring segmentation``. Command line::

    python -m helpers.predict --checkpoint runs/resnet_unet_aspp/best.pt --images data/test --out preds \\
        [--tta] [--postprocess] [--threshold 0.5] [--overlays]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import nn

from . import data, models, plots, transforms
from .runtime import select_device

#: Image file extensions :func:`list_images` picks up (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: File-name suffix of ISIC masks.
MASK_SUFFIX = "_segmentation.png"
#: Sub-folder of the output folder that holds the overlays (kept apart so the mask folder stays scorable).
OVERLAY_DIR = "overlays"


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _flips(tta: bool) -> list[tuple[int, ...]]:
    """Tensor dims to flip for each TTA view: identity, horizontal, vertical, both (identity only without TTA)."""
    return [(), (3,), (2,), (2, 3)] if tta else [()]


@torch.no_grad()
def predict_batch(model: nn.Module, images: Sequence[np.ndarray], img_size: int, *, tta: bool = False,
                  device: torch.device | str | None = None) -> list[np.ndarray]:
    """Lesion probabilities for several images of any sizes in one forward pass.

    Args:
        model: a segmentation model returning ``(N, 1, S, S)`` logits (put in eval mode here).
        images: ``(H_i, W_i, 3) uint8`` RGB images.
        img_size: the square input size ``S`` the model was trained at.
        tta: average the probabilities of the image and its horizontal, vertical and double flips
            (each prediction flipped back first).
        device: where to run; None = the model's device.

    Returns:
        One ``(H_i, W_i) float32`` array in [0, 1] per image.

    Raises:
        ValueError: an image is not ``(H, W, 3)``.
    """
    if not images:
        return []
    device = torch.device(device) if device is not None else _model_device(model)
    model.eval().to(device)
    pipeline = transforms.eval_transforms(img_size)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i} has shape {image.shape}: expected (H, W, 3) RGB "
                             "(read files with helpers.data.read_image)")
    batch = torch.stack([pipeline(image=image)["image"] for image in images]).to(device)
    probs = torch.zeros(batch.shape[0], 1, img_size, img_size, device=device)
    views = _flips(tta)
    for dims in views:
        view = batch.flip(dims) if dims else batch
        out = torch.sigmoid(model(view).float())
        probs += out.flip(dims) if dims else out
    probs /= len(views)
    results = []
    for prob, image in zip(probs, images):
        full = F.interpolate(prob[None], size=image.shape[:2], mode="bilinear", align_corners=False)
        results.append(full[0, 0].clamp_(0.0, 1.0).cpu().numpy().astype(np.float32))
    return results


def predict_probabilities(model: nn.Module, image: np.ndarray, img_size: int, *, tta: bool = False,
                          device: torch.device | str | None = None) -> np.ndarray:
    """Lesion probabilities for one image, at the image's own size.

    Args:
        model: a segmentation model returning logits (see :func:`helpers.models.load_model`).
        image: ``(H, W, 3) uint8`` RGB.
        img_size: the model's square input size.
        tta: flip test-time augmentation (identity, horizontal, vertical, both; probabilities averaged).
        device: where to run; None = the model's device.

    Returns:
        ``(H, W) float32`` in [0, 1]; threshold at 0.5 for a mask.
    """
    return predict_batch(model, [image], img_size, tta=tta, device=device)[0]


def postprocess(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected lesion region (8-connectivity) and fill the holes inside it.

    A dermoscopy image shows one lesion: small islands are false positives and holes are false negatives.

    Args:
        mask: ``(H, W)`` bool or {0, 1} array.

    Returns:
        ``(H, W) uint8`` {0, 1}; an empty mask stays empty.

    Raises:
        ValueError: ``mask`` is not two-dimensional.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"postprocess expects an (H, W) mask, got shape {mask.shape}")
    labels, n = ndimage.label(mask > 0, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros(mask.shape, dtype=np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(largest).astype(np.uint8)


def list_images(folder: str | Path) -> list[Path]:
    """The images to predict: ``folder/images/*`` for an ISIC-layout folder, else ``folder/*``.

    Files ending in ``_segmentation.png`` (masks) and names starting with ``.`` are skipped; sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no .jpg/.jpeg/.png images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist: pass a folder of .jpg/.png images "
                                "or an ISIC-layout folder with an images/ sub-folder")
    source = folder / "images" if (folder / "images").is_dir() else folder
    paths = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not p.name.endswith(MASK_SUFFIX) and not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"no .jpg/.jpeg/.png images in {source}")
    return paths


def _checkpoint_img_size(checkpoint: dict[str, Any], path: Path) -> int:
    """The training image size stored in a checkpoint's config.

    Raises:
        CheckpointError: the checkpoint holds no ``config.img_size``.
    """
    size = (checkpoint.get("config") or {}).get("img_size")
    if not isinstance(size, int) or size < 1:
        raise models.CheckpointError(f"{path} does not record the training image size (no config.img_size): "
                                     "pass img_size=... (--img-size) explicitly")
    return size


def write_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Save a mask in the ISIC format: single-channel ('L') PNG with values 0 and 255.

    Args:
        path: the file to write, normally ``<id>_segmentation.png`` (folders are created).
        mask: ``(H, W)`` bool or {0, 1} array (any value > 0 counts as lesion).

    Raises:
        ValueError: ``mask`` is not two-dimensional.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"write_mask expects an (H, W) mask, got shape {mask.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(path)  # 2-D uint8 -> mode "L"
    return path


def _write_outputs(image: np.ndarray, prob: np.ndarray, image_id: str, out_dir: Path, *, threshold: float,
                   clean: bool, overlays: bool) -> Path:
    """Threshold ``prob``, optionally post-process, write the 0/255 mask PNG (and overlay JPEG)."""
    mask = (prob > threshold).astype(np.uint8)
    if clean:
        mask = postprocess(mask)
    path = write_mask(out_dir / f"{image_id}{MASK_SUFFIX}", mask)
    if overlays:
        blended = (plots.overlay(image, mask) * 255).round().astype(np.uint8)
        Image.fromarray(blended).save(out_dir / OVERLAY_DIR / f"{image_id}_overlay.jpg", quality=90)
    return path


def _image_paths(images: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files to predict: :func:`list_images` of a folder, or the given files (sorted).

    Raises:
        FileNotFoundError: an empty list, or a listed file that does not exist.
        ValueError: two files with the same name stem (their masks would overwrite each other).
    """
    if isinstance(images, (str, Path)):
        return list_images(images)
    paths = sorted(Path(p) for p in images)
    if not paths:
        raise FileNotFoundError("no images to predict: the list of image files is empty")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image files do not exist, e.g. {missing[0]}")
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"several images share the id {dupes[0]!r} (file name without extension): their masks "
                         "would overwrite each other; predict them into separate folders")
    return paths


def predict_folder(checkpoint: str | Path, images_dir: str | Path | Sequence[str | Path], out_dir: str | Path, *,
                   img_size: int | None = None, tta: bool = False, postprocess: bool = False,
                   threshold: float = 0.5, overlays: bool = False, batch_size: int = 8,
                   device: torch.device | str | None = None) -> list[Path]:
    """Predict every image of a folder and write ISIC-format masks.

    Args:
        checkpoint: a ``best.pt`` / ``last.pt`` written by training.
        images_dir: an ISIC-layout folder (``images/`` sub-folder), a flat folder of images, or a list of
            image files (e.g. ``[pair.image for pair in course_splits()["test"]]``).
        out_dir: where ``<id>_segmentation.png`` masks go (created); overlays go to ``out_dir/overlays/``.
        img_size: model input size; None = the training size recorded in the checkpoint.
        tta: flip test-time augmentation.
        postprocess: keep the largest component and fill holes (:func:`postprocess`).
        threshold: probability above which a pixel is lesion.
        overlays: also write ``overlays/<id>_overlay.jpg`` (the mask blended onto the image).
        batch_size: images per forward pass.
        device: where to run; None = the best available (CUDA, MPS, CPU).

    Returns:
        The mask paths, one per image, sorted by image name. Each mask is single-channel ('L'), values
        {0, 255}, at the image's original size.

    Raises:
        CheckpointError: the checkpoint is missing, corrupt or records no image size (and none is given).
        FileNotFoundError: no images in ``images_dir`` (or a listed file is missing).
        ValueError: ``threshold`` outside (0, 1), ``batch_size`` < 1, or two listed images with the same id.
    """
    if not 0.0 < threshold < 1.0 or batch_size < 1:
        raise ValueError(f"need 0 < threshold < 1 and batch_size >= 1, got {threshold} and {batch_size}")
    clean = postprocess
    ckpt_path = Path(checkpoint)
    ckpt = models.load_checkpoint(ckpt_path)
    size = img_size if img_size is not None else _checkpoint_img_size(ckpt, ckpt_path)
    model = models.load_model(ckpt, map_location="cpu").to(device or select_device())
    paths = _image_paths(images_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if overlays:
        (out / OVERLAY_DIR).mkdir(exist_ok=True)
    written: list[Path] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images = [data.read_image(p) for p in chunk]
        for path, image, prob in zip(chunk, images, predict_batch(model, images, size, tta=tta)):
            written.append(_write_outputs(image, prob, path.stem, out, threshold=threshold, clean=clean,
                                          overlays=overlays))
    return written


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m helpers.predict``."""
    p = argparse.ArgumentParser(prog="python -m helpers.predict", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt of a training run")
    p.add_argument("--images", type=Path, required=True, help="folder of images, or an ISIC folder with images/")
    p.add_argument("--out", type=Path, required=True, help="folder for <id>_segmentation.png masks")
    p.add_argument("--img-size", type=int, default=None, help="default: the size the checkpoint was trained at")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (4 views)")
    p.add_argument("--postprocess", action="store_true", help="largest component only, holes filled")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold")
    p.add_argument("--overlays", action="store_true", help="also write overlays/<id>_overlay.jpg")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=["cuda", "mps", "cpu"], default=None, help="default: best available")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 1 with a message on stderr for a bad checkpoint or folder."""
    args = build_parser().parse_args(argv)
    try:
        written = predict_folder(args.checkpoint, args.images, args.out, img_size=args.img_size, tta=args.tta,
                                 postprocess=args.postprocess, threshold=args.threshold, overlays=args.overlays,
                                 batch_size=args.batch_size, device=args.device)
    except (models.CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} masks to {args.out}" + (f" (overlays in {args.out / OVERLAY_DIR})"
                                                         if args.overlays else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
