"""Checks for the exercises of section 3.4, Gated recurrent networks: LSTM and GRU."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check
from dlbook.gated import gru_cell, lstm_cell


def lstm_parameters(answer: Any) -> check.Result:
    """Exercise: the number of parameters of ``nn.LSTM(input_size=10, hidden_size=20)``."""
    d, H = 10, 20
    return check.number(answer, 4 * (H * d + H * H + 2 * H), name="LSTM parameters",
                        rtol=0, atol=0,
                        hint="count one gate first: a matrix for the input, one for h and "
                             "PyTorch's two bias vectors; then ask how many gates an LSTM has.")


def _cases_step(n_gates: int) -> list[tuple]:
    """Random float64 inputs for one step: (x, h[, c], W_ih, W_hh, b_ih, b_hh)."""
    gen = torch.Generator().manual_seed(34)
    cases = []
    for B, d, H in [(1, 3, 2), (3, 4, 5), (2, 1, 3)]:
        def r(*shape):
            return torch.randn(*shape, generator=gen, dtype=torch.float64)

        state = (r(B, H), r(B, H)) if n_gates == 4 else (r(B, H),)
        cases.append((r(B, d), *state, r(n_gates * H, d), r(n_gates * H, H), r(n_gates * H),
                      r(n_gates * H)))
    return cases


def _pair(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a function that returns (h, c) so that check.function compares one tensor."""
    if check.unanswered(fn) or not callable(fn):
        return fn

    def wrapped(*args: Any) -> Any:
        out = fn(*args)
        if out is None or out is Ellipsis:
            return out
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError("return the pair (h_new, c_new)")
        return torch.stack([torch.as_tensor(o, dtype=torch.float64) for o in out])

    return wrapped


def _lstm_reference(x, h, c, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    return torch.stack(lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh))


def lstm_step(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(x, h, c, W_ih, W_hh, b_ih, b_hh)`` returns ``(h_new, c_new)``."""
    return check.function(_pair(fn), _lstm_reference, _cases_step(4), name="one LSTM step",
                          rtol=1e-5, atol=1e-6,  # float32 arithmetic is right too
                          hint="the stacked weights hold the gates in the order i, f, g, o; "
                               "g is the only one with tanh, and h reads tanh of the *new* "
                               "cell state.")


def forget_bias(answer: Any) -> check.Result:
    """Exercise: the forget-gate bias that keeps half of the cell state over 20 steps."""
    keep = 0.5 ** (1 / 20)   # sigmoid(b)^20 = 1/2
    return check.number(answer, math.log(keep / (1 - keep)), name="forget-gate bias",
                        digits=3,
                        hint="with its weights at zero the forget gate is σ(b) at every step, "
                             "so 20 steps multiply c by σ(b)²⁰; solve for σ(b), then invert "
                             "the sigmoid (the logit, log(p / (1 − p))).")


def _gru_reference(x, h, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    return gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)


def gru_step(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(x, h, W_ih, W_hh, b_ih, b_hh)`` returns PyTorch's GRU update h'."""
    return check.function(fn, _gru_reference, _cases_step(3), name="one GRU step",
                          rtol=1e-5, atol=1e-6,
                          hint="gate order r, z, n; in PyTorch's GRU the reset gate multiplies "
                               "W_hn h + b_hn (after the product), and z = 1 keeps the old h.")


def _shape(s: Any) -> tuple[int, ...] | None:
    """A shape as a tuple of ints, from a tuple, list or torch.Size; None if it is not one."""
    if isinstance(s, (str, bytes)) or not hasattr(s, "__iter__"):
        return None
    values = list(s)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return tuple(values)


def bidirectional_shapes(answer: Any) -> check.Result:
    """Exercise: the shapes of ``output`` and ``h_n`` of ``nn.LSTM(8, 16, num_layers=3,
    bidirectional=True, batch_first=True)`` on an input of shape (4, 10, 8)."""
    B, L, H, layers, directions = 4, 10, 16, 3, 2
    want = ((B, L, directions * H), (layers * directions, B, H))  # tested against nn.LSTM

    def test(ans: Any) -> str | None:
        if not isinstance(ans, (tuple, list)) or len(ans) != 2:
            return "give a pair (output shape, h_n shape), e.g. ((1, 2, 3), (4, 5, 6))."
        got = tuple(_shape(s) for s in ans)
        if None in got:
            return "each shape must be a tuple of whole numbers, such as (4, 10, 32)."
        wrong = [name for name, g, w in zip(("output", "h_n"), got, want) if g != w]
        if wrong:
            return f"the shape of {' and '.join(wrong)} is not right."
        return None

    return check.condition(answer, test, name="stacked bidirectional shapes",
                           hint="output holds the last layer's h at every step, both "
                                "directions side by side; h_n holds the last h of every layer "
                                "and direction, and batch_first does not apply to it.")


def bottleneck_bits(answer: Any) -> check.Result:
    """Exercise: the bits the encoder state must carry to copy 12 symbols from 8."""
    return check.number(answer, 12 * math.log2(8), name="bits in the encoder's state",
                        rtol=1e-6,
                        hint="each symbol is one of 8 equally likely values: how many bits "
                             "name one of them, and how many symbols must the state hold?")
