"""The demo app of notebook 07 (from notebook to tool): a trained model in a Gradio page a colleague can use.

:func:`analyse` is what the page shows, testable without a browser: the flip-TTA lesion mask (post-processed),
its area and border, the per-pixel TTA uncertainty map (:func:`helpers.evaluation.reliability.tta_uncertainty`)
and the "model is unsure" flag, raised when the image's mean uncertainty is above a threshold chosen on the
validation split (notebook 07's exercise; :data:`DEFAULT_UNSURE_THRESHOLD` otherwise). :func:`load_upload` turns
what a user uploads into an RGB image or a :class:`DemoInputError` whose message the page shows (not an image,
too many pixels, a grayscale photo). :func:`build_app` wires them into ``gradio.Blocks``; every page says it is a
teaching model, not a medical device. The command line is ``python -m helpers.demo --checkpoint best.pt``
(127.0.0.1 only). Gradio comes with the optional extra ``pip install -e ".[demo]"`` (Colab ships it).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from torch import nn

from helpers.data.files import DatasetError, read_image
from helpers.evaluation import plots, reliability
from helpers.evaluation.metrics import DEFAULT_THRESHOLD
from helpers.evaluation.predict import postprocess, predict_probabilities

#: Mean flip-TTA variance of an image above which the page says "the model is unsure": the 90th percentile on the
#: isic-real validation split (150 images) of a 128 px resnet_unet_aspp (val Dice 0.856); the flagged 10% had mean
#: Dice 0.64 against 0.89 for the rest (Spearman -0.36). Notebook 07's exercise chooses it for your model.
DEFAULT_UNSURE_THRESHOLD = 0.003
#: The largest upload the demo analyses, in pixels (a 40-megapixel photo; dermoscopy images are 1-20 MP).
MAX_PIXELS = 40_000_000
#: Channels differing by at most this (0-255) everywhere: a grayscale photo stored as RGB.
GREY_TOLERANCE = 2
DISCLAIMER = ("**Teaching model, not a medical device.** It was trained in a course on a small data set; it "
              "cannot diagnose anything. Show any lesion that worries you to a dermatologist.")
UNSURE_MESSAGE = "The model is unsure about this image: ask a dermatologist."


class DemoInputError(ValueError):
    """An upload the demo cannot analyse; the message says why and what to upload instead."""


@dataclass(frozen=True)
class Analysis:
    """What the page shows for one image (all maps at the image's own size ``(H, W)``).

    Attributes:
        probability: ``(H, W) float32`` flip-TTA lesion probability.
        mask: ``(H, W) uint8`` {0, 1}: probability > 0.5, largest region, holes filled (:func:`postprocess`).
        uncertainty: ``(H, W) float64`` variance of the four flip views' probabilities, in [0, 0.25].
        area_px: lesion pixels; ``area_fraction``: of the image.
        border_px: the lesion's border length in pixels (boundary pixels of the mask).
        irregularity: ``border_px**2 / (4 pi area_px)``: about 1 for a disc, larger for a ragged border.
        image_uncertainty: mean of ``uncertainty``; ``unsure``: above the threshold.
    """

    probability: np.ndarray
    mask: np.ndarray
    uncertainty: np.ndarray
    area_px: int
    area_fraction: float
    border_px: int
    irregularity: float
    image_uncertainty: float
    unsure: bool


def border(mask: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: lesion pixels with a background pixel among their 4 neighbours (or at the image edge)."""
    lesion = mask.astype(bool)
    return lesion & ~ndimage.binary_erosion(lesion, border_value=0)


def analyse(model: nn.Module, image: np.ndarray, img_size: int, *,
            unsure_threshold: float = DEFAULT_UNSURE_THRESHOLD) -> Analysis:
    """Mask, area, border and TTA uncertainty of one ``(H, W, 3) uint8`` image.

    The mask is exactly ``postprocess(predict_probabilities(model, image, img_size, tta=True) > 0.5)``, what
    ``python -m helpers.predict --tta --postprocess`` writes.
    """
    prob = predict_probabilities(model, image, img_size, tta=True)
    mask = postprocess(prob > DEFAULT_THRESHOLD)
    views = reliability.flip_views(model, [image], img_size)[0]
    uncertainty = reliability.tta_uncertainty(views, "variance")
    area = int(mask.sum())
    edge = int(border(mask).sum())
    mean_u = float(uncertainty.mean())
    return Analysis(prob, mask, uncertainty, area, area / mask.size, edge,
                    edge**2 / (4 * np.pi * area) if area else 0.0, mean_u, mean_u > unsure_threshold)


def load_upload(path: str | os.PathLike[str] | None) -> np.ndarray:
    """The uploaded file as ``(H, W, 3) uint8`` RGB.

    Raises:
        DemoInputError: nothing uploaded, not a readable image, more than :data:`MAX_PIXELS` pixels, or a
            grayscale photo (the model needs colour); the message is meant for the page.
    """
    if path is None:
        raise DemoInputError("Upload a dermoscopy image (JPEG or PNG) first, or pick an example below.")
    name = Path(path).name
    try:
        with Image.open(path) as im:
            width, height = im.size
            grey_mode = im.mode in ("1", "L", "LA", "I", "I;16", "F")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise DemoInputError(f"{name} is not an image this demo can read: upload a dermoscopy photo as JPEG "
                             "or PNG.") from None
    if width * height > MAX_PIXELS:
        raise DemoInputError(f"{name} is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels); the "
                             f"demo takes at most {MAX_PIXELS / 1e6:.0f}: resize it to a few thousand pixels wide.")
    try:
        image = read_image(path)
    except DatasetError:
        raise DemoInputError(f"{name} could not be decoded (truncated or corrupt?): upload the original "
                             "JPEG or PNG.") from None
    channels_equal = int(np.abs(image.astype(np.int16) - image[..., :1]).max()) <= GREY_TOLERANCE
    if grey_mode or channels_equal:
        raise DemoInputError(f"{name} is a grayscale photo: the model was trained on colour dermoscopy images "
                             "and needs the colour to find a lesion. Upload the colour original.")
    return image


def report_markdown(result: Analysis, unsure_threshold: float) -> str:
    """The page's text for one analysis: area, border, uncertainty and the flag."""
    h, w = result.mask.shape
    lines = [f"**Lesion area:** {result.area_px:,} pixels ({result.area_fraction:.1%} of the {w} x {h} image)",
             f"**Border:** {result.border_px:,} pixels long; irregularity {result.irregularity:.2f} "
             "(1 for a disc, larger for a ragged border)",
             f"**Uncertainty:** {result.image_uncertainty:.4f} mean flip-TTA variance (flag above "
             f"{unsure_threshold:.4f})"]
    if result.area_px == 0:
        lines.append("**No lesion found** in this image.")
    if result.unsure:
        lines.append(f"### ⚠ {UNSURE_MESSAGE}")
    return "\n\n".join(lines)


def pictures(image: np.ndarray, result: Analysis) -> tuple[np.ndarray, np.ndarray]:
    """``(overlay, uncertainty map)`` as ``(H, W, 3) uint8``: mask in green with its border in red; the map in
    magma, scaled to its own maximum."""
    from matplotlib import colormaps

    blended = plots.overlay(image, result.mask)
    blended[border(ndimage.binary_dilation(result.mask, iterations=max(1, min(image.shape[:2]) // 200)))] = \
        (0.95, 0.1, 0.1)
    scale = max(float(result.uncertainty.max()), 1e-6)
    heat = colormaps["magma"](np.clip(result.uncertainty / scale, 0, 1))[..., :3]
    return ((blended * 255).round().astype(np.uint8), (heat * 255).round().astype(np.uint8))


def respond(model: nn.Module, img_size: int, unsure_threshold: float, path: str | None
            ) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """One page update: ``(overlay, uncertainty map, markdown)``; bad input gives ``(None, None, message)``."""
    try:
        image = load_upload(path)
    except DemoInputError as err:
        return None, None, f"{err}" if path is None else f"### Cannot analyse this file\n\n{err}"
    result = analyse(model, image, img_size, unsure_threshold=unsure_threshold)
    overlay, heat = pictures(image, result)
    return overlay, heat, report_markdown(result, unsure_threshold)


def build_app(model: nn.Module, img_size: int, *, unsure_threshold: float = DEFAULT_UNSURE_THRESHOLD,
              examples: Sequence[str | os.PathLike[str]] = ()) -> Any:
    """The Gradio page (``gradio.Blocks``): upload or pick an example, see overlay, uncertainty map and report.

    Raises:
        ImportError: gradio is not installed (the message says how to install it).
    """
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError('the demo needs gradio: pip install -e ".[demo]" (Colab ships it)') from err

    def run(path: str | None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
        return respond(model, img_size, unsure_threshold, path)

    with gr.Blocks(title="Skin-lesion segmentation (teaching demo)") as app:
        gr.Markdown("# Skin-lesion segmentation: a teaching demo\n\n" + DISCLAIMER, elem_id="disclaimer")
        with gr.Row():
            upload = gr.File(label="Dermoscopy image (JPEG or PNG)", type="filepath", elem_id="upload")
            overlay = gr.Image(label="Lesion mask (green) and border (red)", elem_id="overlay", interactive=False,
                               height=360)
            heat = gr.Image(label="TTA uncertainty (bright: the flipped views disagree)", elem_id="uncertainty",
                            interactive=False, height=360)
        report = gr.Markdown("Upload an image to start.", elem_id="report")
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=[upload], label="Examples (synthetic images)")
        gr.Markdown(DISCLAIMER, elem_id="footer")
        upload.change(run, inputs=[upload], outputs=[overlay, heat, report])
    return app
