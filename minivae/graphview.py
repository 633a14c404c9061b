"""Show the computation graph behind a tensor, as text or as a slide-ready picture.

``graph_summary(loss)`` lists every node, inputs first. ``draw_graph(loss)`` returns a
:class:`GraphPicture`: Jupyter shows it inline (``_repr_svg_``/``_repr_png_``), and
``draw_graph(loss, "graph.png")`` (or ``.svg``, ``.pdf``, ``.dot``) also saves it.

What the picture shows, and why:

- **A layered layout**, inputs on the left and the loss on the right, so it reads like
  the forward pass; every edge runs from one column to the next (a long edge is routed
  through the columns it crosses, in a lane of its own), so no edge passes through a box.
- **Leaves by what they are**: parameters by their dotted names (``encoder.mu.weight``),
  constants by their value (β of ``recon + β·KL`` shows as ``1``), and the noise ε of a
  sampling node as its own input, the point of the reparameterization trick.
- **Stochastic nodes drawn distinctly** (a double red border; the noise dashed), and a
  legend that says so.
- **Per-node contents**: ``contents="shape"`` (shape and dtype, the default), ``"value"``
  or ``"grad"`` (after ``backward()``); a tensor of at most 6 numbers is shown in full,
  a larger one as mean, sd, min and max.
- **Sized for a slide**: at 1920×1080 full screen the text is at least 14 px for a
  VAE-sized graph (``GraphPicture.fullscreen_font_px`` says what it is).

With Graphviz's ``dot`` on the PATH (Debian/Ubuntu: ``apt-get install graphviz``; macOS:
``brew install graphviz``) Graphviz lays the graph out; without it, matplotlib draws the
same picture with the layout below. ``engine="matplotlib"`` forces the fallback.

``backward()`` frees the graph: to draw gradients, call :func:`retain_grads` on the
loss, then ``loss.backward(retain_graph=True)``, then ``draw_graph(loss, contents="grad")``.
"""

from __future__ import annotations

import html
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from minivae.files import atomic_write_bytes
from minivae.tensor import Tensor, grad_written_by_backward

#: Fill colours by node kind (the legend lists them in this order).
COLOURS = {
    "parameter": "#cfe8ff", "input": "#eeeeee", "constant": "#ffffff", "noise": "#e8dcff",
    "op": "#fff4c2", "stochastic": "#ffc9c9", "output": "#d3f5d3",
}
LEGEND = {
    "parameter": "parameter", "input": "data input", "constant": "constant",
    "noise": "noise ε ~ N(0, I) (dashed)", "op": "operation",
    "stochastic": "stochastic node (double red border)", "output": "output",
}
STOCHASTIC_EDGE = "#c0392b"
CONTENTS = ("shape", "value", "grad")
ENGINES = ("auto", "dot", "matplotlib")
FORMATS = ("png", "svg", "pdf", "dot")
FONT_PX = 16  # text size in layout units (px at 72 dpi); 14 px is the floor at 1920x1080
SMALL = 6  # a tensor of at most this many numbers is shown in full


@dataclass
class Node:
    index: int
    label: str
    kind: str  # parameter | input | constant | noise | op | stochastic | output
    shape: tuple[int, ...]
    inputs: list[int]
    detail: str = ""  # the chosen contents: shape and dtype, values or gradient
    formula: str = ""  # for an op whose inputs are not interchangeable: "a − b", with its edges named

    @property
    def edge_labels(self) -> list[str]:
        """One per input: "a" and "b" for a node with a formula, "" (unnamed) otherwise."""
        return ["a", "b"] if self.formula else [""] * len(self.inputs)

    def lines(self) -> list[str]:
        """The text of the box: its title, then the detail's lines."""
        title = f"{self.label}: {self.formula}" if self.formula else self.label
        return [title, *(self.detail.split("\n") if self.detail else [])]


# Ops whose two inputs are not interchangeable: the box says the formula, each edge which operand.
OPERANDS = {"sub": "a − b", "div": "a ÷ b", "pow": "aᵇ", "matmul": "a @ b"}


def display_name(op: str) -> str:
    """How a node is labelled: a fused node shows the steps it fuses, e.g. the dense
    layer ``linear+relu`` as ``linear → relu (fused)``, so the picture keeps the two
    steps a course draws while the engine runs them as one node."""
    if "+" not in op:
        return op
    return " → ".join(op.split("+")) + " (fused)"


def _parents(t: Tensor) -> tuple[Tensor, ...]:
    return tuple(t.parents)


def _tensors(root: Tensor) -> list[Tensor]:
    """Every tensor reachable from ``root``, each after its inputs (iterative depth-first search)."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, expanded = stack.pop()
        if expanded:
            order.append(t)
            continue
        if id(t) in seen:  # identity, never `==` (elementwise on tensors)
            continue
        seen.add(id(t))
        stack.append((t, True))
        stack.extend((p, False) for p in reversed(_parents(t)) if id(p) not in seen)
    return order


def _summary(values: Any, what: str) -> str:
    """A tensor's numbers for a box: all of them when few, else mean, sd, min and max."""
    a = np.asarray(values, dtype=np.float64)
    if a.size <= SMALL:
        text = np.array2string(a, precision=3, separator=", ", suppress_small=True) if a.ndim else f"{float(a):.4g}"
        return f"{what} {text}"
    return (f"{what} mean {a.mean():.3g} sd {a.std():.3g}\n"
            f"min {a.min():.3g} max {a.max():.3g}")


def _constant_text(t: Tensor) -> str:
    a = t.numpy()
    if a.ndim == 0:
        return f"{float(a):g}"
    return np.array2string(a, precision=3, separator=", ")


def _nodes(root: Tensor, contents: str = "shape", names: dict[int, str] | None = None) -> list[Node]:
    """The graph's nodes, inputs first; the noise of each sampling node becomes a node of its own."""
    if contents not in CONTENTS:
        raise ValueError(f"draw_graph: contents must be one of {', '.join(CONTENTS)}, got {contents!r}")
    this_pass = getattr(root, "_backward_pass", None)
    if this_pass is None and grad_written_by_backward(root):  # part of a graph a backward went through
        this_pass = root._grad_record[1]
    if contents == "grad" and this_pass is None and root.requires_grad:
        # the parameters' .grad would be another step's: drawn here they would look like this graph's
        raise ValueError("draw_graph(contents='grad'): no backward() has reached this tensor, so the .grad in its "
                         "graph belong to other backward passes; call mv.graphview.retain_grads(loss), then "
                         "loss.backward(retain_graph=True), then draw loss or any tensor in its graph")
    names = names or {}
    order = _tensors(root)
    nodes: list[Node] = []
    index: dict[int, int] = {}
    for t in order:
        inputs = [index[id(p)] for p in _parents(t)]
        eps = getattr(t, "eps", None)
        if t.stochastic and eps is not None:
            # z = mu + σ·ε: ε is an input of the sampling node; the engine keeps it as an
            # array (a constant of the graph), so it is drawn from there, its numbers unchanged.
            eps = np.asarray(eps.get() if hasattr(eps, "get") else eps)
            detail = (f"{tuple(eps.shape)} {eps.dtype}" if contents == "shape"
                      else _summary(eps, "value") if contents == "value" else "no gradient (a constant)")
            nodes.append(Node(len(nodes), "ε ~ N(0, I)", "noise", tuple(eps.shape), [], detail))
            inputs.append(nodes[-1].index)
        if _parents(t) or t.op != "input":
            kind = "stochastic" if t.stochastic else "op"
            label = display_name(t.op)
        elif t.requires_grad:
            kind, label = "parameter", t.name or names.get(id(t)) or "parameter"
        elif t.name:
            kind, label = "input", t.name
        elif t.size <= 4:
            kind, label = "constant", _constant_text(t)
        else:
            kind, label = "input", "input"
        if t is root and kind == "op":
            kind = "output"
        if contents == "shape":
            detail = f"{t.shape} {t.dtype}"
        elif contents == "value":
            detail = "" if kind == "constant" else _summary(t.numpy(), "value")
        elif not t.requires_grad:
            detail = "no gradient (a constant)" if kind == "constant" else "no gradient (data)"
        else:
            detail = _grad_detail(t, this_pass)
        formula = OPERANDS.get(t.op, "") if kind in ("op", "output") and len(inputs) == 2 else ""
        index[id(t)] = len(nodes)
        nodes.append(Node(len(nodes), label, kind, t.shape, inputs, detail, formula))
    return nodes


def _grad_detail(t: Tensor, this_pass: int | None) -> str:
    """A node's ``.grad`` for the drawing, saying when it is not (only) this graph's backward."""
    grad = t.grad
    if grad is None:
        return "no gradient kept (see retain_grads)"
    text = _summary(grad.get() if hasattr(grad, "get") else grad, "grad")
    if not grad_written_by_backward(t):
        return text + "\n(set by hand, not by a backward())"
    first, last, _ = t._grad_record
    if last != this_pass:
        return text + "\n(written by another backward(), not this graph's)"
    if first is None:
        return text + "\n(added to a .grad that was set by hand)"
    if first != last:
        return text + "\n(summed over several backward(); zero_grad()?)"
    return text


def _parameter_names(module: Any) -> dict[int, str]:
    """id(parameter) -> dotted name, from a module's ``named_parameters()``."""
    if module is None:
        return {}
    if not hasattr(module, "named_parameters"):
        raise TypeError(f"draw_graph: module must be a minivae Module (to name its parameters), got {type(module).__name__}")
    return {id(p): name for name, p in module.named_parameters()}


def retain_grads(root: Tensor) -> Tensor:
    """Mark every node behind ``root`` to keep its ``.grad`` after backward, so a drawing
    with ``contents="grad"`` shows intermediate gradients too; returns ``root``."""
    for t in _tensors(root):
        if _parents(t):
            t.retain_grad()
    return root


def _check_root(root: Any, what: str) -> None:
    """The graph behind ``root`` can be drawn: a Tensor whose graph is recorded and not freed."""
    if not isinstance(root, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(root).__name__}")
    if getattr(root, "_freed", False):
        raise ValueError(f"{what}: backward() already freed this graph; call retain_grads(loss) and "
                         "loss.backward(retain_graph=True) to draw it with its gradients")
    if root.op != "input" and not root.parents and not root.requires_grad:  # one lone box, not a graph
        raise ValueError(
            f"{what}: this tensor from '{root.op}' has no recorded graph: it was computed under no_grad() or "
            "from inputs none of which requires grad; give an input requires_grad=True (parameters have it) "
            "and compute it outside no_grad()"
        )


def graph_summary(root: Tensor, module: Any = None) -> str:
    """One line per node: index, op or name, kind, output shape, and which nodes feed it."""
    _check_root(root, "graph_summary")
    lines = [f"{'#':>3}  {'node':<28} {'kind':<10} {'shape':<16} inputs"]
    for n in _nodes(root, names=_parameter_names(module)):
        inputs = ", ".join(f"#{i}" for i in n.inputs) or "-"
        lines.append(f"{n.index:>3}  {n.label:<28} {n.kind:<10} {str(n.shape):<16} {inputs}")
    return "\n".join(lines)


# =============================================================================
# Graphviz
# =============================================================================


def _dot_attributes(kind: str) -> str:
    style = {"stochastic": 'style="filled,bold", peripheries=2, color="#c0392b"',
             "noise": 'style="filled,dashed"', "constant": 'style="filled"'}.get(kind, 'style="rounded,filled"')
    return f'{style}, fillcolor="{COLOURS[kind]}"'


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_label(n: Node) -> str:
    return "\\n".join(_dot_text(line) for line in n.lines())


def _legend_html() -> str:
    cells = "".join(
        f'<TD BGCOLOR="{COLOURS[k]}" BORDER="1" COLOR="{"#c0392b" if k == "stochastic" else "#555555"}">'
        f"{html.escape(text)}</TD>" for k, text in LEGEND.items())
    return f'<<TABLE BORDER="0" CELLSPACING="6" CELLPADDING="4"><TR><TD>legend:</TD>{cells}</TR></TABLE>>'


def to_dot(root: Tensor, contents: str = "shape", module: Any = None) -> str:
    """The graph in Graphviz DOT language (left to right, with a legend)."""
    nodes = _nodes(root, contents, _parameter_names(module))
    out = [
        "digraph minivae {",
        "  rankdir=LR; splines=true; nodesep=0.25; ranksep=0.35; pad=0.2;",
        f'  graph [fontname="Helvetica", fontsize={FONT_PX}, labelloc=b, label={_legend_html()}];',
        f'  node [shape=box, fontname="Helvetica", fontsize={FONT_PX}, margin="0.12,0.06"];',
        f'  edge [color="#666666", arrowsize=0.8, fontname="Helvetica", fontsize={FONT_PX}];',
    ]
    for n in nodes:
        out.append(f'  n{n.index} [label="{_dot_label(n)}", {_dot_attributes(n.kind)}];')
        for i, name in zip(n.inputs, n.edge_labels):
            out.append(f'  n{i} -> n{n.index} [label=" {_dot_text(name)} ", fontcolor="#444444"];' if name
                       else f"  n{i} -> n{n.index};")
    out.append("}")
    return "\n".join(out)


def _run_dot(source: str, fmt: str) -> bytes:
    done = subprocess.run(["dot", f"-T{fmt}"], input=source.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"draw_graph: Graphviz dot -T{fmt} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _bezier_points(points: list[list[float]], steps: int = 12) -> list[tuple[float, float]]:
    """A cubic B-spline as Graphviz writes it (p0, then 3 points per piece), sampled as a polyline."""
    out = [tuple(points[0])]
    for k in range(1, len(points) - 2, 3):
        p0, p1, p2, p3 = (np.asarray(points[j]) for j in (k - 1, k, k + 1, k + 2))
        for s in np.linspace(0, 1, steps)[1:]:
            q = (1 - s) ** 3 * p0 + 3 * (1 - s) ** 2 * s * p1 + 3 * (1 - s) * s ** 2 * p2 + s ** 3 * p3
            out.append((float(q[0]), float(q[1])))
    return out


def _dot_geometry(source: str) -> "Geometry":
    """Boxes and edge paths as Graphviz laid them out (from ``dot -Tjson``), in points."""
    data = json.loads(_run_dot(source, "json"))
    x0, y0, x1, y1 = (float(v) for v in data["bb"].split(","))
    boxes, names = {}, {}
    for obj in data.get("objects", []):
        x, y = (float(v) for v in obj["pos"].split(","))
        w, h = float(obj["width"]) * 72, float(obj["height"]) * 72
        boxes[obj["name"]] = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        names[obj["_gvid"]] = obj["name"]
    edges = []
    for e in data.get("edges", []):
        path: list[tuple[float, float]] = []
        for op in e.get("_draw_", []):
            if op["op"] in ("b", "B"):
                path.extend(_bezier_points(op["points"]))
        edges.append((names[e["tail"]], names[e["head"]], path))
    return Geometry(x1 - x0, y1 - y0, FONT_PX, boxes, edges)


# =============================================================================
# The fallback layout (no Graphviz): layers, lanes for long edges, barycentre ordering
# =============================================================================


@dataclass
class Geometry:
    """Where everything is: canvas size, the text size, node boxes and edge polylines (same units)."""

    width: float
    height: float
    font: float
    boxes: dict[str, tuple[float, float, float, float]]  # name -> (x0, y0, x1, y1)
    edges: list[tuple[str, str, list[tuple[float, float]]]]  # (from, to, polyline)
    legend_top: float = 0.0
    edge_labels: list[tuple[str, float, float]] = field(default_factory=list)  # (text, x, y): its bottom right

    @property
    def fullscreen_font_px(self) -> float:
        """The text height in pixels when the whole picture is shown fitted to a 1920x1080 screen."""
        return self.font * min(1920 / self.width, 1080 / self.height)


def _text_size(lines: list[str], size: float) -> tuple[float, float]:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(family="DejaVu Sans", size=size)
    measure = TextToPath()
    width = max(measure.get_text_width_height_descent(line, prop, ismath=False)[0] for line in lines)
    return width, len(lines) * size * 1.25


def _layers(nodes: list[Node]) -> dict[int, int]:
    """Column of each node: an op one right of its furthest input; a leaf one left of its first consumer."""
    layer: dict[int, int] = {}
    for n in nodes:  # inputs come first, so their columns are known
        layer[n.index] = 1 + max((layer[i] for i in n.inputs), default=-1)
    consumers: dict[int, list[int]] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n.index)
    for n in nodes:
        if not n.inputs and n.index in consumers:
            layer[n.index] = min(layer[c] for c in consumers[n.index]) - 1
    return layer


def _fallback_layout(nodes: list[Node]) -> Geometry:
    font, pad, gap_x, gap_y, lane = FONT_PX, 8.0, 36.0, 14.0, 10.0
    layer = _layers(nodes)
    # Long edges become chains of lane points, one per column crossed: every segment then
    # joins neighbouring columns, and a lane has its own slot in its column, so no edge
    # can pass through a box.
    items: dict[str, dict[str, Any]] = {}
    for n in nodes:
        w, h = _text_size(n.lines(), font)
        items[f"n{n.index}"] = {"layer": layer[n.index], "w": w + 2 * pad, "h": h + 2 * pad}
    chains, entries = [], []  # entries[c]: (how many inputs its node has, the edge's label)
    for n in nodes:
        for i, edge_label in zip(n.inputs, n.edge_labels):
            chain = [f"n{i}"]
            for col in range(layer[i] + 1, layer[n.index]):
                name = f"d{i}_{n.index}_{col}"
                items[name] = {"layer": col, "w": 0.0, "h": lane}
                chain.append(name)
            chains.append(chain + [f"n{n.index}"])
            entries.append((len(n.inputs), edge_label))
    columns: dict[int, list[str]] = {}
    for name, item in items.items():  # insertion order = topological order: a good start
        columns.setdefault(item["layer"], []).append(name)
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            succs.setdefault(a, []).append(b)
            preds.setdefault(b, []).append(a)
    # Barycentre sweeps: order each column by the mean position of its neighbours (fewer crossings).
    last = max(columns)
    for sweep in range(8):
        forward = sweep % 2 == 0
        for col in (range(1, last + 1) if forward else range(last - 1, -1, -1)):
            ref = columns.get(col - 1 if forward else col + 1, [])
            where = {name: k for k, name in enumerate(ref)}
            links = preds if forward else succs

            def centre(name: str, k: int) -> float:
                linked = [where[m] for m in links.get(name, []) if m in where]
                return sum(linked) / len(linked) if linked else k
            columns[col] = [name for _, name in sorted(
                ((centre(name, k), k), name) for k, name in enumerate(columns.get(col, [])))]
    # Coordinates: equal-width boxes per column (so every edge leaves and enters at a column's
    # edge), each column centred vertically.
    col_width = {c: max(items[name]["w"] for name in names) for c, names in columns.items()}
    col_height = {c: sum(items[name]["h"] for name in names) + gap_y * (len(names) - 1) for c, names in columns.items()}
    total_h = max(col_height.values())
    margin, x = 20.0, 20.0
    boxes: dict[str, tuple[float, float, float, float]] = {}
    for c in range(0, last + 1):
        if c not in columns:
            continue
        y = margin + (total_h - col_height[c]) / 2
        for name in columns[c]:
            boxes[name] = (x, y, x + col_width[c], y + items[name]["h"])
            y += items[name]["h"] + gap_y
        x += col_width[c] + gap_x
    # A node's inputs enter at their own heights, in the order their edges arrive from the
    # previous column (so they never cross there); the named ones carry a label.
    arrivals: dict[str, list[tuple[float, int]]] = {}
    for c, chain in enumerate(chains):
        _, top, _, bottom = boxes[chain[-2]]
        arrivals.setdefault(chain[-1], []).append(((top + bottom) / 2, c))
    slot_of = {c: rank for arriving in arrivals.values() for rank, (_, c) in enumerate(sorted(arriving))}
    edges, edge_labels = [], []
    for c, (chain, (slots, edge_label)) in enumerate(zip(chains, entries)):
        slot = slot_of[c]
        path = []
        for k, name in enumerate(chain):
            x0, y0, x1, y1 = boxes[name]
            mid = (y0 + y1) / 2
            if k > 0:  # enter at the left (the last box: at this input's height)
                path.append((x0, y0 + (y1 - y0) * (slot + 1) / (slots + 1) if k == len(chain) - 1 else mid))
            if k < len(chain) - 1:
                path.append((x1, mid))  # leave at the right
        edges.append((chain[0], chain[-1], path))
        if edge_label:  # just above the arrow's head: inputs enter at their own heights, so even
            hx, hy = path[-1]  # two edges from one box (x - x) keep their labels apart
            edge_labels.append((edge_label, hx - 4, hy - 2))
    real = {name: box for name, box in boxes.items() if name.startswith("n")}
    legend_top = margin + total_h + 30
    width = x - gap_x + margin
    legend_width = sum(_text_size([t], font)[0] + 2 * pad + 40 for t in LEGEND.values()) / 2 + margin
    height = legend_top + 2 * (font * 1.25 + 2 * pad + 8) + margin
    return Geometry(max(width, legend_width), height, font, real, edges, legend_top, edge_labels)


def _draw_fallback(nodes: list[Node], geometry: Geometry, fmt: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    g = geometry
    fig = Figure(figsize=(g.width / 72, g.height / 72), dpi=72)  # 1 layout unit = 1 pt = 1 px at 72 dpi
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, g.width)
    ax.set_ylim(g.height, 0)
    ax.axis("off")
    by_name = {f"n{n.index}": n for n in nodes}

    def box(x0: float, y0: float, x1: float, y1: float, kind: str) -> None:
        style = {"linewidth": 1.2, "edgecolor": "#555555", "facecolor": COLOURS[kind]}
        if kind == "noise":
            style["linestyle"] = (0, (4, 3))
        if kind == "stochastic":
            style.update(edgecolor=STOCHASTIC_EDGE, linewidth=1.8)
            ax.add_patch(FancyBboxPatch((x0 - 3, y0 - 3), x1 - x0 + 6, y1 - y0 + 6, boxstyle="round,pad=0,rounding_size=6",
                                        facecolor="none", edgecolor=STOCHASTIC_EDGE, linewidth=1.8))
        shape = "square,pad=0" if kind in ("constant", "noise", "stochastic") else "round,pad=0,rounding_size=6"
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle=shape, **style))

    for _, _, path in g.edges:
        codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(path) - 1)
        ax.add_patch(FancyArrowPatch(path=MplPath(path, codes), arrowstyle="-|>", mutation_scale=12,
                                     color="#666666", linewidth=1.0))
    for name, (x0, y0, x1, y1) in g.boxes.items():
        n = by_name[name]
        box(x0, y0, x1, y1, n.kind)
        text = "\n".join(n.lines())
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, text, ha="center", va="center", fontsize=g.font,
                family="DejaVu Sans", linespacing=1.25)
    for text, x, y in g.edge_labels:
        ax.text(x, y, text, ha="right", va="bottom", fontsize=g.font * 0.8, family="DejaVu Sans", color="#444444")
    # The legend, two rows under the graph.
    x, y = 20.0, g.legend_top
    row_h = g.font * 1.25 + 16
    entries = list(LEGEND.items())
    for k, (kind, text) in enumerate(entries):
        if k == (len(entries) + 1) // 2:
            x, y = 20.0, y + row_h + 8
        w = _text_size([text], g.font)[0] + 16
        box(x, y, x + w, y + row_h, kind)
        ax.text(x + w / 2, y + row_h / 2, text, ha="center", va="center", fontsize=g.font, family="DejaVu Sans")
        x += w + 24
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable, smaller
        fig.savefig(buf, format=fmt, dpi=144 if fmt == "png" else 72)  # PNG at 2x for sharp text
    return buf.getvalue()


# =============================================================================
# The picture
# =============================================================================


@dataclass
class GraphPicture:
    """A drawn graph: shown inline by Jupyter, saved with :meth:`save`, measured with :meth:`geometry`."""

    nodes: list[Node]
    dot_source: str
    engine: str  # "dot" or "matplotlib"
    path: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        # short: a notebook's text view (and print) should not dump the DOT source
        where = f", saved to {self.path!r}" if self.path else ""
        return f"GraphPicture({len(self.nodes)} nodes, engine={self.engine!r}{where})"

    def geometry(self) -> Geometry:
        """Node boxes and edge polylines as drawn (for checks such as 'no edge crosses a box')."""
        if "geometry" not in self._cache:
            self._cache["geometry"] = (_dot_geometry(self.dot_source) if self.engine == "dot"
                                       else _fallback_layout(self.nodes))
        return self._cache["geometry"]

    @property
    def fullscreen_font_px(self) -> float:
        return self.geometry().fullscreen_font_px

    def render(self, fmt: str) -> bytes:
        """The picture as PNG, SVG, PDF or DOT bytes."""
        if fmt not in FORMATS:
            raise ValueError(f"draw_graph: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if fmt == "dot":
            return self.dot_source.encode()
        if self.engine == "dot":
            return _run_dot(self.dot_source, fmt)
        return _draw_fallback(self.nodes, self.geometry(), fmt)

    def save(self, path: str | os.PathLike) -> str:
        """Write to ``path`` (the format from its suffix), atomically; returns the path."""
        path = os.fspath(path)
        fmt = os.path.splitext(path)[1].lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"draw_graph: cannot write {path!r}; use a .png, .svg, .pdf or .dot path")
        data = self.render(fmt)
        try:  # a reader sees the old picture or the new one, never half of one
            atomic_write_bytes(path, data)
        except OSError as err:
            raise OSError(f"draw_graph: cannot write {path!r} ({err.strerror or err})") from None
        self.path = path
        return path

    def __fspath__(self) -> str:
        if self.path is None:
            raise TypeError("draw_graph: this picture was not saved; pass a path to draw_graph or call .save(path)")
        return self.path

    def _repr_svg_(self) -> str:
        return self.render("svg").decode()

    def _repr_png_(self) -> bytes:
        return self.render("png")


def draw_graph(
    root: Tensor,
    path: str | os.PathLike | None = None,
    *,
    contents: str = "shape",
    module: Any = None,
    engine: str = "auto",
) -> GraphPicture:
    """Draw the graph behind ``root``; with ``path`` (.png, .svg, .pdf or .dot) also save it there.

    ``contents``: ``"shape"`` (shape and dtype), ``"value"`` or ``"grad"`` per node.
    ``module``: a Module whose ``named_parameters()`` name the parameters (when they carry no name).
    ``engine``: ``"auto"`` (Graphviz ``dot`` when installed, else matplotlib), ``"dot"`` or ``"matplotlib"``.
    """
    _check_root(root, "draw_graph")
    if engine not in ENGINES:
        raise ValueError(f"draw_graph: engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if path is not None:
        fmt = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
        if fmt not in FORMATS:
            raise ValueError(f"draw_graph: cannot write {os.fspath(path)!r}; use a .png, .svg, .pdf or .dot path")
    has_dot = shutil.which("dot") is not None
    if engine == "dot" and not has_dot:
        raise RuntimeError("draw_graph: engine='dot' needs Graphviz's dot program (apt-get install graphviz)")
    chosen = "dot" if engine == "dot" or (engine == "auto" and has_dot) else "matplotlib"
    names = _parameter_names(module)
    picture = GraphPicture(_nodes(root, contents, names), to_dot(root, contents, module), chosen)
    if path is not None:
        picture.save(path)
    return picture


def edges_through_boxes(geometry: Geometry, slack: float = 1.0) -> list[tuple[str, str, str]]:
    """(from, to, box) for every edge whose path enters a box other than its own two ends."""
    hits = []
    for a, b, path in geometry.edges:
        for name, (x0, y0, x1, y1) in geometry.boxes.items():
            if name in (a, b):
                continue
            box = (x0 + slack, y0 + slack, x1 - slack, y1 - slack)
            if any(_segment_hits_box(p, q, box) for p, q in zip(path, path[1:])):
                hits.append((a, b, name))
    return hits


def _segment_hits_box(p: Iterable[float], q: Iterable[float], box: tuple[float, float, float, float]) -> bool:
    """Liang-Barsky clipping: does the segment p-q meet the rectangle's interior?"""
    (px, py), (qx, qy) = p, q
    x0, y0, x1, y1 = box
    dx, dy = qx - px, qy - py
    lo, hi = 0.0, 1.0
    for d, low, high, start in ((dx, x0, x1, px), (dy, y0, y1, py)):
        if d == 0:
            if not low < start < high:
                return False
            continue
        t0, t1 = (low - start) / d, (high - start) / d
        lo, hi = max(lo, min(t0, t1)), min(hi, max(t0, t1))
        if lo >= hi:
            return False
    return True
