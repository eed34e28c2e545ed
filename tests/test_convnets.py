"""Tests for dlbook.convnets (section 3.2): the models' shapes and parameter counts against the
formulas of the section, the residual block against the same computation written with
torch.nn.functional in float64 (forward and backward), the shuffle and shift helpers against
their definitions (hypothesis varies the shapes), the tools that look inside a network, and
bad input. The section's exercise checks are tested in tests/test_exercises_cnns.py."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

from dlbook import convnets
from dlbook.utils import portable_init_

f64 = torch.float64


def _conv_params(c_in: int, c_out: int, k: int, dims: int) -> int:
    return c_out * (c_in * k**dims + 1)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


# --- Reshape ----------------------------------------------------------------------------------

def test_reshape_flat_rows_and_passes_shaped_input_unchanged():
    r = convnets.Reshape(1, 8, 8)
    x = _randn(5, 64)
    assert r(x).shape == (5, 1, 8, 8)
    assert torch.equal(r(x).reshape(5, 64), x)
    shaped = _randn(3, 1, 8, 8)
    assert r(shaped) is shaped
    assert "1, 8, 8" in repr(r)


@pytest.mark.parametrize("bad", [_randn(5, 63), _randn(64), _randn(2, 2, 32),
                                 torch.zeros(4, 64, dtype=torch.int64)])
def test_reshape_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="expected x of shape|convert"):
        convnets.Reshape(1, 8, 8)(bad)


@pytest.mark.parametrize("shape", [(), (0, 8), (1, -2), (1.5,), (True, 8)])
def test_reshape_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="shape must be"):
        convnets.Reshape(*shape)


# --- the models -------------------------------------------------------------------------------

@pytest.mark.parametrize("channels, hidden, image_size, batch_norm",
                         [((8, 16), 64, 8, True), ((4, 8), 20, 8, False), ((3, 5), 7, 12, True),
                          ((1, 1), 1, 4, False), ((6, 16), 32, 16, True)])
def test_lenet_shapes_and_parameter_count(channels, hidden, image_size, batch_norm):
    c1, c2 = channels
    net = convnets.lenet(channels, hidden, image_size=image_size, batch_norm=batch_norm,
                         dtype=f64)
    side = image_size // 4
    expected = (_conv_params(1, c1, 3, 2) + _conv_params(c1, c2, 3, 2)
                + (c2 * side * side + 1) * hidden + (hidden + 1) * 10
                + (2 * (c1 + c2) if batch_norm else 0))
    assert convnets.count_parameters(net) == expected
    assert net(_randn(7, image_size**2)).shape == (7, 10)
    pooled = [s for n, s in convnets.layer_shapes(net, _randn(2, image_size**2))
              if n == "MaxPool2d"]
    assert pooled == [(2, c1, image_size // 2, image_size // 2), (2, c2, side, side)]
    assert any(isinstance(m, nn.BatchNorm2d) for m in net) == batch_norm


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=(8,)), "2 entries"), (dict(channels=(8, 0)), "positive"),
    (dict(hidden=0), "hidden"), (dict(classes=1), "classes"), (dict(image_size=10), "multiple"),
    (dict(image_size=2), "image_size"), (dict(batch_norm=1), "True or False")])
def test_lenet_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnets.lenet(**kwargs)


@settings(max_examples=25, deadline=None)
@given(stages=st.integers(1, 3), data=st.data())
def test_cnn1d_shapes_and_parameter_count(stages, data):
    channels = data.draw(st.lists(st.integers(1, 6), min_size=stages, max_size=stages))
    kernels = data.draw(st.lists(st.sampled_from([1, 3, 5]), min_size=stages, max_size=stages))
    length = 2**stages * data.draw(st.integers(1, 6))
    batch_norm = data.draw(st.booleans())
    net = convnets.cnn1d(channels, classes=4, length=length, kernel_size=kernels,
                         batch_norm=batch_norm, dtype=f64)
    c_in, expected = 1, 0
    for c, k in zip(channels, kernels):
        expected += _conv_params(c_in, c, k, 1) + (2 * c if batch_norm else 0)
        c_in = c
    expected += (c_in * (length >> stages) + 1) * 4
    assert convnets.count_parameters(net) == expected
    assert net(_randn(3, length)).shape == (3, 4)
    pooled = [s for n, s in convnets.layer_shapes(net, _randn(2, length)) if n == "MaxPool1d"]
    assert pooled == [(2, c, length >> (i + 1)) for i, c in enumerate(channels)]


def test_cnn1d_default_is_the_sections_network():
    net = convnets.cnn1d()
    assert convnets.count_parameters(net) == (_conv_params(1, 8, 5, 1) + 16
                                              + _conv_params(8, 16, 3, 1) + 32
                                              + _conv_params(16, 16, 3, 1) + 32 + 81 * 10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=()), "channels"), (dict(kernel_size=(5, 3)), "3 entries"),
    (dict(kernel_size=(5, 4, 3)), "odd"), (dict(length=36), "multiple of 2\\*\\*3"),
    (dict(classes=0), "classes"), (dict(batch_norm=None), "True or False")])
def test_cnn1d_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnets.cnn1d(**kwargs)


def _block_by_hand(block: convnets.ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's forward pass in training mode written with torch.nn.functional."""
    def bn(z, layer):
        if isinstance(layer, nn.Identity):
            return z
        return F.batch_norm(z, None, None, layer.weight, layer.bias, training=True, eps=layer.eps)

    c1, c2 = block.conv1, block.conv2
    h = F.relu(bn(F.conv1d(x, c1.weight, c1.bias, padding=c1.padding), block.bn1))
    branch = bn(F.conv1d(h, c2.weight, c2.bias, padding=c2.padding), block.bn2)
    return F.relu(x + branch) if block.skip else F.relu(branch)


@pytest.mark.parametrize("skip, batch_norm, channels, kernel, length",
                         [(s, b, c, k, n) for (s, b), (c, k, n) in itertools.product(
                             itertools.product([True, False], repeat=2),
                             [(1, 1, 5), (3, 3, 7), (8, 5, 20), (4, 3, 1)])])
def test_residual_block_matches_its_definition(skip, batch_norm, channels, kernel, length):
    block = convnets.ResidualBlock(channels, kernel, skip=skip, batch_norm=batch_norm, dtype=f64)
    portable_init_(block, seed=channels + kernel)
    if batch_norm:  # non-trivial scales and shifts
        with torch.no_grad():
            for bn in (block.bn1, block.bn2):
                bn.weight.copy_(1 + _randn(channels, seed=1))
                bn.bias.copy_(_randn(channels, seed=2))
    x = _randn(4, channels, length, seed=3).requires_grad_()
    ours, ref = block(x), _block_by_hand(block, x)
    assert_close(ours, ref)
    assert_close(F.relu(block.branch(x) + (x if skip else 0)), ref)
    dy = _randn(*ours.shape, seed=4)
    params = [x] + list(block.parameters())
    for a, b in zip(torch.autograd.grad(ours, params, dy), torch.autograd.grad(ref, params, dy)):
        assert_close(a, b)
    assert repr(block).count(f"skip={skip}") == 1


def test_residual_block_with_a_zero_branch_is_the_identity_on_nonnegative_input():
    x = torch.rand(3, 4, 9, dtype=f64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_()
    dy = _randn(3, 4, 9, seed=1)
    for skip in (True, False):
        block = portable_init_(convnets.ResidualBlock(4, skip=skip, dtype=f64), seed=0)
        with torch.no_grad():
            block.bn2.weight.zero_()
        y = block(x)
        (dx,) = torch.autograd.grad(y, x, dy)
        if skip:
            assert_close(y, x)
            assert_close(dx, dy)
        else:
            assert not y.any() and not dx.any()


@pytest.mark.parametrize("x, match", [(_randn(2, 3, 10), "expected x of shape"),
                                      (_randn(4, 10), "expected x of shape"),
                                      (torch.zeros(2, 4, 10), "convert")])
def test_residual_block_rejects_bad_input(x, match):
    block = convnets.ResidualBlock(4, dtype=f64)
    with pytest.raises(ValueError, match=match):
        block(x)


@pytest.mark.parametrize("kwargs, match", [(dict(channels=0), "channels"),
                                           (dict(channels=4, kernel_size=2), "odd"),
                                           (dict(channels=4, skip="yes"), "True or False")])
def test_residual_block_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnets.ResidualBlock(**kwargs)


@pytest.mark.parametrize("blocks, channels, length, batch_norm",
                         [(0, 4, 40, True), (1, 8, 40, True), (3, 2, 10, False), (6, 8, 40, True)])
def test_resnet1d_depth_shapes_and_same_parameters_with_or_without_skips(blocks, channels,
                                                                         length, batch_norm):
    nets = [convnets.resnet1d(blocks, channels, length=length, skip=skip,
                              batch_norm=batch_norm, dtype=f64) for skip in (True, False)]
    for net in nets:
        convs = [m for m in net.modules() if isinstance(m, nn.Conv1d)]
        assert len(convs) == 2 * blocks + 1
        assert net(_randn(3, length)).shape == (3, 10)
        blocks_found = [m for m in net if isinstance(m, convnets.ResidualBlock)]
        assert len(blocks_found) == blocks
    with_skip, plain = ({k: v.shape for k, v in n.state_dict().items()} for n in nets)
    assert with_skip == plain
    expected = (_conv_params(1, channels, 5, 1) + blocks * 2 * _conv_params(channels, channels,
                                                                          3, 1)
                + (2 * channels * (2 * blocks + 1) if batch_norm else 0) + (channels + 1) * 10)
    assert convnets.count_parameters(nets[0]) == expected


def test_resnet1d_with_and_without_skips_compute_different_functions():
    x = _randn(5, 40)
    outs = []
    for skip in (True, False):
        net = portable_init_(convnets.resnet1d(2, skip=skip, dtype=f64), seed=0)
        outs.append(net(x))
    assert not torch.allclose(*outs)


@pytest.mark.parametrize("kwargs, match", [(dict(blocks=-1), "blocks"), (dict(length=1), "length"),
                                           (dict(classes=1), "classes"),
                                           (dict(skip=0), "True or False")])
def test_resnet1d_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnets.resnet1d(**kwargs)


# --- shuffle and shift ------------------------------------------------------------------------

def test_fixed_permutation_is_a_seeded_permutation_that_ignores_the_global_generator():
    a = convnets.fixed_permutation(40, seed=0)
    torch.manual_seed(123)
    torch.rand(10)
    b = convnets.fixed_permutation(40, seed=0)
    assert torch.equal(a, b) and a.dtype == torch.int64
    assert torch.equal(a.sort().values, torch.arange(40))
    assert not torch.equal(a, convnets.fixed_permutation(40, seed=1))
    assert not torch.equal(a, torch.arange(40))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), lead=st.lists(st.integers(1, 4), max_size=2),
       seed=st.integers(0, 1000))
def test_shuffle_positions_follows_its_definition_and_argsort_undoes_it(n, lead, seed):
    x = _randn(*lead, n, seed=seed)
    perm = convnets.fixed_permutation(n, seed=seed)
    out = convnets.shuffle_positions(x, perm)
    for j in range(n):
        assert torch.equal(out[..., j], x[..., int(perm[j])])
    assert torch.equal(convnets.shuffle_positions(out, perm.argsort()), x)


@pytest.mark.parametrize("perm", [torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2, 2, 3]),
                                  torch.arange(5.0), torch.arange(5).reshape(1, 5), [0, 1, 2, 3, 4],
                                  torch.tensor([1, 2, 3, 4, 5])])
def test_shuffle_positions_rejects_what_is_not_a_permutation(perm):
    with pytest.raises(ValueError):
        convnets.shuffle_positions(_randn(3, 5), perm)


@pytest.mark.parametrize("n, seed", [(0, 0), (5, -1), (2.0, 0), (True, 0)])
def test_fixed_permutation_rejects_bad_arguments(n, seed):
    with pytest.raises(ValueError, match="whole number"):
        convnets.fixed_permutation(n, seed)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 6), channels=st.sampled_from([None, 1, 3]), n=st.integers(1, 25),
       max_shift=st.integers(0, 30), seed=st.integers(0, 10_000), circular=st.booleans())
def test_random_shift_is_a_roll_per_signal(b, channels, n, max_shift, seed, circular):
    shape = (b, n) if channels is None else (b, channels, n)
    x = _randn(*shape, seed=seed)
    out = convnets.random_shift(x, max_shift, generator=torch.Generator().manual_seed(seed),
                                circular=circular)
    shifts = torch.randint(-max_shift, max_shift + 1, (b,),
                           generator=torch.Generator().manual_seed(seed))
    for row, k, o in zip(x, shifts.tolist(), out):
        want = torch.roll(row, k, dims=-1)
        if not circular:
            t = torch.arange(n)
            want = want.masked_fill((t - k < 0) | (t - k >= n), 0)
        assert torch.equal(o, want)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_random_shift_by_zero_is_the_identity_and_shifts_differ_between_rows():
    x = _randn(50, 40)
    assert torch.equal(convnets.random_shift(x, 0), x)
    out = convnets.random_shift(x, 5, generator=torch.Generator().manual_seed(0))
    moved = [int(next(k for k in range(-5, 6) if torch.equal(o, torch.roll(r, k))))
             for r, o in zip(x, out)]
    assert len(set(moved)) > 5


@pytest.mark.parametrize("args, kwargs, match", [
    ((_randn(5), 2), {}, "batch of signals"), (([[1.0, 2.0]], 1), {}, "torch.Tensor"),
    ((_randn(2, 5), -1), {}, "max_shift"), ((_randn(2, 5), 1.5), {}, "max_shift"),
    ((_randn(2, 5), 1), dict(generator=0), "generator"),
    ((_randn(2, 5), 1), dict(circular="no"), "True or False")])
def test_random_shift_rejects_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnets.random_shift(*args, **kwargs)


def _batches():
    x, y = _randn(12, 10), torch.arange(12)
    return [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]


def test_shifted_shifts_every_batch_keeps_the_labels_and_repeats_for_a_seed():
    loader = _batches()
    wrapped = convnets.Shifted(loader, 3, seed=7)
    assert len(wrapped) == 3
    gen = torch.Generator().manual_seed(7)
    epochs = [list(wrapped), list(wrapped)]
    for epoch in epochs:
        for (x, y), (xs, ys) in zip(loader, epoch):
            assert torch.equal(ys, y)
            assert torch.equal(xs, convnets.random_shift(x, 3, generator=gen))
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(*epochs)), "new shifts each epoch"
    again = list(convnets.Shifted(loader, 3, seed=7))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epochs[0], again))


@pytest.mark.parametrize("args, kwargs", [((5, 3), {}), ((_batches(), -1), {}),
                                          ((_batches(), 2), dict(seed=-3))])
def test_shifted_rejects_bad_arguments(args, kwargs):
    with pytest.raises(ValueError):
        convnets.Shifted(*args, **kwargs)


# --- looking inside ---------------------------------------------------------------------------

def test_count_parameters_counts_trainable_numbers_only():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    assert convnets.count_parameters(net) == 16 + 10
    net[0].weight.requires_grad_(False)
    assert convnets.count_parameters(net) == 4 + 10
    with pytest.raises(ValueError, match="nn.Module"):
        convnets.count_parameters("net")


def test_layer_shapes_leaves_the_model_as_it_was():
    net = convnets.lenet(dtype=f64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    shapes = convnets.layer_shapes(net, _randn(3, 64))
    assert shapes[0] == ("input", (3, 64)) and shapes[1] == ("Reshape", (3, 1, 8, 8))
    assert shapes[-1] == ("Linear", (3, 10)) and len(shapes) == len(net) + 1
    assert net.training
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="nn.Sequential"):
        convnets.layer_shapes(convnets.ResidualBlock(2), _randn(1, 2, 4))


def test_feature_maps_are_the_relu_outputs_in_order_and_hooks_are_removed():
    net = portable_init_(convnets.lenet(dtype=f64), seed=0)
    x = _randn(2, 64)
    maps = convnets.feature_maps(net, x)
    assert [m.shape for m in maps] == [(2, 12, 8, 8), (2, 24, 4, 4), (2, 64)]
    net.eval()
    with torch.no_grad():
        want = net[:4](x)
    net.train()
    assert_close(maps[0], want)
    assert all(not m._forward_hooks for m in net.modules())
    assert net.training
    convs = convnets.feature_maps(net, x, kinds=(nn.Conv2d, nn.Linear))
    assert [m.shape[1] for m in convs] == [12, 24, 64, 10]
    with pytest.raises(ValueError, match="kinds"):
        convnets.feature_maps(net, x, kinds=nn.ReLU)


def test_conv_grad_norms_match_autograd_and_leave_no_trace():
    net = portable_init_(convnets.resnet1d(2, 4, dtype=f64), seed=1)
    x, y = _randn(16, 40), torch.arange(16) % 10
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    norms = convnets.conv_grad_norms(net, x, y)
    assert not net.training
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    net.train()
    F.cross_entropy(net(x), y).backward()
    want = torch.stack([m.weight.grad.norm() for m in net.modules() if isinstance(m, nn.Conv1d)])
    assert norms.shape == (5,)
    assert_close(norms, want)


def test_conv_grad_norms_rejects_bad_input():
    with pytest.raises(ValueError, match="no convolution"):
        convnets.conv_grad_norms(nn.Linear(3, 2), _randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same number"):
        convnets.conv_grad_norms(convnets.cnn1d(dtype=f64), _randn(4, 40), torch.tensor([0, 1]))
