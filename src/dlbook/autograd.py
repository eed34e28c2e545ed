"""A scalar autograd engine: values that remember how they were made (section 2.1).

Each :class:`Value` holds one number, the gradient of a final output with respect to it, and
the recipe that produced it: its inputs and a small closure that applies the chain rule for
that one operation. :meth:`Value.backward` visits the graph in reverse topological order and
calls every closure once. That is all of reverse-mode automatic differentiation.

The engine follows the spirit of Karpathy's micrograd; on top of it sit a tiny
:class:`Neuron`, :class:`Layer` and :class:`MLP`, and :func:`draw_graph`, which draws a small
graph with matplotlib.
"""

from __future__ import annotations

import functools
import math
import numbers
import random
from typing import Any, Callable, Sequence

import torch


def _leaf_backward(g: float) -> None:
    """A leaf (an input or a parameter) was made by no op: nothing to pass back."""


def _binary(op: Callable[[Value, Value], Value]) -> Callable[[Value, Any], Value]:
    """Let ``op(self, other)`` take a plain number as ``other`` (wrapped as a leaf Value);
    anything else gives NotImplemented, so Python reports an unsupported operand."""

    @functools.wraps(op)
    def with_numbers(self: Value, other: Any) -> Value:
        other = _as_value(other)
        return NotImplemented if other is NotImplemented else op(self, other)

    return with_numbers


class Value:
    """A scalar in a computational graph: ``data``, ``grad`` and how it was computed.

    ``Value(2.0) * Value(3.0)`` builds a graph of three nodes; calling ``.backward()`` on the
    result fills in ``.grad`` of every node with the derivative of the result with respect to
    that node.
    """

    __slots__ = ("data", "grad", "_backward", "_prev", "_op", "label")

    def __init__(self, data: float, _children: tuple[Value, ...] = (), _op: str = "",
                 label: str = "") -> None:
        _check_data(data)
        self.data = float(data)
        self.grad = 0.0
        # The chain rule for the op that made this node: given g = d(root)/d(this node), it
        # adds g * d(this node)/d(input) to each input's grad. Leaves have nothing to pass on.
        self._backward: Callable[[float], None] = _leaf_backward
        self._prev = tuple(_children)  # the inputs, in order (a * a lists a twice)
        self._op = _op
        self.label = label

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # ----- binary operations -------------------------------------------------------------
    @_binary
    def __add__(self, other: Value) -> Value:
        out = Value(self.data + other.data, (self, other), "+")

        def _backward(g: float) -> None:  # d(a+b)/da = 1, d(a+b)/db = 1
            self.grad += g
            other.grad += g

        out._backward = _backward
        return out

    @_binary
    def __mul__(self, other: Value) -> Value:
        out = Value(self.data * other.data, (self, other), "*")

        def _backward(g: float) -> None:  # ∂(ab)/∂a = b, ∂(ab)/∂b = a
            self.grad += other.data * g
            other.grad += self.data * g

        out._backward = _backward
        return out

    @_binary
    def __truediv__(self, other: Value) -> Value:
        out = Value(self.data / other.data, (self, other), "/")

        def _backward(g: float) -> None:  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
            self.grad += g / other.data
            other.grad += -self.data / other.data**2 * g

        out._backward = _backward
        return out

    def __pow__(self, k: int | float) -> Value:
        k = _check_exponent(self, k)  # a plain number; a negative base needs an integer k
        out = Value(self.data**k, (self,), f"**{k:g}")

        def _backward(g: float) -> None:  # d(x^k)/dx = k x^(k-1)
            self.grad += k * self.data ** (k - 1) * g

        out._backward = _backward
        return out

    def __rpow__(self, base: Any) -> Value:
        raise TypeError("number ** Value is not supported: the exponent must be a plain int or "
                        "float (for c ** v use (v * math.log(c)).exp())")

    # ----- built from the ones above ------------------------------------------------------
    def __neg__(self) -> Value:  # -a
        return self * -1

    @_binary
    def __sub__(self, other: Value) -> Value:  # a - b
        return self + (-other)

    def __radd__(self, other: float) -> Value:  # 2 + a
        return self + other

    @_binary
    def __rsub__(self, other: Value) -> Value:  # 2 - a
        return other + (-self)

    def __rmul__(self, other: float) -> Value:  # 2 * a
        return self * other

    @_binary
    def __rtruediv__(self, other: Value) -> Value:  # 2 / a
        return other / self

    # ----- functions of one input ---------------------------------------------------------
    def relu(self) -> Value:
        out = Value(max(0.0, self.data), (self,), "relu")

        def _backward(g: float) -> None:  # 1 where x > 0, else 0 (0 at x = 0, as in PyTorch)
            self.grad += (self.data > 0) * g

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward(g: float) -> None:  # ∂tanh(x)/∂x = 1 - tanh(x)^2
            self.grad += (1 - t * t) * g

        out._backward = _backward
        return out

    def exp(self) -> Value:
        e = math.exp(self.data)
        out = Value(e, (self,), "exp")

        def _backward(g: float) -> None:  # d e^x/dx = e^x
            self.grad += e * g

        out._backward = _backward
        return out

    def log(self) -> Value:
        if self.data <= 0:
            raise ValueError(f"log needs a positive input, got {self.data:.6g}")
        out = Value(math.log(self.data), (self,), "log")

        def _backward(g: float) -> None:  # d log(x)/dx = 1/x
            self.grad += g / self.data

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        x = self.data  # the two forms avoid overflow of exp for large |x|
        s = 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
        out = Value(s, (self,), "sigmoid")

        def _backward(g: float) -> None:  # d sigma(x)/dx = sigma(x) (1 - sigma(x))
            self.grad += s * (1 - s) * g

        out._backward = _backward
        return out

    # ----- the backward pass --------------------------------------------------------------
    def backward(self) -> None:
        """Fill in ``.grad`` of every node this one depends on: ∂(self)/∂(node).

        Nodes made by an op start this pass from zero. Leaves (inputs and parameters)
        *accumulate*, as in PyTorch: a second call adds the same gradients again, so zero
        them between passes (``MLP.zero_grad()``).
        """
        order = topological_order(self)
        for node in order:
            if node._prev:
                node.grad = 0.0
        self.grad = 1.0  # d(self)/d(self)
        for node in reversed(order):  # every node after all the nodes that use it
            node._backward(node.grad)


def _as_value(x: Any) -> Value | Any:
    """Wrap a plain number as a leaf Value; leave Values alone; NotImplemented otherwise."""
    if isinstance(x, Value):
        return x
    if not _is_number(x):
        return NotImplemented
    return Value(x)


def _is_number(x: Any) -> bool:
    """A real number but not a bool (the quick test first: ABC checks are slow)."""
    if type(x) is float or type(x) is int:
        return True
    return not isinstance(x, bool) and isinstance(x, numbers.Real)


def _check_data(data: Any) -> None:
    """A Value holds one finite real number."""
    if not _is_number(data):
        raise ValueError(f"Value holds a real number (int or float), got "
                         f"{type(data).__name__} {data!r:.40}; for a tensor t use t.item()")
    if not math.isfinite(data if type(data) is float else _as_float(data)):
        raise ValueError(f"Value holds a finite number, got {data!r:.40}: an operation "
                         "overflowed or was undefined (e.g. 1 / 1e-320); rescale the inputs")


def _as_float(x: Any) -> float:
    try:
        return float(x)
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        return math.inf


def _check_exponent(base: Value, k: Any) -> int | float:
    """The exponent of ``base ** k`` as an int or float, after checking that it is one."""
    if isinstance(k, Value):
        raise TypeError("Value ** Value is not supported: the exponent must be a plain "
                        "int or float (for a Value exponent b use (b * a.log()).exp())")
    if not _is_number(k):
        raise TypeError(f"the exponent must be an int or float, got {type(k).__name__}")
    k = int(k) if isinstance(k, numbers.Integral) else float(k)
    if not math.isfinite(k):
        raise ValueError(f"the exponent must be finite, got {k}")
    if base.data < 0 and not float(k).is_integer():
        raise ValueError(f"({base.data:.6g}) ** {k} is not a real number: a negative base "
                         "needs an integer exponent")
    return k


def _check_root(root: Any) -> None:
    if not isinstance(root, Value):
        raise ValueError(f"expected a Value (the root of a graph), got {type(root).__name__}")


def topological_order(root: Value) -> list[Value]:
    """Every node ``root`` depends on, each after all of its inputs (``root`` comes last).

    A depth-first search with an explicit stack, so a chain of a million operations needs
    no Python recursion. A node is appended once its inputs are all appended (post-order).
    """
    _check_root(root)
    order: list[Value] = []
    visited: set[int] = set()
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:  # second visit: every input is already in `order`
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node._prev)
                     if id(child) not in visited)
    return order


# ----- a tiny neural network made of Values ---------------------------------------------
_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")


def _check_size(name: str, n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")


def _check_neuron(nin: Any, activation: Any) -> None:
    _check_size("nin", nin)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")


def _check_inputs(x: Any, nin: int) -> None:
    """``x`` is a sequence of ``nin`` numbers or Values (one example, not a batch)."""
    if not hasattr(x, "__len__") or isinstance(x, (str, bytes)) or len(x) != nin or \
            not all(isinstance(xi, Value) or _is_number(xi) for xi in x):
        got = f"{len(x)} items" if hasattr(x, "__len__") else type(x).__name__
        raise ValueError(f"expected a list of {nin} inputs (numbers or Values) for one example, "
                         f"got {got}: {x!r:.60}")


class Module:
    """Something with parameters: ``parameters()`` lists them, ``zero_grad()`` resets them."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """``activation(w · x + b)`` with ``nin`` weights drawn uniformly from [-1, 1]."""

    def __init__(self, nin: int, activation: str = "tanh") -> None:
        _check_neuron(nin, activation)
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0.0)
        self.activation = activation

    def __call__(self, x: Sequence[Value | float]) -> Value:
        _check_inputs(x, len(self.w))
        z = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return z if self.activation == "linear" else getattr(z, self.activation)()

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, {self.activation})"


class Layer(Module):
    """``nout`` neurons that all read the same ``nin`` inputs."""

    def __init__(self, nin: int, nout: int, activation: str = "tanh") -> None:
        _check_size("nout", nout)
        self.neurons = [Neuron(nin, activation) for _ in range(nout)]

    def __call__(self, x: Sequence[Value | float]) -> list[Value]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer({', '.join(map(repr, self.neurons))})"


class MLP(Module):
    """Layers of sizes ``nin -> nouts[0] -> ... -> nouts[-1]``; the last layer is linear.

    The output is a single Value when ``nouts[-1] == 1``, else a list of Values.
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "tanh") -> None:
        if not isinstance(nouts, (list, tuple)) or not nouts:
            raise ValueError(f"nouts must list at least one layer size, e.g. [8, 1]; got "
                             f"{nouts!r}")
        sizes = [nin, *nouts]
        self.layers = [Layer(sizes[i], sizes[i + 1],
                             activation if i < len(nouts) - 1 else "linear")
                       for i in range(len(nouts))]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        for layer in self.layers:
            x = layer(x)
        return x[0] if len(x) == 1 else x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        sizes = [len(self.layers[0].neurons[0].w)] + [len(l.neurons) for l in self.layers]
        return f"MLP({' -> '.join(map(str, sizes))})"


def _check_mlp(model: Any) -> None:
    if not isinstance(model, MLP):
        raise ValueError(f"expected a dlbook.autograd.MLP, got {type(model).__name__}")


def mlp_to_torch(model: MLP, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None,
                 requires_grad: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The current numbers of ``model`` as torch tensors: one pair (W, b) per layer, with W of
    shape (nout, nin) as ``nn.Linear`` stores it (row i: neuron i's weights) and b of shape
    (nout,). With ``requires_grad=True`` they are leaves whose ``.grad`` autograd fills in."""
    _check_mlp(model)
    params = []
    for layer in model.layers:
        W = torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=dtype,
                         device=device)
        b = torch.tensor([n.b.data for n in layer.neurons], dtype=dtype, device=device)
        params.append((W.requires_grad_(requires_grad), b.requires_grad_(requires_grad)))
    return params


def _check_batch(model: MLP, X: Any, params: Any) -> None:
    _check_mlp(model)
    nin = len(model.layers[0].neurons[0].w)
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or X.shape[1] != nin:
        shape = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
        raise ValueError(f"expected X, a tensor of shape (n, {nin}), got {shape}")
    if not X.is_floating_point():
        raise ValueError(f"X is {str(X.dtype).removeprefix('torch.')}: convert it with "
                         ".double() (or .float())")
    if params is not None:
        want = [((len(l.neurons), len(l.neurons[0].w)), (len(l.neurons),)) for l in model.layers]
        got = [(tuple(W.shape), tuple(b.shape)) for W, b in params] \
            if isinstance(params, (list, tuple)) and all(
                isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in params) else None
        if got != want:
            raise ValueError(f"params must be the (W, b) pairs of mlp_to_torch(model), shapes "
                             f"{want}; got {got if got is not None else type(params).__name__}")


def mlp_forward_torch(model: MLP, X: torch.Tensor,
                      params: list[tuple[torch.Tensor, torch.Tensor]] | None = None
                      ) -> torch.Tensor:
    """The same network as ``model`` evaluated on a whole batch ``X`` (n, nin) with torch.

    Scalar Values are far too slow to shade a grid of thousands of points; this evaluates the
    layers as matrix products instead, with ``params`` (from :func:`mlp_to_torch`, e.g. with
    gradients) or the model's current numbers. Returns the outputs, shape (n,) or (n, nout).
    """
    _check_batch(model, X, params)
    if params is None:
        params = mlp_to_torch(model, dtype=X.dtype, device=X.device)
    h = X
    for layer, (W, b) in zip(model.layers, params):
        h = h @ W.T + b
        act = layer.neurons[0].activation
        if act != "linear":
            h = getattr(torch, act)(h)
    return h[:, 0] if h.shape[1] == 1 else h


# ----- drawing a small graph --------------------------------------------------------------
def draw_graph(root: Value, ax: Any = None, *, max_nodes: int = 40,
               fontsize: float = 9.0) -> Any:
    """Draw the graph behind ``root``: a box per Value (label, data, grad), a circle per op.

    Each node sits in a column given by its depth: the longest path from a leaf to it, with
    ``root`` rightmost and each leaf just left of its first consumer. Within a column, nodes
    are ordered by the rows of their consumers, which keeps edges short; an edge that skips
    columns is drawn as an arc, and an input used twice (``a * a``) gets two arcs. Uses
    matplotlib only. ``fontsize`` is the labels' size in points; a new figure is made wide
    enough for them (at most 8 inches). Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    order = topological_order(root)
    _check_size("max_nodes", max_nodes)
    if len(order) > max_nodes:
        raise ValueError(f"draw_graph draws at most max_nodes={max_nodes} nodes; this graph "
                         f"has {len(order)} (draw a smaller expression)")
    consumers: dict[int, list[Value]] = {id(n): [] for n in order}
    for node in order:
        for child in node._prev:
            consumers[id(child)].append(node)
    depth: dict[int, int] = {}
    for node in order:  # inputs come first, so their depth is known
        depth[id(node)] = 1 + max((depth[id(c)] for c in node._prev), default=-1)
    for node in order:  # move each leaf next to its first consumer
        if not node._prev and consumers[id(node)]:
            depth[id(node)] = min(depth[id(c)] for c in consumers[id(node)]) - 1
    columns: dict[int, list[Value]] = {}
    for node in order:
        columns.setdefault(depth[id(node)], []).append(node)
    row: dict[int, float] = {}
    for d in sorted(columns, reverse=True):  # from the root leftwards
        nodes = columns[d]
        key = {id(n): sum(row[id(c)] for c in consumers[id(n)]) / max(1, len(consumers[id(n)]))
               for n in nodes}
        nodes.sort(key=lambda n: key[id(n)])
        for i, n in enumerate(nodes):
            row[id(n)] = i - (len(nodes) - 1) / 2
    dx, box_w, op_r = 2.8, 1.2, 0.25  # column spacing, box width, op circle radius
    pos = {id(n): (depth[id(n)] * dx, -row[id(n)]) for n in order}

    if ax is None:
        ncol, nrow = len(columns), max(len(c) for c in columns.values())
        scale = fontsize / 7  # the layout below was made for 7-point labels
        _, ax = plt.subplots(figsize=(min(8.0, scale * (1.25 * ncol + 0.4)),
                                      0.75 * nrow + 0.55))
    arrow = dict(arrowstyle="-|>", mutation_scale=8, color="0.45", lw=0.8, shrinkA=0, shrinkB=0)
    for node in order:
        x, y = pos[id(node)]
        name = f"{node.label}  " if node.label else ""
        ax.text(x, y, f"{name}{node.data:.4g}\ngrad {node.grad:.4g}", ha="center", va="center",
                fontsize=fontsize, zorder=3,
                bbox=dict(boxstyle="round,pad=0.25", fc="#eef3fb", ec="0.3", lw=0.8))
        if not node._op:
            continue
        ox = x - 0.5 * dx  # the op that made this node, halfway to its inputs
        ax.text(ox, y, node._op, ha="center", va="center", fontsize=fontsize, zorder=3,
                bbox=dict(boxstyle="circle,pad=0.2", fc="#fdf1dc", ec="0.3", lw=0.8))
        ax.add_patch(FancyArrowPatch((ox + op_r, y), (x - box_w / 2, y), **arrow))
        for i, child in enumerate(node._prev):
            cx, cy = pos[id(child)]
            bend = 0.0
            if node._prev.count(child) > 1:  # a * a: one arc above, one below
                bend = 0.5 if node._prev.index(child) == i else -0.5
            elif depth[id(node)] - depth[id(child)] > 1:  # skips a column: bow around it,
                bend = 0.3 if cy < y else -0.3  # on the side the input comes from
            ax.add_patch(FancyArrowPatch((cx + box_w / 2, cy), (ox - op_r, y),
                                         connectionstyle=f"arc3,rad={bend}", **arrow))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - box_w / 2 - 0.1, max(xs) + box_w / 2 + 0.1)
    ax.set_ylim(min(ys) - 0.55, max(ys) + 0.55)
    ax.set_axis_off()
    return ax
