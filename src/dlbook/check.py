"""Checks for exercises: compare a student's answer with the expected one and say so kindly.

Every check prints one line and returns a :class:`Result` that is truthy when the answer is
right, so the same call serves a student in a notebook and a teacher's automatic grading.

* A right answer prints ``✅ name: correct``.
* A wrong one prints ``❌ name: ...`` with what differs and, when given, a hint.
* An answer left as ``...`` or ``None``, or a function whose body is still ``...``, prints
  ``⏳ name: not answered yet`` — never an error. A function that runs but returns ``None``
  (a forgotten ``return``) is a wrong answer, and the message says so.
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


def _placeholder_code() -> set[bytes]:
    def empty():
        ...

    def empty_doc(*args, **kwargs):
        """Docstring."""
        pass

    return {empty.__code__.co_code, empty_doc.__code__.co_code}


_PLACEHOLDER_CODE = _placeholder_code()


def is_placeholder_function(fn: Any) -> bool:
    """True for a function whose body is still only ``...`` (or ``pass``, or a docstring).

    Such a function has the same bytecode as ``def f(): ...``, whatever its arguments, so a
    function that computes something but forgot its ``return`` is *not* a placeholder.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    if code.co_code in _PLACEHOLDER_CODE:
        return True
    # ``lambda x: ...`` returns the Ellipsis constant and nothing else.
    return code.co_name == "<lambda>" and code.co_consts[-1:] == (Ellipsis,) and \
        len(code.co_code) <= 8 and not code.co_names


def unanswered(answer: Any) -> bool:
    """True for the placeholders the book's exercises use: ``...``, ``None`` and a function
    whose body is still ``...``.

    A tuple, list or dict answer (several values asked for at once) is unanswered while any of
    its items still is.
    """
    if answer is Ellipsis or answer is None or is_placeholder_function(answer):
        return True
    if isinstance(answer, dict):
        return any(unanswered(a) for a in answer.values())
    if isinstance(answer, (tuple, list)):
        return any(a is Ellipsis or a is None or is_placeholder_function(a) for a in answer)
    return False


def to_cpu(answer: Any) -> Any:
    """A copy of ``answer`` with every tensor in it (also inside tuples, lists and dicts)
    detached and moved to the CPU, so that a check works the same for a GPU answer."""
    if isinstance(answer, torch.Tensor):
        return answer.detach().cpu()
    if isinstance(answer, tuple) and not hasattr(answer, "_fields"):
        return tuple(to_cpu(a) for a in answer)
    if isinstance(answer, list):
        return [to_cpu(a) for a in answer]
    if isinstance(answer, dict):
        return {k: to_cpu(v) for k, v in answer.items()}
    return answer


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
    """Convert numbers, lists, NumPy arrays and tensors to a float64 tensor, else None.

    An integer too large for float64 (``10**400``) becomes ``inf`` rather than an error.
    """
    try:
        if isinstance(x, torch.Tensor):
            if x.is_complex():
                return None
            return x.detach().to("cpu", torch.float64)
        if isinstance(x, (bool, str, bytes)):
            return None
        if isinstance(x, int):
            return torch.tensor(_big(x), dtype=torch.float64)
        array = np.asarray(x)
        if array.dtype.kind not in "biuf" or array.dtype == np.bool_:
            if array.dtype == object:
                array = np.asarray([_big(v) for v in array.ravel()]).reshape(array.shape)
            else:
                return None
        return torch.as_tensor(array.astype(np.float64))
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None


#: The conversion every check uses, public for section checks: a float64 CPU tensor, or None.
as_float_tensor = _as_float_tensor


def as_number(answer: Any) -> float | None:
    """A single number from a float, int, 0-d or one-element tensor or array; else None."""
    t = _as_float_tensor(answer)
    return float(t.reshape(())) if t is not None and t.numel() == 1 else None


def _big(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError("not a number")
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def number(answer: Any, expected: float, *, name: str = "answer", rtol: float = 1e-4,
           atol: float = 1e-8, digits: int | None = None, hint: str | None = None) -> Result:
    """Check a single number: ``|answer - expected| <= atol + rtol * |expected|``.

    With ``digits=n`` the answer only needs ``n`` significant figures: it passes when it is
    within half a unit of the ``n``-th figure of ``expected`` (so ``0.0854`` passes for
    ``0.085355`` with ``digits=3``), and ``rtol`` and ``atol`` are not used.
    """
    _validate_tolerances(rtol, atol)
    if digits is not None:
        if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 15:
            raise ValueError(f"digits must be a whole number from 1 to 15, got {digits!r}")
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
    if g == e:
        return _report(name, PASS, "correct.")
    if math.isinf(g) and not math.isinf(e):
        return _report(name, FAIL, f"got {g} (or a number too large for a float).", hint)
    if digits is not None:
        unit = 10.0 ** (math.floor(math.log10(abs(e))) - digits + 1) if e != 0 else 0.0
        if abs(g - e) <= 0.5 * unit * (1 + 1e-9) + 1e-300:
            return _report(name, PASS, f"correct (to {digits} significant figures).")
        return _report(name, FAIL, f"got {_fmt(g)}, which is not the expected value to "
                       f"{digits} significant figures.", hint)
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
             hint: str | None = None, allow_inplace: bool = False) -> Result:
    """Check a function by calling it and ``reference`` on each input and comparing results.

    Each item of ``inputs`` is one argument, or a tuple of arguments; both functions get their
    own copies. Exceptions raised by the student's function are reported as a failure with the
    exception's message. A function whose body is still ``...`` counts as not answered yet; one
    that returns ``None`` is told it forgot its ``return``; one that changes a tensor argument
    in place fails unless ``allow_inplace`` is true.
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
        want = _as_float_tensor(reference(*_copy_args(args)))
        mine = _copy_args(args)
        try:
            got_raw = answer(*mine)
        except Exception as exc:  # noqa: BLE001 - any error in the student's code is a failure
            return _report(name, FAIL, f"raised {type(exc).__name__}: {exc}", hint)
        if got_raw is Ellipsis:
            return _unanswered(name)
        if got_raw is None:
            return _report(name, FAIL, "returned None: did you forget the `return` statement?",
                           hint)
        changed = _changed_in_place(args, mine)
        if changed is not None and not allow_inplace:
            return _report(name, FAIL, f"changed its argument {changed} in place; compute a new "
                           "tensor instead (e.g. `p - lr * g`, not `p -= lr * g`).", hint)
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
    Tensors in the answer are moved to the CPU first, so a GPU answer is checked the same way.
    """
    if not callable(test):
        raise ValueError("test must be a function that returns None for a right answer, or a "
                         "message saying what is wrong")
    if unanswered(answer):
        return _unanswered(name)
    try:
        problem = test(to_cpu(answer))
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


def _copy_args(args: tuple) -> tuple:
    return tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)


def _changed_in_place(original: tuple, used: tuple) -> str | None:
    """The position (1-based, as a word) of the first tensor argument that was modified."""
    for i, (a, b) in enumerate(zip(original, used)):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            same = a.shape == b.shape and bool(torch.equal(a.detach().cpu(), b.detach().cpu()))
            if not same:
                return f"number {i + 1}"
    return None


def _describe(a: Any) -> str:
    """One line for one argument: small tensors by value, larger ones by shape."""
    if isinstance(a, torch.Tensor):
        if a.numel() <= 4:
            values = a.detach().cpu().double().flatten().tolist()
            return "tensor(" + ", ".join(f"{v:.4g}" for v in values) + ")"
        return f"a tensor of shape {tuple(a.shape)}"
    return " ".join(repr(a).split())


def _short(args: tuple) -> str:
    text = ", ".join(_describe(a) for a in args)
    return text if len(text) <= 60 else text[:57] + "..."
