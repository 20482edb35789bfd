"""Exercises of notebook 03 (ResNet encoder, atrous convolution, ASPP, model comparison).

1. ``conv_output_size(size, kernel, rate, padding, stride)``: the output side of a (dilated) convolution.
2. ``branch_params(in_channels, out_channels, kernel)``: the parameters of one ASPP branch.
3. ``conv_macs(size, in_channels, out_channels, kernel)``: the multiply-adds of one 'same' convolution.

Each ``check_*`` compares the learner's function with what PyTorch itself gives (a real ``nn.Conv2d``, a real
ASPP branch, a measured multiply-add count) on several inputs, says "not attempted yet" to a stub and raises
``AssertionError`` with a hint on the first wrong answer. ``show_solution(K)`` prints the reference solution.
Conventions: :mod:`helpers.course.exercises.base`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from helpers.course.exercises.base import Exercises
from helpers.models.factory import count_parameters
from helpers.models.resnet_unet_aspp import conv_bn_relu

EXERCISES = Exercises("03")
show_solution = EXERCISES.show_solution

#: (size, kernel, rate, padding, stride) cases for the dilated-convolution output size.
DILATED_CASES: tuple[tuple[int, int, int, int, int], ...] = (
    (64, 3, 1, 1, 1), (64, 3, 6, 6, 1), (64, 3, 6, 0, 1), (65, 3, 2, 2, 2), (10, 3, 4, 0, 1), (33, 5, 3, 1, 2),
    (8, 3, 12, 12, 1), (64, 3, 1, 1, 2))
#: (in_channels, out_channels, kernel) cases for the ASPP branch parameter count.
BRANCH_CASES: tuple[tuple[int, int, int], ...] = ((512, 256, 3), (512, 256, 1), (64, 32, 3), (7, 5, 3))
#: (size, in_channels, out_channels, kernel) cases for the multiply-add count.
MAC_CASES: tuple[tuple[int, int, int, int], ...] = ((8, 4, 6, 3), (16, 3, 2, 1), (5, 2, 3, 5), (12, 8, 8, 3))


@EXERCISES.solution(1)
def conv_output_size(size: int, kernel: int, rate: int = 1, padding: int = 0, stride: int = 1) -> int:
    """Output side of a convolution: a kernel of `kernel` taps at dilation `rate` spans rate * (kernel - 1) + 1."""
    return (size + 2 * padding - rate * (kernel - 1) - 1) // stride + 1


def _measured_size(size: int, kernel: int, rate: int, padding: int, stride: int) -> int:
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=rate, bias=False)
    with torch.no_grad():
        return conv(torch.zeros(1, 1, size, size)).shape[-1]


@EXERCISES.checker(1, "write conv_output_size(size, kernel, rate, padding, stride) returning the output side")
def check_conv_output_size(fn: Callable[..., int]) -> None:
    """Check the learner's ``fn(size, kernel, rate, padding, stride) -> int`` against real ``nn.Conv2d`` outputs.

    Raises:
        AssertionError: with a hint, on the first case where ``fn`` is wrong.
    """
    for size, kernel, rate, padding, stride in DILATED_CASES:
        expected = _measured_size(size, kernel, rate, padding, stride)
        got = fn(size, kernel, rate, padding, stride)
        assert got is not None, "your function returns None: end it with `return ...`"
        case = f"size={size}, kernel={kernel}, rate={rate}, padding={padding}, stride={stride}"
        if got == expected:
            continue
        if rate > 1 and got == conv_output_size(size, kernel, 1, padding, stride):
            raise AssertionError(f"{case}: you ignored the rate; a dilated kernel spans rate*(kernel-1)+1 pixels")
        if stride > 1 and got == (size + 2 * padding - rate * (kernel - 1) - 1) / stride + 1:
            raise AssertionError(f"{case}: you returned {got}; round down: use integer division //")
        assert got == expected, (f"{case}: you returned {got}, PyTorch gives {expected}. Output = "
                                 "floor((size + 2*padding - rate*(kernel-1) - 1) / stride) + 1")
    EXERCISES.passed(1, "with padding = rate, a 3x3 atrous convolution keeps the size whatever its rate.")


@EXERCISES.solution(2)
def branch_params(in_channels: int, out_channels: int, kernel: int) -> int:
    """Parameters of conv (no bias) + BatchNorm + ReLU; the rate changes nothing (same kernel x kernel weights)."""
    return kernel * kernel * in_channels * out_channels + 2 * out_channels


@EXERCISES.checker(2, "write branch_params(in_channels, out_channels, kernel) returning one ASPP branch's parameters")
def check_branch_params(fn: Callable[[int, int, int], int]) -> None:
    """Check the learner's ``fn(in_channels, out_channels, kernel) -> int`` against real ASPP branches.

    Raises:
        AssertionError: with a hint, on the first case where ``fn`` is wrong.
    """
    for c_in, c_out, kernel in BRANCH_CASES:
        expected = count_parameters(conv_bn_relu(c_in, c_out, kernel_size=kernel, dilation=6))
        assert expected == branch_params(c_in, c_out, kernel), "reference out of date: report a bug"
        got = fn(c_in, c_out, kernel)
        assert got is not None, "your function returns None: end it with `return ...`"
        weights = kernel * kernel * c_in * c_out
        case = f"in={c_in}, out={c_out}, kernel={kernel}"
        if got == weights:
            raise AssertionError(f"{case}: you counted the convolution only; BatchNorm2d adds a weight (scale) "
                                 "and a bias (shift) per output channel")
        if got == weights + 3 * c_out:
            raise AssertionError(f"{case}: the convolution has no bias (bias=False): BatchNorm's shift replaces it")
        if got == weights + 4 * c_out:
            raise AssertionError(f"{case}: BatchNorm's running mean and variance are buffers, not parameters "
                                 "(no gradient): count only its weight and bias")
        assert got == expected, (f"{case}: you returned {got}, expected {expected} = kernel² · in · out (conv, "
                                 "no bias) + 2 · out (BatchNorm weight and bias); the rate adds nothing")
    EXERCISES.passed(2, "dilation widens the view for free: same parameters as an ordinary 3x3 convolution.")


@EXERCISES.solution(3)
def conv_macs(size: int, in_channels: int, out_channels: int, kernel: int) -> int:
    """Multiply-adds of a 'same' convolution: every weight is used once per output pixel (size x size of them)."""
    return size * size * out_channels * in_channels * kernel * kernel


def measured_conv_macs(size: int, in_channels: int, out_channels: int, kernel: int) -> int:
    """Multiply-adds of a 'same' convolution (stride 1, no bias) on a ``size x size`` input, measured.

    ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs (one multiply, one add) per multiply-add.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        conv(torch.zeros(1, in_channels, size, size))
    return counter.get_total_flops() // 2


@EXERCISES.checker(3, "write conv_macs(size, in_channels, out_channels, kernel) returning the multiply-adds")
def check_conv_macs(fn: Callable[[int, int, int, int], int]) -> None:
    """Check the learner's ``fn(size, in_channels, out_channels, kernel) -> int`` against measured counts.

    Raises:
        AssertionError: with a hint, on the first case where ``fn`` is wrong.
    """
    for size, c_in, c_out, kernel in MAC_CASES:
        expected = measured_conv_macs(size, c_in, c_out, kernel)
        got = fn(size, c_in, c_out, kernel)
        assert got is not None, "your function returns None: end it with `return ...`"
        case = f"size={size}, in={c_in}, out={c_out}, kernel={kernel}"
        if got == 2 * expected:
            raise AssertionError(f"{case}: you returned {got}, twice the answer: that is FLOPs (multiply + add); "
                                 "a multiply-add counts once")
        if got == c_in * c_out * kernel * kernel:
            raise AssertionError(f"{case}: that is the weight count; each of the size² output positions uses "
                                 "every weight once")
        assert got == expected, (f"{case}: you returned {got}, measured {expected} = size² · out · in · kernel² "
                                 "(one multiply-add per weight per output pixel)")
    EXERCISES.passed(3, "multiply-adds grow with the image area; parameters do not.")


# ----------------------------------------------------------------------------------------------------------
# Answers to the notebook's questions (nb03.show_answer(K))
# ----------------------------------------------------------------------------------------------------------
ANSWERS: dict[int, str] = {
    1: "Strides 1 (the input, 3 channels), 2 (64), 4 (64), 8 (128), 16 (256) and 32 (512). Shallow stages are wide "
       "maps of local patterns (edges, colour blobs): they know where the border runs. Deep stages are coarse maps "
       "where each pixel summarises a large region: they know what is lesion.",
    2: "A (2r + 1) x (2r + 1) window with the same 9 weights, its taps r pixels apart. Padding p = r (with stride 1) "
       "keeps the size: n_out = n + 2r - 2r - 1 + 1 = n.",
    3: "floor((64 + 2*0 - 6*(3 - 1) - 1) / 1) + 1 = 52.",
    4: "A 1x1 convolution, three 3x3 atrous convolutions at different rates, and image pooling (global average, 1x1 "
       "convolution, broadcast back). On a small map the atrous taps fall in the zero padding, so a large-rate "
       "branch degenerates into a 1x1 convolution; the image-level branch still gives every position a summary of "
       "the whole image.",
    5: "DeepLabV3's rates suit a 33x33 stride-16 map, where the windows span about 0.4, 0.75 and 1.1 map widths. On "
       "the 8x8 stride-32 map of a 256-pixel image, rates of 8 and more leave only the centre tap inside the map; "
       "rates (1, 2, 4) keep the same proportions (windows of about 3, 5 and 9 cells).",
    6: "Its map is 1x1: in training mode batch norm on a one-image batch (the last batch of an epoch can hold one) "
       "has a single value per channel and fails. So the convolution keeps its bias and has no batch norm; "
       "DeepLabV3 and torchvision do use batch norm there.",
    7: "The encoder features at strides 16, 8, 4 and 2, concatenated in the decoder, restore where the border runs. "
       "DeepLabV3 only upsamples its stride-8 output, so it has to guess the border at stride 8 and blurs it.",
    8: "Features learnt on a million images: faster training and better results from a few thousand images. The "
       "input must be normalised as in ImageNet training (RGB in [0, 1], minus mean (0.485, 0.456, 0.406), divided "
       "by std (0.229, 0.224, 0.225): transforms.IMAGENET_MEAN / IMAGENET_STD). Offline the download fails: a "
       "warning, and the encoder keeps random weights (strict_pretrained=True raises instead).",
    9: "A convolution's weights are shared by every position: its parameters depend on the kernel and the channels "
       "only. Its multiply-adds are positions x weights, and the number of positions grows with H x W: doubling the "
       "image side multiplies them by four.",
}
EXERCISES.answers(ANSWERS)
show_answer = EXERCISES.show_answer
