"""Exercise checks for section 1.3, Loss functions and likelihood.

Each exercise states the precision it needs; the checks accept exactly that: a number rounded
to the stated significant figures, a tensor, a list or a NumPy array, float32 or float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dlbook import check
from dlbook.check import Result

#: The logits and target of the exercises "cross-entropy by hand" and "the gradient p - y".
HAND_LOGITS = (2.0, 1.0, 0.1)
HAND_TARGET = 0
GRAD_LOGITS = (1.0, 2.0, 3.0)
GRAD_TARGET = 0
#: The vocabulary size of "the loss before training".
VOCABULARY = 100

LOSS_OPTIONS = ("MSELoss", "L1Loss", "BCEWithLogitsLoss", "CrossEntropyLoss")
_TASK_LOSS = {"price": "MSELoss", "digit": "CrossEntropyLoss", "spam": "BCEWithLogitsLoss",
              "tags": "BCEWithLogitsLoss"}


def _as_float(answer: Any) -> float | None:
    return check.as_number(answer)


def _near(answer: Any, value: float, rel: float = 1e-3) -> bool:
    got = _as_float(answer)
    return got is not None and math.isclose(got, value, rel_tol=rel)


def ce_by_hand(answer: Any) -> Result:
    """The cross-entropy of logits (2.0, 1.0, 0.1) when the true class is 0, to three
    significant figures."""
    z = torch.tensor(HAND_LOGITS, dtype=torch.float64)
    expected = float(torch.logsumexp(z, 0) - z[HAND_TARGET])
    p_true = math.exp(-expected)
    hint = ("the cross-entropy is minus the natural logarithm of the softmax probability of the "
            "true class.")
    if _near(answer, p_true):
        hint = "that is the probability of the true class; the loss is −log of it."
    elif _near(answer, expected / math.log(10)):
        hint = "use the natural logarithm (math.log), not log base 10."
    elif _near(answer, -expected):
        hint = "the loss is minus the log-probability, a positive number."
    return check.number(answer, expected, name="cross-entropy by hand", digits=3, hint=hint)


def stable_log_softmax(fn: Any) -> Result:
    """A log-softmax over the last dimension that stays finite for huge and tiny logits; it must
    agree with ``torch.log_softmax`` to five significant figures (relative 1e-5, absolute
    1e-4)."""
    inputs = [
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([[0.5, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]]),
        torch.tensor([1000.0, 1001.0, 999.0]),
        torch.tensor([0.0, -200.0, -1000.0]),
        torch.tensor([[-1e4, 1e4], [88.0, 89.0]]),
    ]
    return check.function(fn, lambda z: torch.log_softmax(z, dim=-1), inputs,
                          name="stable log-softmax", rtol=1e-5, atol=1e-4,
                          hint="large logits overflow exp and very negative ones make softmax "
                          "round to 0, whose log is -inf: shift each row (only along the last "
                          "dimension) before exponentiating, as the log-sum-exp trick does, and "
                          "never take the log of a softmax.")


def ce_gradient(answer: Any) -> Result:
    """The gradient of the cross-entropy with respect to logits (1, 2, 3), true class 0, to three
    decimal places (within 0.0006 in each entry)."""
    z = torch.tensor(GRAD_LOGITS, dtype=torch.float64)
    p = torch.softmax(z, 0)
    y = torch.nn.functional.one_hot(torch.tensor(GRAD_TARGET), len(GRAD_LOGITS)).to(z.dtype)
    expected = p - y
    hint = "use the gradient of the cross-entropy with respect to the logits derived above."
    got = _vector(answer, len(GRAD_LOGITS))
    if got is not None:
        if torch.allclose(got, p, atol=6e-4):
            hint = "that is p, the softmax; the gradient also subtracts the one-hot target."
        elif torch.allclose(got, -expected, atol=6e-4):
            hint = "check the sign: the true class's entry of the gradient is negative."
        elif abs(float(got.sum())) > 1e-2:
            hint = "the entries of this gradient sum to 0 (softmax and one-hot both sum to 1)."
        answer = got
    return check.tensor(answer, expected, name="gradient p - y", rtol=0, atol=6e-4, hint=hint)


def _vector(answer: Any, size: int) -> torch.Tensor | None:
    """``answer`` as a float64 vector of ``size`` entries (any shape with that many), or None."""
    if check.unanswered(answer) or isinstance(answer, (str, bytes, dict)):
        return None
    try:
        values = answer.detach().cpu() if isinstance(answer, torch.Tensor) else answer
        t = torch.as_tensor(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None
    return t.reshape(size) if t.numel() == size else None


def initial_loss(answer: Any) -> Result:
    """The cross-entropy of a 100-class classifier whose logits are all equal, to two
    significant figures."""
    expected = math.log(VOCABULARY)
    hint = ("with equal logits, what probability does the softmax give each of the words? The "
            "loss is −log of the true word's probability.")
    if _near(answer, math.log10(VOCABULARY)):
        hint = "use the natural logarithm (math.log), not log base 10."
    elif _near(answer, math.log2(VOCABULARY)):
        hint = "use the natural logarithm (math.log), not log base 2."
    elif _near(answer, 1 / VOCABULARY):
        hint = "that is the probability of each word; the loss is −log of it."
    return check.number(answer, expected, name="loss at initialisation", digits=2, hint=hint)


def _normalise(name: Any) -> Any:
    """A loss name, class or instance as a lower-case name: nn.MSELoss, "torch.nn.MSELoss()",
    and "mseloss" are all "mseloss"."""
    if isinstance(name, type):
        name = name.__name__
    elif isinstance(name, torch.nn.Module):
        name = type(name).__name__
    if not isinstance(name, str):
        return name
    name = name.strip().removesuffix("()")
    return name.rsplit(".", 1)[-1].lower()


def choose_losses(answers: Any) -> Result:
    """A dict mapping each task ("price", "digit", "spam", "tags") to a loss name."""
    options = {o.lower(): o for o in LOSS_OPTIONS}

    def test(ans: Any) -> str | None:
        if not isinstance(ans, dict):
            return f"expected a dict like {{'price': 'MSELoss', ...}}, got {type(ans).__name__}."
        missing = sorted(set(_TASK_LOSS) - set(ans))
        if missing:
            return f"the dict lacks the task(s) {missing}."
        for task in _TASK_LOSS:
            if _normalise(ans[task]) not in options:
                return f"{ans[task]!r} for {task!r} is not one of {list(LOSS_OPTIONS)}."
        wrong = [t for t, loss in _TASK_LOSS.items() if _normalise(ans[t]) != loss.lower()]
        if wrong:
            return f"the loss for {', '.join(repr(t) for t in wrong)} is not right."
        return None

    return check.condition(answers, test, name="choose the loss",
                           hint="ask what distribution the target has: a real number (Gaussian), "
                           "one class out of many (categorical), or one or more independent "
                           "yes/no answers (Bernoulli each).")
