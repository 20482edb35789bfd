"""Predict lesion masks with a trained checkpoint: probabilities, flip TTA, post-processing, ISIC mask files.

Introduced in notebook 05 (evaluation). In memory, :func:`predict_batch` is THE batched prediction function:
it maps ``(H, W, 3) uint8`` images to ``(H, W) float32`` maps of lesion probabilities, each at its image's own
size: the images are resized to the model's square input with the evaluation pipeline
(:func:`helpers.data.transforms.eval_transforms`), and the probabilities are resized back with bilinear
interpolation, so thresholding happens at full resolution. :func:`predict_probabilities` is its one-image form.

On disk, :func:`predict_folder` writes one ISIC-format mask per image, ``<id>_segmentation.png`` (single
channel, 0/255, the image's original size, each written atomically), ready for ``python -m helpers.evaluate``
or the official ``isic-challenge-scoring segmentation``. It keeps a small manifest (:data:`MANIFEST`) of the
masks it wrote, and refuses to write into a folder holding masks it did not write (a ground-truth folder,
say) unless ``overwrite=True``; the ground-truth folder beside the images is refused even then. A failed write
(:class:`OutputWriteError`) or Ctrl-C (:class:`PredictionInterrupted`) leaves complete masks and a manifest listing
exactly them, so running it again completes the folder. The command line is ``python -m helpers.predict``.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import nn

from helpers import models
from helpers.data import layouts, transforms
from helpers.data.files import (
    IMAGE_EXTENSIONS,
    MASK_EXTENSION,
    MASK_SUFFIX,
    DatasetError,
    OutputWriteError,
    atomic_write,
    listing,
    mask_name,
    read_image,
    write_mask,
    write_text_atomic,
    writing,
)
from helpers.evaluation import export, plots
from helpers.evaluation.metrics import DEFAULT_THRESHOLD
from helpers.models.checkpoint import trained_img_size
from helpers.models.factory import MAX_IMG_SIZE
from helpers.runtime import autocast, resolve_amp, resolve_channels_last, select_device

#: Sub-folder of the output folder that holds the overlays (kept apart so the mask folder stays scorable).
OVERLAY_DIR = "overlays"
#: The file in the output folder that lists the masks :func:`predict_folder` wrote there (no digits in the
#: name, so the official scorer, which matches files by the digits of the id, never mistakes it for a mask).
MANIFEST = "predictions.json"
#: Where :data:`MANIFEST` says its masks come from.
MANIFEST_WRITER = "helpers.evaluation.predict"


class ImageSizeWarning(UserWarning):
    """:func:`predict_folder` predicts at another input size than the checkpoint was trained at."""


class PredictionInterrupted(KeyboardInterrupt):
    """Ctrl-C in :func:`predict_folder`: ``written`` of ``total`` masks are complete in ``out``, and listed."""

    def __init__(self, written: int, total: int, out: Path) -> None:
        super().__init__(f"{written} of {total} masks written to {out}")
        self.written, self.total, self.out = written, total, out


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _resolved(device: torch.device) -> torch.device:
    """``device`` with its index filled in where one is implied (``cuda`` = the current GPU, ``mps`` = 0)."""
    if device.index is not None or device.type not in ("cuda", "mps"):
        return device
    return torch.device(device.type, torch.cuda.current_device() if device.type == "cuda" else 0)


def _is_on(model: nn.Module, device: torch.device) -> bool:
    """Every parameter and buffer of ``model`` is on ``device`` (True for a model that has none)."""
    target = _resolved(device)
    return all(_resolved(t.device) == target for t in itertools.chain(model.parameters(), model.buffers()))


def _copy_to(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are created directly on ``device``.

    Each tensor is copied once, straight to ``device`` (no second copy on the model's own device, no
    gradients); tied weights stay tied. The caller's model is not touched.
    """
    memo: dict[int, Any] = {}
    for param in model.parameters():
        memo[id(param)] = nn.Parameter(param.detach().to(device), requires_grad=param.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = buffer.detach().to(device)
    return copy.deepcopy(model, memo)


@contextlib.contextmanager
def predicting(model: nn.Module, device: torch.device | str | None = None) -> Iterator[nn.Module]:
    """``with predicting(model, device) as net:`` ``net`` is ``model`` in eval mode on ``device``.

    The caller's model comes out exactly as it went in: the training flag of every sub-module is put back on
    exit (also after an error), and the model never moves, changes dtype or memory format.

    * ``device`` None or the model's own device: ``net`` is ``model`` itself, switched to eval mode for
      the block; nothing is copied, so this costs nothing per batch.
    * another device: ``net`` is a **copy** of the model on ``device`` (its weights copied once, straight
      there). Callers that predict many batches on another device should enter this block once around all
      of them (as :func:`helpers.evaluation.reliability.flip_views` does), or move the model there themselves first.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    flags = [(module, module.training) for module in model.modules()]
    net = model if _is_on(model, device) else _copy_to(model, device)
    try:
        yield net.eval()
    finally:
        for module, training in flags:
            module.training = training


def _flips(tta: bool) -> list[tuple[int, ...]]:
    """Tensor dims to flip for each TTA view: identity, horizontal, vertical, both (identity only without TTA)."""
    return [(), (3,), (2,), (2, 3)] if tta else [()]


@torch.no_grad()
def _forward(model: nn.Module, images: Sequence[np.ndarray], img_size: int, tta: bool,
             device: torch.device, amp_dtype: torch.dtype | None = None,
             channels_last: bool = False) -> list[np.ndarray]:
    """One forward pass (per TTA view) over ``images`` under ``amp_dtype`` autocast (None: float32), the batch
    NHWC if ``channels_last``: their probabilities at each image's size."""
    pipeline = transforms.eval_transforms(img_size)
    batch = torch.stack([pipeline(image=image)["image"] for image in images]).to(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    probs = torch.zeros(batch.shape[0], 1, img_size, img_size, device=device)
    views = _flips(tta)
    for dims in views:
        view = (batch.flip(dims) if dims else batch).contiguous(memory_format=memory)
        with autocast(device, amp_dtype):
            logits = model(view)
        out = torch.sigmoid(logits.float())
        probs += out.flip(dims) if dims else out
    probs /= len(views)
    results = []
    for prob, image in zip(probs, images):
        full = F.interpolate(prob[None], size=image.shape[:2], mode="bilinear", align_corners=False)
        results.append(full[0, 0].clamp_(0.0, 1.0).cpu().numpy().astype(np.float32))
    return results


def predict_batch(model: nn.Module, images: Sequence[np.ndarray], img_size: int, *, tta: bool = False,
                  device: torch.device | str | None = None, batch_size: int | None = None, amp: str = "auto",
                  channels_last: bool | None = None) -> list[np.ndarray]:
    """Lesion probabilities for images of any sizes, ``batch_size`` images per forward pass.

    The model runs in eval mode on ``device`` and is left exactly as it was (training flags, device, dtype,
    memory format): see :func:`predicting`. A ``device`` other than the model's own costs one copy of the
    weights per call: move the model there first when predicting many batches.

    Precision and layout are chosen as training chooses them (:func:`helpers.runtime.resolve_amp`,
    :func:`helpers.runtime.resolve_channels_last`): ``amp="auto"`` is bf16 autocast on CPUs with native bf16 and
    on CUDA, float32 elsewhere; ``channels_last`` makes the *input* NHWC, which oneDNN / cuDNN then run NHWC
    without converting the caller's weights (``benchmarks/throughput.py --predict-modes`` measures both).

    Args:
        model: a segmentation model returning ``(N, 1, S, S)`` logits.
        images: ``(H_i, W_i, 3) uint8`` RGB images (read files with :func:`helpers.data.files.read_image`).
        img_size: the square input size ``S`` the model was trained at.
        tta: average the probabilities of the image and its horizontal, vertical and double flips
            (each prediction flipped back first).
        device: where to run; None = the model's device.
        batch_size: images per forward pass; None = all of them in one pass.
        amp: ``auto`` (see above), ``off`` (float32), ``bf16`` or ``fp16`` (CUDA only).
        channels_last: NHWC input; None = where training uses it (CUDA, CPUs with native bf16).

    Returns:
        One ``(H_i, W_i) float32`` array in [0, 1] per image, in order.

    Raises:
        ValueError: an image is not ``(H, W, 3)``, ``batch_size`` < 1, an unknown ``amp`` or ``fp16`` off CUDA.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (or None for one pass), got {batch_size}")
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i} has shape {image.shape}: expected (H, W, 3) RGB "
                             "(read files with helpers.data.files.read_image)")
    if not len(images):
        return []
    device = torch.device(device) if device is not None else _model_device(model)
    amp_dtype = resolve_amp(amp, device)
    layout = resolve_channels_last(channels_last, device)
    step = batch_size or len(images)
    results: list[np.ndarray] = []
    with predicting(model, device) as net:
        for start in range(0, len(images), step):
            results += _forward(net, images[start:start + step], img_size, tta, device, amp_dtype, layout)
    return results


def predict_probabilities(model: nn.Module, image: np.ndarray, img_size: int, *, tta: bool = False,
                          device: torch.device | str | None = None, amp: str = "auto") -> np.ndarray:
    """Lesion probabilities for one image, at the image's own size.

    Args:
        model: a segmentation model returning logits (see :func:`helpers.models.load_model`).
        image: ``(H, W, 3) uint8`` RGB.
        img_size: the model's square input size.
        tta: flip test-time augmentation (identity, horizontal, vertical, both; probabilities averaged).
        device: where to run; None = the model's device.
        amp: precision, as in :func:`predict_batch` (``auto``: bf16 where the hardware runs it natively).

    Returns:
        ``(H, W) float32`` in [0, 1]; threshold at :data:`helpers.evaluation.metrics.DEFAULT_THRESHOLD` for a mask.
    """
    return predict_batch(model, [image], img_size, tta=tta, device=device, amp=amp)[0]


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


def _is_image_file(path: Path) -> bool:
    """A file :func:`list_images` picks up: an image extension, not hidden, not a mask (``*_segmentation``)."""
    return (path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
            and not path.stem.endswith(MASK_SUFFIX))


def _refuse_duplicate_ids(paths: Sequence[Path]) -> None:
    """Raise ValueError naming the files when two images share an id (their masks would overwrite each other)."""
    by_id: dict[str, list[Path]] = {}
    for path in paths:
        by_id.setdefault(path.stem, []).append(path)
    twins = [files for files in by_id.values() if len(files) > 1]
    if twins:
        names = [" and ".join(str(p) for p in files) for files in twins]
        raise ValueError(f"{len(twins)} image id(s) occur more than once (an id is the file name without its "
                         f"extension): {listing(names)}. Each id gets one mask file, so one would overwrite the "
                         "other: rename or remove one file of each pair")


def list_images(folder: str | Path) -> list[Path]:
    """The images to predict: ``folder/images/*`` for an ISIC-layout folder, else ``folder/*``.

    Files whose name ends in ``_segmentation`` (masks) and names starting with ``.`` are skipped; sorted by name.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no .jpg/.jpeg/.png images.
        ValueError: two images share an id (``x.jpg`` and ``x.png``); the message names both files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist: pass a folder of .jpg/.png images, "
                                "an ISIC-layout folder with an images/ sub-folder, or one image file")
    source = folder / "images" if (folder / "images").is_dir() else folder
    paths = sorted(p for p in source.iterdir() if _is_image_file(p))
    if not paths:
        raise FileNotFoundError(f"no .jpg/.jpeg/.png images in {source}")
    _refuse_duplicate_ids(paths)
    return paths


def _image_paths(images: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files to predict: :func:`list_images` of a folder, one image file, or the given files (sorted).

    Raises:
        FileNotFoundError: an empty list, or a file or folder that does not exist.
        ValueError: a single file that is not an image, or two images with the same id (named).
    """
    if isinstance(images, (str, Path)):
        path = Path(images)
        if not path.is_file():
            return list_images(path)
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)}): pass a folder of "
                             "images, an ISIC-layout folder with an images/ sub-folder, or one image file")
        return [path]
    paths = sorted(Path(p) for p in images)
    if not paths:
        raise FileNotFoundError("no images to predict: the list of image files is empty")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image files do not exist: {listing(missing)}")
    _refuse_duplicate_ids(paths)
    return paths


def check_img_size(size: int, model: nn.Module, trained: int | None) -> None:
    """Refuse (ValueError, giving the range) a size below the model's total downsampling (its input is padded
    to a multiple of it) or above :data:`MAX_IMG_SIZE`; warn (:class:`ImageSizeWarning`) when it is not ``trained``."""
    smallest = max(getattr(model, "size_multiple", 1), getattr(getattr(model, "net", None), "size_multiple", 1))
    if not smallest <= size <= MAX_IMG_SIZE:
        why = (f"below {smallest} px the input is mostly padding: the model downsamples it {smallest}-fold"
               if size < smallest else f"above {MAX_IMG_SIZE} px one image's activations alone need many gigabytes")
        at = f"; it was trained at {trained} px" if trained is not None else ""
        raise ValueError(f"--img-size {size} is outside the sizes this model takes, {smallest} to {MAX_IMG_SIZE} px "
                         f"({why}{at}): pass a size in that range, or leave --img-size out to use the training size")
    if trained is not None and size != trained:
        warnings.warn(f"--img-size {size} differs from the {trained} px this checkpoint was trained at: the model "
                      f"sees lesions at another scale, so the masks may be worse; leave --img-size out to predict "
                      f"at {trained} px", ImageSizeWarning, stacklevel=3)


# ------------------------------------------------------------------------------------- the output folder
def truth_folders(images: str | Path | Sequence[str | Path]) -> set[Path]:
    """The ground-truth mask folders that belong to ``images`` (resolved), as far as they can be detected.

    For each folder the images come from: its ``masks/`` sub-folder, the ``masks/`` beside an ``images/``
    folder, and the mask folder of a dataset layout (:func:`helpers.data.layouts.detect_layout`).
    """
    given = [Path(images)] if isinstance(images, (str, Path)) else [Path(p).parent for p in images]
    roots: set[Path] = set()
    for path in given:
        folder = path.parent if path.is_file() else path
        roots |= {folder, folder.parent} if folder.name == "images" else {folder}
    found = set()
    for root in roots:
        found.add((root / "masks").resolve())
        try:
            found.add(layouts.layout_dirs(root, layouts.detect_layout(root))[1].resolve())
        except (DatasetError, ValueError, OSError):
            pass   # not a dataset folder: nothing more to detect
    return {f for f in found if f.is_dir()}


def _mask_files(folder: Path) -> list[Path]:
    """The ``*_segmentation.png`` files in ``folder`` (none when it does not exist)."""
    return sorted(folder.glob(f"*{MASK_SUFFIX}{MASK_EXTENSION}")) if folder.is_dir() else []


def _manifest_masks(folder: Path) -> set[str]:
    """Names of the masks the manifest in ``folder`` says :func:`predict_folder` wrote (empty without one)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(manifest, dict) or manifest.get("written_by") != MANIFEST_WRITER:
        return set()
    return {str(name) for name in manifest.get("masks", [])}


def check_output_folder(out: Path, images: str | Path | Sequence[str | Path], *, overwrite: bool = False
                        ) -> set[str]:
    """Refuse an output folder whose masks :func:`predict_folder` must not replace; return the ones it wrote.

    Raises:
        ValueError: ``out`` is the ground-truth folder of ``images`` (even with ``overwrite``), or it holds
            ``*_segmentation.png`` files that its manifest does not list (unless ``overwrite``).
    """
    resolved = out.resolve()
    if resolved in truth_folders(images):
        raise ValueError(f"--out {out} is the ground-truth mask folder of these images: predicting into it would "
                         "overwrite the truth masks. Choose another folder, e.g. runs/predictions")
    ours = _manifest_masks(out)
    foreign = [p.name for p in _mask_files(out) if p.name not in ours]
    if foreign and not overwrite:
        raise ValueError(f"--out {out} already holds {len(foreign)} mask(s) that helpers.evaluation.predict did not write "
                         f"({listing(foreign, 3)}); it may hold ground truth. Choose an empty folder, or pass "
                         "--overwrite (overwrite=True) to replace them")
    return ours | set(foreign)


def _write_manifest(out: Path, masks: Iterable[str], checkpoint: Path) -> None:
    """Record (before writing them) the masks this folder gets from :func:`predict_folder`."""
    text = json.dumps({"written_by": MANIFEST_WRITER, "checkpoint": str(checkpoint), "masks": sorted(masks)},
                      indent=1)
    with writing(out / MANIFEST):
        write_text_atomic(out / MANIFEST, text + "\n")


def _settle_manifest(out: Path, names: set[str], checkpoint: Path) -> None:
    """After a failure, list the masks of ``names`` now in ``out`` (every one is ours: :func:`check_output_folder`
    counted the older ones). Left as it was if even that fails: it then lists more masks than exist, still safe."""
    with contextlib.suppress(OutputWriteError):
        _write_manifest(out, {name for name in names if (out / name).is_file()}, checkpoint)


def _write_outputs(image: np.ndarray, prob: np.ndarray, image_id: str, out_dir: Path, *, threshold: float,
                   clean: bool, overlays: bool) -> Path:
    """Threshold ``prob``, optionally post-process, write the 0/255 mask PNG (and overlay JPEG), atomically."""
    mask = (prob > threshold).astype(np.uint8)
    if clean:
        mask = postprocess(mask)
    with writing(out_dir / mask_name(image_id)):
        path = write_mask(out_dir / mask_name(image_id), mask)
    if overlays:
        blended = (plots.overlay(image, mask) * 255).round().astype(np.uint8)
        overlay = out_dir / OVERLAY_DIR / f"{image_id}_overlay.jpg"
        with writing(overlay), atomic_write(overlay) as tmp:
            Image.fromarray(blended).save(tmp, format="JPEG", quality=90)
    return path


def predict_folder(checkpoint: str | Path, images_dir: str | Path | Sequence[str | Path], out_dir: str | Path, *,
                   img_size: int | None = None, tta: bool = False, postprocess: bool = False,
                   threshold: float = DEFAULT_THRESHOLD, overlays: bool = False, batch_size: int = 8,
                   device: torch.device | str | None = None, overwrite: bool = False) -> list[Path]:
    """Predict every image of a folder and write ISIC-format masks.

    Args:
        checkpoint: a ``best.pt`` / ``last.pt`` written by training, or a ``.onnx`` file written by
            :func:`helpers.evaluation.export.export_onnx` (run by ONNX Runtime).
        images_dir: an ISIC-layout folder (``images/`` sub-folder), a flat folder of images, one image file,
            or a list of image files (e.g. ``[pair.image for pair in course_splits()["test"]]``).
        out_dir: where ``<id>_segmentation.png`` masks go (created); overlays go to ``out_dir/overlays/``.
        img_size: model input size; None = the training size recorded in the checkpoint.
        tta: flip test-time augmentation.
        postprocess: keep the largest component and fill holes (:func:`postprocess`).
        threshold: probability above which a pixel is lesion.
        overlays: also write ``overlays/<id>_overlay.jpg`` (the mask blended onto the image).
        batch_size: images per forward pass.
        device: where to run; None = the best available (CUDA, MPS, CPU).
        overwrite: replace masks in ``out_dir`` that an earlier :func:`predict_folder` did not write.

    Returns:
        The mask paths, one per image, sorted by image name. Each mask is single-channel ('L'), values
        {0, 255}, at the image's original size.

    Raises:
        CheckpointError: the checkpoint is missing, a folder, corrupt or records no image size (and none is given).
        FileNotFoundError: no images in ``images_dir`` (or a listed file is missing).
        ValueError: ``threshold`` outside (0, 1), ``batch_size`` < 1, ``img_size`` out of range
            (:func:`check_img_size`; another size than the training one warns), two images with the same id, or
            an output folder that holds other masks (see :func:`check_output_folder`).
        OutputWriteError: a mask, overlay or the manifest could not be written (the file, cause and fix named).
        PredictionInterrupted: Ctrl-C; the masks written so far are complete and listed in the manifest.
    """
    if not 0.0 < threshold < 1.0 or batch_size < 1:
        raise ValueError(f"need 0 < threshold < 1 and batch_size >= 1, got {threshold} and {batch_size}")
    ckpt_path = Path(checkpoint)
    onnx = ckpt_path.suffix.lower() == export.ONNX_SUFFIX
    ckpt = {} if onnx else models.load_checkpoint(ckpt_path)
    model = export.OnnxModel(ckpt_path) if onnx else None
    trained = model.img_size if model is not None else (ckpt.get("config") or {}).get("img_size")
    size = img_size if img_size is not None else trained if onnx and trained else trained_img_size(ckpt, ckpt_path)
    paths = _image_paths(images_dir)
    out = Path(out_dir)
    earlier = check_output_folder(out, images_dir, overwrite=overwrite)
    model = model or models.load_model(ckpt, map_location="cpu")
    check_img_size(size, model, trained if isinstance(trained, int) else None)
    model.to(device or select_device())
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    planned = earlier | {mask_name(p.stem) for p in paths}
    _write_manifest(out, planned, ckpt_path)
    written: list[Path] = []
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            images = [read_image(p) for p in chunk]
            for path, image, prob in zip(chunk, images, predict_batch(model, images, size, tta=tta)):
                written.append(_write_outputs(image, prob, path.stem, out, threshold=threshold, clean=postprocess,
                                              overlays=overlays))
    except (KeyboardInterrupt, OutputWriteError) as err:
        _settle_manifest(out, planned, ckpt_path)
        if isinstance(err, OutputWriteError):
            raise OutputWriteError(f"{err} ({len(written)} of {len(paths)} images were done before it; every mask "
                                   "on disk is complete)") from err
        raise PredictionInterrupted(len(written), len(paths), out) from err
    return written
