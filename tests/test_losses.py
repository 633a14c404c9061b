"""Losses: target checks, and the categorical losses (cross_entropy, nll_loss) on integer labels."""

import numpy as np
import pytest

import minivae as mv
from minivae import losses


@pytest.mark.parametrize("loss", [losses.bce, losses.bce_with_logits])
@pytest.mark.parametrize("bad", [2.0, -0.5, float("nan")])
def test_bernoulli_losses_refuse_targets_outside_0_1(loss, bad):
    pred = mv.tensor([0.3, 0.6], dtype="float64")
    with pytest.raises(ValueError, match=rf"{loss.__name__}: targets must lie in \[0, 1\]"):
        loss(pred, np.array([0.0, bad]))
    with pytest.raises(ValueError, match="targets must lie in"):
        loss(pred, mv.tensor([bad, 1.0], dtype="float64"), reduction="sum")
    assert np.isfinite(loss(pred, np.array([0.0, 0.25])).item())  # grey values are fine


def test_cross_entropy_matches_the_formula_and_its_gradient():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3)) * 3
    labels = np.array([0, 2, 1, 2])
    x = mv.tensor(logits, requires_grad=True)
    loss = losses.cross_entropy(x, labels)
    lse = np.log(np.exp(logits).sum(axis=1))
    assert loss.item() == pytest.approx(np.mean(lse - logits[np.arange(4), labels]), rel=1e-12)
    loss.backward()
    softmax = np.exp(logits - lse[:, None])
    np.testing.assert_allclose(x.grad, (softmax - np.eye(3)[labels]) / 4, rtol=1e-10)
    assert mv.gradcheck(lambda x: losses.cross_entropy(x, labels, "sum"), [x]).ok


def test_cross_entropy_is_stable_for_huge_logits_and_takes_spatial_and_single_examples():
    x = mv.tensor([[1e4, -1e4, 0.0]], requires_grad=True, dtype="float64")
    assert losses.cross_entropy(x, np.array([1])).item() == pytest.approx(2e4)
    spatial = mv.tensor(np.zeros((2, 5, 3)), dtype="float64")  # (N, C, d): classes on axis 1
    assert losses.cross_entropy(spatial, np.zeros((2, 3), dtype=int)).item() == pytest.approx(np.log(5))
    single = mv.tensor([0.0, 0.0], dtype="float64")
    assert losses.cross_entropy(single, np.array(1), "none").shape == ()


def test_nll_loss_picks_minus_the_labelled_log_probability():
    logp = mv.tensor(np.log([[0.2, 0.8], [0.6, 0.4]]), requires_grad=True, dtype="float64")
    out = losses.nll_loss(logp, [1, 0], reduction="none")
    np.testing.assert_allclose(out.numpy(), -np.log([0.8, 0.6]))
    out.sum().backward()
    np.testing.assert_array_equal(logp.grad, [[0.0, -1.0], [-1.0, 0.0]])


@pytest.mark.parametrize("labels,error,message", [
    (np.array([0.0, 1.0]), TypeError, "labels must be integer class indices, got dtype float64"),
    (np.array([0, 3]), ValueError, r"labels must lie in \[0, 3\), got values from 0 to 3"),
    (np.array([0, -1]), ValueError, r"labels must lie in \[0, 3\)"),
    (np.array([0, 1, 2]), ValueError, r"scores of shape \(2, 3\) need labels of shape \(2,\), got \(3,\)"),
])
def test_label_errors_name_the_loss_and_what_was_expected(labels, error, message):
    with pytest.raises(error, match="cross_entropy: " + message):
        losses.cross_entropy(mv.tensor(np.zeros((2, 3))), labels)
