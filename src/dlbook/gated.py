"""Gated recurrent networks, the LSTM and the GRU, written from their equations (section 3.4).

A cell is one time step: :func:`lstm_cell` and :func:`gru_cell` take the input at one step and
the state, and return the new state. :class:`LSTM` and :class:`GRU` run a cell along a whole
sequence. They are single-layer drop-in replacements for ``torch.nn.LSTM`` and ``torch.nn.GRU``:
the same constructor arguments, the same parameter names and shapes (so ``load_state_dict``
works both ways), the same gate order inside the stacked weights (LSTM: i, f, g, o; GRU: r, z,
n) and the same return values.

The cells broadcast like ``@``: give them weights with a leading dimension, such as ``(G, 4H,
input_size)``, biases of shape ``(G, 1, 4H)`` and inputs ``(G, B, input_size)``, and they run G
independent networks in one step (the section trains several seeds at once this way).

Shapes (H = hidden_size): the input is ``(B, L, input_size)`` with ``batch_first=True``,
``(L, B, input_size)`` otherwise, or ``(L, input_size)`` for one unbatched sequence; the state
``h``, ``c`` is ``(1, B, H)`` (one layer), or ``(1, H)`` for an unbatched sequence. Inputs are
checked by the private helpers at the end of the file, so that the functions read like their
equations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlbook.utils import check_like

State = tuple[torch.Tensor, torch.Tensor]


# --- one time step ---------------------------------------------------------------------------

def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x Wᵀ + b`` over the last dimension (no bias if ``bias`` is None), what ``nn.Linear``
    computes; leading dimensions broadcast as in ``@``, so weights (G, out, in) with inputs
    (G, B, in) compute G layers at once."""
    out = x @ weight.mT
    return out if bias is None else out + bias


def lstm_cell(x: torch.Tensor, state: State, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
              bias_ih: torch.Tensor | None = None,
              bias_hh: torch.Tensor | None = None) -> State:
    """One LSTM step: ``(h, c) -> (h', c')`` for the input ``x`` (..., input_size).

    The four gates are computed by one matrix product each for the input and for h, stacked
    in PyTorch's order: input gate i, forget gate f, candidate g, output gate o.
    """
    h, c = state
    gates = affine(x, weight_ih, bias_ih) + affine(h, weight_hh, bias_hh)   # (..., 4H)
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)   # keep some, write some
    h = torch.sigmoid(o) * torch.tanh(c)                           # read some
    return h, c


def gru_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor | None = None,
             bias_hh: torch.Tensor | None = None) -> torch.Tensor:
    """One GRU step: ``h -> h'`` for the input ``x`` (..., input_size).

    Gates in PyTorch's order: reset r, update z, candidate n. As in PyTorch and cuDNN, the reset
    gate multiplies ``W_hn h + b_hn``, after the matrix product (Cho et al. (2014) reset h
    before it, ``W_hn (r * h)``: a slightly different network).
    """
    x_r, x_z, x_n = affine(x, weight_ih, bias_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = affine(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h   # z = 1 keeps the old state, z = 0 takes the candidate


# --- whole sequences: drop-in replacements for nn.LSTM and nn.GRU ------------------------------

class _Gated(nn.Module):
    """What LSTM and GRU share: parameters, initialisation, shapes and checks."""

    gates: int  # 4 for the LSTM, 3 for the GRU

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 batch_first: bool = True, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size, bias, batch_first)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.batch_first = bias, batch_first
        stacked = self.gates * hidden_size
        like = {"device": device, "dtype": dtype}
        self.weight_ih_l0 = nn.Parameter(torch.empty(stacked, input_size, **like))
        self.weight_hh_l0 = nn.Parameter(torch.empty(stacked, hidden_size, **like))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(stacked, **like))
            self.bias_hh_l0 = nn.Parameter(torch.empty(stacked, **like))
        else:
            self.register_parameter("bias_ih_l0", None)
            self.register_parameter("bias_hh_l0", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every parameter U(−1/√H, 1/√H), drawn in this order."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self) -> tuple[torch.Tensor | None, ...]:
        return self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0

    def _time_major(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The input as (L, B, input_size), and whether it came with a batch dimension."""
        _check_input(x, self.input_size, self.weight_ih_l0)
        batched = x.ndim == 3
        x = (x.transpose(0, 1) if self.batch_first else x) if batched else x.unsqueeze(1)
        _check_length(x)
        return x, batched

    def _outputs(self, hs: list[torch.Tensor], batched: bool) -> torch.Tensor:
        """Stack the hidden states of every step into the output tensor torch returns."""
        out = torch.stack(hs)   # (L, B, H)
        if not batched:
            return out.squeeze(1)
        return out.transpose(0, 1) if self.batch_first else out

    def _start(self, s: torch.Tensor | None, x: torch.Tensor, batched: bool,
               name: str) -> torch.Tensor:
        """An initial state of shape (B, H): zeros, or the given one without its layer axis."""
        if s is None:
            return x.new_zeros(x.shape[1], self.hidden_size)
        _check_state(s, name, x, batched, self.hidden_size, self.weight_hh_l0)
        return s[0] if batched else s

    @staticmethod
    def _final(h: torch.Tensor, batched: bool) -> torch.Tensor:
        """A last state (B, H) as torch returns it: (1, B, H), or (1, H) unbatched."""
        return h.unsqueeze(0) if batched else h

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s


class LSTM(_Gated):
    """A single-layer LSTM, interchangeable with ``nn.LSTM(input_size, hidden_size, bias,
    batch_first=...)``: ``output, (h_n, c_n) = lstm(x, (h_0, c_0))``.

    ``output`` holds h at every step; ``h_n`` and ``c_n`` are the states after the last step.
    A missing state starts at zeros. (``batch_first`` defaults to True here, as in the book.)
    """

    gates = 4

    def forward(self, x: torch.Tensor,
                state: State | None = None) -> tuple[torch.Tensor, State]:
        x, batched = self._time_major(x)
        h0, c0 = _check_pair(state)
        h, c = self._start(h0, x, batched, "h_0"), self._start(c0, x, batched, "c_0")
        hs = []
        for x_t in x:                      # one step per time index
            h, c = lstm_cell(x_t, (h, c), *self._weights())
            hs.append(h)
        return self._outputs(hs, batched), (self._final(h, batched), self._final(c, batched))


class GRU(_Gated):
    """A single-layer GRU, interchangeable with ``nn.GRU(input_size, hidden_size, bias,
    batch_first=...)``: ``output, h_n = gru(x, h_0)``.

    ``output`` holds h at every step and ``h_n`` the state after the last step. A missing
    state starts at zeros. (``batch_first`` defaults to True here, as in the book.)
    """

    gates = 3

    def forward(self, x: torch.Tensor,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, batched = self._time_major(x)
        h = self._start(state, x, batched, "h_0")
        hs = []
        for x_t in x:
            h = gru_cell(x_t, h, *self._weights())
            hs.append(h)
        return self._outputs(hs, batched), self._final(h, batched)


# --- argument checks -------------------------------------------------------------------------

def _check_sizes(input_size: object, hidden_size: object, bias: object,
                 batch_first: object) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_input(x: object, input_size: int, weight: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected the input as a tensor of shape (B, L, {input_size}), "
                         f"(L, B, {input_size}) or (L, {input_size}), got {type(x).__name__}; "
                         "pad sequences of different lengths to one length (packed sequences "
                         "are not supported)")
    if x.ndim not in (2, 3) or x.shape[-1] != input_size:
        raise ValueError(f"expected the input of shape (B, L, {input_size}) (batch_first), "
                         f"(L, B, {input_size}) or (L, {input_size}) unbatched, got "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"the input must be a floating-point tensor, got {x.dtype}: convert "
                         f"it with x.to({weight.dtype})")
    check_like(x, "the input", weight, "the weights")


def _check_length(x: torch.Tensor) -> None:
    if x.shape[0] == 0:
        raise ValueError("the input has no time steps (sequence length 0); a recurrent network "
                         "needs at least one step")


def _check_pair(state: object) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if state is None:
        return None, None
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError("an LSTM's state is a pair (h_0, c_0) of tensors, got "
                         f"{type(state).__name__}")
    return state[0], state[1]


def _check_state(s: object, name: str, x: torch.Tensor, batched: bool, hidden_size: int,
                 weight: torch.Tensor) -> None:
    shape = (1, x.shape[1], hidden_size) if batched else (1, hidden_size)
    if not isinstance(s, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape {shape}, got {type(s).__name__}")
    if tuple(s.shape) != shape:
        kind = "batched 3-D" if batched else "unbatched 2-D"
        raise ValueError(f"for {kind} input, {name} must have shape {shape} "
                         "(layers, batch, hidden) or (layers, hidden), got "
                         f"{tuple(s.shape)}")
    check_like(s, name, weight, "the weights")


# --- many small networks side by side, for the experiments ------------------------------------

_CELLS = {"rnn": 1, "lstm": 4, "gru": 3}


def _tanh_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor,
               weight_hh: torch.Tensor, bias_ih: torch.Tensor | None = None,
               bias_hh: torch.Tensor | None = None) -> torch.Tensor:
    """One step of the plain tanh RNN of Section 3.3, broadcasting like the gated cells."""
    return torch.tanh(affine(x, weight_ih, bias_ih) + affine(h, weight_hh, bias_hh))


class Stacked(nn.Module):
    """``groups`` independent single-layer recurrent networks with a linear read-out, computed
    together: one batched matrix product per step serves them all.

    ``cell`` is ``"rnn"`` (tanh), ``"lstm"`` or ``"gru"``. With ``bidirectional=True`` every
    network has a second direction that reads the sequence backwards (the two directions are
    batched too). The read-out sees the last hidden state of each direction, or, when
    ``sequence_length`` is given, the hidden states of all steps of both directions, flattened
    (the read-out of Greydanus's MNIST-1D GRU). Group g is initialised as PyTorch initialises
    ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and ``nn.Linear`` (U(±1/√hidden_size), and U(±1/√fan_in)
    for the read-out), drawn in float64 with ``torch.rand`` from ``seeds[g]``, so it depends
    neither on the other groups nor on the CPU.

    ``forward(x)`` takes x of shape (groups, B, L, input_size) and returns (groups, B,
    output_size). Each group's loss must be summed (not averaged) over the groups; then, with
    an elementwise optimiser such as Adam and :meth:`clip_grad_norm_`, every group trains
    exactly as it would alone. :meth:`network` copies one group out into ``nn.RNN``,
    ``nn.LSTM`` or ``nn.GRU`` and ``nn.Linear`` (the tests use it to check all of this).
    Parameters have shapes (groups, directions, ...), e.g. ``weight_ih`` (G, D, k·H, input_size).
    """

    def __init__(self, cell: str, seeds: list[int], input_size: int, hidden_size: int,
                 output_size: int = 1, *, bidirectional: bool = False,
                 sequence_length: int | None = None, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
        if not isinstance(seeds, (list, tuple)) or not seeds or not all(
                isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ValueError(f"seeds must be a non-empty list of ints, one per network, got "
                             f"{seeds!r}")
        _check_sizes(input_size, hidden_size, True, True)
        for name, v in (("output_size", output_size), ("sequence_length", sequence_length)):
            if (v is not None or name == "output_size") and (
                    isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(bidirectional, bool):
            raise ValueError(f"bidirectional must be True or False, got {bidirectional!r}")
        self.cell, self.seeds = cell, list(seeds)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.bidirectional, self.sequence_length = bidirectional, sequence_length
        k, H, D = _CELLS[cell], hidden_size, 2 if bidirectional else 1
        features = D * H * (sequence_length or 1)            # what the read-out sees
        rnn_shapes = {"weight_ih": (k * H, input_size), "weight_hh": (k * H, H),
                      "bias_ih": (1, k * H), "bias_hh": (1, k * H)}
        head_shapes = {"head_weight": (output_size, features), "head_bias": (1, output_size)}
        values: dict[str, list[torch.Tensor]] = {n: [] for n in [*rnn_shapes, *head_shapes]}

        def draw(shape: tuple[int, ...], bound: float, gen: torch.Generator) -> torch.Tensor:
            return bound * (2 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1)

        for seed in self.seeds:                  # a fixed order of draws per network:
            gen = torch.Generator().manual_seed(seed)
            per_direction: dict[str, list[torch.Tensor]] = {n: [] for n in rnn_shapes}
            for _ in range(D):                   # the forward direction, then the reverse
                for n, s in rnn_shapes.items():
                    per_direction[n].append(draw(s, 1 / math.sqrt(H), gen))
            for n, vs in per_direction.items():
                values[n].append(torch.stack(vs))
            for n, s in head_shapes.items():     # then the read-out
                values[n].append(draw(s, 1 / math.sqrt(features), gen))
        for name, vs in values.items():
            self.register_parameter(name, nn.Parameter(
                torch.stack(vs).to(device=device, dtype=dtype)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        G, H, D = len(self.seeds), self.hidden_size, 2 if self.bidirectional else 1
        L = self.sequence_length
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != G or \
                x.shape[-1] != self.input_size or x.shape[2] == 0 or \
                (L is not None and x.shape[2] != L):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            steps = f"L = {L}" if L is not None else "L >= 1"
            raise ValueError(f"expected x of shape (groups={G}, B, L, {self.input_size}) with "
                             f"{steps}, got {got}")
        check_like(x, "x", self.weight_ih, "the weights")
        if D == 2:                                            # the reverse direction reads
            x = torch.stack([x, x.flip(2)], dim=1)            # the sequence backwards
        else:
            x = x.unsqueeze(1)
        x = x.flatten(0, 1)                                   # (G·D, B, L, input_size)
        weights = [p.flatten(0, 1) for p in (self.weight_ih, self.weight_hh, self.bias_ih,
                                              self.bias_hh)]
        h = x.new_zeros(G * D, x.shape[1], H)
        c = torch.zeros_like(h)
        hs = []
        for x_t in x.unbind(2):                               # one step for all G·D networks
            if self.cell == "lstm":
                h, c = lstm_cell(x_t, (h, c), *weights)
            elif self.cell == "gru":
                h = gru_cell(x_t, h, *weights)
            else:
                h = _tanh_cell(x_t, h, *weights)
            if L is not None:
                hs.append(h)
        if L is None:                                         # last state of each direction
            features = h.unflatten(0, (G, D)).transpose(1, 2).flatten(2)      # (G, B, D·H)
        else:                                                 # every step, as torch's output
            out = torch.stack(hs, dim=2).unflatten(0, (G, D))                 # (G, D, B, L, H)
            parts = [out[:, 0]] + ([out[:, 1].flip(2)] if D == 2 else [])
            features = torch.cat(parts, dim=-1).flatten(2)                    # (G, B, L·D·H)
        return features @ self.head_weight.mT + self.head_bias

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip each group's gradient to norm ``max_norm`` on its own (as
        ``torch.nn.utils.clip_grad_norm_`` would for that network alone); returns the G norms."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *[1] * (g.ndim - 1)))
        return norms

    def network(self, g: int) -> tuple[nn.Module, nn.Linear]:
        """Group g as ``(nn.RNN | nn.LSTM | nn.GRU, nn.Linear)``, batch_first, with its weights.

        The read-out takes the torch network's ``output.flatten(1)`` when ``sequence_length`` is
        set, else its last states ``h_n`` side by side, ``h_n.transpose(0, 1).flatten(1)``."""
        cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[self.cell]
        like = {"dtype": self.weight_ih.dtype, "device": self.weight_ih.device}
        rnn = cls(self.input_size, self.hidden_size, batch_first=True,
                  bidirectional=self.bidirectional, **like)
        head = nn.Linear(self.head_weight.shape[-1], self.output_size, **like)
        with torch.no_grad():
            for d, suffix in enumerate(["", "_reverse"][:2 if self.bidirectional else 1]):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    value = getattr(self, name)[g, d]
                    getattr(rnn, f"{name}_l0{suffix}").copy_(value.reshape(-1) if "bias" in name
                                                             else value)
            head.weight.copy_(self.head_weight[g])
            head.bias.copy_(self.head_bias[g, 0])
        return rnn, head


def adding_problem(n: int, length: int, delay: int,
                   generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem of Hochreiter and Schmidhuber (1997), with a set delay.

    Each of the ``n`` sequences has ``length`` steps of two channels: a number drawn from
    U(0, 1) and a marker, 1 at exactly two steps and 0 elsewhere. The target is the sum of the
    two marked numbers. The first mark is ``delay`` steps before the end (at step
    ``length - delay``), the second at a random later step, so a network must hold the first
    number for ``delay`` steps. Predicting the mean, 1, scores an MSE of 1/6. Returns x (n,
    length, 2) and y (n,). Drawn with ``torch.rand`` in float64: the same on every CPU.
    """
    for name, v in (("n", n), ("length", length), ("delay", delay)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not 2 <= delay <= length:
        raise ValueError(f"delay must lie in [2, length={length}] (the second mark comes after "
                         f"the first), got {delay}")
    values = torch.rand(n, length, generator=generator, dtype=torch.float64)
    first = length - delay
    second = first + 1 + (torch.rand(n, generator=generator, dtype=torch.float64)
                          * (delay - 1)).long()
    rows = torch.arange(n)
    marks = torch.zeros(n, length, dtype=torch.float64)
    marks[:, first] = 1.0
    marks[rows, second] = 1.0
    y = values[:, first] + values[rows, second]
    return torch.stack([values, marks], dim=-1).to(dtype), y.to(dtype)


class EncoderDecoder(nn.Module):
    """A sequence-to-sequence network without attention: an encoder reads the source, and its
    last hidden state, one vector of ``hidden_size`` numbers, is all the decoder gets.

    ``forward(src, tgt_in)`` takes source ids (B, n) and the decoder's inputs (B, m), the target
    shifted right behind a start symbol (id ``vocab_size``), and returns logits (B, m,
    vocab_size) for the target ("teacher forcing"). Both halves are ``cell`` (default
    ``nn.GRU``, batch_first) fed one-hot vectors; weights are drawn portably from ``seed``.
    """

    def __init__(self, vocab_size: int, hidden_size: int, *, cell: type = nn.GRU,
                 seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        _check_sizes(1, hidden_size, True, True)
        self.vocab_size = vocab_size
        self.encoder = cell(vocab_size, hidden_size, batch_first=True, dtype=dtype)
        self.decoder = cell(vocab_size + 1, hidden_size, batch_first=True, dtype=dtype)
        self.head = nn.Linear(hidden_size, vocab_size, dtype=dtype)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                u = torch.rand(p.shape, generator=gen, dtype=torch.float64)
                p.copy_((2 * u - 1) / math.sqrt(hidden_size))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        V = self.vocab_size
        for name, ids, top in (("src", src, V), ("tgt_in", tgt_in, V + 1)):
            if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point() \
                    or ids.shape[1] == 0 or (ids.numel() and (ids.min() < 0 or ids.max() >= top)):
                raise ValueError(f"{name} must be a (B, length) integer tensor of ids in "
                                 f"[0, {top}), length >= 1")
        dtype = self.head.weight.dtype
        _, state = self.encoder(nn.functional.one_hot(src, V).to(dtype))
        out, _ = self.decoder(nn.functional.one_hot(tgt_in, V + 1).to(dtype), state)
        return self.head(out)


def copy_task(n: int, length: int, vocab_size: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences to copy: source ids (n, length), uniform over ``vocab_size`` symbols,
    and the decoder's inputs (n, length): the start symbol ``vocab_size``, then the source
    without its last symbol. The target is the source itself."""
    for name, v in (("n", n), ("length", length), ("vocab_size", vocab_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    u = torch.rand(n, length, generator=generator, dtype=torch.float64)
    src = (u * vocab_size).long().clamp(max=vocab_size - 1)
    start = torch.full((n, 1), vocab_size, dtype=torch.int64)
    return src, torch.cat([start, src[:, :-1]], dim=1)
