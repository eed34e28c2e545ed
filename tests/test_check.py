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


def test_result_prints_once_and_reads_as_one_line(capsys):
    """A check prints its line itself; displaying the returned Result in a notebook adds
    nothing (no second line), and str() gives the same line for scripts and graders."""
    from IPython.core.formatters import DisplayFormatter

    result = check.number(2.0, 2.0, name="q")
    printed = capsys.readouterr().out
    assert printed == "✅ q: correct.\n" and str(result) == printed.strip()
    data, _ = DisplayFormatter().format(result)
    assert data == {}, "IPython would show the result a second time"
    assert bool(result) and not check.Result("q", "unanswered", "x")
    assert not check.Result("q", "fail", "x")


def test_placeholder_functions_are_unanswered_and_a_forgotten_return_is_wrong():
    def todo(x):
        """Docstring only."""
        ...

    def todo_pass(x, y=1):
        pass

    def forgot(x):
        y = 2 * x  # noqa: F841

    assert check.is_placeholder_function(todo) and check.is_placeholder_function(todo_pass)
    assert check.is_placeholder_function(lambda x: ...)
    assert not check.is_placeholder_function(forgot)
    assert not check.is_placeholder_function(lambda x: x)
    assert not check.is_placeholder_function(abs)  # built-ins have no bytecode to read
    assert check.function(todo, abs, [1.0]).status == "unanswered"
    r = check.function(forgot, lambda x: 2 * x, [1.0])
    assert r.status == "fail" and "forget the `return`" in r.message
    assert check.unanswered(todo) and check.unanswered({"a": 1, "b": ...})
    assert not check.unanswered({"a": 1})


def test_function_check_catches_in_place_changes_unless_allowed():
    def in_place(p, g):
        p -= 0.1 * g
        return p

    def fresh(p, g):
        return p - 0.1 * g

    inputs = [(torch.ones(3), torch.arange(3.0))]
    r = check.function(in_place, fresh, inputs)
    assert r.status == "fail" and "argument number 1 in place" in r.message
    assert check.function(in_place, fresh, inputs, allow_inplace=True)
    assert check.function(fresh, fresh, inputs)
    assert torch.equal(inputs[0][0], torch.ones(3)), "the check's own inputs stay untouched"


def test_reference_that_changes_its_input_does_not_spoil_the_check():
    def reference(p):
        p += 1
        return p

    assert check.function(lambda p: p + 1, reference, [torch.zeros(2)])


def test_numbers_too_large_for_a_float_are_wrong_answers_not_errors():
    r = check.number(10**400, 3.0)
    assert r.status == "fail" and "inf" in r.message
    assert check.number(-(10**400), -3.0).status == "fail"
    assert check.tensor([10**400, 1], [1.0, 1.0]).status == "fail"
    assert check.function(lambda x: 10**400, lambda x: x, [1.0]).status == "fail"
    assert check.number(float("inf"), float("inf"))


@pytest.mark.parametrize("answer, ok", [(0.0854, True), (0.08536, True), (0.085355, True),
                                        (0.0853, False), (0.0855, False), (0.085, False)])
def test_digits_accepts_the_stated_significant_figures(answer, ok):
    expected = 0.5 * 0.1 * (1 + math.cos(math.pi / 4))  # 0.0853553...
    assert bool(check.number(answer, expected, digits=3)) is ok


@pytest.mark.parametrize("expected", [114.59, -2.5e-7, 3.0, 99.96])
def test_digits_accepts_the_value_rounded_to_that_many_figures(expected):
    for digits in (1, 2, 3, 4):
        rounded = float(f"{expected:.{digits}g}")
        assert check.number(rounded, expected, digits=digits), (rounded, expected, digits)


@pytest.mark.parametrize("bad", [0, 16, 2.0, True])
def test_digits_must_be_a_whole_number_of_figures(bad):
    with pytest.raises(ValueError, match="digits"):
        check.number(1.0, 1.0, digits=bad)


def test_condition_sees_cpu_tensors_inside_containers():
    seen = []

    def test(answer):
        seen.append(answer)
        return None

    t = torch.ones(2, requires_grad=True)
    assert check.condition((t, [t], {"k": t}), test)
    a, (b,), d = seen[0]
    assert all(x.device.type == "cpu" and not x.requires_grad for x in (a, b, d["k"]))


def test_complex_and_boolean_answers_are_not_numbers():
    assert not check.number(1 + 2j, 1.0)
    assert not check.tensor(torch.ones(2, dtype=torch.complex64), torch.ones(2))
    assert not check.tensor(np.array([True, False]), [1.0, 0.0])


def test_unanswered():
    assert check.unanswered(...) and check.unanswered(None)
    assert check.unanswered((1, ...)) and check.unanswered([None])
    assert not check.unanswered(0) and not check.unanswered((1, 2))
    assert not check.unanswered(math.nan)
