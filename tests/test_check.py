"""dlbook.check: right answers pass, wrong ones fail with a message, '...' is not answered."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import check


def test_number_pass_fail_and_unanswered(capsys):
    assert check.number(0.25, 0.25, name="q")
    assert "✅ q: correct." in capsys.readouterr().out
    r = check.number(0.5, 0.25, name="q", hint="square it")
    assert not r and r.status == "fail"
    out = capsys.readouterr().out
    assert "❌ q: got 0.5" in out and "Hint: square it" in out
    for placeholder in (..., None):
        r = check.number(placeholder, 1.0, name="q")
        assert not r and r.status == "unanswered"
        assert "not answered yet" in capsys.readouterr().out


def test_number_accepts_tensors_and_arrays_and_rejects_others():
    assert check.number(torch.tensor(2.0), 2.0)
    assert check.number(np.float64(2.0), 2)
    assert check.number(torch.tensor([2.0]), 2.0)  # one element is a number
    assert not check.number("2", 2.0)
    assert not check.number([1.0, 2.0], 2.0)
    assert not check.number(float("nan"), 2.0)


def test_number_tolerance():
    assert check.number(1.0 + 1e-6, 1.0)
    assert not check.number(1.001, 1.0)
    assert check.number(1.001, 1.0, rtol=1e-2)


@pytest.mark.parametrize("kwargs", [{"rtol": -1}, {"atol": float("nan")}, {"rtol": "a"}])
def test_malformed_use_raises(kwargs):
    with pytest.raises(ValueError):
        check.number(1.0, 1.0, **kwargs)


def test_expected_must_be_well_formed():
    with pytest.raises(ValueError, match="single number"):
        check.number(1.0, [1.0, 2.0])
    with pytest.raises(ValueError, match="array-like"):
        check.tensor([1.0], "abc")
    with pytest.raises(ValueError, match="reference"):
        check.function(abs, 3, [1.0])
    with pytest.raises(ValueError, match="at least one"):
        check.function(abs, abs, [])
    with pytest.raises(ValueError, match="one of the options"):
        check.choice("a", "z", ["a", "b"])
    with pytest.raises(ValueError, match="test must be a function"):
        check.condition(1, None)


def test_tensor_shape_and_values(capsys):
    assert check.tensor(torch.ones(2, 3), np.ones((2, 3)))
    r = check.tensor(torch.ones(3, 2), torch.ones(2, 3))
    assert not r and "shape (3, 2) should be (2, 3)" in r.message
    wrong = torch.ones(2, 3)
    wrong[1, 2] = 5
    r = check.tensor(wrong, torch.ones(2, 3))
    assert not r and "1 of 6 entries differ" in r.message and "(1, 2)" in r.message
    assert not check.tensor("abc", torch.ones(2))
    assert check.tensor(..., torch.ones(2)).status == "unanswered"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8))
def test_tensor_agrees_with_allclose(values):
    expected = torch.tensor(values, dtype=torch.float64)
    noisy = expected + 1e-3
    assert bool(check.tensor(expected.clone(), expected))
    assert bool(check.tensor(noisy, expected)) == bool(
        torch.allclose(noisy, expected, rtol=1e-4, atol=1e-6))


def test_function_checks_every_input():
    assert check.function(lambda x: x**2, lambda x: x * x, [torch.arange(3.0), 2.0])
    assert check.function(lambda a, b: a + b, lambda a, b: b + a, [(1.0, 2.0), (3.0, 4.0)])
    r = check.function(lambda x: x**2, lambda x: x * x + (x > 1), [1.0, 2.0])
    assert not r and "wrong value for input 2.0" in r.message
    r = check.function(lambda x: x.sum(), lambda x: x, [torch.ones(3)])
    assert not r and "shape ()" in r.message


def test_function_reports_student_errors_and_unanswered():
    def broken(x):
        raise KeyError("oops")

    r = check.function(broken, abs, [1.0])
    assert not r and "KeyError" in r.message

    def todo(x):
        ...

    assert check.function(todo, abs, [1.0]).status == "unanswered"
    assert check.function(..., abs, [1.0]).status == "unanswered"
    assert not check.function(3, abs, [1.0])
    assert not check.function(lambda x: "text", abs, [1.0])


def test_condition_and_choice():
    positive = lambda a: None if a > 0 else "must be positive."  # noqa: E731
    assert check.condition(3, positive)
    r = check.condition(-1, positive, hint="think")
    assert not r and "must be positive. Hint: think" in r.message
    r = check.condition("x", positive)  # the test itself fails on a malformed answer
    assert not r and "could not be used" in r.message
    assert check.condition((1, ...), positive).status == "unanswered"
    assert check.choice("b", "b", ["a", "b"])
    assert not check.choice("a", "b", ["a", "b"])
    assert not check.choice("c", "b", ["a", "b"])


def test_result_is_quiet_in_notebooks_and_readable_in_scripts():
    r = check.Result("q", "pass", "correct.")
    assert str(r) == "✅ q: correct."
    assert r._ipython_display_() is None
    assert not check.Result("q", "unanswered", "x")


def test_unanswered():
    assert check.unanswered(...) and check.unanswered(None)
    assert check.unanswered((1, ...)) and check.unanswered([None])
    assert not check.unanswered(0) and not check.unanswered((1, 2))
    assert not check.unanswered(math.nan)
