"""Show the computation graph behind a tensor, as text or as a picture.

``graph_summary(loss)`` lists every node, inputs first; ``draw_graph(loss, path)``
draws it: one box per op with its name and output shape, parameters and data
inputs marked by colour, stochastic nodes (samples) highlighted. With a ``.dot``
path (or a Graphviz ``dot`` program on the PATH) the picture is Graphviz;
otherwise matplotlib draws it. Call these before ``backward()``, which frees the
graph (or pass ``retain_graph=True`` to it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from minivae.tensor import Tensor

COLOURS = {"parameter": "#cfe8ff", "input": "#eeeeee", "op": "#fff4c2", "stochastic": "#ffc9c9", "output": "#d3f5d3"}


@dataclass
class Node:
    index: int
    label: str
    kind: str  # parameter | input | op | stochastic | output
    shape: tuple[int, ...]
    inputs: list[int]


def display_name(op: str) -> str:
    """How a node is labelled: a fused node shows the steps it fuses, e.g. the dense
    layer ``linear+relu`` as ``linear → relu (fused)``, so the picture keeps the two
    steps a course draws while the engine runs them as one node."""
    if "+" not in op:
        return op
    return " → ".join(op.split("+")) + " (fused)"


def _nodes(root: Tensor) -> list[Node]:
    """Every tensor reachable through ``parents``, each after its inputs."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.append((t, True))
        stack.extend((p, False) for p in reversed(t.parents) if id(p) not in seen)
    index = {id(t): i for i, t in enumerate(order)}
    nodes = []
    for i, t in enumerate(order):
        if t.parents or t.op != "input":
            kind = "stochastic" if t.stochastic else "op"
            label = display_name(t.op)
        elif t.requires_grad:
            kind, label = "parameter", t.name or "parameter"
        else:
            kind, label = "input", t.name or "input"
        if t is root:
            kind = "stochastic" if t.stochastic else "output"
        nodes.append(Node(i, label, kind, t.shape, [index[id(p)] for p in t.parents]))
    return nodes


def graph_summary(root: Tensor) -> str:
    """One line per node: index, op or name, output shape, and which nodes feed it."""
    lines = [f"{'#':>3}  {'node':<28} {'kind':<10} {'shape':<16} inputs"]
    for n in _nodes(root):
        inputs = ", ".join(f"#{i}" for i in n.inputs) or "-"
        lines.append(f"{n.index:>3}  {n.label:<28} {n.kind:<10} {str(n.shape):<16} {inputs}")
    return "\n".join(lines)


def to_dot(root: Tensor) -> str:
    """The graph in Graphviz DOT language."""
    out = ["digraph minivae {", "  rankdir=BT;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for n in _nodes(root):
        out.append(f'  n{n.index} [label="{n.label}\\n{n.shape}", fillcolor="{COLOURS[n.kind]}"];')
        out.extend(f"  n{i} -> n{n.index};" for i in n.inputs)
    out.append("}")
    return "\n".join(out)


def draw_graph(root: Tensor, path: str) -> str:
    """Write a picture of the graph behind ``root`` to ``path`` (.png, .svg, .pdf or .dot); returns the path."""
    if not isinstance(root, Tensor):
        raise TypeError(f"draw_graph: expected a Tensor, got {type(root).__name__}")
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in ("png", "svg", "pdf", "dot"):
        raise ValueError(f"draw_graph: cannot write {path!r}; use a .png, .svg, .pdf or .dot path")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if ext == "dot":
        _atomic_write_text(path, to_dot(root))
    elif shutil.which("dot"):
        subprocess.run(["dot", f"-T{ext}", "-o", path], input=to_dot(root).encode(), check=True)
    else:
        _draw_matplotlib(root, path)
    return path


def _draw_matplotlib(root: Tensor, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = _nodes(root)
    depth: dict[int, int] = {}
    for n in nodes:  # inputs come first, so their depth is known
        depth[n.index] = 1 + max((depth[i] for i in n.inputs), default=-1)
    layers: dict[int, list[Node]] = {}
    for n in nodes:
        layers.setdefault(depth[n.index], []).append(n)
    pos = {}
    for d, members in layers.items():
        for j, n in enumerate(members):
            pos[n.index] = (j - (len(members) - 1) / 2, d)
    width = max(len(m) for m in layers.values())
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * width), max(4, 1.1 * len(layers))))
    for n in nodes:
        x, y = pos[n.index]
        for i in n.inputs:
            x0, y0 = pos[i]
            ax.annotate("", xy=(x, y - 0.22), xytext=(x0, y0 + 0.22), arrowprops={"arrowstyle": "->", "color": "#777"})
        ax.text(
            x, y, f"{n.label}\n{n.shape}", ha="center", va="center", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": COLOURS[n.kind], "edgecolor": "#555"},
        )
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), loc="upper left", fontsize=7, frameon=False)
    xs = [p[0] for p in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(-0.7, max(depth.values()) + 0.7)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _atomic_write_text(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
