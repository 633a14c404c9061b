"""Layers and modules: gradients, initialisation, state dicts, modes and errors."""

import math

import numpy as np
import pytest

import minivae as mv
from minivae import nn

RNG = np.random.default_rng(99)


def t(shape, low=-2.0, high=2.0, requires_grad=True):
    return mv.tensor(RNG.uniform(low, high, size=shape), requires_grad=requires_grad, dtype="float64")


def mlp(seed=0, dtype="float64"):
    rng = mv.random.Generator(seed)
    return nn.Sequential(
        nn.Linear(4, 5, rng=rng, dtype=dtype), nn.ReLU(),
        nn.Linear(5, 3, rng=rng, init="xavier", dtype=dtype), nn.Tanh(),
        nn.Linear(3, 3, rng=rng, dtype=dtype), nn.LeakyReLU(0.2),
        nn.Linear(3, 2, rng=rng, dtype=dtype), nn.Softplus(),
        nn.Linear(2, 2, rng=rng, dtype=dtype), nn.Sigmoid(),
    )


def test_module_parameters_gradcheck():
    model = mlp()
    x = t((6, 4), requires_grad=False)
    report = mv.gradcheck(lambda: model(x).sum(), model)
    assert report.ok
    assert [c.name for c in report.inputs][:2] == ["0.weight", "0.bias"]


def test_linear_init_statistics_and_shapes():
    layer = nn.Linear(400, 300, rng=mv.random.Generator(0))
    assert layer.weight.shape == (400, 300) and layer.bias.shape == (300,)
    assert abs(layer.weight.numpy().std() - math.sqrt(2 / 400)) < 0.002
    xav = nn.Linear(400, 300, rng=mv.random.Generator(0), init="xavier")
    assert abs(xav.weight.numpy().std() - math.sqrt(2 / 700)) < 0.002
    np.testing.assert_array_equal(layer.bias.numpy(), 0)


def test_linear_is_reproducible_from_its_generator():
    a = nn.Linear(3, 2, rng=mv.random.Generator(5)).weight.numpy()
    b = nn.Linear(3, 2, rng=mv.random.Generator(5)).weight.numpy()
    np.testing.assert_array_equal(a, b)


def test_linear_requires_explicit_generator_and_checks_input():
    with pytest.raises(TypeError, match="rng must be a minivae.random.Generator"):
        nn.Linear(3, 2, rng=None)
    layer = nn.Linear(3, 2, rng=mv.random.Generator(0))
    with pytest.raises(ValueError, match=r"linear: input of shape \(4, 5\) does not fit weight of shape \(3, 2\)"):
        layer(mv.tensor(np.ones((4, 5)), dtype="float32"))


def test_state_dict_round_trip_and_errors():
    a, b = mlp(seed=1), mlp(seed=2)
    b.load_state_dict(a.state_dict())
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    state = a.state_dict()
    state["0.weight"][...] = 123.0  # a copy: the model is untouched
    assert not np.any(a[0].weight.numpy() == 123.0)
    bad = dict(a.state_dict())
    del bad["0.bias"]
    bad["extra"] = np.zeros(1)
    bad["2.weight"] = np.zeros((9, 9))
    with pytest.raises(nn.StateDictError) as err:
        b.load_state_dict(bad)
    msg = str(err.value)
    assert "missing ['0.bias']" in msg and "unexpected ['extra']" in msg and "2.weight: saved (9, 9), model (5, 3)" in msg


def test_zero_grad_train_eval_and_astype():
    model = mlp(dtype="float32")
    model(mv.tensor(np.ones((2, 4)), dtype="float32")).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model.astype("float64")
    assert all(p.dtype == "float64" for p in model.parameters())


def test_module_without_super_init_gets_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(2, 2, rng=mv.random.Generator(0))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Broken()


def test_parameters_take_their_dotted_names_when_attached_and_messages_use_them(tmp_path):
    class Tiny(mv.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = mv.nn.Sequential(mv.nn.Linear(3, 4, rng=mv.random.Generator(0)), mv.nn.ReLU())
            self.scale = mv.nn.Parameter(np.ones(4, dtype=np.float32))
            self.fixed = mv.nn.Parameter(np.ones(4, dtype=np.float32), name="my_scale")  # explicit: kept

    model = Tiny()
    assert model.enc[0].weight.name == "enc.0.weight" and model.enc[0].bias.name == "enc.0.bias"
    assert model.scale.name == "scale" and model.fixed.name == "my_scale"
    assert sorted(p.name for p in model.parameters()) == ["enc.0.bias", "enc.0.weight", "my_scale", "scale"]
    outer = mv.nn.Sequential(model)  # attached again, deeper: the outermost names win
    assert model.enc[0].weight.name == "0.enc.0.weight" == dict(outer.named_parameters())["0.enc.0.weight"].name

    model = Tiny()
    loss = (model.enc(mv.tensor(np.ones((2, 3), dtype=np.float32))) * model.scale).sum()
    summary = mv.graph_summary(loss)
    assert "enc.0.weight" in summary and "enc.0.bias" in summary and "scale" in summary
    mv.draw_graph(loss, str(tmp_path / "g.dot"))
    dot = (tmp_path / "g.dot").read_text()
    assert 'label="enc.0.weight\\n(3, 4)' in dot and 'label="scale\\n(4,)' in dot

    with pytest.raises(ValueError, match=r"does not fit weight of shape \(3, 4\) \(enc\.0\.weight\)"):
        model.enc(mv.tensor(np.ones((2, 5), dtype=np.float32)))
    model.scale.data[...] = np.inf  # an Inf parameter (1 * inf raises no NumPy flag): the anomaly names it
    with mv.detect_anomaly(), pytest.raises(mv.AnomalyError, match=r"input shapes: \(2, 4\), scale \(4,\)"):
        mv.tensor(np.ones((2, 4), dtype=np.float32)) * model.scale
