"""Recurrent networks from scratch, and backpropagation through time (Section 3.3).

A recurrent network reads a sequence one step at a time and carries a hidden state ``h``
from step to step. One cell, with one set of weights, is applied at every step:

    h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),    φ = tanh or ReLU

* :func:`rnn_cell` is that step and :class:`RNN` loops it over a sequence (computing the
  inputs' part of every step in one matrix product first, as cuDNN does). ``RNN`` has the
  constructor, the ``state_dict`` and the ``forward`` of ``torch.nn.RNN`` with one layer, so
  the weights of one load into the other (``batch_first`` is True by default here).
* :func:`rnn_forward` / :func:`rnn_backward`: the tanh RNN with its backward pass through
  time written by hand (the Part II form: forward returns a cache, backward the gradients).
* :func:`jacobian_norms`: ‖∂h_T/∂h_t‖ along a sequence, the factor by which a gradient
  shrinks or grows on its way back from step T to step t.
* A character-level language model: :class:`CharVocab`, :class:`CharRNN`, truncated BPTT
  over contiguous streams (:func:`batchify`, :func:`tbptt_epoch`, :func:`evaluate_lm`) and
  sampling with a temperature (:func:`sample`).
* :class:`LSTM` and :class:`GRU` are Section 3.4's gated cells (``dlbook.gated``), re-exported
  so that ``dlbook.rnn`` offers all three recurrent layers.

Weights are drawn in float64 with ``torch.rand`` and then rounded to the model's dtype, so the
same seed gives the same weights on every CPU. Inputs are checked by the private helpers at the
end of the file, so that each function reads like its derivation.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.gated import GRU, LSTM  # the gated cells of Section 3.4, re-exported here
from dlbook.optim import clip_grad_norm_
from dlbook.utils import check_like

__all__ = ["GRU", "LSTM", "RNN", "CharRNN", "CharVocab", "batchify", "detach_state",
           "evaluate_lm", "jacobian_norms", "rnn_backward", "rnn_cell", "rnn_forward",
           "sample", "sample_index", "tbptt_chunks", "tbptt_epoch", "uniform_"]

State = torch.Tensor | tuple[torch.Tensor, ...]
_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


# --- one step, and the loop over time ---------------------------------------------------------

def rnn_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor,
             weight_hh: torch.Tensor, bias_ih: torch.Tensor | None = None,
             bias_hh: torch.Tensor | None = None, nonlinearity: str = "tanh") -> torch.Tensor:
    """One step of an Elman RNN for a batch: ``h' = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)``.

    x (B, input_size), h (B, hidden_size); weight_ih (hidden, input) and weight_hh (hidden,
    hidden) in ``nn.RNN``'s layout; the biases (hidden,) or None. Returns h' (B, hidden).
    """
    _check_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
    a = x @ weight_ih.T + h @ weight_hh.T       # (B, H): the new input and the old state
    if bias_ih is not None:
        a = a + bias_ih + bias_hh
    return _ACTIVATIONS[nonlinearity](a)


class RNN(nn.Module):
    """A single-layer RNN with the parameters and the ``forward`` of ``torch.nn.RNN``.

    ``forward(x, state=None)`` takes x of shape (B, T, input_size) (or (T, B, input_size)
    with ``batch_first=False``, or (T, input_size) for one sequence) and the initial state
    (1, B, hidden_size) (zeros if None) and returns ``(output, h_n)``: the hidden state of
    every step, shaped like x with hidden_size features, and the last one, (1, B, hidden).
    ``state_dict`` keys and shapes are ``nn.RNN``'s (``weight_ih_l0``, ``weight_hh_l0``,
    ``bias_ih_l0``, ``bias_hh_l0``), so ``load_state_dict`` works both ways.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 batch_first: bool = True, nonlinearity: str = "tanh", *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        _check_rnn_args(input_size, hidden_size, bias, batch_first, nonlinearity)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.batch_first, self.nonlinearity = bias, batch_first, nonlinearity
        self.num_layers = 1
        kw = {"device": device, "dtype": dtype}
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih_l0 = nn.Parameter(torch.empty(hidden_size, **kw))
            self.bias_hh_l0 = nn.Parameter(torch.empty(hidden_size, **kw))
        else:
            self.register_parameter("bias_ih_l0", None)
            self.register_parameter("bias_hh_l0", None)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's initialisation, U(±1/√hidden_size) for every weight and bias, drawn in
        float64 (the same numbers on every CPU) from ``generator`` (default: the global one)."""
        uniform_(self.parameters(), 1 / math.sqrt(self.hidden_size), generator)

    def forward(self, x: torch.Tensor,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xs, h, unbatched = self._time_major(x, state)   # xs (T, B, I), h (B, H)
        phi = _ACTIVATIONS[self.nonlinearity]
        # The inputs' part of a_t does not depend on h: one product for all T steps at once.
        a_x = xs @ self.weight_ih_l0.T                    # (T, B, H)
        if self.bias:
            a_x = a_x + (self.bias_ih_l0 + self.bias_hh_l0)
        outputs = []
        for a_t in a_x:                                   # the same W_hh at every step
            h = phi(a_t + h @ self.weight_hh_l0.T)        # rnn_cell, with x W_ihᵀ done above
            outputs.append(h)
        output = torch.stack(outputs)                     # (T, B, H)
        if unbatched:
            return output[:, 0], h                        # (T, H), (1, H)
        if self.batch_first:
            output = output.transpose(0, 1)               # (B, T, H)
        return output, h.unsqueeze(0)                     # h_n: (1, B, H), one layer

    def _time_major(self, x: Any, state: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """x as (T, B, input_size) and the initial state as (B, hidden), after checks."""
        _check_sequence(x, self.input_size, self.weight_ih_l0, self.batch_first)
        unbatched = x.ndim == 2
        xs = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
        batch = xs.shape[1]
        if state is None:
            return xs, xs.new_zeros(batch, self.hidden_size), unbatched
        _check_state(state, unbatched, batch, self.hidden_size, self.weight_ih_l0)
        return xs, (state if unbatched else state[0]), unbatched

    def extra_repr(self) -> str:
        extra = "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"
        extra += "" if self.bias else ", bias=False"
        return (f"{self.input_size}, {self.hidden_size}, batch_first={self.batch_first}"
                f"{extra}")


def uniform_(params: Any, bound: float, generator: torch.Generator | None = None) -> None:
    """Fill each tensor in ``params`` with U(−bound, bound), drawn in float64 with
    ``torch.rand`` on the CPU (the same numbers on every machine), then rounded to the
    tensor's dtype and moved to its device."""
    with torch.no_grad():
        for p in params:
            u = torch.rand(p.shape, generator=generator, dtype=torch.float64)
            p.copy_((bound * (2 * u - 1)).to(p.dtype))


# --- backpropagation through time, by hand (tanh) -----------------------------------------------

Cache = tuple[torch.Tensor, ...]


def rnn_forward(X: torch.Tensor, h0: torch.Tensor, W_ih: torch.Tensor, W_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """The tanh RNN over a batch of sequences: X (B, T, I), h0 (B, H) -> states (B, T, H).

    ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, weights in ``nn.RNN``'s layout. The
    cache keeps the inputs and every state: the backward pass needs h_{t-1} and tanh'(a_t) =
    1 - h_t², for every t.
    """
    _check_bptt(X, h0, W_ih, W_hh, b_ih, b_hh)
    h, states = h0, []
    for t in range(X.shape[1]):
        h = torch.tanh(X[:, t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh)
        states.append(h)
    H = torch.stack(states, dim=1)
    return H, (X, h0, W_ih, W_hh, H)


def rnn_backward(dH: torch.Tensor, cache: Cache) -> tuple[torch.Tensor, ...]:
    """Backpropagation through time: gradients (dX, dh0, dW_ih, dW_hh, db_ih, db_hh) from dH
    (B, T, H), the gradient of the loss with respect to every state.

    Walking back from t = T, the gradient reaching h_t is its own, dH_t, plus what flows back
    from step t+1 through W_hh: ``dh_t = dH_t + da_{t+1} W_hh``. Then ``da_t = dh_t ⊙ (1 −
    h_t²)``, and each weight's gradient sums its contributions over the steps, because the same
    weights are used at every step.
    """
    X, h0, W_ih, W_hh, H = cache
    _check_upstream_states(dH, H)
    B, T, _ = X.shape
    prev = torch.cat([h0.unsqueeze(1), H[:, :-1]], dim=1)   # h_{t-1} for t = 1..T
    dA = torch.empty_like(H)                                 # da_t, the pre-activations'
    da_next = torch.zeros_like(h0)                           # nothing flows in after step T
    for t in reversed(range(T)):
        dh = dH[:, t] + da_next @ W_hh                       # (B, H)
        dA[:, t] = da_next = dh * (1 - H[:, t] ** 2)
    dX = dA @ W_ih                                           # (B, T, I)
    dh0 = da_next @ W_hh                                     # da_1 W_hh
    dW_ih = torch.einsum("bth,bti->hi", dA, X)               # Σ_t da_t x_tᵀ
    dW_hh = torch.einsum("bth,btk->hk", dA, prev)            # Σ_t da_t h_{t-1}ᵀ
    db = dA.sum(dim=(0, 1))                                  # both biases enter a_t alike
    return dX, dh0, dW_ih, dW_hh, db, db.clone()


def jacobian_norms(model: RNN, x: torch.Tensor,
                   state: torch.Tensor | None = None) -> torch.Tensor:
    """‖∂h_T/∂h_t‖₂ (spectral norm) for t = 0, 1, ..., T along one sequence x (T, input_size).

    By the chain rule ∂h_T/∂h_t = J_T J_{T−1} ⋯ J_{t+1} with one step's Jacobian
    ``J_k = ∂h_k/∂h_{k−1} = diag(φ'(a_k)) W_hh``; the product is built from k = T backwards.
    Entry t of the result (length T + 1) is the largest factor by which a gradient arriving at
    h_T can grow on its way back to h_t; entry T is 1, entry 0 refers to the initial state.
    """
    _check_jacobian_args(model, x)
    with torch.no_grad():
        H, _ = model(x, state)                              # (T, hidden): h_1 .. h_T
        W = model.weight_hh_l0
        slope = 1 - H**2 if model.nonlinearity == "tanh" else (H > 0).to(H.dtype)
        J = torch.eye(model.hidden_size, dtype=W.dtype, device=W.device)
        norms = [torch.ones((), dtype=W.dtype, device=W.device)]
        for k in reversed(range(len(H))):
            J = J @ (slope[k, :, None] * W)                 # ∂h_T/∂h_k times J_k
            norms.append(torch.linalg.matrix_norm(J, ord=2))
    return torch.stack(norms[::-1])


# --- a character-level language model ---------------------------------------------------------

class CharVocab:
    """The characters of a text, each with an id: ``encode`` a string to ids, ``decode`` back.

    The ids follow the sorted characters, so the same text always gives the same vocabulary.
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("CharVocab needs a non-empty string, e.g. dlbook.data.text()")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """The ids of the characters of ``text``, an int64 tensor of shape (len(text),)."""
        unknown = sorted(set(text) - set(self.index)) if isinstance(text, str) else None
        if unknown is None or unknown:
            raise ValueError(f"can only encode a string of the vocabulary's characters; "
                             f"unknown: {unknown if unknown else type(text).__name__}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """The string of a sequence of ids."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if not all(isinstance(i, int) and 0 <= i < len(self) for i in ids):
            raise ValueError(f"ids must be whole numbers in [0, {len(self)})")
        return "".join(self.chars[i] for i in ids)


class CharRNN(nn.Module):
    """Characters in, logits for the next character out: one-hot → recurrent cell → linear.

    ``forward(ids, state=None)`` takes ids (B, T) and returns logits (B, T, vocab_size) and
    the cell's last state, which the next call can continue from. ``cell`` is a class with the
    constructor ``(input_size, hidden_size, batch_first=True)``: :class:`RNN` by default, or
    ``nn.RNN``, or Section 3.4's LSTM and GRU. A one-hot vector times W_ih picks one column of
    W_ih, so the cell's input weights are the characters' embeddings.
    """

    def __init__(self, vocab_size: int, hidden_size: int, cell: type = RNN,
                 seed: int | None = None, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        _check_sizes(vocab_size=vocab_size, hidden_size=hidden_size)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.rnn = cell(vocab_size, hidden_size, batch_first=True).to(dtype)
        self.head = nn.Linear(hidden_size, vocab_size, dtype=dtype)
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        self.reset_parameters(gen)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """U(±1/√hidden_size) for all weights, as PyTorch's RNNs and this head (fan-in =
        hidden_size) draw them, in float64 so that every CPU gets the same numbers."""
        uniform_(self.parameters(), 1 / math.sqrt(self.hidden_size), generator)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        _check_ids(ids, self.vocab_size, self.head.weight)
        x = F.one_hot(ids, self.vocab_size).to(self.head.weight.dtype)   # (B, T, V)
        out, state = self.rnn(x, state)                                   # (B, T, H)
        return self.head(out), state


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut one long sequence of ids (N,) into ``batch_size`` contiguous streams (B, N // B).

    Row b continues where row b − 1 would have gone on: training on row b chunk after chunk
    reads one stretch of text in order, so the state carried from one chunk to the next is
    the state of the text just before it. The N mod B leftover ids are dropped.
    """
    _check_batchify(ids, batch_size)
    n = len(ids) // batch_size
    return ids[: n * batch_size].reshape(batch_size, n)


def tbptt_chunks(streams: torch.Tensor,
                 seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive chunks ``(x, y)`` of ``seq_len`` steps of the streams (B, N): inputs x (B, k)
    and targets y (B, k), the same characters one step later (the last chunk may be shorter)."""
    _check_chunks(streams, seq_len)
    for start in range(0, streams.shape[1] - 1, seq_len):
        end = min(start + seq_len, streams.shape[1] - 1)
        yield streams[:, start:end], streams[:, start + 1:end + 1]


def detach_state(state: State | None) -> State | None:
    """The state as a constant: the next chunk starts from its value, but no gradient flows
    back through it into the previous chunk (works for a tensor and for an LSTM's pair)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(s.detach() for s in state)


def tbptt_epoch(model: CharRNN, streams: torch.Tensor, seq_len: int,
                optimizer: torch.optim.Optimizer, *, max_grad_norm: float | None = None,
                scheduler: Any = None) -> list[float]:
    """One pass over the streams with truncated backpropagation through time; returns the
    loss (mean cross-entropy per character, in nats) of every chunk.

    The state is carried from chunk to chunk, so the model reads each stream as one text,
    but detached at every chunk boundary, so that each backward pass runs over ``seq_len``
    steps only. Gradients are clipped to ``max_grad_norm`` (global norm) before each step
    if given, and ``scheduler`` steps after every optimizer step.
    """
    _check_train(model, streams, optimizer, max_grad_norm)
    model.train()
    state, losses = None, []
    for x, y in tbptt_chunks(streams, seq_len):
        logits, state = model(x, detach_state(state))
        loss = F.cross_entropy(logits.reshape(-1, model.vocab_size), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        if max_grad_norm is not None:
            clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def evaluate_lm(model: CharRNN, streams: torch.Tensor, seq_len: int = 256) -> float:
    """Mean cross-entropy per character (nats) of the model over the streams (B, N), reading
    each stream from its start with the state carried along (its perplexity is ``exp``)."""
    _check_chunks(streams, seq_len)
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    for x, y in tbptt_chunks(streams, seq_len):
        logits, state = model(x, state)
        total += F.cross_entropy(logits.reshape(-1, model.vocab_size), y.reshape(-1),
                                 reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


# --- sampling ---------------------------------------------------------------------------------

def sample_index(probs: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """Draw one index from the probabilities ``probs`` (V,) by inverting their CDF.

    A uniform u in [0, 1) (``torch.rand`` in float64, the same on every CPU) picks the first
    index whose cumulative probability exceeds u·Σp: index k with probability p_k.
    """
    _check_probs(probs)
    cdf = probs.detach().to("cpu", torch.float64).cumsum(0)
    u = torch.rand((), generator=generator, dtype=torch.float64) * cdf[-1]
    return min(int(torch.searchsorted(cdf, u, right=True)), len(cdf) - 1)


@torch.no_grad()
def sample(model: CharRNN, prompt: torch.Tensor, length: int, *, temperature: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue ``prompt`` (ids, shape (P,)) by ``length`` characters drawn one at a time from
    ``softmax(logits / temperature)``; returns the new ids, shape (length,).

    Temperature 1 samples the model's own distribution, a lower one sharpens it towards the
    most likely character (0 means always take it) and a higher one flattens it.
    """
    _check_sample(model, prompt, length, temperature)
    was_training = model.training
    model.eval()
    logits, state = model(prompt.to(model.head.weight.device).unsqueeze(0))   # read the prompt
    out = []
    for _ in range(length):
        last = logits[0, -1]
        if temperature == 0:
            nxt = int(last.argmax())
        else:
            nxt = sample_index(torch.softmax(last.double() / temperature, dim=0), generator)
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]], device=last.device), state)
    model.train(was_training)
    return torch.tensor(out, dtype=torch.int64)


# --- input checks (kept here, out of the way of the algorithms above) ---------------------------

def _kind(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.") if isinstance(t, torch.Tensor) else type(t).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_sizes(**sizes: Any) -> None:
    for name, v in sizes.items():
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive whole number, got {v!r}")


def _check_rnn_args(input_size: Any, hidden_size: Any, bias: Any, batch_first: Any,
                    nonlinearity: Any) -> None:
    _check_sizes(input_size=input_size, hidden_size=hidden_size)
    for name, flag in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def _check_float(name: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} is {_kind(t)}: convert it with {name}.double() (or "
                         f"{name}.float()) to match the weights")


def _check_cell(x: Any, h: Any, weight_ih: Any, weight_hh: Any, bias_ih: Any, bias_hh: Any,
                nonlinearity: Any) -> None:
    for name, t in (("x", x), ("h", h), ("weight_ih", weight_ih), ("weight_hh", weight_hh)):
        _check_float(name, t)
        if t.ndim != 2:
            raise ValueError(f"{name} must be 2-d, got shape {tuple(t.shape)}; a single "
                             f"example is a batch of one: {name}.unsqueeze(0)")
        check_like(t, name, weight_hh, "weight_hh")
    hidden = weight_hh.shape[0]
    if weight_hh.shape != (hidden, hidden) or weight_ih.shape[0] != hidden:
        raise ValueError(f"weight_hh must be (hidden, hidden) and weight_ih (hidden, input); "
                         f"got {tuple(weight_hh.shape)} and {tuple(weight_ih.shape)}")
    if x.shape[1] != weight_ih.shape[1] or h.shape != (x.shape[0], hidden):
        raise ValueError(f"expected x of shape (B, {weight_ih.shape[1]}) and h of shape "
                         f"(B, {hidden}); got {tuple(x.shape)} and {tuple(h.shape)}")
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("pass both biases or neither")
    for name, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if b is not None:
            _check_float(name, b)
            check_like(b, name, weight_hh, "weight_hh")
            if b.shape != (hidden,):
                raise ValueError(f"{name} must have shape ({hidden},), got {tuple(b.shape)}")
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def _check_sequence(x: Any, input_size: int, weight: torch.Tensor, batch_first: bool) -> None:
    _check_float("x", x)
    layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
    if x.ndim not in (2, 3) or x.shape[-1] != input_size:
        raise ValueError(f"expected x of shape {layout} or (T, input_size) with input_size = "
                         f"{input_size}, got {tuple(x.shape)}")
    steps = x.shape[1] if x.ndim == 3 and batch_first else x.shape[0]
    if steps == 0:
        raise ValueError("x has no time steps; a sequence needs at least one")
    check_like(x, "x", weight, "the weights")


def _check_state(state: Any, unbatched: bool, batch: int, hidden: int,
                 weight: torch.Tensor) -> None:
    _check_float("state", state)
    want = (1, hidden) if unbatched else (1, batch, hidden)
    if tuple(state.shape) != want:
        raise ValueError(f"expected the initial state of shape {want} (num_layers = 1"
                         f"{'' if unbatched else ', batch, hidden_size'}; it is not batch-first "
                         f"even with batch_first=True), got {tuple(state.shape)}")
    check_like(state, "state", weight, "the weights")


def _check_bptt(X: Any, h0: Any, W_ih: Any, W_hh: Any, b_ih: Any, b_hh: Any) -> None:
    for name, t in (("X", X), ("h0", h0), ("W_ih", W_ih), ("W_hh", W_hh), ("b_ih", b_ih),
                    ("b_hh", b_hh)):
        _check_float(name, t)
        check_like(t, name, W_hh, "W_hh")
    if X.ndim != 3 or X.shape[1] == 0:
        raise ValueError(f"expected X of shape (B, T, input_size) with T >= 1, got "
                         f"{tuple(X.shape)}")
    B, _, I = X.shape
    H = W_hh.shape[0] if W_hh.ndim == 2 else -1
    shapes = {"h0": (B, H), "W_ih": (H, I), "W_hh": (H, H), "b_ih": (H,), "b_hh": (H,)}
    for name, t in (("h0", h0), ("W_ih", W_ih), ("W_hh", W_hh), ("b_ih", b_ih), ("b_hh", b_hh)):
        if H < 0 or tuple(t.shape) != shapes[name]:
            raise ValueError(f"for X {tuple(X.shape)} and W_hh (H, H), expected {name} of shape "
                             f"{shapes[name] if H > 0 else '(H, H)'}, got {tuple(t.shape)}")


def _check_upstream_states(dH: Any, H: torch.Tensor) -> None:
    if not isinstance(dH, torch.Tensor) or dH.shape != H.shape:
        got = tuple(dH.shape) if isinstance(dH, torch.Tensor) else type(dH).__name__
        raise ValueError(f"expected dH of shape {tuple(H.shape)}, the shape of the states, got "
                         f"{got}")
    check_like(dH, "dH", H, "the states")


def _check_jacobian_args(model: Any, x: Any) -> None:
    if not isinstance(model, RNN):
        raise ValueError(f"model must be a dlbook.rnn.RNN, got {type(model).__name__}; copy "
                         "an nn.RNN's weights into one with load_state_dict")
    _check_float("x", x)
    if x.ndim != 2 or x.shape[1] != model.input_size or len(x) == 0:
        raise ValueError(f"expected one sequence x of shape (T, {model.input_size}), T >= 1, "
                         f"got {tuple(x.shape)}; for sequence b of a batch pass x[b]")


def _check_ids(ids: Any, vocab_size: int, weight: torch.Tensor) -> None:
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor of character ids, got {_kind(ids)}; "
                         "convert with .long()")
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"expected ids of shape (batch, T) with T >= 1, got "
                         f"{tuple(ids.shape)}; for one sequence use ids.unsqueeze(0)")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}), got {int(ids.min())}.."
                         f"{int(ids.max())}")
    if ids.device != weight.device:
        raise ValueError(f"ids are on {ids.device} but the model on {weight.device}: move "
                         f"them with ids.to({str(weight.device)!r})")


def _check_batchify(ids: Any, batch_size: Any) -> None:
    if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.is_floating_point():
        raise ValueError("ids must be a 1-d integer tensor, e.g. vocab.encode(text)")
    _check_sizes(batch_size=batch_size)
    if len(ids) < 2 * batch_size:
        raise ValueError(f"{len(ids)} ids are too few for {batch_size} streams of at least 2")


def _check_chunks(streams: Any, seq_len: Any) -> None:
    if not isinstance(streams, torch.Tensor) or streams.ndim != 2 or streams.shape[1] < 2:
        raise ValueError("streams must be a (batch, N) tensor of ids with N >= 2, as "
                         "batchify(ids, batch_size) makes")
    _check_sizes(seq_len=seq_len)


def _check_train(model: Any, streams: Any, optimizer: Any, max_grad_norm: Any) -> None:
    if not isinstance(model, CharRNN):
        raise ValueError(f"model must be a CharRNN, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError("optimizer must be a torch.optim.Optimizer, e.g. "
                         "torch.optim.Adam(model.parameters(), lr=3e-3)")
    if max_grad_norm is not None and not (isinstance(max_grad_norm, (int, float)) and
                                          not isinstance(max_grad_norm, bool) and
                                          0 < max_grad_norm < math.inf):
        raise ValueError(f"max_grad_norm must be a positive number or None, got "
                         f"{max_grad_norm!r}")


def _check_probs(probs: Any) -> None:
    _check_float("probs", probs)
    if probs.ndim != 1 or len(probs) == 0:
        raise ValueError(f"probs must be one distribution of shape (V,), got "
                         f"{tuple(probs.shape)}")
    if bool((probs < 0).any()) or not bool(torch.isfinite(probs).all()) or \
            not float(probs.sum()) > 0:
        raise ValueError("probs must be finite, non-negative and not all zero, e.g. "
                         "torch.softmax(logits, dim=0)")


def _check_sample(model: Any, prompt: Any, length: Any, temperature: Any) -> None:
    if not isinstance(model, CharRNN):
        raise ValueError(f"model must be a CharRNN, got {type(model).__name__}")
    if not isinstance(prompt, torch.Tensor) or prompt.ndim != 1 or len(prompt) == 0:
        raise ValueError("prompt must be a non-empty 1-d tensor of ids, e.g. "
                         "vocab.encode('The ')")
    _check_sizes(length=length)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or \
            not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a number >= 0 (0: always the most likely "
                         f"character), got {temperature!r}")

