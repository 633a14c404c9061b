"""The computation graph as text and as a slide-ready picture (Graphviz and the matplotlib fallback)."""

import re

import numpy as np
import pytest

import minivae as mv
from minivae.graphview import Geometry, draw_graph, edges_through_boxes, retain_grads
from minivae.models import build_model
from minivae.random import Generator

ENGINES = ("dot", "matplotlib")  # CI installs Graphviz (.ci/run); the fallback is forced by name


def small_vae_loss():
    rng = mv.random.Generator(0)
    enc = mv.nn.Linear(4, 4, rng=rng)
    enc.weight.name = "encoder.weight"
    x = mv.tensor(np.ones((2, 4)), dtype="float32")
    h = enc(x)
    mu, logvar = h[:, :2], h[:, 2:]
    z = mv.Normal(mu, logvar).rsample(rng=rng)
    return (z * z).sum() + mv.kl_normal_standard(mu, logvar).sum()


def vae_loss():
    """A digits-sized VAE's loss (64 pixels, 2-D latent): the graph the README shows."""
    model = build_model("vae", 64, 2, [128], Generator(0))
    x = np.random.default_rng(0).random((8, 64)).astype("float32")
    return model, model.loss(x, None, Generator(1))["loss"]


def test_graph_summary_lists_ops_parameters_noise_and_stochastic_node():
    text = mv.graph_summary(small_vae_loss())
    assert "encoder.weight" in text and "parameter" in text
    assert "rsample" in text and "stochastic" in text
    assert "kl_normal_standard" in text and "linear" in text
    # ε is an input of the sampling node: its row comes before rsample's, which lists it.
    rows = {line.split()[1]: line for line in text.splitlines()[1:]}
    eps_index = next(line.split()[0] for line in text.splitlines() if "ε" in line)
    assert f"#{eps_index}" in rows["rsample"]


@pytest.mark.parametrize("engine", ENGINES)
def test_vae_graph_layout_has_no_edge_through_a_box_and_reads_at_full_screen(engine):
    model, loss = vae_loss()
    picture = draw_graph(loss, module=model, engine=engine)
    geometry = picture.geometry()
    assert picture.engine == engine
    assert edges_through_boxes(geometry) == []
    assert geometry.fullscreen_font_px >= 14
    # Layered left to right: every edge ends right of where it starts, and the loss is the rightmost box.
    assert len(geometry.edges) >= 25
    for _, _, path in geometry.edges:
        assert path[-1][0] > path[0][0]
    root = max(geometry.boxes, key=lambda name: geometry.boxes[name][0])
    assert root == f"n{len(picture.nodes) - 1}" and picture.nodes[-1].kind == "output"


@pytest.mark.parametrize("name", ["iwae", "cvae", "dae", "bvae", "vqvae", "madevae"])
def test_every_models_loss_graph_has_no_edge_through_a_box(name):
    model = build_model(name, 16, 2, [8, 8], Generator(0), num_classes=3)
    x = (np.random.default_rng(0).random((4, 16)) > 0.5).astype("float32")
    loss = model.loss(x, np.arange(4) % 3, Generator(1))["loss"]
    for engine in ENGINES:
        picture = draw_graph(loss, module=model, engine=engine)
        assert edges_through_boxes(picture.geometry()) == [], (name, engine)
        assert not any(n.label == "parameter" for n in picture.nodes)  # every parameter by its name


def test_the_box_crossing_check_finds_a_crossing():
    boxes = {"a": (0, 0, 10, 10), "b": (50, 0, 60, 10), "c": (25, -5, 35, 15)}
    through = Geometry(100, 20, 16, boxes, [("a", "b", [(10, 5), (50, 5)])])
    around = Geometry(100, 20, 16, boxes, [("a", "b", [(10, 5), (20, 20), (40, 20), (50, 5)])])
    assert edges_through_boxes(through) == [("a", "b", "c")]
    assert edges_through_boxes(around) == []
    assert through.fullscreen_font_px == pytest.approx(16 * 1920 / 100 if 1920 / 100 < 1080 / 20 else 16 * 54)


@pytest.mark.parametrize("engine", ENGINES)
def test_names_constants_noise_and_stochastic_style_appear_in_png_and_svg(engine, tmp_path):
    model, loss = vae_loss()
    picture = draw_graph(loss, tmp_path / "graph.svg", module=model, engine=engine)
    svg = open(picture, encoding="utf-8").read()  # the picture is os.PathLike once saved
    for text in ("encoder.mu.weight", "decoder.net.2.bias", "ε ~ N(0, I)", "rsample", "stochastic node",
                 "double red border"):
        assert text in svg.replace("&#45;", "-"), text
    assert "input" in svg and ">1<" in svg.replace(" ", "")  # β = 1 by its value
    png = draw_graph(loss, tmp_path / "graph.png", module=model, engine=engine)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    kinds = {n.label: n.kind for n in picture.nodes}
    assert kinds["rsample"] == "stochastic" and kinds["ε ~ N(0, I)"] == "noise" and kinds["1"] == "constant"
    assert kinds["encoder.body.0.weight"] == "parameter"


def test_dot_source_marks_stochastic_nodes_and_noise():
    dot = mv.graphview.to_dot(small_vae_loss())
    stochastic = [line for line in dot.splitlines() if "rsample" in line]
    assert stochastic and "peripheries=2" in stochastic[0]
    noise = [line for line in dot.splitlines() if "ε" in line]
    assert noise and "dashed" in noise[0]
    assert "rankdir=LR" in dot and "legend:" in dot


@pytest.mark.parametrize("engine", ENGINES)
def test_jupyter_reprs(engine):
    picture = draw_graph(small_vae_loss(), engine=engine)
    assert picture.path is None
    assert "<svg" in picture._repr_svg_()
    assert picture._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(TypeError, match="not saved"):
        open(picture)


def test_values_small_in_full_large_as_statistics_and_the_noise_is_the_sample_noise():
    rng = Generator(3)
    mu = mv.tensor(np.zeros((2, 3)), requires_grad=True, dtype="float64")
    logvar = mv.tensor(np.zeros((2, 3)), requires_grad=True, dtype="float64")
    z = mv.Normal(mu, logvar).rsample(rng=rng)
    big = mv.tensor(np.arange(20.0).reshape(4, 5), dtype="float64", requires_grad=True)
    loss = (z * z).sum() + big.sum()
    nodes = {n.label: n for n in mv.graphview._nodes(loss, "value")}
    eps = nodes["ε ~ N(0, I)"]
    assert eps.detail.startswith("value [[") and f"{z.eps[0, 0]:.3f}"[:5] in eps.detail  # 6 numbers: in full
    summed = [n for n in nodes.values() if n.kind == "parameter" and n.shape == (4, 5)][0]
    assert "mean 9.5" in summed.detail and "min 0 max 19" in summed.detail  # 20 numbers: statistics
    np.testing.assert_array_equal(z.numpy(), z.eps)  # mu = 0, sd = 1: drawing changed no number


def test_gradients_after_backward():
    w = mv.tensor([[2.0]], requires_grad=True, dtype="float64")
    w.name = "w"
    x = mv.tensor(np.full((1, 1), 3.0), dtype="float64")
    x.name = "x"
    y = x @ w
    loss = (y * y).sum()  # y = 6: d/dy = 2y = 12, d/dw = x · 12 = 36
    retain_grads(loss)
    loss.backward(retain_graph=True)
    nodes = {n.label: n for n in mv.graphview._nodes(loss, "grad")}
    assert nodes["w"].detail == "grad [[36.]]"
    assert nodes["matmul"].detail == "grad [[12.]]"
    assert nodes["x"].detail == "no gradient (data)"
    assert "grad [[36.]]" in draw_graph(loss, contents="grad", engine="matplotlib")._repr_svg_()
    retained_nothing = (x @ w).sum()
    retained_nothing.backward(retain_graph=True)
    assert {n.label: n.detail for n in mv.graphview._nodes(retained_nothing, "grad")}["matmul"] == (
        "no gradient kept (see retain_grads)")


def test_a_gradient_from_an_earlier_backward_is_never_drawn_as_this_graphs():
    """Found in QA: after a training step the parameters still hold its .grad; drawing the next
    step's graph with contents="grad" showed those as if they were the new graph's."""
    w = mv.tensor([[2.0]], requires_grad=True, dtype="float64")
    w.name = "w"
    x = mv.tensor(np.full((1, 1), 3.0), dtype="float64")
    (x @ w).sum().backward()  # step 1: w.grad = 3
    loss = ((x @ w) * 2.0).sum()  # step 2's forward, no backward yet
    with pytest.raises(ValueError, match=r"^draw_graph\(contents='grad'\): no backward\(\) has reached this tensor.*"
                                         r"call mv\.graphview\.retain_grads\(loss\)"):
        draw_graph(loss, contents="grad", engine="matplotlib")
    loss.backward(retain_graph=True)  # without zero_grad: w.grad = 3 + 6, summed over two passes
    assert {n.label: n.detail for n in mv.graphview._nodes(loss, "grad")}["w"] == (
        "grad [[9.]]\n(summed over several backward(); zero_grad()?)")
    w.grad = None
    again = ((x @ w) * 2.0).sum()
    again.backward(retain_graph=True)
    assert {n.label: n.detail for n in mv.graphview._nodes(again, "grad")}["w"] == "grad [[6.]]"
    other = (x @ w).sum()
    other.backward(retain_graph=True)  # a later backward through another graph writes w.grad
    stale = {n.label: n.detail for n in mv.graphview._nodes(again, "grad")}["w"]
    assert stale == "grad [[9.]]\n(written by another backward(), not this graph's)"
    assert callable(mv.graphview.retain_grads)  # the function the message names exists there


def test_a_grad_set_by_hand_is_told_apart_from_one_a_backward_summed():
    """Found in QA: zeroing .grad by hand, then one backward(), was marked 'summed over several'."""
    w = mv.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    w.name = "w"
    (w * 3.0).sum().backward()
    w.grad = np.zeros(2)  # a student's zero_grad
    loss = (w * 3.0).sum()
    loss.backward(retain_graph=True)
    assert {n.label: n.detail for n in mv.graphview._nodes(loss, "grad")}["w"] == (
        "grad [3., 3.]\n(added to a .grad that was set by hand)")
    w.grad = np.ones(2)  # set after the backward: not the backward's numbers at all
    assert {n.label: n.detail for n in mv.graphview._nodes(loss, "grad")}["w"] == "grad [1., 1.]\n(set by hand, not by a backward())"
    w.grad = None
    fresh = (w * 3.0).sum()
    fresh.backward(retain_graph=True)
    assert {n.label: n.detail for n in mv.graphview._nodes(fresh, "grad")}["w"] == "grad [3., 3.]"


def test_a_tensor_inside_a_graph_a_backward_reached_can_be_drawn_with_its_gradients():
    """Found in QA: drawing an intermediate z (or one term of a summed loss) was refused."""
    w = mv.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    z = w * 3.0
    part = (z * z).sum()
    other = w.sum()
    total = part + other
    retain_grads(total)
    total.backward(retain_graph=True)
    for root, expected in ((z, "grad [ 6., 12.]"), (part, "grad 1")):
        details = {n.label: n.detail for n in mv.graphview._nodes(root, "grad")}
        assert details["mul"] == expected if root is z else details["sum"] == expected
        assert details["parameter"] == "grad [19., 37.]"  # 2·z·3 + 1, this backward's own
    with pytest.raises(ValueError, match="no backward"):
        mv.graphview._nodes((w * 5.0).sum(), "grad")  # a new graph no backward has reached


def test_a_freed_graph_and_bad_arguments_are_one_line_errors(tmp_path):
    w = mv.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf or \.dot"):
        draw_graph(loss, str(tmp_path / "graph.jpg"))
    with pytest.raises(ValueError, match="contents must be one of shape, value, grad"):
        draw_graph(loss, contents="values")
    with pytest.raises(ValueError, match="engine must be one of"):
        draw_graph(loss, engine="tikz")
    with pytest.raises(TypeError, match="expected a Tensor"):
        draw_graph(np.ones(3))
    loss.backward()
    with pytest.raises(ValueError, match="already freed"):
        draw_graph(loss)
    assert not list(tmp_path.iterdir())  # nothing written by a refused call
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OSError, match=r"draw_graph: cannot write .*file/graph.png"):
        draw_graph(small_vae_loss(), tmp_path / "file" / "graph.png")
    assert (tmp_path / "file").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_draw_graph_writes_dot_and_a_zero_d_graph(tmp_path):
    dot = open(draw_graph(small_vae_loss(), str(tmp_path / "graph.dot"))).read()
    assert dot.startswith("digraph") and "rsample" in dot and "->" in dot
    scalar = mv.tensor(2.0, requires_grad=True) * 3.0  # a 0-d graph with a constant operand
    for engine in ENGINES:
        picture = draw_graph(scalar, engine=engine)
        assert [n.kind for n in picture.nodes] == ["parameter", "constant", "output"]
        assert edges_through_boxes(picture.geometry()) == []
    assert re.search(r'label="3\\n\(\) float32"', mv.graphview.to_dot(scalar))


def test_a_graph_that_was_never_recorded_or_was_freed_is_an_error_for_the_summary_too(tmp_path):
    """Found in QA: a teacher's `b = mv.tensor(2.0) * 3` (no input requires grad) or a loss computed
    under no_grad() drew one lone box, and graph_summary of a freed graph printed one line."""
    a = mv.tensor(2.0)
    with mv.no_grad():
        under_no_grad = mv.tensor(2.0, requires_grad=True) * 3.0
    for lone in (a * 3.0, under_no_grad):
        for draw in (lambda: draw_graph(lone, tmp_path / "g.png"), lambda: mv.graph_summary(lone)):
            with pytest.raises(ValueError, match=r"from 'mul' has no recorded graph: .*no_grad\(\).*requires_grad=True"):
                draw()
    w = mv.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    loss.backward()
    with pytest.raises(ValueError, match=r"^graph_summary: backward\(\) already freed this graph"):
        mv.graph_summary(loss)
    assert not list(tmp_path.iterdir())
    assert "constant" in mv.graph_summary(a) and "mul" in mv.graph_summary(mv.tensor(2.0, requires_grad=True) * 3.0)


@pytest.mark.parametrize("engine", ["dot", "matplotlib"])
@pytest.mark.parametrize("build, op, formula", [
    (lambda x, y: x - y, "sub", "a − b"), (lambda x, y: y - x, "sub", "a − b"),
    (lambda x, y: x / y, "div", "a ÷ b"), (lambda x, y: x ** y, "pow", "aᵇ"),
    (lambda x, y: x[:, None] @ y[None, :], "matmul", "a @ b"),
    (lambda x, y: x - x, "sub", "a − b"),  # two edges from one box: the labels must still be apart
])
def test_a_box_whose_inputs_are_not_interchangeable_says_which_edge_is_which(engine, build, op, formula):
    """Found in QA: x - y and y - x drew the same picture."""
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = mv.tensor([3.0, 4.0], requires_grad=True)
    x.name, y.name = "x", "y"
    out = build(x, y)
    picture = draw_graph(out.sum(), engine=engine)
    nodes = {n.label: n for n in picture.nodes}
    node = nodes[op]
    assert node.formula == formula and node.lines()[0] == f"{op}: {formula}" and node.edge_labels == ["a", "b"]
    a, b = out.parents  # the edge named a comes from the first operand (y in y - x), b from the second
    assert [picture.nodes[i].label for i in node.inputs] == [t.name or t.op for t in (a, b)]
    dot = picture.dot_source
    assert f'n{node.inputs[0]} -> n{node.index} [label=" a "' in dot and f'n{node.inputs[1]} -> n{node.index} [label=" b "' in dot
    assert nodes["sum"].edge_labels == [""] and nodes["sum"].formula == ""  # one input: nothing to tell apart
    if engine == "matplotlib":
        geometry = picture.geometry()
        labels = [text for text, _, _ in geometry.edge_labels]
        assert labels == ["a", "b"]
        for _, lx, ly in geometry.edge_labels:  # a label sits between columns, never on a box
            assert not any(x0 <= lx <= x1 and y0 <= ly <= y1 for x0, y0, x1, y1 in geometry.boxes.values())
        (_, ax, ay), (_, bx, by) = geometry.edge_labels
        assert abs(ay - by) >= geometry.font * 0.5 or abs(ax - bx) >= geometry.font  # apart, readable
        svg = picture._repr_svg_()
        assert f"{op}: {formula}" in svg


def test_a_pictures_repr_is_one_short_line():
    """A notebook's text view of the picture (and print) used to dump every node and the DOT source."""
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    picture = draw_graph((x * x).sum(), engine="matplotlib")
    assert repr(picture) == "GraphPicture(3 nodes, engine='matplotlib')"
