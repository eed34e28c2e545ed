"""Checks for the exercises of section 1.5, Optimizers and regularization."""

from __future__ import annotations

from typing import Any, Callable

import torch

from dlbook import check
from dlbook.optim import SGD, clip_grad_norm_, warmup_cosine_lr


def adam_first_step(answer: Any) -> check.Result:
    """Exercise: the parameter after Adam's first step from p = 0.5 with g = −3, lr = 0.1."""
    p = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    p.grad = torch.tensor([-3.0], dtype=torch.float64)
    opt.step()
    return check.number(answer, p.item(), name="Adam's first step", rtol=1e-6,
                        hint="work out m₁, v₁ and their bias corrections m̂₁, v̂₁ first; at "
                             "t = 1 the size of Adam's step hardly depends on |g|.")


def momentum_gain(answer: Any) -> check.Result:
    """Exercise: how many times longer a momentum step (μ = 0.95) is under a constant gradient."""
    return check.number(answer, 1 / (1 - 0.95), name="momentum gain", rtol=1e-3,
                        hint="with a constant g the buffer obeys b = μ·b + g; set b equal on both "
                             "sides and solve (a geometric series).")


def _momentum_reference(p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor, lr: float,
                        mu: float) -> torch.Tensor:
    """One step of dlbook.optim.SGD (checked against torch.optim.SGD), buffer given."""
    q = p.clone().requires_grad_()
    opt = SGD([q], lr=lr, momentum=mu)
    opt.state[q]["momentum_buffer"] = buf.clone()
    q.grad = g.clone()
    opt.step()
    return torch.stack([q.detach(), opt.state[q]["momentum_buffer"]])


def momentum_step(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(p, g, buf, lr, mu)`` returns ``(p_new, buf_new)`` of heavy-ball SGD."""
    if check.unanswered(fn) or not callable(fn):
        wrapped = fn
    else:
        def wrapped(*args: Any) -> Any:
            out = fn(*args)
            if out is None or out is Ellipsis:
                return None
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise ValueError("return a pair (p_new, buf_new)")
            return torch.stack([torch.as_tensor(o, dtype=torch.float64) for o in out])

    gen = torch.Generator().manual_seed(15)
    cases = []
    for n, lr, mu, fresh in [(3, 0.1, 0.9, True), (4, 0.05, 0.5, False), (5, 0.2, 0.99, False)]:
        p, g = (torch.randn(n, generator=gen, dtype=torch.float64) for _ in range(2))
        buf = torch.zeros(n, dtype=torch.float64) if fresh else \
            torch.randn(n, generator=gen, dtype=torch.float64)
        cases.append((p, g, buf, lr, mu))
    return check.function(wrapped, _momentum_reference, cases, name="heavy-ball momentum step",
                          rtol=1e-5, atol=1e-6,  # float32 arithmetic is right too
                          hint="which comes first, the new buffer or the step, and which "
                               "buffer does the step use? Follow (eq-optimizers-momentum) and "
                               "return both tensors.")


def warmup_cosine(answer: Any) -> check.Result:
    """Exercise: the learning rate at step 35 of warm-up (10 steps) then cosine to step 110."""
    want = warmup_cosine_lr(35, 0.1, warmup=10, total=110)
    return check.number(answer, want, name="learning rate at step 35", digits=3,
                        hint="after the warm-up the cosine starts afresh: count the steps "
                             "since the warm-up ended, out of the steps that remain after it.")


def dropout_variance(answer: Any) -> check.Result:
    """Exercise: Var[dropout(x)] for x = 2 and p = 0.2 (inverted scaling)."""
    x, p = 2.0, 0.2
    return check.number(answer, x * x * p / (1 - p), name="dropout variance", rtol=1e-4,
                        hint="the output is x/(1 − p) with probability 1 − p and 0 otherwise; "
                             "compute E[out²] − (E[out])², and remember E[out] = x.")


def clip_factor(answer: Any) -> check.Result:
    """Exercise: the common factor clip_grad_norm_ applies to g₁ = (3, −4), g₂ = (0, 12, 0)
    with max_norm = 6.5."""
    p1, p2 = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    p1.grad = torch.tensor([3.0, -4.0])
    p2.grad = torch.tensor([0.0, 12.0, 0.0])
    before = p2.grad[1].item()
    clip_grad_norm_([p1, p2], max_norm=6.5)
    return check.number(answer, p2.grad[1].item() / before, name="clipping factor", digits=3,
                        hint="clipping by the global norm treats both gradients as one vector: "
                             "what is the length of that vector, and what factor brings it "
                             "down to max_norm?")
