"""Losses: gradients, values against their formulas, target checks and errors; the categorical
losses (cross_entropy, nll_loss) on integer labels."""

import numpy as np
import pytest

import minivae as mv
from minivae import losses

RNG = np.random.default_rng(99)


def t(shape, low=-2.0, high=2.0, requires_grad=True):
    return mv.tensor(RNG.uniform(low, high, size=shape), requires_grad=requires_grad, dtype="float64")


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_losses_gradcheck(reduction):
    pred, target = t((3, 4)), t((3, 4), 0.0, 1.0, requires_grad=False)
    prob = t((3, 4), 0.05, 0.95)
    logvar = t((3, 4), -3, 3)
    assert mv.gradcheck(lambda p: losses.mse(p, target, reduction), [pred]).ok
    assert mv.gradcheck(lambda p: losses.bce(p, target, reduction), [prob]).ok
    assert mv.gradcheck(lambda l: losses.bce_with_logits(l, target, reduction), [pred]).ok
    assert mv.gradcheck(lambda m: losses.gaussian_nll(m, target, reduction=reduction), [pred]).ok
    assert mv.gradcheck(lambda m, lv: losses.gaussian_nll(m, target, lv, reduction), [pred, logvar]).ok


def test_loss_values_against_formulas():
    p = RNG.uniform(0.05, 0.95, (5, 3))
    x = RNG.uniform(0, 1, (5, 3))
    logits = np.log(p / (1 - p))
    bern = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    P, X = mv.tensor(p, dtype="float64"), mv.tensor(x, dtype="float64")
    np.testing.assert_allclose(losses.bce(P, X, "sum").item(), bern.sum(), rtol=1e-10)
    np.testing.assert_allclose(losses.bce_with_logits(mv.tensor(logits, dtype="float64"), X, "none").numpy(), bern, rtol=1e-10)
    np.testing.assert_allclose(losses.mse(P, X, "mean").item(), ((p - x) ** 2).mean(), rtol=1e-12)
    lv = RNG.uniform(-1, 1, (5, 3))
    nll = 0.5 * (np.log(2 * np.pi) + lv + (x - p) ** 2 / np.exp(lv))
    np.testing.assert_allclose(
        losses.gaussian_nll(P, X, mv.tensor(lv, dtype="float64"), "none").numpy(), nll, rtol=1e-12
    )
    unit = 0.5 * (x - p) ** 2 + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(losses.gaussian_nll(P, X, reduction="sum").item(), unit.sum(), rtol=1e-12)


def test_bce_with_logits_is_stable_for_huge_logits():
    logits = mv.tensor([-1e4, -80.0, 80.0, 1e4], requires_grad=True, dtype="float32")
    target = mv.tensor([1.0, 0.0, 1.0, 0.0])
    loss = losses.bce_with_logits(logits, target, "none")
    np.testing.assert_allclose(loss.numpy(), [1e4, 0.0, 0.0, 1e4], rtol=1e-6, atol=1e-30)
    loss.sum().backward()
    np.testing.assert_allclose(logits.grad, [-1.0, 0.0, 0.0, 1.0], atol=1e-30)


def test_bce_clipping_keeps_loss_finite_at_0_and_1():
    prob = mv.tensor([0.0, 1.0], requires_grad=True)
    loss = losses.bce(prob, mv.tensor([1.0, 0.0]), "none")
    assert np.all(np.isfinite(loss.numpy()))
    np.testing.assert_allclose(loss.numpy(), -np.log(losses.BCE_EPS), rtol=0.02)


def test_loss_errors_name_the_loss_and_shapes():
    with pytest.raises(ValueError, match=r"mse: prediction has shape \(2, 3\) but target has shape \(3, 2\)"):
        losses.mse(mv.tensor(np.ones((2, 3))), np.ones((3, 2)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.mse(mv.tensor(np.ones(2)), np.ones(2), reduction="avg")


@pytest.mark.parametrize("loss", [losses.bce, losses.bce_with_logits])
@pytest.mark.parametrize("bad", [2.0, -0.5])
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


@pytest.mark.parametrize("loss", [losses.bce, losses.bce_with_logits])
def test_a_nan_in_the_target_says_contains_nan_and_where(loss):
    pred = mv.tensor(np.full((4, 3), 0.5), dtype="float64")
    target = np.full((4, 3), 0.5)
    target[2, 1] = target[3, 0] = np.nan
    with pytest.raises(ValueError, match=rf"{loss.__name__}: the target contains NaN: 2 of 12 values in 2 of 4 rows "
                                         r"\(2, 3\), the first at index \(2, 1\) of shape \(4, 3\)"):
        loss(pred, target)
    with pytest.raises(ValueError, match=r"contains NaN: 1 of 2 values, the first at index \(0,\)"):
        loss(mv.tensor([0.5, 0.5], dtype="float64"), mv.tensor([float("nan"), 1.0], dtype="float64"))


def test_a_nan_image_reaching_a_vae_is_named_by_the_loss():
    from minivae.models import VAE

    model = VAE(4, 2, 8, rng=mv.random.Generator(0))
    x = np.full((3, 4), 0.5, dtype=np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"contains NaN: 1 of 12 values in 1 of 3 rows \(1\)"):
        model.loss(x, None, mv.random.Generator(1))
