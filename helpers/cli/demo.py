"""``python -m helpers.demo``: a trained model in a web page on this machine (notebook 07)::

    python -m helpers.demo --checkpoint runs/04_resnet_unet_aspp/best.pt [--port 7860] [--unsure-threshold 0.003]

Serves :func:`helpers.course.demo.build_app` on 127.0.0.1 only (a teaching model is not for the network), with a
few synthetic example images. A missing checkpoint or gradio is one ``error:`` line, exit status 2.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from helpers import models, runfolder
from helpers.cli.common import fail
from helpers.course.demo import DEFAULT_UNSURE_THRESHOLD, build_app
from helpers.data.files import JPEG_EXTENSION
from helpers.data.synthetic import generate_pair
from helpers.evaluation import export
from helpers.models.checkpoint import trained_img_size

#: The demo listens here only: nothing on the network can reach it.
HOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m helpers.demo``."""
    p = argparse.ArgumentParser(prog="python -m helpers.demo", description="Serve a trained model as a web page "
                                "(Gradio) on 127.0.0.1: upload a dermoscopy image, see mask, area and uncertainty.")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help=f"{runfolder.BEST_FILE} of a training run, or a model exported to ONNX (.onnx)")
    p.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--unsure-threshold", type=float, default=DEFAULT_UNSURE_THRESHOLD,
                   help="mean flip-TTA variance above which the page says 'the model is unsure' (notebook 07)")
    p.add_argument("--examples", type=int, default=3, help="synthetic example images offered on the page")
    return p


def load_for_demo(path: Path) -> tuple[object, int]:
    """``(model, img_size)`` of a checkpoint or an ``.onnx`` export (raises CheckpointError / ImportError)."""
    if path.suffix.lower() == export.ONNX_SUFFIX:
        model = export.OnnxModel(path)
        if model.img_size is None:
            raise models.CheckpointError(f"{path} records no training size: export it with --export-onnx")
        return model, model.img_size
    ckpt = models.load_checkpoint(path)
    return models.load_model(ckpt, map_location="cpu"), trained_img_size(ckpt, path)


def example_images(n: int) -> list[Path]:
    """``n`` synthetic dermoscopy images written to a fresh temporary folder (real images are never shipped)."""
    folder = Path(tempfile.mkdtemp(prefix="skinseg-demo-"))
    paths = []
    for i in range(n):
        paths.append(folder / f"synthetic_{i + 1}{JPEG_EXTENSION}")
        Image.fromarray(generate_pair(100 + i, 384)[0]).save(paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    """Start the app (blocks until Ctrl-C); 2 with one ``error:`` line for a bad checkpoint or missing gradio."""
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535 or not 0 < args.unsure_threshold <= 0.25:
        return fail(ValueError(f"need 0 <= --port <= 65535 and 0 < --unsure-threshold <= 0.25 (the largest "
                               f"variance of probabilities), got {args.port} and {args.unsure_threshold}"))
    try:
        model, size = load_for_demo(args.checkpoint)
        app = build_app(model, size, unsure_threshold=args.unsure_threshold, examples=example_images(args.examples))
    except (models.CheckpointError, ImportError) as err:
        return fail(err)
    print(f"demo of {args.checkpoint} ({size} px) on http://{HOST}:{args.port or '<free port>'} (Ctrl-C stops it)")
    try:
        app.launch(server_name=HOST, server_port=args.port or None, share=False, inbrowser=False)
    except KeyboardInterrupt:
        pass
    return 0
