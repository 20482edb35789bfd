"""Export a trained model to ONNX and run it with ONNX Runtime, as a drop-in for the PyTorch model.

Introduced in notebook 07 (from notebook to tool). :func:`export_onnx` writes ``model.onnx`` with a dynamic batch
and image size (any multiple of the model's downsampling factor up to :data:`MAX_IMG_SIZE`) and records the
training size in the file's metadata; :func:`export_checkpoint` does it from a ``best.pt``. :class:`OnnxModel`
loads the file into an ONNX Runtime session and behaves like the PyTorch model for prediction: ``(N, 3, H, W)``
float32 in, ``(N, 1, H, W)`` logits out, any ``H, W`` (padded and cropped back as the PyTorch model does), so
:func:`helpers.evaluation.predict.predict_batch` and ``python -m helpers.predict --onnx model.onnx`` use it
unchanged. ``onnx``, ``onnxscript`` and ``onnxruntime`` come with the optional extra ``pip install -e ".[demo]"``.
"""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from helpers.data.files import atomic_write
from helpers.runfolder import BEST_FILE
from helpers.models.checkpoint import CheckpointError, load_checkpoint, load_model, trained_img_size
from helpers.models.factory import MAX_IMG_SIZE
from helpers.models.resnet_unet_aspp import crop_to, pad_to_multiple

#: The file-name ending of an exported model; ``python -m helpers.predict`` tells the two kinds of model apart by it.
ONNX_SUFFIX = ".onnx"
#: Names of the graph's input and output.
INPUT_NAME, OUTPUT_NAME = "image", "logits"
#: Metadata keys written into the ONNX file.
IMG_SIZE_KEY, MULTIPLE_KEY = "skinseg_img_size", "skinseg_size_multiple"
#: The tolerance the parity test holds ONNX Runtime's logits to, against PyTorch's (float32 both).
PARITY_ATOL = 1e-4
_INSTALL = 'pip install -e ".[demo]" (or pip install onnx onnxscript onnxruntime)'


def size_multiple(model: nn.Module) -> int:
    """The multiple of which the network's input sides must be (1 when the model pads any size itself)."""
    return max(getattr(model, "size_multiple", 1), getattr(getattr(model, "net", None), "size_multiple", 1))


def _require(module: str) -> Any:
    """Import ``module`` or raise ImportError saying how to install it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"{module} is not installed; ONNX export and ONNX Runtime need it: {_INSTALL}") from err


def export_onnx(model: nn.Module, path: str | os.PathLike, img_size: int) -> Path:
    """Write ``model`` (float32, eval mode, on the CPU; the caller's model is not changed) to ``path`` as ONNX.

    The batch and both image sides are dynamic: sides must be multiples of :func:`size_multiple`, which
    :class:`OnnxModel` pads to. ``img_size`` (the training size) is stored in the file's metadata.

    Raises:
        ImportError: onnx or onnxscript is missing (the message says how to install them).
    """
    onnx = _require("onnx")
    _require("onnxscript")
    net = copy.deepcopy(model).float().cpu().eval()
    multiple = size_multiple(net)
    side = max(multiple, -(-img_size // multiple) * multiple)
    dims = {0: torch.export.Dim("batch", min=1, max=4096),
            2: torch.export.Dim("h_blocks", min=1, max=MAX_IMG_SIZE // multiple) * multiple,
            3: torch.export.Dim("w_blocks", min=1, max=MAX_IMG_SIZE // multiple) * multiple}
    example = torch.zeros(2, 3, side, side)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the exporter's deprecation and tracing chatter
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=({**dims},), verbose=False)
    proto = program.model_proto
    for key, value in ((IMG_SIZE_KEY, img_size), (MULTIPLE_KEY, multiple)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def export_checkpoint(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Export the model of a training checkpoint (``best.pt``) to ``path``, with its training size.

    Raises:
        CheckpointError: the checkpoint is missing, corrupt or records no image size.
        ImportError: onnx or onnxscript is missing.
    """
    ckpt = load_checkpoint(checkpoint)
    size = trained_img_size(ckpt, checkpoint)
    return export_onnx(load_model(ckpt, map_location="cpu"), path, size)


class OnnxModel(nn.Module):
    """An exported model in an ONNX Runtime session, called like the PyTorch model: logits ``(N, 1, H, W)``.

    Attributes:
        img_size: the training size stored at export (None if the file has none).
        size_multiple: inputs are padded to a multiple of this (replicate, bottom/right), logits cropped back.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        ort = _require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX model {path} does not exist: export one with "
                                  f"python -m helpers.predict --checkpoint {BEST_FILE} --export-onnx {path.name}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:   # onnxruntime raises its own exception types for a broken file
            raise CheckpointError(f"{path} is not a readable ONNX model ({str(err)[:200]}): export it again") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        self.img_size = int(meta[IMG_SIZE_KEY]) if IMG_SIZE_KEY in meta else None
        self.size_multiple = int(meta.get(MULTIPLE_KEY, 1))
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` float (any layout) -> ``(N, 1, H, W)`` float32 logits, computed by ONNX Runtime."""
        padded, size = pad_to_multiple(x.detach().float().cpu(), self.size_multiple)
        array = np.ascontiguousarray(padded.numpy())
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
        return crop_to(torch.from_numpy(logits), size).to(x.device)
