"""Exercises of notebook 02 (SE U-Net from scratch): reference solutions and checkers.

1. ``se_params(channels, reduction)``: the parameter count of an SE block, computed, not counted.
2. ``bottleneck_rf(depth)``: the receptive field of one bottleneck pixel of ``SEUNet(depth=depth)``.
3. ``se_forward(u, w1, b1, w2, b2)``: the SE forward pass with plain tensor operations.

Each ``check_*`` compares the learner's function with a reference on several inputs (the references are
cross-checked against the real modules in ``helpers.models``), says "not attempted yet" to a stub and raises
``AssertionError`` with a hint on the first wrong answer. ``show_solution(K)`` prints the reference solution.
Conventions: :mod:`helpers.course.exercises.base`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from helpers.course.exercises.base import Exercises
from helpers.models.factory import count_parameters
from helpers.models.se_unet import SEBlock

EXERCISES = Exercises("02")
show_solution = EXERCISES.show_solution

#: (channels, reduction) pairs the SE parameter checker tries; (4, 16) and (12, 16) need the max(1, .) floor.
SE_CASES: tuple[tuple[int, int], ...] = ((64, 16), (32, 16), (512, 16), (48, 8), (100, 3), (4, 16), (12, 16))


def se_hidden_units(channels: int, reduction: int) -> int:
    """Hidden units of an SE block: ``max(1, channels // reduction)``."""
    return max(1, channels // reduction)


@EXERCISES.solution(1)
def se_params(channels: int, reduction: int) -> int:
    """Parameters of SEBlock(channels, reduction): W1 (C/r x C) + b1 (C/r) + W2 (C x C/r) + b2 (C)."""
    hidden = max(1, channels // reduction)
    return channels * hidden + hidden + hidden * channels + channels


@EXERCISES.checker(1, "write se_params(channels, reduction) returning the parameter count of an SE block")
def check_se_params(fn: Callable[[int, int], int]) -> None:
    """Check the learner's ``fn(channels, reduction) -> int`` SE parameter count.

    Raises:
        AssertionError: with a hint, on the first (channels, reduction) where ``fn`` is wrong.
    """
    for channels, reduction in SE_CASES:
        expected = se_params(channels, reduction)
        assert expected == count_parameters(SEBlock(channels, reduction)), "reference out of date: report a bug"
        got = fn(channels, reduction)
        assert got is not None, "your function returns None: end it with `return ...`"
        hidden = se_hidden_units(channels, reduction)
        if got == 2 * channels * hidden:
            raise AssertionError(f"for C={channels}, r={reduction} you counted the weights only: each nn.Linear "
                                 f"also has a bias, {hidden} for W1 and {channels} for W2")
        if channels // reduction == 0 and got == channels:  # 0 hidden units: only W2's bias is left
            raise AssertionError(f"C={channels}, r={reduction}: C // r is 0 here, but an SE block keeps at least "
                                 "one hidden unit: hidden = max(1, C // r)")
        assert int(got) == got and int(got) == expected, (
            f"for C={channels}, r={reduction} you returned {got}, expected {expected}: W1 is C x C/r, W2 is C/r x C, "
            "plus one bias per output unit, with C/r = max(1, C // r)")
    EXERCISES.passed(1, "an SE block costs about 2C²/r parameters, tiny next to a 3x3 convolution's 9C².")


@EXERCISES.solution(2)
def bottleneck_rf(depth: int) -> int:
    """Receptive field (pixels) of one bottleneck pixel of SEUNet(depth=depth), convolutions and pools only.

    Walk the layers with r <- r + (k - 1) * j, then j <- j * stride: each ConvBlock is two 3x3 convolutions
    (stride 1), each 2x2 max pool has stride 2, and the bottleneck ConvBlock follows the last pool.
    """
    r, j = 1, 1
    for _ in range(depth):
        r += 2 * (3 - 1) * j  # ConvBlock: two 3x3 convolutions
        r += (2 - 1) * j      # 2x2 max pool ...
        j *= 2                # ... with stride 2
    return r + 2 * (3 - 1) * j  # bottleneck ConvBlock


@EXERCISES.checker(2, "write bottleneck_rf(depth) returning the receptive field of one bottleneck pixel")
def check_bottleneck_rf(fn: Callable[[int], int]) -> None:
    """Check the learner's ``fn(depth) -> int`` bottleneck receptive field for depths 1 to 5.

    Raises:
        AssertionError: with a hint, on the first depth where ``fn`` is wrong.
    """
    for depth in range(1, 6):
        expected = bottleneck_rf(depth)
        got = fn(depth)
        assert got is not None, "your function returns None: end it with `return ...`"
        no_pool = expected - (2**depth - 1)
        no_bottleneck = expected - 4 * 2**depth
        if got == no_pool:
            raise AssertionError(f"depth={depth}: you returned {got}; a 2x2 max pool also widens the field, by "
                                 "(2 - 1) * jump, before it doubles the jump")
        if got == no_bottleneck:
            raise AssertionError(f"depth={depth}: you returned {got}; add the bottleneck ConvBlock after the last "
                                 "pool (two more 3x3 convolutions at the final jump)")
        assert got == expected, (f"depth={depth}: you returned {got}, expected {expected}. Start from r=1, j=1; "
                                 "for each layer r <- r + (k - 1) * j, then j <- j * stride")
    EXERCISES.passed(2, f"depth 4 sees {bottleneck_rf(4)} pixels per bottleneck pixel; depth 5 sees "
                        f"{bottleneck_rf(5)}.")


@EXERCISES.solution(3)
def se_forward(u: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
               b2: torch.Tensor) -> torch.Tensor:
    """SE forward pass for u (N, C, H, W) with nn.Linear-shaped weights: squeeze, excite, scale."""
    z = u.mean(dim=(2, 3))                                    # squeeze: (N, C)
    s = torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)  # excitation: (N, C), each in (0, 1)
    return u * s[:, :, None, None]                            # scale every channel


def _se_reference(u: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
                  b2: torch.Tensor) -> torch.Tensor:
    """SE forward pass with given weights, computed by :class:`helpers.models.SEBlock`."""
    block = SEBlock(u.shape[1], reduction=u.shape[1] // w1.shape[0])
    with torch.no_grad():
        block.fc1.weight.copy_(w1)
        block.fc1.bias.copy_(b1)
        block.fc2.weight.copy_(w2)
        block.fc2.bias.copy_(b2)
        return block(u)


@EXERCISES.checker(3, "write se_forward(u, w1, b1, w2, b2) returning the rescaled features (N, C, H, W)")
def check_se_forward(fn: Callable[..., torch.Tensor]) -> None:
    """Check the learner's ``fn(u, w1, b1, w2, b2) -> tensor`` SE forward pass on random inputs.

    ``u`` is ``(N, C, H, W)``, ``w1`` ``(C/r, C)``, ``b1`` ``(C/r,)``, ``w2`` ``(C, C/r)``, ``b2`` ``(C,)``
    (the shapes of ``nn.Linear`` weights); the answer must be ``(N, C, H, W)``.

    Raises:
        AssertionError: with a hint, when the output's shape or values are wrong, or a matrix product fails
            (the weights used untransposed).
    """
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(2, 8, 5, 6, generator=gen) + 0.5
    w1, b1 = torch.randn(2, 8, generator=gen), torch.tensor([-4.0, 4.0])  # hidden unit 0 stays < 0: ReLU matters
    w2, b2 = torch.randn(8, 2, generator=gen), torch.randn(8, generator=gen)
    expected = _se_reference(u, w1, b1, w2, b2)
    with torch.no_grad():
        try:
            got = fn(u.clone(), w1, b1, w2, b2)
        except RuntimeError as err:
            if "cannot be multiplied" not in str(err) and "size mismatch" not in str(err):
                raise
            raise AssertionError(f"a matrix product failed ({err}): nn.Linear stores its weight as (out, in), so w1 "
                                 f"is {tuple(w1.shape)} = (C/r, C) and w2 {tuple(w2.shape)} = (C, C/r); the squeezed "
                                 "z is (N, C), so transpose the weights: z @ w1.T + b1") from err
    assert got is not None, "your function returns None: end it with `return ...`"
    got = torch.as_tensor(got)
    if got.shape == (2, 8):
        raise AssertionError("you returned the channel weights s (N, C): multiply them back onto u, "
                             "s[:, :, None, None] * u")
    assert got.shape == u.shape, f"output shape {tuple(got.shape)}, expected {tuple(u.shape)} (same as u)"
    z = u.mean(dim=(2, 3))
    no_sigmoid = u * (torch.relu(z @ w1.T + b1) @ w2.T + b2)[:, :, None, None]
    max_pool = u * torch.sigmoid(torch.relu(u.amax(dim=(2, 3)) @ w1.T + b1) @ w2.T + b2)[:, :, None, None]
    no_relu = u * torch.sigmoid((z @ w1.T + b1) @ w2.T + b2)[:, :, None, None]
    for wrong, hint in ((no_sigmoid, "squash the excitation with a sigmoid so every s_c lies in (0, 1)"),
                        (max_pool, "squeeze with the MEAN over H and W (global average pooling), not the max"),
                        (no_relu, "apply a ReLU between the two layers: s = sigmoid(W2 relu(W1 z + b1) + b2)")):
        if torch.allclose(got, wrong, atol=1e-5) and not torch.allclose(got, expected, atol=1e-5):
            raise AssertionError(hint)
    assert torch.allclose(got, expected, atol=1e-5), (
        "values differ from SEBlock: z = u.mean(dim=(2, 3)); s = sigmoid(relu(z @ w1.T + b1) @ w2.T + b2); "
        "return u * s[:, :, None, None]")
    EXERCISES.passed(3, "your SE forward pass matches helpers.models.SEBlock.")


# ----------------------------------------------------------------------------------------------------------
# Answers to the notebook's questions (nb02.show_answer(K))
# ----------------------------------------------------------------------------------------------------------
ANSWERS: dict[int, str] = {
    1: "One row and column of zeros on every side, so a 3x3 convolution with stride 1 keeps height and width (and "
       "the skips of the U-Net line up). Batch norm follows each convolution: it subtracts the channel mean, which "
       "cancels any constant bias, and its own shift (beta) plays the bias's role.",
    2: "Start r = 1, j = 1. Block: 3x3 -> r = 3, 3x3 -> r = 5. Pool (k = 2, s = 2): r = 5 + 1 = 6, then j = 2. "
       "Block: r = 6 + 2*2 = 10, then 14. After a pooling two neighbouring positions are j = 2 input pixels apart, "
       "so each later 3x3 kernel adds (k - 1) j = 4 pixels instead of 2; every pooling doubles that again.",
    3: "Squeeze: z_c = (1 / HW) sum_ij u_c(i, j), the global average of each channel. Excitation: s = sigmoid(W2 "
       "relu(W1 z + b1) + b2) with W1 of shape (C/r, C) and W2 (C, C/r), so each s_c is in (0, 1). Scale: "
       "x~_c = s_c u_c.",
    4: "W1 and W2 hold 2 C (C/r) weights, plus C/r + C biases: about 2C^2/r, C^2/8 at r = 16. One 3x3 convolution "
       "from C to C channels has 9C^2 weights, about 72 times more.",
    5: "Right after batch norm and ReLU the channel means z are about 0.4 for every image, so W1 z is nearly the same "
       "for all images; with a bias near 0 about half the hidden units start negative, output 0 after the ReLU, get "
       "no gradient and never learn (dead units). A bias of +1 starts them positive, alive. Hu et al. use the usual "
       "initialisation; this is the course's choice.",
    6: "The encoder's full-resolution features: precise edges and the exact place of the lesion border, which the "
       "poolings threw away. Each of the DEPTH poolings halves the side and the decoder doubles it back, so the "
       "side must divide by 2^DEPTH or the upsampled map and its skip differ by a pixel and cannot be concatenated "
       "(build_model pads and crops instead).",
    7: "It loads its own model's weights into helpers.models.SEUNet with strict loading (every parameter name and "
       "shape must match, nothing missing or extra) and checks that both give the same output on the same input.",
    8: "That model, loss and optimiser are wired so that the loss can reach near zero on a few images. It catches a "
       "detached tensor or missing gradient, a shape broadcast silently (a mask of the wrong shape), a loss with "
       "the wrong sign or on probabilities instead of logits, a learning rate off by orders of magnitude, and masks "
       "that do not match their images.",
    9: "In train mode batch norm normalises with the statistics of the current batch; in eval mode with running "
       "averages (momentum 0.1), which after a few large steps lag behind the weights, so the memorised batch is "
       "normalised with stale statistics. Predict in eval mode (model.eval()): it does not depend on which other "
       "images share the batch.",
}
EXERCISES.answers(ANSWERS)
show_answer = EXERCISES.show_answer
