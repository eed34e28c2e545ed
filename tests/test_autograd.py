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
                             mlp_forward_torch, mlp_to_torch, topological_order)

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
    with pytest.raises(ValueError, match="real number"):
        Value("3")
    with pytest.raises(ValueError, match="real number"):
        Value(True)
    with pytest.raises(ValueError, match=r"t\.item\(\)"):
        Value(torch.tensor(3.0))
    with pytest.raises(ValueError, match="finite"):
        Value(math.nan)
    with pytest.raises(ValueError, match="overflowed"):
        Value(1e200) * Value(1e200)
    with pytest.raises(ValueError, match="finite"):
        Value(10**400)
    with pytest.raises(TypeError):
        v + "a"
    with pytest.raises(TypeError):
        "a" - v
    with pytest.raises(ValueError, match="Value"):
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
    with pytest.raises(ValueError, match="expected a list of 2 inputs"):
        MLP(2, [3, 1])([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shape"):
        mlp_forward_torch(MLP(2, [3, 1]), torch.zeros(4, 3))


def test_mlp_repr_lists_every_size():
    assert repr(MLP(2, [16, 1])) == "MLP(2 -> 16 -> 1)"
    assert repr(MLP(3, [4, 5, 2])) == "MLP(3 -> 4 -> 5 -> 2)"


# ----- the tiny network ---------------------------------------------------------------------
def _torch_grads_in_parameter_order(params):
    """parameters() lists each neuron's weights, then its bias: the rows of [W | b]."""
    return torch.cat([torch.cat([W.grad, b.grad[:, None]], dim=1).flatten() for W, b in params])


def test_mlp_matches_torch_forward_and_gradients():
    random.seed(1)
    model = MLP(2, [4, 3, 1])
    assert len(model.parameters()) == (2 + 1) * 4 + (4 + 1) * 3 + (3 + 1) * 1
    X = [[0.5, -1.0], [1.5, 0.2], [-0.3, 0.8]]
    loss = sum((model(x) ** 2 for x in X), Value(0.0))
    model.zero_grad()
    loss.backward()
    params = mlp_to_torch(model, requires_grad=True)
    (mlp_forward_torch(model, torch.tensor(X, dtype=F64), params) ** 2).sum().backward()
    torch.testing.assert_close(torch.tensor([p.grad for p in model.parameters()], dtype=F64),
                               _torch_grads_in_parameter_order(params))
    outs = torch.tensor([model(x).data for x in X], dtype=F64)
    torch.testing.assert_close(mlp_forward_torch(model, torch.tensor(X, dtype=F64)), outs)


@settings(max_examples=25, **SETTINGS)
@given(nin=st.integers(1, 3), nouts=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       activation=st.sampled_from(["tanh", "relu", "sigmoid", "linear"]),
       seed=st.integers(0, 99), n=st.integers(1, 4))
def test_random_mlps_match_their_torch_form(nin, nouts, activation, seed, n):
    random.seed(seed)
    model = MLP(nin, nouts, activation)
    X = torch.randn(n, nin, generator=torch.Generator().manual_seed(seed), dtype=F64)
    outs = [model(x) for x in X.tolist()]
    outs = [o if isinstance(o, list) else [o] for o in outs]
    loss = sum((v * v for o in outs for v in o), Value(0.0))
    loss.backward()
    params = mlp_to_torch(model, requires_grad=True)
    got = mlp_forward_torch(model, X, params)
    want = torch.tensor([[v.data for v in o] for o in outs], dtype=F64)
    torch.testing.assert_close(got.reshape(want.shape), want)
    (got**2).sum().backward()
    torch.testing.assert_close(_torch_grads_in_parameter_order(params),
                               torch.tensor([p.grad for p in model.parameters()], dtype=F64))
    assert all(W.shape == (len(l.neurons), len(l.neurons[0].w)) for (W, _), l in
               zip(params, model.layers))
    float32 = mlp_forward_torch(model, X.float())
    assert float32.dtype == torch.float32


@pytest.mark.parametrize("call, message", [
    (lambda: mlp_forward_torch(MLP(2, [3, 1]), torch.zeros(4, 2, dtype=torch.long)),
     r"convert it with \.double\(\)"),
    (lambda: mlp_forward_torch(MLP(2, [3, 1]), [[0.0, 1.0]]), r"shape \(n, 2\)"),
    (lambda: mlp_forward_torch(MLP(2, [3, 1]), torch.zeros(2)), r"shape \(n, 2\), got \(2,\)"),
    (lambda: mlp_forward_torch(MLP(2, [3, 1]), torch.zeros(4, 2),
                               mlp_to_torch(MLP(2, [4, 1]))), "pairs of mlp_to_torch"),
    (lambda: mlp_forward_torch(Neuron(2), torch.zeros(4, 2)), "expected a dlbook.autograd.MLP"),
    (lambda: mlp_to_torch("model"), "expected a dlbook.autograd.MLP"),
    (lambda: MLP(2, 3), "nouts must list"),
    (lambda: MLP(2, [3, 0]), "nout must be a positive int"),
    (lambda: Neuron(2.0), "nin must be a positive int"),
    (lambda: Neuron(True), "nin must be a positive int"),
    (lambda: Neuron(2)(0.5), "expected a list of 2 inputs"),
    (lambda: Neuron(2)(["a", 1.0]), "expected a list of 2 inputs"),
    (lambda: MLP(2, [3, 1])(torch.zeros(2, 2).tolist()), "expected a list of 2 inputs"),
    (lambda: draw_graph(Value(1.0), max_nodes=0), "max_nodes must be a positive int"),
])
def test_bad_network_input_names_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=60, **SETTINGS)
@given(size=st.floats(1e-2, 1e3), sign=st.sampled_from([-1.0, 1.0]),
       k=st.one_of(st.integers(-3, 4), st.floats(-2.5, 2.5)))
def test_power_of_a_constant_matches_torch_or_says_why_not(size, sign, k):
    x = sign * size
    v = Value(x)
    if x < 0 and not float(k).is_integer():
        with pytest.raises(ValueError, match="integer exponent"):
            v ** k
        return
    out = v ** k
    out.backward()
    t = torch.tensor(x, dtype=F64, requires_grad=True)
    (t**k).backward()
    assert math.isclose(out.data, float(t.detach() ** k), rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(v.grad, t.grad.item(), rel_tol=1e-9, abs_tol=1e-300)


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


