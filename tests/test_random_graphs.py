"""Property-based: random small graphs of elementwise and reduction ops pass gradcheck."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import minivae as mv

UNARY = [mv.tanh, mv.sigmoid, mv.softplus, mv.exp, lambda x: x * x, lambda x: mv.leaky_relu(x, 0.3), lambda x: -x]
BINARY = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a * mv.sigmoid(b)]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 3),
    cols=st.integers(1, 3),
    program=st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
def test_random_graph_gradcheck(rows, cols, program, seed):
    values = np.random.default_rng(seed).uniform(-1, 1, size=(2, rows, cols))
    a = mv.tensor(values[0], requires_grad=True, dtype="float64")
    b = mv.tensor(values[1], requires_grad=True, dtype="float64")

    def f(a, b):
        nodes = [a, b]
        for kind, i, j in program:
            x, y = nodes[i % len(nodes)], nodes[j % len(nodes)]
            out = UNARY[kind % len(UNARY)](x) if kind < 7 else BINARY[kind % len(BINARY)](x, y)
            nodes.append(mv.tanh(out))  # keep values bounded
        return mv.logsumexp(nodes[-1] + nodes[0], axis=-1).sum() + nodes[-1].mean()

    assert mv.gradcheck(f, [a, b]).ok
