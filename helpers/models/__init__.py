"""Segmentation models of the course and their checkpoints (see docs/ARCHITECTURE.md, section Models).

* :mod:`.se_unet`: ``SEBlock``, ``ConvBlock``, ``SEUNet`` (notebook 02, trained from scratch);
* :mod:`.resnet_unet_aspp`: ``ASPP``, ``ResNetUNetASPP`` (notebook 03, ResNet encoder + ASPP + U-Net decoder);
* :mod:`.factory`: ``build_model(name)`` for those two and every smp architecture, ``count_parameters``;
* :mod:`.pretrained`: ImageNet encoder weights from the Hugging Face Hub, with the offline fallback;
* :mod:`.checkpoint`: ``save_checkpoint``, ``load_checkpoint``, ``load_model``.
"""
from helpers.models.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, load_model, save_checkpoint
from helpers.models.factory import MODEL_NAMES, SegmentationNet, available_models, build_model, count_parameters
from helpers.models.pretrained import PretrainedWeightsError, PretrainedWeightsWarning
from helpers.models.resnet_unet_aspp import ASPP, ResNetUNetASPP, crop_to, pad_to_multiple
from helpers.models.se_unet import ConvBlock, SEBlock, SEUNet

__all__ = [
    "ASPP", "CHECKPOINT_FORMAT", "MODEL_NAMES", "CheckpointError", "ConvBlock", "PretrainedWeightsError",
    "PretrainedWeightsWarning", "ResNetUNetASPP", "SEBlock", "SEUNet", "SegmentationNet", "available_models",
    "build_model", "count_parameters", "crop_to", "load_checkpoint", "load_model", "pad_to_multiple",
    "save_checkpoint",
]
