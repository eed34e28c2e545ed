"""Exercise checks for section 1.3, Loss functions and likelihood."""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check
from dlbook.check import Result

#: The logits and target of the exercises "cross-entropy by hand" and "the gradient p - y".
HAND_LOGITS = (2.0, 1.0, 0.1)
HAND_TARGET = 0
GRAD_LOGITS = (1.0, 2.0, 3.0)
GRAD_TARGET = 0

LOSS_OPTIONS = ("MSELoss", "L1Loss", "BCEWithLogitsLoss", "CrossEntropyLoss")
_TASK_LOSS = {"price": "MSELoss", "digit": "CrossEntropyLoss", "spam": "BCEWithLogitsLoss",
              "tags": "BCEWithLogitsLoss"}


def ce_by_hand(answer: Any) -> Result:
    """The cross-entropy of logits (2.0, 1.0, 0.1) when the true class is 0."""
    z = torch.tensor(HAND_LOGITS, dtype=torch.float64)
    expected = float(torch.logsumexp(z, 0) - z[HAND_TARGET])
    return check.number(answer, expected, name="cross-entropy by hand", rtol=1e-3,
                        hint="the loss is -log p_0 = log(e^2 + e^1 + e^0.1) - 2, with the "
                        "natural logarithm; it is small because class 0 has the largest logit.")


def stable_log_softmax(fn: Any) -> Result:
    """A log-softmax over the last dimension that stays finite for huge and tiny logits."""
    inputs = [
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([[0.5, -1.0, 2.0, 0.0], [3.0, 3.0, 3.0, 3.0]]),
        torch.tensor([1000.0, 1001.0, 999.0]),
        torch.tensor([0.0, -200.0, -1000.0]),
        torch.tensor([[-1e4, 1e4], [88.0, 89.0]]),
    ]
    return check.function(fn, lambda z: torch.log_softmax(z, dim=-1), inputs,
                          name="stable log-softmax", rtol=1e-5, atol=1e-4,
                          hint="subtract the max along the last dimension (keepdim=True) first, "
                          "then return shifted - log(sum(exp(shifted))). Never take the log of "
                          "a softmax.")


def ce_gradient(answer: Any) -> Result:
    """The gradient of the cross-entropy with respect to logits (1, 2, 3), true class 0."""
    z = torch.tensor(GRAD_LOGITS, dtype=torch.float64)
    expected = torch.softmax(z, 0) - torch.nn.functional.one_hot(
        torch.tensor(GRAD_TARGET), len(GRAD_LOGITS)).to(z.dtype)
    return check.tensor(answer, expected, name="gradient p - y", rtol=1e-3, atol=1e-4,
                        hint="compute p = softmax(z), then subtract 1 from the entry of the true "
                        "class only; the three entries sum to 0.")


def initial_loss(answer: Any) -> Result:
    """The cross-entropy of a 100-class classifier whose logits are all equal."""
    expected = math.log(100)
    hint = "equal logits give p = 1/100 for every class, and the loss is -log(1/100)."
    if not check.unanswered(answer):
        try:
            if math.isclose(float(answer), math.log10(100), rel_tol=1e-3):
                hint = "use the natural logarithm (math.log), not log base 10."
        except (TypeError, ValueError):
            pass
    return check.number(answer, expected, name="loss at initialisation", rtol=1e-3, hint=hint)


def _normalise(name: Any) -> Any:
    if not isinstance(name, str):
        return name
    return name.strip().removeprefix("torch.").removeprefix("nn.").removesuffix("()").lower()


def choose_losses(answers: Any) -> Result:
    """A dict mapping each task ("price", "digit", "spam", "tags") to a loss name."""
    if isinstance(answers, dict) and any(check.unanswered(v) for v in answers.values()):
        answers = ...
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
