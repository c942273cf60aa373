"""A scalar autograd engine and a tiny neural-network library on top of it, in the spirit of micrograd (lesson 00).

Lesson 00 builds these in its cells, one operation at a time; this module is the same code, importable,
so that tests can compare it with PyTorch and with the notebook's own cells (tests/test_micrograd.py).

- `Value`: one number that remembers how it was made (its children and the operation), and carries
  `grad`, d(output)/d(this value), once `backward()` has run from the output.
- `topological_order`: every node of an expression, each after all the nodes it was made from.
- `Neuron`, `Layer`, `MLP`: the network of lesson 00, built from `Value`s only.

Left out on purpose: tensors (lesson 01 onwards hands them to PyTorch), in-place updates of the graph,
and any speed: every number is a Python object, which is what makes each step visible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence


class Value:
    """A scalar in an expression graph: its `data`, its `grad` and the rule that sends the gradient back.

    Each operation makes a new `Value` whose `_prev` are the values it was made from and whose `_backward`
    adds, to each of them, the output's gradient times the local derivative (the chain rule). A node used
    several times receives one contribution per use, so every rule adds (`+=`) to `grad`.
    """

    def __init__(self, data: float, _children: Iterable[Value] = (), _op: str = "", label: str = ""):
        self.data = float(data)
        self.grad = 0.0
        self._backward: Callable[[], None] = lambda: None
        self._prev = tuple(_children)   # a tuple, not a set: the same order on every run
        self._op = _op
        self.label = label

    def __repr__(self) -> str:
        return f"Value(data={self.data:.4g}, grad={self.grad:.4g})"

    def __add__(self, other: Value | float) -> Value:
        # a plain number becomes a constant Value named by its value, so that a drawing of the graph says what it is
        other = other if isinstance(other, Value) else Value(other, label=f"{other:g}")
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += out.grad            # d(a + b)/da = 1
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other, label=f"{other:g}")
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += other.data * out.grad    # d(a * b)/da = b
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, k: int | float) -> Value:
        if not isinstance(k, (int, float)):
            raise TypeError(f"only a number may be the exponent (x ** 2, x ** -1), got {type(k).__name__}")
        out = Value(self.data ** k, (self,), f"**{k:g}")

        def _backward():
            self.grad += k * self.data ** (k - 1) * out.grad   # d(x^k)/dx = k x^(k-1)

        out._backward = _backward
        return out

    def exp(self) -> Value:
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward():
            self.grad += out.data * out.grad          # d(e^x)/dx = e^x, already computed

        out._backward = _backward
        return out

    def log(self) -> Value:
        out = Value(math.log(self.data), (self,), "log")

        def _backward():
            self.grad += out.grad / self.data         # d(ln x)/dx = 1/x

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward():
            self.grad += (1 - t ** 2) * out.grad      # d(tanh x)/dx = 1 - tanh(x)^2

        out._backward = _backward
        return out

    def relu(self) -> Value:
        out = Value(max(0.0, self.data), (self,), "relu")

        def _backward():
            self.grad += (out.data > 0) * out.grad    # 1 where the input was positive, else 0

        out._backward = _backward
        return out

    # The rest are made from the operations above: their gradients come for free.
    def __neg__(self) -> Value:
        return self * -1

    def __sub__(self, other: Value | float) -> Value:
        return self + (-other)

    def __truediv__(self, other: Value | float) -> Value:
        return self * (other if isinstance(other, Value) else Value(other, label=f"{other:g}")) ** -1

    def __radd__(self, other: float) -> Value:
        return self + other

    def __rmul__(self, other: float) -> Value:
        return self * other

    def __rsub__(self, other: float) -> Value:
        return Value(other, label=f"{other:g}") - self

    def __rtruediv__(self, other: float) -> Value:
        return Value(other, label=f"{other:g}") / self

    def backward(self) -> None:
        """Add d(self)/d(node) to the `grad` of every node this value was made from.

        Adds, like every rule: gradients left by an earlier `backward()` stay unless zeroed first
        (`Module.zero_grad`), which is why a training step zeroes them before it calls this.
        """
        order = topological_order(self)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


def topological_order(root: Value) -> list[Value]:
    """Every node `root` was made from (and `root`, last), each after all of its children.

    Walking this list backwards runs each node's `_backward` only once its gradient is complete:
    every node that uses it comes later in the list, so it has already sent its share back.
    The order is exactly lesson 00's recursive walk (visit each child in `_prev` order, then list the node),
    written with a stack of its own, since a long chain would exceed Python's recursion limit.
    """
    order: list[Value] = []
    seen = {id(root)}
    stack = [(root, iter(root._prev))]    # each node being visited, with the children it has yet to visit
    while stack:
        node, children = stack[-1]
        for child in children:
            if id(child) not in seen:    # go down into the first child not seen yet, as the recursion would
                seen.add(id(child))
                stack.append((child, iter(child._prev)))
                break
        else:                            # every child listed: the node follows them
            stack.pop()
            order.append(node)
    return order


class Module:
    """What every part of the network offers: its parameters, and a way to zero their gradients."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0


class Neuron(Module):
    """tanh(w . x + b) (or w . x + b when `nonlin` is False), weights drawn uniformly from [-1, 1]."""

    def __init__(self, nin: int, nonlin: bool = True, rng: random.Random | None = None):
        rng = rng or random.Random(0)
        self.w = [Value(rng.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(rng.uniform(-1, 1))
        self.nonlin = nonlin

    def __call__(self, x: Sequence[Value | float]) -> Value:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.tanh() if self.nonlin else act

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"{'Tanh' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    """`nout` neurons, each reading the same `nin` inputs."""

    def __init__(self, nin: int, nout: int, nonlin: bool = True, rng: random.Random | None = None):
        rng = rng or random.Random(0)
        self.neurons = [Neuron(nin, nonlin, rng) for _ in range(nout)]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Layers of sizes `nin -> nouts[0] -> ... -> nouts[-1]`: tanh in every layer but the last, which is linear."""

    def __init__(self, nin: int, nouts: Sequence[int], rng: random.Random | None = None):
        rng = rng or random.Random(0)
        sizes = [nin, *nouts]
        self.layers = [Layer(sizes[i], sizes[i + 1], nonlin=i != len(nouts) - 1, rng=rng) for i in range(len(nouts))]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
