"""The reparameterized sampling node, the analytic KL node and the Normal distribution."""

import math

import numpy as np
import pytest

import minivae as mv
from minivae.distributions import Normal, kl_normal_standard

RNG = np.random.default_rng(7)


def t(shape, low=-2.0, high=2.0):
    return mv.tensor(RNG.uniform(low, high, size=shape), requires_grad=True, dtype="float64")


def composed_kl(mu, logvar):
    return 0.5 * (mv.exp(logvar) + mu * mu - 1.0 - logvar).sum(axis=-1)


def test_kl_node_equals_composed_kl_in_value_and_gradient():
    mu, lv = t((5, 3)), t((5, 3), -4, 4)
    weights = RNG.uniform(0.5, 1.5, 5)
    node = kl_normal_standard(mu, lv)
    composed = composed_kl(mu, lv)
    np.testing.assert_allclose(node.numpy(), composed.numpy(), rtol=1e-13)
    node.backward(weights)
    g_node = (mu.grad.copy(), lv.grad.copy())
    mu.grad = lv.grad = None
    composed.backward(weights)
    np.testing.assert_allclose(g_node[0], mu.grad, rtol=1e-13)
    np.testing.assert_allclose(g_node[1], lv.grad, rtol=1e-13)
    # the closed forms stated in the docstring
    np.testing.assert_allclose(g_node[0], weights[:, None] * mu.numpy(), rtol=1e-13)
    np.testing.assert_allclose(g_node[1], weights[:, None] * 0.5 * (np.exp(lv.numpy()) - 1), rtol=1e-13)


@pytest.mark.parametrize("low,high", [(-2, 2), (-12, -8), (6, 9)])
def test_kl_node_gradcheck_including_extreme_logvars(low, high):
    assert mv.gradcheck(kl_normal_standard, [t((4, 3)), t((4, 3), low, high)]).ok


def test_kl_is_zero_for_the_standard_normal():
    zeros = mv.tensor(np.zeros((2, 4)), dtype="float64")
    np.testing.assert_array_equal(kl_normal_standard(zeros, zeros).numpy(), [0.0, 0.0])


@pytest.mark.parametrize("sample_shape", [(), (3,), (2, 2)])
def test_rsample_gradcheck_with_common_random_numbers(sample_shape):
    rng = mv.random.Generator(11)
    mu, lv = t((4, 2)), t((4, 2), -3, 3)

    def f(mu, lv):
        z = Normal(mu, lv).rsample(rng=rng, sample_shape=sample_shape)
        return (mv.tanh(z) * z).sum()

    assert mv.gradcheck(f, [mu, lv], rng=rng).ok


@pytest.mark.parametrize("low,high", [(-15, -10), (8, 10)])
def test_rsample_gradcheck_at_extreme_logvar_with_fixed_eps(low, high):
    eps = RNG.standard_normal((3, 2))
    mu, lv = t((3, 2)), t((3, 2), low, high)
    assert mv.gradcheck(lambda m, l: (Normal(m, l).rsample(eps=eps) ** 2).sum(), [mu, lv], rtol=1e-4).ok


def test_rsample_backward_formula_and_eps_kept():
    mu, lv = t((3, 2)), t((3, 2))
    d = Normal(mu, lv)
    z = d.rsample(rng=mv.random.Generator(0))
    np.testing.assert_array_equal(d.eps, z.eps)
    np.testing.assert_allclose(z.numpy(), mu.numpy() + np.exp(lv.numpy() / 2) * z.eps)
    z.sum().backward()
    np.testing.assert_allclose(mu.grad, 1.0)
    np.testing.assert_allclose(lv.grad, 0.5 * np.exp(lv.numpy() / 2) * z.eps)


def test_rsample_needs_rng_or_eps_and_checks_eps_shape():
    d = Normal(t((2, 3)), t((2, 3)))
    with pytest.raises(ValueError, match="pass rng=Generator"):
        d.rsample()
    with pytest.raises(ValueError, match=r"noise of shape \(4,\)"):
        d.rsample(eps=np.zeros(4))


def test_rsample_same_seed_same_sample():
    d = Normal(t((2, 3)), t((2, 3)))
    a = d.rsample(rng=mv.random.Generator(3)).numpy()
    b = d.rsample(rng=mv.random.Generator(3)).numpy()
    np.testing.assert_array_equal(a, b)


def test_log_prob_entropy_and_kl_against_scipy():
    from scipy import stats

    mu, lv = RNG.normal(size=(4, 3)), RNG.uniform(-1, 1, (4, 3))
    z = RNG.normal(size=(4, 3))
    d = Normal(mv.tensor(mu, dtype="float64"), mv.tensor(lv, dtype="float64"))
    sd = np.exp(lv / 2)
    np.testing.assert_allclose(d.log_prob(z).numpy(), stats.norm.logpdf(z, mu, sd).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(d.entropy().numpy(), stats.norm.entropy(mu, sd).sum(-1), rtol=1e-12)
    mu2, lv2 = RNG.normal(size=(4, 3)), RNG.uniform(-1, 1, (4, 3))
    other = Normal(mv.tensor(mu2, dtype="float64"), mv.tensor(lv2, dtype="float64"))
    s1, s2 = sd, np.exp(lv2 / 2)
    expected = (np.log(s2 / s1) + (s1**2 + (mu - mu2) ** 2) / (2 * s2**2) - 0.5).sum(-1)
    np.testing.assert_allclose(d.kl(other).numpy(), expected, rtol=1e-12)
    standard = Normal(mv.tensor(np.zeros((4, 3)), dtype="float64"), mv.tensor(np.zeros((4, 3)), dtype="float64"))
    np.testing.assert_allclose(d.kl(standard).numpy(), d.kl_standard().numpy(), rtol=1e-12)


def test_log_prob_kl_and_entropy_gradcheck():
    mu, lv, mu2, lv2, z = t((3, 2)), t((3, 2)), t((3, 2)), t((3, 2)), t((3, 2))
    assert mv.gradcheck(lambda m, l, z: Normal(m, l).log_prob(z), [mu, lv, z]).ok
    assert mv.gradcheck(lambda m, l: Normal(m, l).entropy(), [mu, lv]).ok
    assert mv.gradcheck(lambda a, b, c, d: Normal(a, b).kl(Normal(c, d)), [mu, lv, mu2, lv2]).ok


def test_monte_carlo_kl_matches_analytic():
    mu, lv = np.array([[0.5, -1.0]]), np.array([[0.3, -0.7]])
    d = Normal(mv.tensor(mu, dtype="float64"), mv.tensor(lv, dtype="float64"))
    z = d.sample(mv.random.Generator(0), sample_shape=(200_000,))
    prior = Normal(mv.tensor(np.zeros((1, 2)), dtype="float64"), mv.tensor(np.zeros((1, 2)), dtype="float64"))
    mc = (d.log_prob(z) - prior.log_prob(z)).numpy()
    se = mc.std() / math.sqrt(mc.size)
    assert abs(mc.mean() - d.kl_standard().item()) < 5 * se


@pytest.mark.parametrize("rng", [0, np.random.default_rng(0)])
def test_rsample_given_a_seed_or_a_numpy_generator_names_the_fix(rng):
    """Found in QA: rng=0 said "'int' object has no attribute 'normal'", a NumPy generator
    "normal() got an unexpected keyword argument 'dtype'"."""
    q = mv.Normal(mv.tensor(np.zeros((2, 3))), mv.tensor(np.zeros((2, 3))))
    with pytest.raises(TypeError, match=r"^Normal\.rsample: rng must be a minivae\.random\.Generator "
                                        r"\(mv\.random\.Generator\(seed\)\), got (int|Generator)"):
        q.rsample(rng)
