"""Tests for dlbook.cnn (section 3.1): convolution and pooling from scratch against PyTorch in
float64, forward and backward, on many random configurations; gradcheck on the hand-written
backward passes; the size, parameter, FLOP and receptive-field formulas; bad input. The
section's exercise checks are tested in tests/test_exercises_convolution.py."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode

from dlbook import cnn

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's copy notice
f64 = torch.float64
INF, NAN = float("inf"), float("nan")
TORCH = {1: F.conv1d, 2: F.conv2d}
OURS = {1: cnn.conv1d, 2: cnn.conv2d}
FAST = settings(max_examples=60, deadline=None)


def _config(rng: random.Random, dims: int) -> dict:
    """A random convolution: groups (depthwise too), stride, padding (ints, tuples, strings),
    dilation, bias or not, batched or not."""
    groups = rng.choice([1, 1, 2, 3])
    c_in, c_out = groups * rng.randint(1, 3), groups * rng.randint(1, 3)
    if rng.random() < 0.2:  # depthwise: one group per input channel
        groups = c_in = rng.randint(1, 4)
        c_out = c_in * rng.randint(1, 2)
    kernel = tuple(rng.randint(1, 4) for _ in range(dims))
    stride = rng.choice([1, rng.randint(1, 3), tuple(rng.randint(1, 3) for _ in range(dims))])
    dilation = rng.choice([1, 2, tuple(rng.randint(1, 2) for _ in range(dims))])
    padding = rng.choice(["same", "valid", 0, 1, 2, tuple(rng.randint(0, 2) for _ in range(dims))])
    if padding == "same":
        stride = 1
    size = tuple(rng.randint(1, 9) for _ in range(dims))
    batch = rng.choice([None, 1, 3])
    return dict(x_shape=((batch,) if batch else ()) + (c_in,) + size,
                w_shape=(c_out, c_in // groups) + kernel, bias=rng.random() < 0.5,
                kw=dict(stride=stride, padding=padding, dilation=dilation, groups=groups))


def _tensors(cfg: dict, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    x = torch.randn(cfg["x_shape"], dtype=f64, generator=gen).requires_grad_()
    w = torch.randn(cfg["w_shape"], dtype=f64, generator=gen).requires_grad_()
    b = torch.randn(cfg["w_shape"][0], dtype=f64, generator=gen).requires_grad_() \
        if cfg["bias"] else None
    return x, w, b


def _valid_configs(dims: int, n: int, seed: int) -> list[dict]:
    """``n`` random configurations that PyTorch accepts."""
    rng, found = random.Random(seed), []
    while len(found) < n:
        cfg = _config(rng, dims)
        x = torch.zeros(cfg["x_shape"], dtype=f64)
        try:
            TORCH[dims](x, torch.zeros(cfg["w_shape"], dtype=f64), **cfg["kw"])
        except RuntimeError:
            continue
        found.append(cfg)
    return found


# --- convolution against PyTorch --------------------------------------------------------------

@pytest.mark.parametrize("dims", [1, 2])
def test_conv_matches_torch_forward_and_backward(dims):
    gen = torch.Generator().manual_seed(dims)
    for cfg in _valid_configs(dims, 120, seed=dims):
        x, w, b = _tensors(cfg, gen)
        params = [t for t in (x, w, b) if t is not None]
        ref = TORCH[dims](x, w, b, **cfg["kw"])
        out = OURS[dims](x, w, b, **cfg["kw"])
        assert out.shape == ref.shape, cfg
        assert_close(out, ref)
        dy = torch.randn(ref.shape, dtype=f64, generator=gen)
        for mine, theirs in zip(torch.autograd.grad(out, params, dy),
                                torch.autograd.grad(ref, params, dy)):
            assert_close(mine, theirs)


def _size_arg(draw, dims: int, low: int, high: int):
    """An int, or a tuple of ``dims`` ints, as F.conv*d accepts either."""
    if draw(st.booleans()):
        return draw(st.integers(low, high))
    return tuple(draw(st.integers(low, high)) for _ in range(dims))


@st.composite
def conv_setups(draw):
    """A convolution PyTorch accepts, with its tensors in float64."""
    dims = draw(st.sampled_from([1, 2]))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    kw = dict(stride=_size_arg(draw, dims, 1, 3), dilation=_size_arg(draw, dims, 1, 2),
              padding=draw(st.sampled_from(["valid", "same", "number"])), groups=groups)
    if kw["padding"] == "number":
        kw["padding"] = _size_arg(draw, dims, 0, 2)
    if kw["padding"] == "same":
        kw["stride"] = 1
    batch = draw(st.sampled_from([(), (1,), (2,)]))
    size = tuple(draw(st.integers(1, 9)) for _ in range(dims))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, c_in, *size, dtype=f64, generator=gen)
    w = torch.randn(c_out, c_in // groups, *kernel, dtype=f64, generator=gen)
    b = torch.randn(c_out, dtype=f64, generator=gen) if draw(st.booleans()) else None
    try:
        TORCH[dims](x, w, b, **kw)
    except RuntimeError:               # e.g. a dilated kernel wider than the padded input
        assume(False)
    return dims, x, w, b, kw


@FAST
@given(conv_setups())
def test_conv_matches_torch_on_hypothesis_configurations(setup):
    dims, x, w, b, kw = setup
    params = [t.requires_grad_() for t in (x, w, b) if t is not None]
    ref, out = TORCH[dims](x, w, b, **kw), OURS[dims](x, w, b, **kw)
    assert out.shape == ref.shape
    assert_close(out, ref)
    dy = torch.randn(ref.shape, dtype=f64, generator=torch.Generator().manual_seed(0))
    for mine, theirs in zip(torch.autograd.grad(out, params, dy),
                            torch.autograd.grad(ref, params, dy)):
        assert_close(mine, theirs)


@FAST
@given(st.sampled_from(["max_pool2d", "avg_pool2d"]), st.data())
def test_pool_matches_torch_on_hypothesis_configurations(name, data):
    draw = data.draw
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3),
                            st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.one_of(st.integers(0, min(kernel) // 2),
                             st.tuples(st.integers(0, kernel[0] // 2),
                                       st.integers(0, kernel[1] // 2))))
    shape = draw(st.sampled_from([(3,), (2, 2)])) + (draw(st.integers(1, 8)),
                                                     draw(st.integers(1, 8)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = (torch.randint(0, 3, shape, generator=gen).to(f64) if draw(st.booleans())
         else torch.randn(shape, dtype=f64, generator=gen)).requires_grad_()
    theirs, ours = getattr(F, name), getattr(cnn, name)
    try:
        ref = theirs(x, kernel, stride, padding)
    except RuntimeError:               # output size below 1
        assume(False)
    out = ours(x, kernel, stride, padding)
    assert_close(out, ref)
    dy = torch.randn(ref.shape, dtype=f64, generator=gen)
    dx, dx_ref = torch.autograd.grad(out, x, dy)[0], torch.autograd.grad(ref, x, dy)[0]
    assert_close(dx, dx_ref)
    assert torch.equal(dx != 0, dx_ref != 0)       # ties go where PyTorch sends them


def test_conv2d_loops_match_torch():
    gen = torch.Generator().manual_seed(3)
    for cfg in _valid_configs(2, 40, seed=3):
        x, w, b = _tensors(cfg, gen)
        assert_close(cnn.conv2d_loops(x, w, b, **cfg["kw"]), F.conv2d(x, w, b, **cfg["kw"]))


@pytest.mark.parametrize("dims", [1, 2])
def test_conv_gradcheck(dims):
    """Our backward pass (Conv2dFunction.backward) against finite differences."""
    gen = torch.Generator().manual_seed(10 + dims)
    for cfg in _valid_configs(dims, 6, seed=10 + dims):
        x, w, b = _tensors(cfg, gen)
        inputs = tuple(t for t in (x, w, b) if t is not None)

        def f(*args, cfg=cfg):
            return OURS[dims](args[0], args[1], args[2] if len(args) > 2 else None, **cfg["kw"])

        assert torch.autograd.gradcheck(f, inputs)


def test_conv_function_gradcheck_directly():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 6, 7, dtype=f64, generator=gen, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=f64, generator=gen, requires_grad=True)
    b = torch.randn(6, dtype=f64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: cnn.Conv2dFunction.apply(x, w, b, (2, 1), (1, 0, 2, 1), (1, 2), 2),
        (x, w, b))


def test_only_the_gradients_asked_for_are_computed():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 6, 6, dtype=f64, generator=gen)               # data: no gradient
    w = torch.randn(4, 3, 3, 3, dtype=f64, generator=gen, requires_grad=True)
    out = cnn.conv2d(x, w, stride=2, padding=1)
    (dw,) = torch.autograd.grad(out.square().sum(), [w])
    w2 = w.detach().clone().requires_grad_()
    F.conv2d(x, w2, stride=2, padding=1).square().sum().backward()
    assert_close(dw, w2.grad)
    with FlopCounterMode(display=False) as fwd:
        y = cnn.conv2d(x, w, stride=2, padding=1)
    with FlopCounterMode(display=False) as bwd:
        y.backward(torch.ones_like(y))
    assert bwd.get_total_flops() == fwd.get_total_flops()  # no input gradient for data


def test_backward_is_a_transposed_convolution_and_a_correlation():
    """dX = conv_transpose(dY, W); dW = the input correlated with dY (dilated by the stride)."""
    gen = torch.Generator().manual_seed(6)
    rng = random.Random(6)
    for _ in range(20):
        s, d, p, k, g = rng.randint(1, 3), rng.randint(1, 2), rng.randint(0, 2), \
            rng.randint(1, 3), rng.choice([1, 2])
        n = rng.randint(d * (k - 1) + 1, 10)
        x = torch.randn(2, 2 * g, n, n + 1, dtype=f64, generator=gen, requires_grad=True)
        w = torch.randn(3 * g, 2, k, k, dtype=f64, generator=gen, requires_grad=True)
        y = cnn.conv2d(x, w, stride=s, padding=p, dilation=d, groups=g)
        dy = torch.randn(y.shape, dtype=f64, generator=gen)
        dx, dw = torch.autograd.grad(y, [x, w], dy)
        leftover = [(m + 2 * p - d * (k - 1) - 1) % s for m in x.shape[2:]]
        assert_close(dx, F.conv_transpose2d(dy, w, stride=s, padding=p, dilation=d, groups=g,
                                            output_padding=tuple(leftover)))
        if g == 1:
            corr = cnn.conv2d(x.detach().transpose(0, 1), dy.transpose(0, 1), padding=p,
                              stride=d, dilation=s)        # (C_in, C_out, >= k, >= k)
            assert_close(dw, corr.transpose(0, 1)[:, :, :k, :k])


def test_im2col_and_col2im_are_unfold_and_fold_and_adjoint():
    gen = torch.Generator().manual_seed(7)
    rng = random.Random(7)
    for _ in range(30):
        k = (rng.randint(1, 3), rng.randint(1, 3))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        d = (rng.randint(1, 2), rng.randint(1, 2))
        size = tuple(rng.randint(dd * (kk - 1) + 1, 8) for kk, dd in zip(k, d))
        x = torch.randn(2, 3, *size, dtype=f64, generator=gen)
        cols = cnn.im2col(x, k, s, d)
        assert_close(cols, F.unfold(x, k, dilation=d, stride=s))
        c = torch.randn(cols.shape, dtype=f64, generator=gen)
        assert_close(cnn.col2im(c, size, k, s, d), F.fold(c, size, k, dilation=d, stride=s))
        assert_close((cols * c).sum(), (x * cnn.col2im(c, size, k, s, d)).sum())  # adjoint


def test_conv_follows_dtype_and_keeps_float32_close():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    w = torch.randn(4, 3, 3, 3, generator=gen)
    out = cnn.conv2d(x, w, padding="same")
    assert out.dtype == torch.float32
    assert_close(out, F.conv2d(x, w, padding="same"), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_the_gpu_as_on_the_cpu():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 9, 8, dtype=f64, generator=gen)
    w = torch.randn(6, 2, 3, 3, dtype=f64, generator=gen)
    xc, wc = x.cuda().requires_grad_(), w.cuda().requires_grad_()
    out = cnn.conv2d(xc, wc, stride=2, padding=1, groups=2)
    assert out.device == xc.device
    assert_close(out.cpu(), F.conv2d(x, w, stride=2, padding=1, groups=2))
    out.sum().backward()
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    F.conv2d(xr, wr, stride=2, padding=1, groups=2).sum().backward()
    assert_close(xc.grad.cpu(), xr.grad)
    assert_close(wc.grad.cpu(), wr.grad)
    for ours, theirs in [(cnn.max_pool2d, F.max_pool2d), (cnn.avg_pool2d, F.avg_pool2d)]:
        xc = x.cuda().requires_grad_()
        y = ours(xc, 3, 2, 1)
        y.sum().backward()
        xr = x.clone().requires_grad_()
        theirs(xr, 3, 2, 1).sum().backward()
        assert_close(y.cpu(), theirs(x, 3, 2, 1))
        assert_close(xc.grad.cpu(), xr.grad)


# --- pooling ----------------------------------------------------------------------------------

def _pool_configs(n: int, seed: int) -> list[tuple]:
    rng, found = random.Random(seed), []
    while len(found) < n:
        k = (rng.randint(1, 4), rng.randint(1, 4))
        stride = rng.choice([None, rng.randint(1, 3), (rng.randint(1, 3), rng.randint(1, 3))])
        padding = rng.choice([0, (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))])
        shape = rng.choice([(2, 3), (3,)]) + (rng.randint(1, 8), rng.randint(1, 8))
        try:
            F.max_pool2d(torch.zeros(shape), k, stride, padding)
        except RuntimeError:
            continue
        found.append((shape, k, stride, padding, rng.random() < 0.4))
    return found


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool_matches_torch_forward_and_backward(name):
    ours, theirs = getattr(cnn, name), getattr(F, name)
    gen = torch.Generator().manual_seed(11)
    for shape, k, stride, padding, ties in _pool_configs(150, seed=11):
        x = torch.randint(0, 3, shape, generator=gen).to(f64) if ties else \
            torch.randn(shape, dtype=f64, generator=gen)
        x.requires_grad_()
        out, ref = ours(x, k, stride, padding), theirs(x, k, stride, padding)
        assert_close(out, ref)
        dy = torch.randn(ref.shape, dtype=f64, generator=gen)
        dx, dx_ref = torch.autograd.grad(out, x, dy)[0], torch.autograd.grad(ref, x, dy)[0]
        assert_close(dx, dx_ref)  # overlapping windows may add in another order
        # ties (whole-number inputs) must send the gradient where PyTorch sends it
        assert torch.equal(dx != 0, dx_ref != 0)


@pytest.mark.parametrize("x", [
    torch.full((1, 1, 3, 3), -INF),
    torch.tensor([[[[NAN, 1.0], [NAN, 0.0]]]]),
    torch.tensor([[[[1.0, NAN, 2.0], [NAN, 0.0, NAN], [3.0, 3.0, -INF]]]]),
    torch.tensor([[[[-INF, -INF, 2.0], [-INF, -INF, -INF], [3.0, 3.0, -INF]]]]),
], ids=["all -inf", "two NaN", "NaN and ties", "-inf and ties"])
def test_max_pool_special_values_route_like_torch(x):
    for k, s, p in [(2, 2, 1), (2, 1, 0), (3, 1, 1), (2, 2, 0)]:
        xa, xb = x.double().requires_grad_(), x.double().requires_grad_()
        ref, out = F.max_pool2d(xa, k, s, p), cnn.max_pool2d(xb, k, s, p)
        assert_close(out, ref, equal_nan=True)
        dy = torch.arange(1.0, ref.numel() + 1, dtype=f64).reshape(ref.shape)
        ref.backward(dy)
        out.backward(dy)
        assert torch.equal(xa.grad, xb.grad)


def test_pool_gradcheck_and_empty_batch():
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(2, 3, 7, 6, dtype=f64, generator=gen, requires_grad=True)
    for k, s, p in [(3, 2, 1), ((2, 3), 1, (1, 0)), (2, None, 0)]:
        assert torch.autograd.gradcheck(lambda x: cnn.max_pool2d(x, k, s, p), (x,))
        assert torch.autograd.gradcheck(lambda x: cnn.avg_pool2d(x, k, s, p), (x,))
        assert torch.autograd.gradcheck(lambda x: cnn.MaxPool2dFunction.apply(
            x, cnn._as_tuple(k, 2, "k"), cnn._as_tuple(s or k, 2, "s"),
            cnn._as_tuple(p, 2, "p", minimum=0)), (x,))
    empty = torch.zeros(0, 2, 5, 5, dtype=f64)
    assert cnn.max_pool2d(empty, 2).shape == F.max_pool2d(empty, 2).shape
    assert cnn.conv2d(empty, torch.zeros(3, 2, 3, 3, dtype=f64)).shape == (0, 3, 3, 3)


def test_avg_pool_is_a_depthwise_convolution():
    x = torch.randn(2, 3, 8, 7, dtype=f64, generator=torch.Generator().manual_seed(13))
    box = torch.full((3, 1, 2, 3), 1 / 6, dtype=f64)
    assert_close(cnn.avg_pool2d(x, (2, 3), stride=1, padding=(1, 1)),
                 cnn.conv2d(x, box, stride=1, padding=(1, 1), groups=3))


# --- sizes, parameters, FLOPs, receptive fields -----------------------------------------------

def test_output_size_formula_matches_torch():
    rng = random.Random(14)
    for _ in range(300):
        n, k, s, p, d = rng.randint(1, 30), rng.randint(1, 7), rng.randint(1, 4), \
            rng.randint(0, 3), rng.randint(1, 3)
        x = torch.zeros(1, 1, n)
        try:
            want = F.conv1d(x, torch.zeros(1, 1, k), stride=s, padding=p, dilation=d).shape[-1]
        except RuntimeError:
            with pytest.raises(ValueError, match="pad more"):
                cnn.conv_output_size(n, k, s, p, d)
            continue
        assert cnn.conv_output_size(n, k, s, p, d) == want


def test_parameter_and_flop_counts():
    rng = random.Random(15)
    for _ in range(20):
        g = rng.choice([1, 2, 4])
        c_in, c_out = g * rng.randint(1, 4), g * rng.randint(1, 4)
        k = (rng.randint(1, 5), rng.randint(1, 5))
        bias = rng.random() < 0.5
        layer = torch.nn.Conv2d(c_in, c_out, k, stride=rng.randint(1, 2), groups=g, bias=bias)
        assert cnn.conv_parameters(c_in, c_out, k, g, bias) == \
            sum(p.numel() for p in layer.parameters())
        x = torch.randn(3, c_in, 11, 12)
        with FlopCounterMode(display=False) as counted:
            y = layer(x)
        predicted = cnn.conv_flops(3, c_in, c_out, k, y.shape[2:], g)
        assert counted.get_total_flops() == predicted
        xg = x.clone().requires_grad_()
        with FlopCounterMode(display=False) as ours_fwd:
            y = cnn.conv2d(xg, layer.weight, layer.bias, layer.stride, 0, 1, g)
        with FlopCounterMode(display=False) as ours_bwd:
            y.backward(torch.ones_like(y))
        assert ours_fwd.get_total_flops() == predicted
        assert ours_bwd.get_total_flops() == 2 * predicted
    assert cnn.conv_parameters(4, 6, 3, dims=1) == sum(
        p.numel() for p in torch.nn.Conv1d(4, 6, 3).parameters())


def _measured_field(layers: list[tuple[int, int, int]]) -> int:
    """Side of the input region that one output pixel's gradient reaches (positive weights,
    so nothing cancels)."""
    n = cnn.receptive_field(layers) + 20
    x = torch.zeros(1, 1, n, n, dtype=f64, requires_grad=True)
    y = x
    for k, s, d in layers:
        y = cnn.conv2d(y, torch.ones(1, 1, k, k, dtype=f64), stride=s, dilation=d)
    y[0, 0, 0, 0].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("layers", [
    [(3, 1, 1)], [(3, 1, 1)] * 4, [(3, 2, 1)] * 3, [(3, 1, 1), (3, 1, 2), (3, 1, 4)],
    [(5, 2, 1), (2, 2, 1), (3, 1, 1)], [(1, 1, 1)], [(3, 1, 1), (3, 2, 1), (3, 1, 2), (2, 2, 1),
                                                     (3, 1, 1)]])
def test_receptive_field_formula_matches_the_gradient(layers):
    assert cnn.receptive_field(layers) == _measured_field(layers)
    assert cnn.receptive_field([(k, s) for k, s, d in layers if d == 1]) == \
        cnn.receptive_field([layer for layer in layers if layer[2] == 1])


# --- bad input --------------------------------------------------------------------------------

X2 = torch.zeros(1, 3, 5, 5)
W2 = torch.zeros(4, 3, 3, 3)


@pytest.mark.parametrize("call, message", [
    (lambda: cnn.conv2d(X2[0, 0], W2), "shape"),
    (lambda: cnn.conv2d(X2.long(), W2), "float"),
    (lambda: cnn.conv2d(X2, W2.double()), "convert"),
    (lambda: cnn.conv2d(X2, W2[0]), "weight of shape"),
    (lambda: cnn.conv2d([[1.0]], W2), "torch.Tensor"),
    (lambda: cnn.conv2d(X2, torch.zeros(4, 1, 3, 3), groups=3), "divide the 4 output"),
    (lambda: cnn.conv2d(X2, torch.zeros(3, 2, 3, 3)), "3 channels"),
    (lambda: cnn.conv2d(torch.zeros(1, 4, 5, 5), torch.zeros(3, 2, 3, 3), groups=3),
     "divide"),
    (lambda: cnn.conv2d(X2, W2, groups=0), "groups"),
    (lambda: cnn.conv2d(X2, W2, groups=1.0), "groups"),
    (lambda: cnn.conv2d(X2, W2, torch.zeros(3)), "bias of shape"),
    (lambda: cnn.conv2d(X2, W2, torch.zeros(4, dtype=torch.long)), "bias"),
    (lambda: cnn.conv2d(X2, W2, stride=0), "stride"),
    (lambda: cnn.conv2d(X2, W2, stride=(1, 2, 3)), "stride"),
    (lambda: cnn.conv2d(X2, W2, stride=True), "stride"),
    (lambda: cnn.conv2d(X2, W2, dilation=0), "dilation"),
    (lambda: cnn.conv2d(X2, W2, padding=-1), "padding"),
    (lambda: cnn.conv2d(X2, W2, padding="full"), "'same'"),
    (lambda: cnn.conv2d(X2, W2, stride=2, padding="same"), "stride 1"),
    (lambda: cnn.conv2d(torch.zeros(1, 3, 2, 2), W2), "pad more"),
    (lambda: cnn.conv2d(X2, W2, dilation=3), "pad more"),
    (lambda: cnn.conv2d(X2, torch.zeros(0, 3, 3, 3)), "empty"),
    (lambda: cnn.conv1d(X2, W2), "conv1d"),
    (lambda: cnn.conv1d(torch.zeros(1, 3, 5), torch.zeros(4, 3, 3), stride=(1, 2)), "stride"),
    (lambda: cnn.conv2d_loops(X2, W2, groups=2), "divide"),
    (lambda: cnn.max_pool2d(X2[0, 0], 2), "shape"),
    (lambda: cnn.max_pool2d(X2.long(), 2), "float"),
    (lambda: cnn.max_pool2d(X2, 0), "kernel_size"),
    (lambda: cnn.max_pool2d(X2, 2, stride=0), "stride"),
    (lambda: cnn.avg_pool2d(X2, 3, padding=2), "half the kernel"),
    (lambda: cnn.avg_pool2d(X2, 6), "smaller than the kernel"),
    (lambda: cnn.max_pool2d(torch.zeros(1, 0, 4, 4), 2), "shape"),
    (lambda: cnn.im2col(X2[0], 2), "im2col"),
    (lambda: cnn.im2col(X2, 6), "pad x first"),
    (lambda: cnn.col2im(torch.zeros(1, 8, 3), (4, 4), 2), "do not fit"),
    (lambda: cnn.conv_output_size(5, 0), "kernel_size"),
    (lambda: cnn.conv_output_size(5, 3, padding=-1), "padding"),
    (lambda: cnn.conv_output_size(2, 5), "pad more"),
    (lambda: cnn.conv_parameters(3, 4, 3, groups=2), "divide"),
    (lambda: cnn.conv_parameters(3, 4, 3, dims=3), "dims"),
    (lambda: cnn.conv_flops(1, 4, 4, 3, (5, 5, 5)), "out_size"),
    (lambda: cnn.receptive_field([(3,)]), "each layer"),
    (lambda: cnn.receptive_field("3x3"), "list"),
    (lambda: cnn.receptive_field([(3, 0)]), "stride"),
])
def test_bad_input_raises_a_value_error_that_names_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_every_bad_conv_input_torch_rejects_we_reject():
    """Whatever configuration PyTorch refuses (with a RuntimeError), ours refuses with a
    ValueError."""
    rng = random.Random(16)
    refused = 0
    for _ in range(300):
        dims = rng.choice([1, 2])
        cfg = _config(rng, dims)
        cfg["kw"]["stride"] = rng.choice([cfg["kw"]["stride"], 2])
        c_in = cfg["x_shape"][-dims - 1] + rng.choice([0, 0, 1])
        x = torch.zeros(cfg["x_shape"][:-dims - 1] + (c_in,) + cfg["x_shape"][-dims:])
        w = torch.zeros(cfg["w_shape"])
        try:
            TORCH[dims](x, w, **cfg["kw"])
        except RuntimeError:
            refused += 1
            with pytest.raises(ValueError):
                OURS[dims](x, w, **cfg["kw"])
            continue
        assert OURS[dims](x, w, **cfg["kw"]).shape == TORCH[dims](x, w, **cfg["kw"]).shape
    assert refused > 50
