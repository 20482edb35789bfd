"""Notebooks 02 and 03: reference solutions pass, named wrong answers fail with their hint, stubs are reported."""
import pytest
import torch
from torch import nn

from helpers.course.exercises import nb02, nb03


def stub(*args):
    ...  # your code here
    raise NotImplementedError


CHECKERS = [nb02.check_se_params, nb02.check_bottleneck_rf, nb02.check_se_forward,
            nb03.check_conv_output_size, nb03.check_branch_params, nb03.check_conv_macs]


@pytest.mark.parametrize("check", CHECKERS, ids=lambda c: c.__name__)
def test_stub_is_reported_not_raised(check, capsys):
    assert check(stub) is None
    out = capsys.readouterr().out
    assert out.startswith(f"exercise {check.exercise} not attempted yet: ") and out.count("\n") == 1


@pytest.mark.parametrize("module", [nb02, nb03], ids=["nb02", "nb03"])
def test_reference_solutions_pass_and_print(module, solution_round_trip):
    checks = [c for c in CHECKERS if c.__module__ == module.__name__]
    for k, check in enumerate(checks, start=1):
        solution_round_trip(module, k, check, {"torch": torch})


# ------------------------------------------------------------------------------------------------- notebook 02
@pytest.mark.parametrize("wrong, hint", [
    (lambda c, r: 2 * c * max(1, c // r), "bias"),
    (lambda c, r: 2 * c * (c // r) + c // r + c, "max"),
    (lambda c, r: c * c // r + c, "expected"),
    (lambda c, r: None, "return"),
])
def test_se_params_rejects_wrong_counts(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb02.check_se_params(wrong)


def _empirical_receptive_field(depth: int) -> int:
    """Width of the input region that reaches one central bottleneck pixel of a conv/pool-only SEUNet encoder."""
    layers: list[nn.Module] = []
    for i in range(depth + 1):
        layers += [nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)]
        if i < depth:
            layers.append(nn.MaxPool2d(2))
    net = nn.Sequential(*layers)
    for conv in net:
        if isinstance(conv, nn.Conv2d):
            nn.init.constant_(conv.weight, 1.0)
            nn.init.zeros_(conv.bias)
    size = 2**depth * 24
    x = torch.rand(1, 1, size, size, requires_grad=True)  # random: max pool picks varied positions
    y = net(x)
    c = y.shape[-1] // 2
    y[0, 0, c, c].backward()
    cols = (x.grad[0, 0] != 0).any(dim=0).nonzero()
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_field_reference_matches_a_gradient_measurement(depth):
    # Max pooling routes the gradient to one pixel per window, so the measured span can fall short of the
    # theoretical field by less than one pooling window at each end, never exceed it.
    measured = _empirical_receptive_field(depth)
    assert nb02.bottleneck_rf(depth) - 2 * (2**depth - 1) <= measured <= nb02.bottleneck_rf(depth)
    assert nb02.bottleneck_rf(4) == 140


def test_bottleneck_rf_rejects_wrong_answers():
    with pytest.raises(AssertionError, match="max pool"):
        nb02.check_bottleneck_rf(lambda d: nb02.bottleneck_rf(d) - (2**d - 1))
    with pytest.raises(AssertionError, match="bottleneck"):
        nb02.check_bottleneck_rf(lambda d: nb02.bottleneck_rf(d) - 4 * 2**d)
    with pytest.raises(AssertionError, match="expected"):
        nb02.check_bottleneck_rf(lambda d: 3 + 2 * d)


_se = nb02.se_forward


@pytest.mark.parametrize("wrong, hint", [
    (lambda u, w1, b1, w2, b2: u * (torch.relu(u.mean((2, 3)) @ w1.T + b1) @ w2.T + b2)[:, :, None, None], "sigmoid"),
    (lambda u, w1, b1, w2, b2: _se(u, w1, b1, w2, b2).amax(dim=(2, 3)), "channel weights|shape"),
    (lambda u, w1, b1, w2, b2: torch.sigmoid(torch.relu(u.mean((2, 3)) @ w1.T + b1) @ w2.T + b2), "channel weights"),
    (lambda u, w1, b1, w2, b2: u * torch.sigmoid(torch.relu(u.amax((2, 3)) @ w1.T + b1) @ w2.T + b2)[:, :, None, None],
     "MEAN"),
    (lambda u, w1, b1, w2, b2: u * torch.sigmoid((u.mean((2, 3)) @ w1.T + b1) @ w2.T + b2)[:, :, None, None], "ReLU"),
    (lambda u, w1, b1, w2, b2: u * torch.sigmoid(torch.relu(u.mean((2, 3)) @ w1.T) @ w2.T)[:, :, None, None],
     "values differ"),
])
def test_se_forward_checker_rejects_mistakes(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb02.check_se_forward(wrong)


# ------------------------------------------------------------------------------------------------- notebook 03
def test_conv_output_size_rejects_wrong_answers():
    assert nb03.conv_output_size(64, 3, rate=6, padding=6) == 64
    with pytest.raises(AssertionError, match="ignored the rate"):
        nb03.check_conv_output_size(lambda s, k, r, p, st: (s + 2 * p - (k - 1) - 1) // st + 1)
    with pytest.raises(AssertionError, match="round down"):
        nb03.check_conv_output_size(lambda s, k, r, p, st: (s + 2 * p - r * (k - 1) - 1) / st + 1)
    with pytest.raises(AssertionError, match="PyTorch gives"):
        nb03.check_conv_output_size(lambda s, k, r, p, st: s)


@pytest.mark.parametrize("wrong, hint", [
    (lambda i, o, k: k * k * i * o, "BatchNorm2d adds"),
    (lambda i, o, k: k * k * i * o + 3 * o, "no bias"),
    (lambda i, o, k: k * k * i * o + 4 * o, "buffers"),
    (lambda i, o, k: 6 * k * k * i * o + 2 * o, "rate adds nothing")])
def test_branch_params_rejects_wrong_answers(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        nb03.check_branch_params(wrong)


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, i, o, k: 2 * s * s * i * o * k * k, "FLOPs"),
    (lambda s, i, o, k: i * o * k * k, "weight count"),
    (lambda s, i, o, k: s * i * o * k * k, "measured")])
def test_conv_macs_rejects_wrong_answers(wrong, hint):
    assert nb03.measured_conv_macs(8, 4, 6, 3) == 8 * 8 * 4 * 6 * 9
    with pytest.raises(AssertionError, match=hint):
        nb03.check_conv_macs(wrong)


def test_se_forward_without_the_transpose_is_named():
    def untransposed(u, w1, b1, w2, b2):
        return u * torch.sigmoid(torch.relu(u.mean((2, 3)) @ w1 + b1) @ w2 + b2)[:, :, None, None]
    with pytest.raises(AssertionError, match=r"nn.Linear stores its weight as \(out, in\).*z @ w1.T"):
        nb02.check_se_forward(untransposed)
