"""Tests for dlbook.autograd (section 2.1): every gradient is compared with torch or with
finite differences, on hand-picked and on hypothesis-generated expressions."""

from __future__ import annotations

import math
import random

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dlbook.autograd import (MLP, Layer, Neuron, Value, draw_graph,  # noqa: E402
                             mlp_forward_torch, topological_order)
from dlbook.exercises import autograd as ex  # noqa: E402

F64 = torch.float64
# Fixed examples (derandomize) and no example database: the same cases on every run.
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.filter_too_much])

# ----- random expression trees, evaluated with Values or with torch tensors alike ----------
UNARY = ["neg", "relu", "tanh", "exp", "log", "sigmoid"]
BINARY = ["+", "-", "*", "/"]


def evaluate(tree, xs):
    """Evaluate a nested-tuple expression; works for Value and torch leaves (duck typing)."""
    kind = tree[0]
    if kind == "x":
        return xs[tree[1]]
    if kind == "c":
        return tree[1]
    if kind in UNARY or kind in ("pow", "twice"):
        v = evaluate(tree[1], xs)
        if isinstance(v, float):
            v = xs[0] + v  # keep a variable in every node (no plain-float arithmetic)
        if kind == "neg":
            return -v
        if kind == "pow":
            return v ** tree[2]
        if kind == "twice":  # one node used twice: exercises gradient accumulation
            return v * v + v
        return getattr(v, kind)()
    a, b = evaluate(tree[1], xs), evaluate(tree[2], xs)
    if isinstance(a, float) and isinstance(b, float):
        a = xs[0] + a  # keep at least one variable in every binary node
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}[kind]()


leaves = st.one_of(st.tuples(st.just("x"), st.integers(0, 2)),
                   st.tuples(st.just("c"), st.floats(-3, 3, allow_subnormal=False)))
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.tuples(st.sampled_from(UNARY), kids),
        st.tuples(st.just("pow"), kids, st.sampled_from([2, 3, -1, 0.5, 1.5])),
        st.tuples(st.just("twice"), kids),
        st.tuples(st.sampled_from(BINARY), kids, kids),
    ),
    max_leaves=10,
)
inputs = st.lists(st.floats(-2, 2, allow_subnormal=False), min_size=3, max_size=3)


def value_grads(tree, xs):
    """Value of the tree and d/dx for each input with the engine; None if out of domain."""
    vs = [Value(x) for x in xs]
    try:
        out = evaluate(tree, vs)
        if not isinstance(out, Value):
            out = out + 0 * vs[0]
        out.backward()
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    nodes = topological_order(out)
    if not all(math.isfinite(n.data) and abs(n.data) < 1e6 for n in nodes):
        return None
    if not all(math.isfinite(v.grad) and abs(v.grad) < 1e8 for v in vs):
        return None
    return out.data, [v.grad for v in vs]


def torch_grads(tree, xs):
    ts = [torch.tensor(x, dtype=F64, requires_grad=True) for x in xs]
    out = evaluate(tree, ts)
    if not isinstance(out, torch.Tensor):
        out = out + 0 * ts[0]
    out.backward()
    return out.item(), [0.0 if t.grad is None else t.grad.item() for t in ts]


@settings(max_examples=100, **SETTINGS)
@given(trees, inputs)
def test_random_expressions_match_torch(tree, xs):
    mine = value_grads(tree, xs)
    assume(mine is not None)
    theirs = torch_grads(tree, xs)
    torch.testing.assert_close(torch.tensor(mine[0], dtype=F64),
                               torch.tensor(theirs[0], dtype=F64))
    torch.testing.assert_close(torch.tensor(mine[1], dtype=F64),
                               torch.tensor(theirs[1], dtype=F64))


@settings(max_examples=40, **SETTINGS)
@given(trees, inputs)
def test_random_expressions_match_finite_differences(tree, xs):
    mine = value_grads(tree, xs)
    assume(mine is not None)
    h = 1e-6
    for i in range(3):
        up, down = list(xs), list(xs)
        up[i] += h
        down[i] -= h
        f_up, f_down = value_grads(tree, up), value_grads(tree, down)
        assume(f_up is not None and f_down is not None)
        # relu's kink (and other non-smooth points) can sit between x - h and x + h.
        assume(all((n.data > 0) == (m.data > 0) for n, m in zip(
            _relu_inputs(tree, up), _relu_inputs(tree, down))))
        fd = (f_up[0] - f_down[0]) / (2 * h)
        assert math.isclose(mine[1][i], fd, rel_tol=1e-4, abs_tol=1e-4 * (1 + abs(mine[0])))


def _relu_inputs(tree, xs):
    vs = [Value(x) for x in xs]
    out = evaluate(tree, vs)
    if not isinstance(out, Value):
        return []
    return [n._prev[0] for n in topological_order(out) if n._op == "relu"]


# ----- each op on its own, against torch ---------------------------------------------------
@pytest.mark.parametrize("name, f", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("radd", lambda a, b: 2 + a), ("rsub", lambda a, b: 2 - b),
    ("rmul", lambda a, b: 2 * b), ("rdiv", lambda a, b: 2 / a), ("neg", lambda a, b: -a),
    ("pow2", lambda a, b: a**2), ("pow-1", lambda a, b: b**-1), ("pow1.5", lambda a, b: a**1.5),
    ("relu", lambda a, b: a.relu() + b.relu()), ("tanh", lambda a, b: a.tanh()),
    ("exp", lambda a, b: b.exp()), ("log", lambda a, b: a.log()),
    ("sigmoid", lambda a, b: b.sigmoid()),
])
def test_each_op_matches_torch(name, f):
    a, b = Value(1.3), Value(-0.7)
    out = f(a, b)
    out.backward()
    ta = torch.tensor(1.3, dtype=F64, requires_grad=True)
    tb = torch.tensor(-0.7, dtype=F64, requires_grad=True)
    tout = f(ta, tb)
    tout.backward()
    assert math.isclose(out.data, tout.item(), rel_tol=1e-12)
    for v, t in ((a, ta), (b, tb)):
        assert math.isclose(v.grad, 0.0 if t.grad is None else t.grad.item(),
                            rel_tol=1e-12, abs_tol=1e-15), name


def test_relu_gradient_at_zero_is_zero_like_torch():
    a = Value(0.0)
    a.relu().backward()
    t = torch.tensor(0.0, requires_grad=True)
    t.relu().backward()
    assert a.grad == t.grad.item() == 0.0


def test_sigmoid_does_not_overflow():
    for x in (-1000.0, 1000.0):
        v = Value(x)
        s = v.sigmoid()
        s.backward()
        assert s.data == pytest.approx(torch.sigmoid(torch.tensor(x, dtype=F64)).item())
        assert v.grad == pytest.approx(0.0)


def test_hand_derived_neuron_gradients():
    x1, x2, w1, w2, b = Value(2.0), Value(-1.0), Value(0.5), Value(1.5), Value(0.25)
    o = (x1 * w1 + x2 * w2 + b).tanh()
    o.backward()
    dn = 1 - math.tanh(-0.25) ** 2
    expected = {x1: dn * 0.5, x2: dn * 1.5, w1: dn * 2.0, w2: dn * -1.0, b: dn}
    for v, g in expected.items():
        assert math.isclose(v.grad, g, rel_tol=1e-12)


# ----- shared nodes and accumulation -------------------------------------------------------
def test_shared_nodes_accumulate():
    a = Value(3.0)
    (a + a).backward()
    assert a.grad == 2.0
    a = Value(3.0)
    (a * a).backward()
    assert a.grad == 6.0
    a = Value(3.0)
    b = a * 2
    (b * b + b).backward()  # d/da of 4a^2 + 2a = 8a + 2
    assert a.grad == 26.0


def test_second_backward_adds_to_leaves_like_torch():
    a = Value(3.0)
    d = (a * a + a) * a
    d.backward()
    assert a.grad == 33.0  # 3a^2 + 2a
    d.backward()
    ta = torch.tensor(3.0, dtype=F64, requires_grad=True)
    td = (ta * ta + ta) * ta
    td.backward(retain_graph=True)
    td.backward()
    assert a.grad == ta.grad.item() == 66.0


def test_zero_grad_then_backward_gives_fresh_gradients():
    model = MLP(2, [3, 1])
    x = [0.3, -0.8]
    model(x).backward()
    first = [p.grad for p in model.parameters()]
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())
    model(x).backward()
    assert [p.grad for p in model.parameters()] == first


# ----- the topological order -----------------------------------------------------------------
@settings(max_examples=40, **SETTINGS)
@given(trees, inputs)
def test_topological_order_puts_inputs_first(tree, xs):
    vs = [Value(x) for x in xs]
    try:
        out = evaluate(tree, vs)
    except (ValueError, ZeroDivisionError, OverflowError):
        assume(False)
    assume(isinstance(out, Value))
    order = topological_order(out)
    position = {id(n): i for i, n in enumerate(order)}
    assert len(position) == len(order)  # each node once
    assert order[-1] is out
    for n in order:
        for child in n._prev:
            assert position[id(child)] < position[id(n)]


def test_deep_graph_needs_no_recursion():
    x = Value(0.5)
    y = x
    for _ in range(10_000):  # far deeper than Python's recursion limit (1000)
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


# ----- input validation ---------------------------------------------------------------------
def test_invalid_inputs_raise():
    v = Value(2.0)
    with pytest.raises(TypeError, match="exponent"):
        v ** Value(2.0)
    with pytest.raises(TypeError, match="exponent"):
        v ** "2"
    with pytest.raises(TypeError, match="exponent"):
        v ** True
    with pytest.raises(TypeError, match="exponent"):
        2 ** v
    with pytest.raises(ValueError, match="integer exponent"):
        Value(-2.0) ** 0.5
    with pytest.raises(ValueError, match="finite"):
        v ** math.inf
    with pytest.raises(ValueError, match="positive"):
        Value(0.0).log()
    with pytest.raises(TypeError, match="real number"):
        Value("3")
    with pytest.raises(TypeError, match="real number"):
        Value(True)
    with pytest.raises(TypeError):
        v + "a"
    with pytest.raises(TypeError, match="Value"):
        topological_order(3.0)
    assert (Value(-2.0) ** 3).data == -8.0  # integer exponents are fine for negative bases
    assert (Value(-2.0) ** 2.0).data == 4.0


def test_network_inputs_are_validated():
    with pytest.raises(ValueError, match="nin"):
        Neuron(0)
    with pytest.raises(ValueError, match="activation"):
        Neuron(2, activation="gelu")
    with pytest.raises(ValueError, match="nout"):
        Layer(2, 0)
    with pytest.raises(ValueError, match="nouts"):
        MLP(2, [])
    with pytest.raises(ValueError, match="expected 2 inputs"):
        MLP(2, [3, 1])([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shape"):
        mlp_forward_torch(MLP(2, [3, 1]), torch.zeros(4, 3))


def test_mlp_repr_lists_every_size():
    assert repr(MLP(2, [16, 1])) == "MLP(2 -> 16 -> 1)"
    assert repr(MLP(3, [4, 5, 2])) == "MLP(3 -> 4 -> 5 -> 2)"


# ----- the tiny network ---------------------------------------------------------------------
def test_mlp_matches_torch_forward_and_gradients():
    random.seed(1)
    model = MLP(2, [4, 3, 1])
    assert len(model.parameters()) == (2 + 1) * 4 + (4 + 1) * 3 + (3 + 1) * 1
    X = [[0.5, -1.0], [1.5, 0.2], [-0.3, 0.8]]
    loss = sum((model(x) ** 2 for x in X), Value(0.0))
    model.zero_grad()
    loss.backward()
    # The same network written with torch tensors, from the same numbers.
    params = [torch.tensor(p.data, dtype=F64, requires_grad=True) for p in model.parameters()]
    it = iter(params)
    h = torch.tensor(X, dtype=F64)
    for i, layer in enumerate(model.layers):
        rows, bs = [], []
        for n in layer.neurons:
            rows.append(torch.stack([next(it) for _ in n.w]))
            bs.append(next(it))
        h = h @ torch.stack(rows).T + torch.stack(bs)
        if i < len(model.layers) - 1:
            h = torch.tanh(h)
    (h**2).sum().backward()
    torch.testing.assert_close(torch.tensor([p.grad for p in model.parameters()], dtype=F64),
                               torch.stack([p.grad for p in params]))
    outs = torch.tensor([model(x).data for x in X], dtype=F64)
    torch.testing.assert_close(mlp_forward_torch(model, torch.tensor(X, dtype=F64)), outs)


def test_mlp_learns_xor():
    random.seed(0)
    model = MLP(2, [4, 1])
    X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    y = [-1.0, 1.0, 1.0, -1.0]
    for _ in range(300):
        loss = sum(((1 + (-yi * model(x)).exp()).log() for x, yi in zip(X, y)), Value(0.0))
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.5 * p.grad
    assert all((model(x).data > 0) == (yi > 0) for x, yi in zip(X, y))


def test_draw_graph_draws_every_node_and_op():
    a, b = Value(2.0, label="a"), Value(-1.0, label="b")
    out = (a * b + a).tanh()
    out.backward()
    ax = draw_graph(out)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 5 + 3  # 5 values, 3 ops
    assert any(t.startswith("a  2") and "grad" in t for t in texts)
    assert {"*", "+", "tanh"} <= set(texts)
    plt.close(ax.figure)
    big = Value(0.0)
    for _ in range(30):
        big = big + 1.0
    with pytest.raises(ValueError, match="max_nodes"):
        draw_graph(big)


# ----- the exercise checks ------------------------------------------------------------------
def _softplus(v):
    s = math.log1p(math.exp(v.data))
    out = Value(s, (v,), "softplus")

    def _backward(g):
        v.grad += g / (1 + math.exp(-v.data))

    out._backward = _backward
    return out


def _softplus_overwrites(v):
    out = Value(math.log1p(math.exp(v.data)), (v,), "softplus")

    def _backward(g):
        v.grad = g / (1 + math.exp(-v.data))

    out._backward = _backward
    return out


def _power(a, b):
    out = Value(a.data**b.data, (a, b), "pow")

    def _backward(g):
        a.grad += b.data * a.data ** (b.data - 1) * g
        b.grad += out_data * math.log(a.data) * g

    out_data = out.data
    out._backward = _backward
    return out


def _power_wrong(a, b):
    out = Value(a.data**b.data, (a, b), "pow")

    def _backward(g):
        a.grad += b.data * a.data ** (b.data - 1) * g
        b.grad += math.log(a.data) * g  # forgot the factor a**b

    out._backward = _backward
    return out


def _todo(*args):
    ...


def test_exercise_checks(capsys):
    assert ex.hand_gradient((6.0, -18.0))
    assert not ex.hand_gradient((6.0, -9.0))
    assert ex.hand_gradient(...).status == "unanswered"
    assert ex.shared_node((33.0, 66.0))
    assert not ex.shared_node((33.0, 33.0))
    assert ex.shared_node((..., ...)).status == "unanswered"
    assert ex.softplus(_softplus)
    assert not ex.softplus(_softplus_overwrites)
    assert not ex.softplus(lambda v: (1 + v.exp()).log())  # right numbers, but not one node
    assert ex.softplus(_todo).status == "unanswered"
    assert ex.softplus(...).status == "unanswered"
    assert ex.power(_power)
    assert not ex.power(_power_wrong)
    assert ex.power(_todo).status == "unanswered"
    out = capsys.readouterr().out
    assert "Hint" in out and "not answered yet" in out
