"""The computation graph as text and as a picture."""

import numpy as np

import minivae as mv


def small_vae_loss():
    rng = mv.random.Generator(0)
    enc = mv.nn.Linear(4, 4, rng=rng)
    enc.weight.name = "encoder.weight"
    x = mv.tensor(np.ones((2, 4)), dtype="float32")
    h = enc(x)
    mu, logvar = h[:, :2], h[:, 2:]
    z = mv.Normal(mu, logvar).rsample(rng=rng)
    return (z * z).sum() + mv.kl_normal_standard(mu, logvar).sum()


def test_graph_summary_lists_ops_parameters_and_stochastic_node():
    text = mv.graph_summary(small_vae_loss())
    assert "encoder.weight" in text and "parameter" in text
    assert "rsample" in text and "stochastic" in text
    assert "kl_normal_standard" in text and "linear" in text
    assert text.count("\n") >= 10


def test_draw_graph_writes_png_and_dot(tmp_path):
    loss = small_vae_loss()
    png = mv.draw_graph(loss, str(tmp_path / "graph.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    dot = open(mv.draw_graph(loss, str(tmp_path / "graph.dot"))).read()
    assert dot.startswith("digraph") and "rsample" in dot and "->" in dot


def test_draw_graph_rejects_unknown_extension(tmp_path):
    import pytest

    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf or \.dot"):
        mv.draw_graph(small_vae_loss(), str(tmp_path / "graph.jpg"))
