"""Convolution and pooling written from scratch (section 3.1).

* Sizes: :func:`conv_output_size`, :func:`conv_parameters`, :func:`conv_flops` and
  :func:`receptive_field`, the formulas of the section.
* Convolution: :func:`conv2d_loops` computes the defining sum one output entry at a time (for
  reading); :func:`im2col` lays the input's patches out as the columns of a matrix, so that
  :func:`conv1d` and :func:`conv2d` are one matrix product each. Their backward pass is written
  by hand in :class:`Conv2dFunction`: the input gradient is a transposed convolution
  (:func:`col2im`, the adjoint of im2col), the weight gradient a correlation of the input with
  the output gradient, the bias gradient a sum.
* Pooling: :func:`max_pool2d` and :func:`avg_pool2d`, with hand-written backward passes in
  :class:`MaxPool2dFunction` (the gradient goes to each window's arg-max) and
  :class:`AvgPool2dFunction` (it is spread evenly over the window).

``conv1d``, ``conv2d``, ``max_pool2d`` and ``avg_pool2d`` take the arguments of
``torch.nn.functional``'s functions of the same names (int or tuple sizes, ``padding="same"`` or
``"valid"``, groups, batched or unbatched input) and give the same results; a 1-D convolution
is computed as a 2-D one of height 1. Bad input raises a ``ValueError`` that says how to fix
it; the checks live in private helpers at the end of the file. Everything follows the input
tensor's device and dtype (floating point only).

Layouts, as in PyTorch: x (B, C_in, H, W), weight (C_out, C_in / groups, k_h, k_w), bias
(C_out,). Internally padding is a 4-tuple (left, right, top, bottom), the order of ``F.pad``,
because ``padding="same"`` can pad one side more than the other.
"""

from __future__ import annotations

import math
import numbers
from itertools import product
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from dlbook.utils import check_like

Pair = tuple[int, int]
Pad = tuple[int, int, int, int]  # (left, right, top, bottom), as F.pad takes it


# --- sizes ------------------------------------------------------------------------------------

def conv_output_size(n: int, kernel_size: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length along one dimension: ``⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1``.

    The dilated kernel spans ``d(k − 1) + 1`` inputs; window ``i`` starts at ``s·i``, and the
    last window must end inside the padded input of length ``n + 2p``. Pooling uses the same
    formula (with d = 1).
    """
    _check_sizes(n=n, kernel_size=kernel_size, stride=stride, dilation=dilation)
    _check_sizes(padding=padding, minimum=0)
    span = dilation * (kernel_size - 1) + 1
    if n + 2 * padding < span:
        raise ValueError(f"the kernel spans {span} inputs but the padded input has only "
                         f"{n + 2 * padding}: pad more, or use a smaller kernel or dilation")
    return (n + 2 * padding - span) // stride + 1


def conv_parameters(c_in: int, c_out: int, kernel_size: int | Sequence[int], groups: int = 1,
                    bias: bool = True, dims: int = 2) -> int:
    """Learned numbers of a convolution: ``c_out · (c_in / g) · k_h · k_w`` weights, plus
    ``c_out`` biases. Each output channel sees only the ``c_in / g`` channels of its group.
    An int ``kernel_size`` means a square (``dims=2``) or a line (``dims=1``) kernel."""
    kernel = _check_layer(c_in, c_out, kernel_size, groups, dims)
    return c_out * (c_in // groups) * math.prod(kernel) + (c_out if bias else 0)


def conv_flops(batch: int, c_in: int, c_out: int, kernel_size: int | Sequence[int],
               out_size: int | Sequence[int], groups: int = 1, dims: int = 2) -> int:
    """Forward FLOPs of a convolution's multiply-adds (2 per multiply-add, bias not counted).

    Every one of the ``batch · c_out · H_out · W_out`` outputs is a dot product of length
    ``(c_in / g) · k_h · k_w``. The backward pass costs as much again for the weight gradient
    and again for the input gradient (when the input needs one), as for a linear layer.
    """
    kernel = _check_layer(c_in, c_out, kernel_size, groups, dims)
    out = _as_tuple(out_size, dims, "out_size")
    _check_sizes(batch=batch, minimum=0)
    return 2 * batch * c_out * math.prod(out) * (c_in // groups) * math.prod(kernel)


def receptive_field(layers: Sequence[Sequence[int]]) -> int:
    """Side of the input region that one output of a stack of layers sees.

    ``layers`` lists ``(kernel_size, stride)`` or ``(kernel_size, stride, dilation)`` per
    layer (a pooling layer is one too). Each layer widens the field by ``d(k − 1)`` steps of
    the current *jump*, the input distance between neighbouring outputs, and multiplies the
    jump by its stride: ``r ← r + d(k − 1)·j``, ``j ← j·s``, from ``r = j = 1``.
    """
    r, jump = 1, 1
    for kernel, stride, dilation in _check_layers(layers):
        r += dilation * (kernel - 1) * jump
        jump *= stride
    return r


# --- convolution, one output entry at a time -------------------------------------------------

def conv2d_loops(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                 groups: int = 1) -> torch.Tensor:
    """``F.conv2d`` as its defining sum reads: three loops over (o, i, j), one output entry
    of every example at a time. Slow, but each index is in plain sight."""
    x, weight, unbatched, (sh, sw), pad, (dh, dw) = _check_conv(
        x, weight, bias, stride, padding, dilation, groups, dims=2)
    xp = F.pad(x, pad)                                     # zeros around the input
    c_out, c_group, kh, kw = weight.shape                  # c_group = C_in / groups
    h_out = conv_output_size(xp.shape[2], kh, sh, 0, dh)
    w_out = conv_output_size(xp.shape[3], kw, sw, 0, dw)
    y = x.new_zeros(x.shape[0], c_out, h_out, w_out)
    for o in range(c_out):
        c0 = o // (c_out // groups) * c_group               # first input channel of o's group
        for i in range(h_out):
            for j in range(w_out):
                patch = xp[:, c0:c0 + c_group,              # (B, C_in/g, k_h, k_w)
                           i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                y[:, o, i, j] = (patch * weight[o]).sum(dim=(1, 2, 3))
        if bias is not None:
            y[:, o] += bias[o]
    return y[0] if unbatched else y


# --- im2col: every patch a column ------------------------------------------------------------

def im2col(x: torch.Tensor, kernel_size: Any, stride: Any = 1, dilation: Any = 1) -> torch.Tensor:
    """Lay every k_h × k_w patch of ``x`` (B, C, H, W) out as a column: (B, C·k_h·k_w, L).

    Rows run over (channel, kernel row, kernel column), the order of
    ``weight.reshape(C_out, -1)``; columns over the L = H_out·W_out output positions, row by
    row. This is ``F.unfold`` without its padding (pad ``x`` first). It takes one strided
    slice per kernel offset (u, v) — the inputs that offset touches in every window — so it
    loops over the k_h·k_w offsets, not over the pixels.
    """
    (kh, kw), (sh, sw), (dh, dw) = _check_im2col(x, kernel_size, stride, dilation)
    B, C, H, W = x.shape
    h_out, w_out = conv_output_size(H, kh, sh, 0, dh), conv_output_size(W, kw, sw, 0, dw)
    taps = [x[:, :, u * dh:u * dh + sh * (h_out - 1) + 1:sh,
              v * dw:v * dw + sw * (w_out - 1) + 1:sw]      # (B, C, H_out, W_out)
            for u, v in product(range(kh), range(kw))]
    return torch.stack(taps, dim=2).reshape(B, C * kh * kw, h_out * w_out)


def col2im(cols: torch.Tensor, size: Any, kernel_size: Any, stride: Any = 1,
           dilation: Any = 1) -> torch.Tensor:
    """The adjoint of :func:`im2col`: add every column back onto the patch it came from.

    ``cols`` (B, C·k_h·k_w, L) -> (B, C, H, W) for ``size`` = (H, W). An input entry that lies
    in several patches collects the sum of all its copies, so this is the backward pass of
    im2col (the backward pass of a copy is a sum). The same as ``F.fold`` without padding.
    """
    (H, W), (kh, kw), (sh, sw), (dh, dw) = _check_col2im(cols, size, kernel_size, stride,
                                                         dilation)
    B = cols.shape[0]
    h_out, w_out = conv_output_size(H, kh, sh, 0, dh), conv_output_size(W, kw, sw, 0, dw)
    C = cols.shape[1] // (kh * kw)
    taps = cols.reshape(B, C, kh * kw, h_out, w_out)
    x = cols.new_zeros(B, C, H, W)
    for t, (u, v) in enumerate(product(range(kh), range(kw))):
        x[:, :, u * dh:u * dh + sh * (h_out - 1) + 1:sh,
          v * dw:v * dw + sw * (w_out - 1) + 1:sw] += taps[:, :, t]
    return x


def _out_size(x: torch.Tensor, kernel: Pair, stride: Pair, pad: Pad,
              dilation: Pair = (1, 1)) -> Pair:
    """(H_out, W_out) of a window of ``kernel`` sliding over x (B, C, H, W) padded by ``pad``."""
    return (conv_output_size(x.shape[2] + pad[2] + pad[3], kernel[0], stride[0], 0, dilation[0]),
            conv_output_size(x.shape[3] + pad[0] + pad[1], kernel[1], stride[1], 0, dilation[1]))


def _sym(padding: Pair) -> Pad:
    """Pooling's (p_h, p_w) as (left, right, top, bottom)."""
    return (padding[1], padding[1], padding[0], padding[0])


def _grouped_patches(x: torch.Tensor, kernel: Pair, stride: Pair, pad: Pad, dilation: Pair,
                     groups: int) -> torch.Tensor:
    """im2col of the padded input, split by group: (B, g, C_in/g·k_h·k_w, L)."""
    cols = im2col(F.pad(x, pad), kernel, stride, dilation)
    return cols.reshape(x.shape[0], groups, cols.shape[1] // groups, cols.shape[2])


class Conv2dFunction(torch.autograd.Function):
    """A 2-D convolution as one matrix product, with the backward pass written by hand.

    Arguments are already checked and normalised by :func:`conv2d`: x (B, C_in, H, W),
    stride and dilation pairs, ``pad`` = (left, right, top, bottom).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, pad, dilation, groups):
        B, (c_out, _, kh, kw) = x.shape[0], weight.shape
        cols = _grouped_patches(x, (kh, kw), stride, pad, dilation, groups)  # (B, g, K, L)
        Wg = weight.reshape(groups, c_out // groups, -1)                     # (g, C_out/g, K)
        y = Wg @ cols                                                        # (B, g, C_out/g, L)
        y = y.reshape(B, c_out, *_out_size(x, (kh, kw), stride, pad, dilation))
        ctx.save_for_backward(x, weight)
        ctx.args = (stride, pad, dilation, groups, bias is not None)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        stride, pad, dilation, groups, has_bias = ctx.args
        B, (c_out, _, kh, kw) = x.shape[0], weight.shape
        dYg = dy.reshape(B, groups, c_out // groups, dy.shape[2] * dy.shape[3])  # (B, g, ., L)
        Wg = weight.reshape(groups, c_out // groups, -1)                     # (g, C_out/g, K)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:  # dX_col = Wᵀ dY, then every pixel sums its copies
            dcols = (Wg.transpose(1, 2) @ dYg).reshape(B, x.shape[1] * kh * kw, dYg.shape[-1])
            size = (x.shape[2] + pad[2] + pad[3], x.shape[3] + pad[0] + pad[1])
            dxp = col2im(dcols, size, (kh, kw), stride, dilation)           # padded input
            dx = dxp[:, :, pad[2]:size[0] - pad[3], pad[0]:size[1] - pad[1]]
        if ctx.needs_input_grad[1]:  # dW = dY X_colᵀ, summed over the batch
            cols = _grouped_patches(x, (kh, kw), stride, pad, dilation, groups)
            dw = (dYg @ cols.transpose(2, 3)).sum(dim=0).reshape(weight.shape)
        if has_bias and ctx.needs_input_grad[2]:  # b was added to every output position
            db = dy.sum(dim=(0, 2, 3))
        return dx, dw, db, None, None, None, None


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor:
    """The same as ``F.conv2d``, computed as im2col + one matrix product per group.

    x (B, C_in, H, W) or (C_in, H, W); weight (C_out, C_in/groups, k_h, k_w); bias (C_out,)
    or None. ``stride``, ``padding`` and ``dilation`` are an int or a pair; ``padding`` may
    also be ``"valid"`` (none) or ``"same"`` (output as large as the input, stride 1 only;
    an odd total goes one more to the right and bottom, as in PyTorch). The gradient is
    :class:`Conv2dFunction`'s hand-written backward.
    """
    x, weight, unbatched, stride, pad, dilation = _check_conv(
        x, weight, bias, stride, padding, dilation, groups, dims=2)
    y = Conv2dFunction.apply(x, weight, bias, stride, pad, dilation, groups)
    return y[0] if unbatched else y


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor:
    """The same as ``F.conv1d``: x (B, C_in, L) or (C_in, L), weight (C_out, C_in/groups, k).

    It is computed as a 2-D convolution of height 1 (:func:`conv2d`), with the same
    hand-written backward pass.
    """
    x, weight, unbatched, stride, pad, dilation = _check_conv(
        x, weight, bias, stride, padding, dilation, groups, dims=1)
    y = Conv2dFunction.apply(x, weight, bias, stride, pad, dilation, groups).squeeze(2)
    return y[0] if unbatched else y


# --- pooling ---------------------------------------------------------------------------------

def _pool_patches(x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair,
                  value: float) -> torch.Tensor:
    """Every window of every channel as a column: (B·C, k_h·k_w, L), padded with ``value``."""
    B, C, H, W = x.shape
    xp = F.pad(x, _sym(padding), value=value)
    return im2col(xp.reshape(B * C, 1, *xp.shape[2:]), kernel, stride)


def _pool_input_grad(dcols: torch.Tensor, shape: torch.Size, kernel: Pair, stride: Pair,
                     padding: Pair) -> torch.Tensor:
    """col2im of the windows' gradients, with the padding cut off again: x's shape."""
    B, C, H, W = shape
    ph, pw = padding
    dxp = col2im(dcols, (H + 2 * ph, W + 2 * pw), kernel, stride)
    return dxp[:, 0, ph:ph + H, pw:pw + W].reshape(B, C, H, W)


class MaxPool2dFunction(torch.autograd.Function):
    """Max pooling whose backward routes each output's gradient to its window's arg-max.

    Ties go where PyTorch's CPU kernel sends them: to the first maximum in reading order (in
    a window that holds NaN, to its last NaN; in a window of -inf values, to its first
    unpadded entry). Overlapping windows (stride < kernel) add up their gradients.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        B, C = x.shape[:2]
        cols = _pool_patches(x, kernel, stride, padding, -math.inf)   # (B·C, k_h·k_w, L)
        real = _pool_patches(x.new_ones(1, 1, *x.shape[2:]), kernel, stride, padding, 0.0)
        winner = _window_argmax(cols, real[0] > 0)                     # (B·C, L)
        y = cols.gather(1, winner.unsqueeze(1))                        # (B·C, 1, L)
        ctx.save_for_backward(winner)
        ctx.args = (x.shape, kernel, stride, padding, cols.shape)
        return y.reshape(B, C, *_out_size(x, kernel, stride, _sym(padding)))

    @staticmethod
    def backward(ctx, dy):
        (winner,) = ctx.saved_tensors
        shape, kernel, stride, padding, cols_shape = ctx.args
        dcols = dy.new_zeros(cols_shape)                               # (B·C, k_h·k_w, L)
        dcols.scatter_(1, winner.unsqueeze(1), dy.reshape(cols_shape[0], 1, cols_shape[2]))
        return _pool_input_grad(dcols, shape, kernel, stride, padding), None, None, None


class AvgPool2dFunction(torch.autograd.Function):
    """Average pooling (padding counts as zeros, divisor k_h·k_w, as PyTorch's default), whose
    backward spreads each output's gradient evenly over its window."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        B, C = x.shape[:2]
        cols = _pool_patches(x, kernel, stride, padding, 0.0)          # (B·C, k_h·k_w, L)
        ctx.args = (x.shape, kernel, stride, padding, cols.shape)
        return cols.mean(dim=1).reshape(B, C, *_out_size(x, kernel, stride, _sym(padding)))

    @staticmethod
    def backward(ctx, dy):
        shape, kernel, stride, padding, cols_shape = ctx.args
        dcols = (dy.reshape(cols_shape[0], 1, cols_shape[2]) / cols_shape[1]).expand(cols_shape)
        return _pool_input_grad(dcols, shape, kernel, stride, padding), None, None, None


def max_pool2d(x: torch.Tensor, kernel_size: Any, stride: Any = None,
               padding: Any = 0) -> torch.Tensor:
    """The same as ``F.max_pool2d`` (dilation 1, floor mode): the largest entry of each
    window, with -inf padding. x (B, C, H, W) or (C, H, W); ``stride`` defaults to the
    kernel size; ``padding`` is at most half the kernel."""
    x, unbatched, kernel, stride, padding = _check_pool("max_pool2d", x, kernel_size, stride,
                                                        padding)
    y = MaxPool2dFunction.apply(x, kernel, stride, padding)
    return y[0] if unbatched else y


def avg_pool2d(x: torch.Tensor, kernel_size: Any, stride: Any = None,
               padding: Any = 0) -> torch.Tensor:
    """The same as ``F.avg_pool2d`` with its defaults (floor mode, zero padding counted in the
    mean): the mean of each window. x (B, C, H, W) or (C, H, W); ``stride`` defaults to the
    kernel size; ``padding`` is at most half the kernel."""
    x, unbatched, kernel, stride, padding = _check_pool("avg_pool2d", x, kernel_size, stride,
                                                        padding)
    y = AvgPool2dFunction.apply(x, kernel, stride, padding)
    return y[0] if unbatched else y


def _window_argmax(cols: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Each window's arg-max over dim 1, with ties broken as PyTorch's CPU kernel does.

    That kernel scans a window in reading order, starts from its first unpadded entry and
    moves on when ``value > best or isnan(value)``: so the first maximum wins, a window of
    -inf keeps its first unpadded entry, and a window with NaN ends on its last NaN.
    """
    winner = cols.argmax(dim=1)                                # the first maximum
    first_real = real.int().argmax(dim=0).expand_as(winner)   # real: (k_h·k_w, L)
    winner = torch.where(cols.amax(dim=1) == -math.inf, first_real, winner)
    nan = cols.isnan()
    last_nan = cols.shape[1] - 1 - nan.flip(1).int().argmax(dim=1)
    return torch.where(nan.any(dim=1), last_nan, winner)


# --- input checks (kept here, out of the way of the algorithms above) ------------------------

def _kind(v: Any) -> str:
    return str(v.dtype).removeprefix("torch.") if isinstance(v, torch.Tensor) \
        else type(v).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_sizes(*, minimum: int = 1, **values: Any) -> None:
    for name, v in values.items():
        if not _is_int(v) or v < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")


def _as_tuple(v: Any, dims: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """An int, or a tuple/list of ``dims`` ints (or of one, repeated, as PyTorch allows)."""
    values = (v,) if _is_int(v) else tuple(v) if isinstance(v, (tuple, list)) else None
    if values is not None and len(values) == 1:
        values = values * dims
    if values is None or len(values) != dims or not all(_is_int(n) for n in values):
        example = "1" if dims == 1 else "1 or (1, 2)"
        raise ValueError(f"{name} must be an integer or a tuple of {dims} integers (e.g. "
                         f"{example}), got {v!r}")
    if any(n < minimum for n in values):
        raise ValueError(f"{name} must be >= {minimum} in every dimension, got {v!r}")
    return tuple(int(n) for n in values)


def _check_float(name: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} is {_kind(t)}: convert it with {name}.float() "
                         f"(or .double())")


def _check_layer(c_in: Any, c_out: Any, kernel_size: Any, groups: Any,
                 dims: Any) -> tuple[int, ...]:
    if dims not in (1, 2) or isinstance(dims, bool):
        raise ValueError(f"dims must be 1 or 2, got {dims!r}")
    _check_sizes(c_in=c_in, c_out=c_out, groups=groups)
    kernel = _as_tuple(kernel_size, dims, "kernel_size")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both c_in={c_in} and c_out={c_out}")
    return kernel


def _check_layers(layers: Any) -> list[tuple[int, int, int]]:
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise ValueError("layers must be a list of (kernel_size, stride) or (kernel_size, "
                         f"stride, dilation) tuples, got {type(layers).__name__}")
    out = []
    for layer in layers:
        if not isinstance(layer, (tuple, list)) or len(layer) not in (2, 3):
            raise ValueError(f"each layer must be (kernel_size, stride) or (kernel_size, "
                             f"stride, dilation), got {layer!r}")
        kernel, stride, dilation = (*layer, 1) if len(layer) == 2 else layer
        _check_sizes(kernel_size=kernel, stride=stride, dilation=dilation)
        out.append((kernel, stride, dilation))
    return out


def _check_conv(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
                groups: Any, *, dims: int) -> tuple[torch.Tensor, torch.Tensor, bool, Pair, Pad,
                                                    Pair]:
    """Check a convolution's arguments as ``F.conv{dims}d`` would, and return them in the
    2-D form the computation uses: x and weight 4-D, stride and dilation pairs, the padding
    as (left, right, top, bottom), and whether x came without a batch dimension."""
    fn = f"conv{dims}d"
    layout = "(batch, channels, length)" if dims == 1 else "(batch, channels, height, width)"
    _check_float("x", x)
    if x.ndim not in (dims + 1, dims + 2):
        raise ValueError(f"{fn} expects x of shape {layout}, or without the batch dimension; "
                         f"got {tuple(x.shape)}")
    _check_float("weight", weight)
    if weight.ndim != dims + 2:
        kernel = "k" if dims == 1 else "k_h, k_w"
        raise ValueError(f"{fn} expects weight of shape (C_out, C_in / groups, {kernel}), got "
                         f"{tuple(weight.shape)}")
    check_like(weight, "weight", x, "x")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    c_in, (c_out, c_group) = x.shape[-dims - 1], weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    if c_out == 0 or 0 in kernel:
        raise ValueError(f"weight of shape {tuple(weight.shape)} is empty: it needs at least "
                         "one output channel and a kernel of size >= 1")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide the {c_out} output channels (weight's "
                         "first dimension)")
    if c_group * groups != c_in:
        raise ValueError(f"x has {c_in} channels, so with groups={groups} weight must have "
                         f"{c_in // groups if c_in % groups == 0 else c_in / groups} input "
                         f"channels per group (dimension 1); got {c_group}"
                         + ("" if c_in % groups == 0 else
                            f": groups={groups} must divide the input channels"))
    if bias is not None:
        _check_float("bias", bias)
        check_like(bias, "bias", x, "x")
        if tuple(bias.shape) != (c_out,):
            raise ValueError(f"expected bias of shape ({c_out},), one per output channel, got "
                             f"{tuple(bias.shape)}")
    stride = _as_tuple(stride, dims, "stride")
    dilation = _as_tuple(dilation, dims, "dilation")
    pads = _conv_padding(padding, dims, kernel, stride, dilation)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[-dims:], pads))
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(n < span for n, span in zip(padded, spans)):
        raise ValueError(f"{fn}: the padded input has size {padded} but the (dilated) kernel "
                         f"spans {spans}: pad more, or use a smaller kernel or dilation")
    unbatched = x.ndim == dims + 1
    if unbatched:
        x = x.unsqueeze(0)
    if dims == 1:  # a 1-D convolution is a 2-D one of height 1
        x, weight = x.unsqueeze(2), weight.unsqueeze(2)
        stride, dilation, pads = (1, *stride), (1, *dilation), ((0, 0), *pads)
    (top, bottom), (left, right) = pads
    return x, weight, unbatched, stride, (left, right, top, bottom), dilation


def _conv_padding(padding: Any, dims: int, kernel: tuple[int, ...], stride: tuple[int, ...],
                  dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(before, after) per dimension; "same" puts an odd total's extra entry after."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * dims
        if padding != "same":
            raise ValueError(f"padding must be an integer, a tuple, 'valid' or 'same', got "
                             f"{padding!r}")
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' needs stride 1 (a strided convolution cannot "
                             "keep the input size); give the padding as a number instead")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in _as_tuple(padding, dims, "padding", minimum=0))


def _check_im2col(x: Any, kernel_size: Any, stride: Any,
                  dilation: Any) -> tuple[Pair, Pair, Pair]:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"im2col expects x of shape (batch, channels, height, width), got "
                         f"{got}")
    kernel = _as_tuple(kernel_size, 2, "kernel_size")
    stride, dilation = _as_tuple(stride, 2, "stride"), _as_tuple(dilation, 2, "dilation")
    for n, k, d in zip(x.shape[2:], kernel, dilation):
        if n < d * (k - 1) + 1:
            raise ValueError(f"the (dilated) kernel spans {d * (k - 1) + 1} entries but x has "
                             f"only {n} in that dimension: pad x first")
    return kernel, stride, dilation


def _check_col2im(cols: Any, size: Any, kernel_size: Any, stride: Any,
                  dilation: Any) -> tuple[Pair, Pair, Pair, Pair]:
    size = _as_tuple(size, 2, "size")
    kernel = _as_tuple(kernel_size, 2, "kernel_size")
    stride, dilation = _as_tuple(stride, 2, "stride"), _as_tuple(dilation, 2, "dilation")
    if not isinstance(cols, torch.Tensor) or cols.ndim != 3:
        got = tuple(cols.shape) if isinstance(cols, torch.Tensor) else type(cols).__name__
        raise ValueError(f"col2im expects cols of shape (batch, C·k_h·k_w, L), got {got}")
    out = tuple(conv_output_size(n, k, s, 0, d)
                for n, k, s, d in zip(size, kernel, stride, dilation))
    k = kernel[0] * kernel[1]
    if cols.shape[1] % k or cols.shape[2] != out[0] * out[1]:
        raise ValueError(f"cols of shape {tuple(cols.shape)} do not fit size {size} with kernel "
                         f"{kernel}: expected (batch, C·{k}, {out[0] * out[1]})")
    return size, kernel, stride, dilation


def _check_pool(fn: str, x: Any, kernel_size: Any, stride: Any,
                padding: Any) -> tuple[torch.Tensor, bool, Pair, Pair, Pair]:
    _check_float("x", x)
    if x.ndim not in (3, 4) or 0 in x.shape[-3:]:
        raise ValueError(f"{fn} expects x of shape (batch, channels, height, width) or "
                         f"(channels, height, width), got {tuple(x.shape)}")
    kernel = _as_tuple(kernel_size, 2, "kernel_size")
    stride = kernel if stride is None or stride in ((), []) else _as_tuple(stride, 2, "stride")
    padding = _as_tuple(padding, 2, "padding", minimum=0)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"padding {padding} must be at most half the kernel size {kernel} "
                         "(a window must not lie entirely in the padding)")
    for n, k, s, p in zip(x.shape[-2:], kernel, stride, padding):
        if n + 2 * p < k:
            raise ValueError(f"{fn}: the input of size {tuple(x.shape[-2:])} with padding "
                             f"{padding} is smaller than the kernel {kernel}")
    unbatched = x.ndim == 3
    return (x.unsqueeze(0) if unbatched else x), unbatched, kernel, stride, padding
