"""Every exercise check in ``dlbook.exercises`` is tested with the book's solution, at least two
plausible wrong answers, at least one right answer written differently, and a placeholder
(``tests/exercise_harness.py`` says what each must give)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import dlbook.exercises

HERE = Path(__file__).parent


def _checks() -> dict[str, object]:
    found = {}
    for info in pkgutil.iter_modules(dlbook.exercises.__path__):
        module = importlib.import_module(f"dlbook.exercises.{info.name}")
        for name, fn in vars(module).items():
            if (inspect.isfunction(fn) and not name.startswith("_")
                    and fn.__module__ == module.__name__):
                found[f"{info.name}.{name}"] = fn
    return found


def _cases() -> list:
    cases = []
    for path in sorted(HERE.glob("test_exercises_*.py")):
        module = importlib.import_module(path.stem)
        cases += module.CASES
    return cases


def test_every_check_has_a_full_set_of_cases():
    checks = _checks()
    assert len(checks) >= 40
    cases = {f"{c.check.__module__.rsplit('.', 1)[1]}.{c.check.__name__}": c for c in _cases()}
    missing = sorted(set(checks) - set(cases))
    assert not missing, f"checks without a Case in tests/test_exercises_*.py: {missing}"
    thin = sorted(name for name, c in cases.items() if len(c.wrong) < 2 or len(c.right) < 1)
    assert not thin, f"need >= 2 wrong and >= 1 differently written right answer: {thin}"
