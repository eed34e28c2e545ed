"""Checks for exercises: compare a student's answer with the expected one and say so kindly.

Every check prints one line and returns a :class:`Result` that is truthy when the answer is
right, so the same call serves a student in a notebook and a teacher's automatic grading.

* A right answer prints ``✅ name: correct``.
* A wrong one prints ``❌ name: ...`` with what differs and, when given, a hint.
* An answer left as ``...`` or ``None`` prints ``⏳ name: not answered yet`` — never an error.
* Only malformed *use* of a check (a bad tolerance, a reference that is not a function) raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

PASS, FAIL, UNANSWERED = "pass", "fail", "unanswered"
_ICON = {PASS: "✅", FAIL: "❌", UNANSWERED: "⏳"}


@dataclass(frozen=True)
class Result:
    """The outcome of a check: ``status`` is ``"pass"``, ``"fail"`` or ``"unanswered"``."""

    name: str
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == PASS

    def __str__(self) -> str:
        return f"{_ICON[self.status]} {self.name}: {self.message}"

    def _ipython_display_(self) -> None:
        """Already printed by the check; show nothing more in a notebook."""


def unanswered(answer: Any) -> bool:
    """True for the placeholders the book's exercises use: ``...`` and ``None``.

    A tuple or list answer (several values asked for at once) is unanswered while any of its
    items still is.
    """
    if answer is Ellipsis or answer is None:
        return True
    if isinstance(answer, (tuple, list)):
        return any(a is Ellipsis or a is None for a in answer)
    return False


def _report(name: str, status: str, message: str, hint: str | None = None) -> Result:
    if status == FAIL and hint:
        message = f"{message} Hint: {hint}"
    result = Result(name, status, message)
    print(result)
    return result


def _unanswered(name: str) -> Result:
    return _report(name, UNANSWERED, "not answered yet — replace the ... with your answer and run the "
                   "cell again.")


def _validate_tolerances(rtol: float, atol: float) -> None:
    for label, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol < 0 or math.isnan(tol):
            raise ValueError(f"{label} must be a non-negative number, got {tol!r}")


def _as_float_tensor(x: Any) -> torch.Tensor | None:
    """Convert numbers, lists, NumPy arrays and tensors to a float64 tensor, else None."""
    try:
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", torch.float64)
        if isinstance(x, (bool, str, bytes)):
            return None
        return torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        return None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def number(answer: Any, expected: float, *, name: str = "answer", rtol: float = 1e-4,
           atol: float = 1e-8, hint: str | None = None) -> Result:
    """Check a single number: ``|answer - expected| <= atol + rtol * |expected|``."""
    _validate_tolerances(rtol, atol)
    exp = _as_float_tensor(expected)
    if exp is None or exp.numel() != 1:
        raise ValueError(f"expected must be a single number, got {expected!r}")
    if unanswered(answer):
        return _unanswered(name)
    got = _as_float_tensor(answer)
    if got is None or got.numel() != 1:
        return _report(name, FAIL, f"expected a single number, got {type(answer).__name__} "
                       f"{answer!r:.60}.", hint)
    g, e = float(got.reshape(())), float(exp.reshape(()))
    if math.isnan(g):
        return _report(name, FAIL, "got nan (not a number).", hint)
    if abs(g - e) <= atol + rtol * abs(e):
        return _report(name, PASS, "correct.")
    return _report(name, FAIL, f"got {_fmt(g)}, which is not the expected value.", hint)


def tensor(answer: Any, expected: Any, *, name: str = "answer", rtol: float = 1e-4,
           atol: float = 1e-6, hint: str | None = None) -> Result:
    """Check an array-like answer: same shape, and every entry close (as ``torch.allclose``)."""
    _validate_tolerances(rtol, atol)
    exp = _as_float_tensor(expected)
    if exp is None:
        raise ValueError(f"expected must be array-like (tensor, array, list), got "
                         f"{type(expected).__name__}")
    if unanswered(answer):
        return _unanswered(name)
    got = _as_float_tensor(answer)
    if got is None:
        return _report(name, FAIL, f"expected a tensor or array, got {type(answer).__name__}.",
                       hint)
    if tuple(got.shape) != tuple(exp.shape):
        return _report(name, FAIL, f"shape {tuple(got.shape)} should be {tuple(exp.shape)}.", hint)
    if torch.isnan(got).any() and not torch.isnan(exp).any():
        return _report(name, FAIL, "contains nan (not a number).", hint)
    close = torch.isclose(got, exp, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return _report(name, PASS, "correct.")
    bad = int((~close).sum())
    first = tuple(int(i) for i in (~close).nonzero()[0])
    return _report(name, FAIL, f"{bad} of {exp.numel()} entries differ (the first at index "
                   f"{first}: got {_fmt(float(got[first]))}).", hint)


def function(answer: Any, reference: Callable[..., Any], inputs: Iterable[Any], *,
             name: str = "answer", rtol: float = 1e-4, atol: float = 1e-6,
             hint: str | None = None) -> Result:
    """Check a function by calling it and ``reference`` on each input and comparing results.

    Each item of ``inputs`` is one argument, or a tuple of arguments. Exceptions raised by the
    student's function are reported as a failure with the exception's message; a function that
    returns ``None`` (its body is still ``...``) counts as not answered yet.
    """
    _validate_tolerances(rtol, atol)
    if not callable(reference):
        raise ValueError("reference must be a function that gives the expected result")
    cases: Sequence[Any] = list(inputs)
    if not cases:
        raise ValueError("inputs must contain at least one test input")
    if unanswered(answer):
        return _unanswered(name)
    if not callable(answer):
        return _report(name, FAIL, f"expected a function, got {type(answer).__name__}.", hint)
    for case in cases:
        args = case if isinstance(case, tuple) else (case,)
        want = _as_float_tensor(reference(*args))
        try:
            got_raw = answer(*args)
        except Exception as exc:  # noqa: BLE001 - any error in the student's code is a failure
            return _report(name, FAIL, f"raised {type(exc).__name__}: {exc}", hint)
        if got_raw is None or got_raw is Ellipsis:
            # A body that is still just `...` (or has no return yet) returns None.
            return _unanswered(name)
        got = _as_float_tensor(got_raw)
        where = f"for input {_short(args)}"
        if got is None:
            return _report(name, FAIL, f"returned {type(got_raw).__name__} {where}; expected a "
                           "number or tensor.", hint)
        if want is None:
            raise ValueError("reference must return a number or an array-like value")
        if tuple(got.shape) != tuple(want.shape):
            return _report(name, FAIL, f"returned shape {tuple(got.shape)} {where}; expected "
                           f"{tuple(want.shape)}.", hint)
        if not torch.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
            return _report(name, FAIL, f"gives a wrong value {where}.", hint)
    return _report(name, PASS, f"correct on all {len(cases)} test inputs.")


def condition(answer: Any, test: Callable[[Any], str | None], *, name: str = "answer",
              hint: str | None = None) -> Result:
    """Check an answer with a custom test that returns ``None`` when right, else a message.

    This is the building block for section-specific checks ("do these weights compute XOR?").
    """
    if not callable(test):
        raise ValueError("test must be a function that returns None for a right answer, or a "
                         "message saying what is wrong")
    if unanswered(answer):
        return _unanswered(name)
    try:
        problem = test(answer)
    except Exception as exc:  # noqa: BLE001 - a malformed answer is the student's failure
        problem = f"could not be used ({type(exc).__name__}: {exc})."
    if problem is None:
        return _report(name, PASS, "correct.")
    return _report(name, FAIL, problem, hint)


def choice(answer: Any, expected: Any, options: Sequence[Any], *, name: str = "answer",
           hint: str | None = None) -> Result:
    """Check a multiple-choice answer that must be one of ``options``."""
    if expected not in options:
        raise ValueError(f"expected {expected!r} must be one of the options {list(options)!r}")
    if unanswered(answer):
        return _unanswered(name)
    if answer not in options:
        return _report(name, FAIL, f"{answer!r} is not one of the options {list(options)!r}.")
    if answer == expected:
        return _report(name, PASS, "correct.")
    return _report(name, FAIL, f"{answer!r} is not right.", hint)


def _short(args: tuple) -> str:
    text = ", ".join(repr(a) for a in args)
    return text if len(text) <= 60 else text[:57] + "..."
