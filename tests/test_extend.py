"""Writing your own op: the engine's contract errors, array_module, and a student's op
plugged into the library (a VAE trained with the student's KL and sampling node)."""

from __future__ import annotations

import numpy as np
import pytest

import minivae as mv
from minivae import distributions
from minivae.course.exercises import EXERCISES
from minivae.course.grader import load
from minivae.extend import array_module, replace_op
from minivae.models import VAE
from minivae.random import Generator
from minivae.tensor import Tensor


def test_a_backward_that_returns_a_bare_array_is_an_error_naming_the_op():
    x = mv.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = Tensor.from_op(x.data * 2, (x,), lambda g: g * 2, "double")  # forgot the tuple
    with pytest.raises(TypeError, match=r"backward of 'double' returned a bare ndarray of shape \(2, 2\); it must "
                                        r"return a tuple .* this op has 1 input: return \(gx,\)"):
        y.sum().backward()


@pytest.mark.parametrize("grads,count", [(lambda g: (g, g), "2 gradients"), (lambda g: (), "0 gradients")])
def test_the_wrong_number_of_gradients_is_an_error(grads, count):
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = Tensor.from_op(x.data * 2, (x,), grads, "double")
    with pytest.raises(TypeError, match=f"backward of 'double' returned {count}; .* 1 input"):
        y.sum().backward()


def test_too_few_gradients_for_two_inputs_is_an_error():
    a, b = mv.tensor([1.0], requires_grad=True), mv.tensor([2.0], requires_grad=True)
    y = Tensor.from_op(a.data * b.data, (a, b), lambda g: (g * b.data,), "product")
    with pytest.raises(TypeError, match=r"returned 1 gradients; .* 2 inputs: return \(g0, g1\)"):
        y.sum().backward()


def test_too_many_gradients_for_two_inputs_is_an_error_too():
    """Strict for every op (was tolerated for several inputs: linear without a bias returned a bias gradient)."""
    a, b = mv.tensor([1.0], requires_grad=True), mv.tensor([2.0], requires_grad=True)
    y = Tensor.from_op(a.data * b.data, (a, b), lambda g: (g * b.data, g * a.data, g), "product")
    with pytest.raises(TypeError, match=r"backward of 'product' returned 3 gradients; .* 2 inputs: return \(g0, g1\)"):
        y.sum().backward()


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_linear_returns_one_gradient_per_input_with_and_without_bias(with_bias, activation):
    rng = np.random.default_rng(0)
    x = mv.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    w = mv.tensor(rng.normal(size=(4, 2)), requires_grad=True)
    b = mv.tensor(rng.normal(size=2), requires_grad=True) if with_bias else None
    y = mv.ops.linear(x, w, b, activation=activation)
    assert len(y._backward(np.ones((3, 2), dtype=np.float32))) == (3 if with_bias else 2)
    y.sum().backward()
    assert x.grad.shape == (3, 4) and w.grad.shape == (4, 2) and (b is None or b.grad.shape == (2,))


def test_array_module_takes_arrays_and_tensors():
    assert array_module(np.zeros(2)) is np
    assert array_module(mv.tensor([1.0])) is np


def _vae(seed: int) -> VAE:
    return VAE(input_dim=6, latent=2, hidden=8, rng=Generator(seed))


def _train(steps: int = 5) -> list[float]:
    model, data = _vae(0), np.random.default_rng(0).uniform(size=(16, 6)).astype(np.float32)
    opt, rng = mv.optim.Adam(model.parameters(), lr=1e-2), Generator(1)
    losses = []
    for _ in range(steps):
        loss = model.loss(data, None, rng)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_a_vae_trains_with_the_students_own_kl_and_sampling_node():
    kl = load(EXERCISES["kl"].solution)
    sample = load(EXERCISES["reparameterize"].solution)
    calls = []

    def counted(fn):
        def wrapper(*args):
            calls.append(fn.__name__)
            return fn(*args)
        return wrapper

    library = _train()
    with replace_op("kl_normal_standard", counted(kl.kl_normal_standard)), \
            replace_op("reparameterize", counted(sample.reparameterize)):
        theirs = _train()
    assert calls.count("kl_normal_standard") == 5 and calls.count("reparameterize") == 5
    # the same numbers as the library's own nodes, step after step (float32 rounding apart)
    np.testing.assert_allclose(theirs, library, rtol=1e-5)
    assert theirs[-1] < theirs[0]
    assert distributions.kl_normal_standard is mv.kl_normal_standard  # restored on leaving
    assert distributions.reparameterize.__module__ == "minivae.distributions"


def test_a_wrong_student_kl_changes_the_training_and_replace_op_refuses_unknown_names():
    kl = load(EXERCISES["kl"].solution)
    with replace_op("kl_normal_standard", lambda mu, logvar: 2 * kl.kl_normal_standard(mu, logvar)):
        doubled = _train(2)
    assert not np.allclose(doubled, _train(2))
    with pytest.raises(ValueError, match="replace_op: 'sigmoid' cannot be replaced; expected one of"):
        with replace_op("sigmoid", mv.sigmoid):
            pass
