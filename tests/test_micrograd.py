"""mmlib.micrograd (lesson 00's engine): values and gradients against PyTorch on random expressions, the
notebook's own `Value` and `MLP` cells against the library's, the topological order, the graph drawing and the
neuron explorer."""

from __future__ import annotations

import base64
import math
import random

import nbformat
import pytest
import torch
from conftest import NOTEBOOKS

from mmlib import micrograd
from mmlib.micrograd import MLP, Value, topological_order
from mmlib.plots import draw_graph, graph_layout, layout_problems
from mmlib.widgets import neuron_explorer, neuron_graph

SOLUTION = NOTEBOOKS / "solutions" / "00_micrograd_solutions.ipynb"
N_EXPRESSIONS = 200
RTOL, ATOL = 1e-9, 1e-12
"""Float64 on both sides: the engine and PyTorch add and multiply in different orders (PyTorch sums the
contributions of a node used several times in its own order), so they may differ in the last bits; 1e-9
relative leaves a margin of a million over that and catches any wrong rule (off by far more)."""


# ---- random expressions, each built by one program for both engines ------------------------------------------

UNARY = {
    "exp": lambda a: a.tanh().exp(),            # exp of something in (-1, 1): never overflows
    "tanh": lambda a: a.tanh(),
    "relu": lambda a: a.relu(),
    "log": lambda a: (a * a + 1).log(),         # log of something >= 1
    "square": lambda a: a**2,
    "cube": lambda a: a**3,
    "inverse": lambda a: (a * a + 1) ** -1,
    "sqrt": lambda a: (a * a + 1) ** 0.5,
    "neg": lambda a: -a,
}
BINARY = {
    "+": lambda a, b: a + b,
    "*": lambda a, b: a * b,
    "-": lambda a, b: a - b,
    "/": lambda a, b: a / (b * b + 1),
    "number+": lambda a, b: 2.5 + a,            # a plain number on the left: __radd__, __rsub__, ...
    "number-": lambda a, b: 1.5 - b,
    "number*": lambda a, b: -0.5 * a,
    "number/": lambda a, b: 3.0 / (a * a + 1),
}


def random_program(rng: random.Random) -> tuple[list[float], list[tuple]]:
    """The leaves' values and a list of steps (op, i, j) over a growing pool of nodes; operands are drawn
    from the whole pool, so nodes are reused, and every program has one step that uses a node twice."""
    leaves = [rng.uniform(-2, 2) for _ in range(rng.randint(1, 4))]
    steps = []
    n = len(leaves)
    twice_at = rng.randrange(rng.randint(2, 10))
    for k in range(twice_at + 1 + rng.randint(1, 10)):
        if k == twice_at:
            i = rng.randrange(n)
            steps.append((rng.choice(["+", "*", "-"]), i, i))        # a + a, a * a, a - a
        elif rng.random() < 0.4:
            steps.append((rng.choice(list(UNARY)), rng.randrange(n), None))
        else:
            steps.append((rng.choice(list(BINARY)), rng.randrange(n), rng.randrange(n)))
        n += 1
    return leaves, steps


def run_program(leaves: list, steps: list[tuple]):
    """Apply `steps` to `leaves` (Values or tensors alike); the root sums the last node and two earlier ones."""
    pool = list(leaves)
    for op, i, j in steps:
        pool.append(UNARY[op](pool[i]) if j is None else BINARY[op](pool[i], pool[j]))
    return pool[-1] + pool[len(pool) // 2] * pool[0]


def engine_result(V: type, leaves: list[float], steps) -> tuple[float, list[float]]:
    xs = [V(v) for v in leaves]
    root = run_program(xs, steps)
    root.backward()
    return root.data, [x.grad for x in xs]


def torch_result(leaves: list[float], steps) -> tuple[float, list[float]]:
    xs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in leaves]
    root = run_program(xs, steps)
    root.backward()
    return root.item(), [0.0 if x.grad is None else x.grad.item() for x in xs]


PROGRAMS = [random_program(random.Random(i)) for i in range(N_EXPRESSIONS)]


def test_values_and_gradients_equal_pytorchs_on_random_expressions():
    twice = 0
    for n, (leaves, steps) in enumerate(PROGRAMS):
        data, grads = engine_result(Value, leaves, steps)
        want_data, want_grads = torch_result(leaves, steps)
        assert math.isclose(data, want_data, rel_tol=RTOL, abs_tol=ATOL), (n, steps, data, want_data)
        for g, w in zip(grads, want_grads):
            assert math.isclose(g, w, rel_tol=RTOL, abs_tol=ATOL), (n, steps, grads, want_grads)
        twice += any(j == i for _, i, j in steps)
    assert twice == N_EXPRESSIONS >= 100, "every expression uses a node twice"


def test_a_node_used_twice_gets_the_sum_of_both_gradients():
    a = Value(3.0)
    b = a + a
    b.backward()
    assert a.grad == 2.0
    a, b = Value(-2.0), Value(3.0)
    f = (a * b) * (a + b)
    f.backward()
    # f = a^2 b + a b^2: df/da = 2ab + b^2, df/db = a^2 + 2ab
    assert (a.grad, b.grad) == (2 * -2.0 * 3.0 + 3.0**2, (-2.0) ** 2 + 2 * -2.0 * 3.0)


def test_gradients_add_up_until_zeroed_as_the_training_loop_expects():
    model = MLP(2, [3, 1], rng=random.Random(0))
    model([1.0, -1.0]).backward()
    once = [p.grad for p in model.parameters()]
    model([1.0, -1.0]).backward()
    assert [p.grad for p in model.parameters()] == [2 * g for g in once]
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_only_numbers_are_exponents():
    with pytest.raises(TypeError, match="only a number may be the exponent"):
        Value(2.0) ** Value(3.0)


def test_topological_order_puts_every_node_after_its_children_even_on_a_long_chain():
    x = Value(0.5)
    y = x
    for _ in range(5000):                   # deeper than Python's recursion limit
        y = y * 1.0001 + 0.0
    order = topological_order(y)
    position = {id(v): k for k, v in enumerate(order)}
    assert order[-1] is y and len(position) == len(order)
    assert all(position[id(c)] < position[id(v)] for v in order for c in v._prev)
    y.backward()
    assert math.isclose(x.grad, 1.0001 ** 5000, rel_tol=1e-9)


def _recursive_order(root) -> list:
    """Lesson 00's own walk (section 4's `backward`): each child in `_prev` order, then the node."""
    order, seen = [], set()

    def visit(v):
        if v not in seen:
            seen.add(v)
            for child in v._prev:
                visit(child)
            order.append(v)

    visit(root)
    return order


def test_topological_order_is_the_lessons_recursive_walk_node_for_node():
    for leaves, steps in PROGRAMS:                       # every program uses a node twice (a + a, a * a, a - a)
        root = run_program([Value(v) for v in leaves], steps)
        assert [id(v) for v in topological_order(root)] == [id(v) for v in _recursive_order(root)], steps
    x1, x2, w1, w2, b = (Value(v, label=k) for k, v in zip(["x1", "x2", "w1", "w2", "b"], [2, 0, -3, 1, 6.88]))
    x1w1, x2w2 = x1 * w1, x2 * w2
    o = (x1w1 + x2w2 + b).tanh()
    assert [v.label or v._op for v in topological_order(o)] == ["x1", "w1", "*", "x2", "w2", "*", "+", "b", "+",
                                                                "tanh"]


# ---- the notebook builds the same engine ---------------------------------------------------------------------

def _notebook_cell(marker: str, contains: str) -> str:
    code = [c.source for c in nbformat.read(SOLUTION, as_version=4).cells if c.cell_type == "code"]
    return next(src for src in code if src.startswith(marker) and contains in src)


@pytest.fixture(scope="module")
def notebook_engine() -> dict:
    """The solution notebook's final `Value` cell and its `Neuron`/`Layer`/`MLP` cell, executed here."""
    scope = {"math": math, "random": random, "micrograd": micrograd}
    exec(_notebook_cell("class Value", "def relu"), scope)       # noqa: S102 - the course's own notebook
    exec(_notebook_cell("class Module", "class MLP"), scope)     # noqa: S102
    return scope


def test_the_notebooks_value_is_the_librarys_to_the_last_bit(notebook_engine):
    for leaves, steps in PROGRAMS:
        assert engine_result(notebook_engine["Value"], leaves, steps) == engine_result(Value, leaves, steps)


def test_the_notebooks_mlp_is_the_librarys_to_the_last_bit(notebook_engine):
    ours = notebook_engine["MLP"](2, [5, 4, 1], rng=random.Random(7))
    theirs = MLP(2, [5, 4, 1], rng=random.Random(7))
    for model in (ours, theirs):
        loss = sum((model(x) - t) ** 2 for x, t in [([0.5, -1.0], 1.0), ([2.0, 0.3], -1.0)])
        loss.backward()
    assert [(p.data, p.grad) for p in ours.parameters()] == [(p.data, p.grad) for p in theirs.parameters()]


def test_the_notebooks_first_backward_shows_the_used_twice_bug():
    """Section 4's Value (rules with =) loses one share of a node used twice, as section 5 says; the final one not."""
    scope = {"math": math, "micrograd": micrograd}
    exec(_notebook_cell("class Value", "rules use ="), scope)     # noqa: S102
    a = scope["Value"](3.0)
    b = a + a
    b.backward()
    assert a.grad == 1.0


# ---- the drawing and the explorer --------------------------------------------------------------------------

def _neuron():
    x1, w1, b = Value(2.0, label="x1"), Value(-3.0, label="w1"), Value(6.88, label="b")
    o = (x1 * w1 + b).tanh()
    o.label = "o"
    o.backward()
    return o


def test_topological_order_is_the_order_the_notebooks_own_backward_runs_the_rules_in():
    """Section 4's `backward` (its recursive `visit`) runs each node's rule in reverse of the library's order."""
    scope = {"math": math, "micrograd": micrograd}
    exec(_notebook_cell("class Value", "rules use ="), scope)     # noqa: S102
    V, rng = scope["Value"], random.Random(0)
    ops = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a.tanh()]
    for _ in range(50):
        pool = [V(rng.uniform(-1, 1)) for _ in range(rng.randint(1, 4))]
        for _ in range(rng.randint(2, 12)):
            pool.append(rng.choice(ops)(rng.choice(pool), rng.choice(pool)))
        root = pool[-1] + pool[0] * pool[0]                 # pool[0] used twice
        ran = []
        for v in topological_order(root):                   # each rule, wrapped to note when it runs
            v._backward = lambda v=v, rule=v._backward: (ran.append(id(v)), rule())
        root.backward()
        assert ran == [id(v) for v in reversed(topological_order(root))]


def test_graph_layout_points_every_edge_right_and_draws_readably():
    o = _neuron()
    layout = graph_layout(o)
    x = {id(v): px for v, px, _ in layout["nodes"]}
    assert len(layout["nodes"]) == 6 and len(layout["ops"]) == 3
    assert all(x[id(c)] < x[id(v)] for v, _, _ in layout["nodes"] for c in v._prev)
    fig = draw_graph(o, title="a neuron")
    assert layout_problems(fig) == []
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "o | data 0.7064 | grad 1.0000" in texts and "tanh" in texts


def test_graph_drawing_works_on_any_value_with_data_grad_and_prev(notebook_engine):
    V = notebook_engine["Value"]
    a = V(3.0, label="a")
    b = a + a
    b.backward()
    fig = draw_graph(b)
    assert "a | data 3.0000 | grad 2.0000" in [t.get_text() for t in fig.axes[0].texts]


def test_neuron_graph_matches_pytorch():
    r = neuron_graph(2.0, 0.5, -3.0, 1.0, 4.0)
    x = torch.tensor([2.0, 0.5], dtype=torch.float64)
    w = torch.tensor([-3.0, 1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    o = torch.tanh(x @ w + b)
    o.backward()
    assert math.isclose(r.values["o"], o.item(), rel_tol=1e-12)
    assert math.isclose(r.grads["w1"], w.grad[0].item(), rel_tol=1e-12)
    assert math.isclose(r.grads["b"], b.grad.item(), rel_tol=1e-12)


def test_the_neuron_explorer_publishes_its_text_and_picture_and_redraws_on_a_slider():
    explorer = neuron_explorer()
    text, image = explorer.output.outputs
    assert text["text"] == explorer.result.text() + "\n"
    assert base64.b64decode(image["data"]["image/png"]) == explorer.png
    assert explorer.output.msg_id == ""
    bundle = explorer._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")   # the picture for readers without a kernel
    before = explorer.png
    explorer.b.value = 8.0
    assert explorer.result.text().startswith("x1=2.00, x2=0.00, w1=-3.00, w2=1.00, b=8.00")
    assert explorer.png != before and len(explorer.output.outputs) == 2
    explorer.w1.value = 3.0
    assert "saturated" in explorer.result.text()
