"""How every exercise check is tested (used by the ``tests/test_exercises_*.py`` files).

Each section's test file lists one :class:`Case` per check in ``dlbook.exercises.<topic>``:
the book's own solution, plausible wrong answers (the mistakes a learner makes), right answers
written differently (rounded as the exercise allows, another formula, another type), and the
placeholders a student edition starts with. ``case_params`` turns the list into pytest
parameters; ``run_case`` asserts what each kind of answer must give:

* ``solution`` and ``right`` pass (``✅``),
* ``wrong`` fails (``❌``) and prints a message,
* ``unanswered`` prints "not answered yet" (``⏳``), never an error.

``tests/test_exercise_coverage.py`` makes sure that every check has a case with at least two
wrong answers and one right answer written differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pytest


class Args(tuple):
    """Several positional arguments for one call of a check: ``Args((w, b))``."""


def _placeholder_function(*args: Any, **kwargs: Any) -> Any:
    ...


@dataclass
class Case:
    check: Callable[..., Any]
    solution: Any
    wrong: list[Any]
    right: list[Any]
    #: placeholders: ``...`` by default, plus a function whose body is ``...`` for checks that
    #: take a function (set ``takes_function=True``)
    unanswered: list[Any] = field(default_factory=list)
    takes_function: bool = False

    def placeholders(self) -> list[Any]:
        if self.unanswered:
            return self.unanswered
        return [..., _placeholder_function] if self.takes_function else [...]


def call(check: Callable[..., Any], answer: Any) -> Any:
    return check(*answer) if isinstance(answer, Args) else check(answer)


def case_params(cases: list[Case]) -> list[Any]:
    params = []
    for case in cases:
        name = case.check.__name__
        params.append(pytest.param(case.check, "pass", case.solution, id=f"{name}-solution"))
        params += [pytest.param(case.check, "pass", a, id=f"{name}-right{i}")
                   for i, a in enumerate(case.right)]
        params += [pytest.param(case.check, "fail", a, id=f"{name}-wrong{i}")
                   for i, a in enumerate(case.wrong)]
        params += [pytest.param(case.check, "unanswered", a, id=f"{name}-unanswered{i}")
                   for i, a in enumerate(case.placeholders())]
    return params


def run_case(check: Callable[..., Any], expected_status: str, answer: Any, capsys: Any) -> None:
    result = call(check, answer)
    printed = capsys.readouterr().out
    assert result.status == expected_status, f"{check.__name__}: {printed.strip()}"
    assert bool(result) == (expected_status == "pass")
    icon = {"pass": "✅", "fail": "❌", "unanswered": "⏳"}[expected_status]
    assert printed.count("\n") == 1 and printed.startswith(icon), printed
    if expected_status == "fail":
        assert len(result.message) > 10, "a wrong answer is told what is wrong"
    if expected_status == "unanswered":
        assert "not answered yet" in printed
