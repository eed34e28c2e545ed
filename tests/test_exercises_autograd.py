"""The exercise checks of section 2.1 (``dlbook.exercises.autograd``): see exercise_harness."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.autograd import Value, topological_order
from dlbook.exercises import autograd as ex


# ----- softplus ------------------------------------------------------------------------------
def _softplus(v):  # the book's solution
    out = Value(math.log1p(math.exp(v.data)), (v,), "softplus")
    sig = 1 / (1 + math.exp(-v.data))

    def _backward(g):
        v.grad += sig * g

    out._backward = _backward
    return out


def _softplus_other_formula(v):  # right: e^v / (1 + e^v), and v.grad = v.grad + ...
    out = Value(math.log(1 + math.exp(v.data)), (v,), "softplus")

    def _backward(g):
        v.grad = v.grad + math.exp(v.data) / (1 + math.exp(v.data)) * g

    out._backward = _backward
    return out


def _softplus_no_g(v):  # forgets the upstream factor
    out = Value(math.log1p(math.exp(v.data)), (v,), "softplus")

    def _backward(g):
        v.grad += 1 / (1 + math.exp(-v.data))

    out._backward = _backward
    return out


def _softplus_assigns(v):  # = instead of +=
    out = Value(math.log1p(math.exp(v.data)), (v,), "softplus")

    def _backward(g):
        v.grad = g / (1 + math.exp(-v.data))

    out._backward = _backward
    return out


def _softplus_wrong_derivative(v):  # d/dv log(1 + e^v) taken as 1 / (1 + e^v)
    out = Value(math.log1p(math.exp(v.data)), (v,), "softplus")

    def _backward(g):
        v.grad += g / (1 + math.exp(v.data))

    out._backward = _backward
    return out


def _softplus_composed(v):  # right numbers, but three nodes instead of one
    return (1 + v.exp()).log()


def _softplus_no_return(v):
    out = Value(math.log1p(math.exp(v.data)), (v,), "softplus")  # noqa: F841


# ----- power ---------------------------------------------------------------------------------
def _power(a, b):  # the book's solution
    out = Value(a.data**b.data, (a, b), "pow")
    v = out.data

    def _backward(g):
        a.grad += b.data * a.data ** (b.data - 1) * g
        b.grad += v * math.log(a.data) * g

    out._backward = _backward
    return out


def _power_via_exp(a, b):  # right: every derivative from exp(b log a)
    v = math.exp(b.data * math.log(a.data))
    out = Value(v, (a, b), "pow")

    def _backward(g):
        a.grad += g * v * b.data / a.data
        b.grad += g * v * math.log(a.data)

    out._backward = _backward
    return out


def _power_no_g(a, b):  # forgets the upstream factor: right whenever g = 1
    out = Value(a.data**b.data, (a, b), "pow")

    def _backward(g):
        a.grad += b.data * a.data ** (b.data - 1)
        b.grad += out.data * math.log(a.data)

    out._backward = _backward
    return out


def _power_assigns(a, b):  # = instead of +=
    out = Value(a.data**b.data, (a, b), "pow")

    def _backward(g):
        a.grad = b.data * a.data ** (b.data - 1) * g
        b.grad = out.data * math.log(a.data) * g

    out._backward = _backward
    return out


def _power_forgets_a_to_the_b(a, b):  # d/db taken as log a
    out = Value(a.data**b.data, (a, b), "pow")

    def _backward(g):
        a.grad += b.data * a.data ** (b.data - 1) * g
        b.grad += math.log(a.data) * g

    out._backward = _backward
    return out


def _power_no_return(a, b):
    out = Value(a.data**b.data, (a, b), "pow")  # noqa: F841


# ----- the backward pass ---------------------------------------------------------------------
def _backward(root):  # the book's solution
    order = topological_order(root)
    root.grad = 1.0
    for node in reversed(order):
        node._backward(node.grad)


def _backward_own_sort(root):  # right: its own recursive post-order, iterated backwards
    order, seen = [], set()

    def visit(node):
        if node not in seen:
            seen.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    root.grad = 1.0
    i = len(order) - 1
    while i >= 0:
        order[i]._backward(order[i].grad)
        i -= 1
    return order  # a return value is fine


def _backward_forward_order(root):
    root.grad = 1.0
    for node in topological_order(root):
        node._backward(node.grad)


def _backward_g_is_one(root):
    root.grad = 1.0
    for node in reversed(topological_order(root)):
        node._backward(1.0)


def _backward_no_seed(root):
    for node in reversed(topological_order(root)):
        node._backward(node.grad)


def _backward_calls_library(root):
    root.backward()


# ----- the topological sort ------------------------------------------------------------------
def _topo(root):  # the book's solution: recursive post-order
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    return order


def _topo_kahn(root):  # right: Kahn's algorithm from the leaves, returned as a tuple
    nodes, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            nodes.append(node)
            stack.extend(node._prev)
    waiting = {id(n): len({id(c) for c in n._prev}) for n in nodes}
    users = {id(n): [] for n in nodes}
    for n in nodes:
        for child in {id(c): c for c in n._prev}.values():
            users[id(child)].append(n)
    ready, out = deque(n for n in nodes if waiting[id(n)] == 0), []
    while ready:
        node = ready.popleft()
        out.append(node)
        for user in users[id(node)]:
            waiting[id(user)] -= 1
            if waiting[id(user)] == 0:
                ready.append(user)
    return tuple(out)


def _topo_preorder(root):  # appends a node before its inputs, then reverses: wrong on diamonds
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            order.append(node)
            for child in node._prev:
                visit(child)

    visit(root)
    return order[::-1]


def _topo_no_visited(root):  # lists shared nodes twice
    order = []

    def visit(node):
        for child in node._prev:
            visit(child)
        order.append(node)

    visit(root)
    return order


def _topo_reversed_bfs(root):
    out, seen, queue = [], {id(root)}, deque([root])
    while queue:
        node = queue.popleft()
        out.append(node)
        for child in node._prev:
            if id(child) not in seen:
                seen.add(id(child))
                queue.append(child)
    return out[::-1]


def _topo_leaves_only(root):
    return [n for n in _topo(root) if not n._prev] + [root]


def _topo_no_return(root):
    order = _topo(root)  # noqa: F841


CASES = [
    Case(ex.hand_gradient, solution=(6.0, -18.0),
         right=[[6, -18], np.array([6.0, -18.0]), torch.tensor([6.0, -18.0]),
                (torch.tensor(6.0), torch.tensor(-18.0)), (6.00001, -18.0001)],
         wrong=[(6.0, -9.0), (-6.0, 18.0), (6.0, -6.0), (-18.0, 6.0), 6.0]),
    Case(ex.shared_node, solution=(33.0, 66.0),
         right=[[33, 66], np.array([33.0, 66.0]), torch.tensor([33.0, 66.0])],
         wrong=[(33.0, 33.0), (27.0, 54.0), (33.0, 0.0), (66.0, 33.0)]),
    Case(ex.softplus, solution=_softplus, takes_function=True, right=[_softplus_other_formula],
         wrong=[_softplus_no_g, _softplus_assigns, _softplus_wrong_derivative,
                _softplus_composed, _softplus_no_return]),
    Case(ex.power, solution=_power, takes_function=True, right=[_power_via_exp],
         wrong=[_power_no_g, _power_assigns, _power_forgets_a_to_the_b, _power_no_return]),
    Case(ex.backward_pass, solution=_backward, takes_function=True, right=[_backward_own_sort],
         wrong=[_backward_forward_order, _backward_g_is_one, _backward_no_seed,
                _backward_calls_library]),
    Case(ex.topological_sort, solution=_topo, takes_function=True, right=[_topo_kahn],
         wrong=[_topo_preorder, _topo_no_visited, _topo_reversed_bfs, _topo_leaves_only,
                _topo_no_return]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


# ----- the message names the actual mistake ------------------------------------------------
@pytest.mark.parametrize("check, answer, says, never", [
    (ex.softplus, _softplus_no_g, "Multiply each local derivative by g", "+="),
    (ex.softplus, _softplus_assigns, "(+=), not assign it (=)", "Multiply"),
    (ex.softplus, _softplus_wrong_derivative, "local derivative is wrong", "+="),
    (ex.softplus, _softplus_no_return, "forget the `return`", "not answered"),
    (ex.power, _power_no_g, "Multiply each local derivative by g", "+="),
    (ex.power, _power_assigns, "(+=), not assign it (=)", "Multiply"),
    (ex.power, _power_forgets_a_to_the_b, "d(a**b)/db is wrong", "+="),
    (ex.power, _power_no_return, "forget the `return`", "not answered"),
    (ex.backward_pass, _backward_forward_order, "run them in reverse", "not 1"),
    (ex.backward_pass, _backward_g_is_one, "node._backward(node.grad)", "reverse"),
    (ex.backward_pass, _backward_no_seed, "d(root)/d(root) = 1", "reverse"),
    (ex.backward_pass, _backward_calls_library, "do not call Value.backward", "reverse"),
    (ex.topological_sort, _topo_preorder, "post-order", "twice"),
    (ex.topological_sort, _topo_no_visited, "appears twice", "post-order"),
    (ex.topological_sort, _topo_leaves_only, "missing", "twice"),
    (ex.topological_sort, _topo_no_return, "forget the `return`", "not answered"),
])
def test_the_message_diagnoses_the_mistake(check, answer, says, never, capsys):
    result = check(answer)
    assert not result
    assert says in result.message and never not in result.message, result.message
    capsys.readouterr()


def test_power_without_g_passes_when_started_at_the_op_but_not_downstream():
    """The mistake the old check let through: with g = 1 a missing ``* g`` is invisible."""
    a, b = Value(2.0), Value(3.0)
    _power_no_g(a, b).backward()
    assert math.isclose(a.grad, 12.0) and math.isclose(b.grad, 8 * math.log(2))
    a, b = Value(2.0), Value(3.0)
    (Value(-2.5) * _power_no_g(a, b)).backward()
    assert math.isclose(a.grad, 12.0)  # should be -30


def test_the_checks_leave_value_backward_intact(capsys):
    ex.backward_pass(_backward_calls_library)
    capsys.readouterr()
    a = Value(2.0)
    (a * a).backward()
    assert a.grad == 4.0
