"""Score-function node, baselines, discrete sampling nodes: unbiasedness, bias where documented, gradchecks.

Statistical tests use fixed seeds and enough samples that an unbiased estimator
lands within 5 standard errors of the exact gradient (and a biased one far outside).
"""

import numpy as np
import pytest

import minivae as mv
from minivae.stochastic import discrete as D
from minivae.training.data import load_digits
from minivae.labs.estimators import gaussian_log_prob, optimal_control_variate
from minivae.stochastic import (
    LearnedBaseline,
    MovingAverageBaseline,
    leave_one_out_baseline,
    score_function_surrogate,
    zero_with_gradient_of,
)
from minivae.models.bvae import ESTIMATORS, BernoulliVAE, build_bvae
from minivae.random import Generator

F64 = "float64"


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


# ----------------------------------------------------------------------------
# the surrogate node itself
# ----------------------------------------------------------------------------
def test_surrogate_forward_is_f_and_backward_is_signal_times_score():
    logits = mv.tensor([0.3, -1.2, 2.0], requires_grad=True, dtype=F64)
    z = mv.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=F64)  # two samples
    f = mv.tensor([2.5, -1.0], dtype=F64)
    log_q = D.bernoulli_log_prob(logits, z)
    out = score_function_surrogate(f, log_q, baseline=0.5)
    np.testing.assert_array_equal(out.numpy(), f.numpy())
    out.sum().backward()
    expected = ((f.numpy() - 0.5)[:, None] * (z.numpy() - sigmoid(logits.numpy()))).sum(0)
    np.testing.assert_allclose(logits.grad, expected, rtol=1e-12)


def test_surrogate_passes_pathwise_gradient_of_f_unchanged():
    # f depends on a "decoder" weight w directly: ∂out/∂w must be ∂f/∂w, whatever the baseline.
    w = mv.tensor([1.5, -0.5], requires_grad=True, dtype=F64)
    z = mv.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=F64)
    logits = mv.tensor([0.2, 0.1], dtype=F64)  # no grad: only the pathwise part is checked
    f = ((z * w).sum(axis=-1) - 1.0) ** 2
    mv.gradcheck(lambda w_: score_function_surrogate(((z * w_).sum(axis=-1) - 1.0) ** 2,
                                                     D.bernoulli_log_prob(logits, z), 3.0), [w])
    assert f.shape == (2,)


def test_surrogate_errors_are_clear():
    a = mv.tensor([1.0, 2.0], dtype=F64)
    with pytest.raises(ValueError, match="pair each sample"):
        score_function_surrogate(a, mv.tensor([1.0, 2.0, 3.0], dtype=F64))
    with pytest.raises(TypeError, match="Tensors"):
        score_function_surrogate(np.ones(2), a)
    with pytest.raises(ValueError, match="broadcast"):
        score_function_surrogate(a, a, baseline=np.ones(3))


def test_zero_with_gradient_of_has_value_zero_and_the_gradient():
    x = mv.tensor([1.0, 2.0], requires_grad=True, dtype=F64)
    t = zero_with_gradient_of((x * x).sum())
    assert t.item() == 0.0
    t.backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


# ----------------------------------------------------------------------------
# unbiasedness: Bernoulli and categorical REINFORCE
# ----------------------------------------------------------------------------
LOGITS = np.array([1.4, -0.3, 0.0, 2.2])
TARGET = np.array([0.2, 0.7, 0.5, 0.9])


def bernoulli_problem_truth():
    """f(z) = Σ (z - t)²:  E f = Σ [p(1-t)² + (1-p)t²],  ∂/∂l = σ'(l) (1 - 2t)."""
    p = sigmoid(LOGITS)
    return p * (1 - p) * (1 - 2 * TARGET)


def reinforce_bernoulli(n, seed, baseline=None):
    """(mean estimate, per-sample estimates) of ∇_l E[f] with n samples, through the node."""
    rng = Generator(seed)
    logits = mv.tensor(np.broadcast_to(LOGITS, (n, 4)).copy(), requires_grad=True, dtype=F64)
    z = D.sample_bernoulli(logits, rng)
    f = ((z - mv.tensor(TARGET, dtype=F64)) ** 2).sum(axis=-1)
    b = baseline(f) if callable(baseline) else baseline
    score_function_surrogate(f, D.bernoulli_log_prob(logits, z), b).sum().backward()
    per_sample = logits.grad  # row i = (f_i - b_i) ∇ ln q(z_i)
    return per_sample.mean(0), per_sample


@pytest.mark.parametrize("baseline", [None, 1.0, "loo"])
def test_reinforce_bernoulli_is_unbiased(baseline):
    b = leave_one_out_baseline if baseline == "loo" else baseline
    mean, per_sample = reinforce_bernoulli(40000, seed=1, baseline=b)
    se = per_sample.std(0, ddof=1) / np.sqrt(len(per_sample))
    assert np.all(np.abs(mean - bernoulli_problem_truth()) < 5 * se)


def test_baselines_reduce_bernoulli_variance():
    _, plain = reinforce_bernoulli(20000, seed=2)
    _, ma = reinforce_bernoulli(20000, seed=2, baseline=1.0)  # ≈ E f for this problem
    _, loo = reinforce_bernoulli(20000, seed=2, baseline=leave_one_out_baseline)
    assert ma.var(0).sum() < 0.5 * plain.var(0).sum()
    assert loo.var(0).sum() < 0.5 * plain.var(0).sum()


CAT_LOGITS = np.array([0.5, -1.0, 1.5, 0.0])
CAT_VALUES = np.array([3.0, -2.0, 1.0, 0.5])


def test_reinforce_categorical_is_unbiased():
    # f(z) = c·z, E f = Σ p_k c_k, ∂/∂l_k = p_k (c_k - Σ_j p_j c_j).
    n, rng = 40000, Generator(3)
    logits = mv.tensor(np.broadcast_to(CAT_LOGITS, (n, 4)).copy(), requires_grad=True, dtype=F64)
    z = D.sample_categorical(logits, rng)
    f = (z * mv.tensor(CAT_VALUES, dtype=F64)).sum(axis=-1)
    score_function_surrogate(f, D.categorical_log_prob(logits, z)).sum().backward()
    p = np.exp(CAT_LOGITS) / np.exp(CAT_LOGITS).sum()
    truth = p * (CAT_VALUES - p @ CAT_VALUES)
    se = logits.grad.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(logits.grad.mean(0) - truth) < 5 * se)
    # and the draws follow softmax(l)
    np.testing.assert_allclose(z.numpy().mean(0), p, atol=0.01)


# ----------------------------------------------------------------------------
# biased estimators, shown biased
# ----------------------------------------------------------------------------
def test_straight_through_bernoulli_is_biased_as_documented():
    n, rng = 40000, Generator(4)
    logits = mv.tensor(np.broadcast_to(LOGITS, (n, 4)).copy(), requires_grad=True, dtype=F64)
    z = D.straight_through_bernoulli(logits, rng)
    assert set(np.unique(z.numpy())) <= {0.0, 1.0}  # hard forward
    ((z - mv.tensor(TARGET, dtype=F64)) ** 2).sum().backward()
    mean = logits.grad.mean(0)
    se = logits.grad.std(0, ddof=1) / np.sqrt(n)
    p = sigmoid(LOGITS)
    np.testing.assert_allclose(mean, p * (1 - p) * 2 * (p - TARGET), atol=5 * se.max() + 1e-12)
    off = np.abs(mean - bernoulli_problem_truth()) / se
    assert off[[0, 1, 3]].min() > 5  # p ≠ 1/2: far outside the noise. (Dim 2 has p = 1/2: unbiased there.)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_gumbel_softmax_is_biased_for_the_discrete_objective(tau):
    n, rng = 40000, Generator(5)
    logits = mv.tensor(np.broadcast_to(CAT_LOGITS, (n, 4)).copy(), requires_grad=True, dtype=F64)
    y = D.gumbel_softmax(logits, tau, rng=rng)
    np.testing.assert_allclose(y.numpy().sum(-1), 1.0)
    (y * mv.tensor(CAT_VALUES, dtype=F64)).sum().backward()
    p = np.exp(CAT_LOGITS) / np.exp(CAT_LOGITS).sum()
    truth = p * (CAT_VALUES - p @ CAT_VALUES)
    se = logits.grad.std(0, ddof=1) / np.sqrt(n)
    assert np.max(np.abs(logits.grad.mean(0) - truth) / se) > 5


def test_gumbel_bias_shrinks_as_tau_falls_while_variance_grows():
    p = np.exp(CAT_LOGITS) / np.exp(CAT_LOGITS).sum()
    truth = p * (CAT_VALUES - p @ CAT_VALUES)
    bias, var = [], []
    for tau in (2.0, 0.5, 0.1):
        logits = mv.tensor(np.broadcast_to(CAT_LOGITS, (40000, 4)).copy(), requires_grad=True, dtype=F64)
        (D.gumbel_softmax(logits, tau, rng=Generator(6)) * mv.tensor(CAT_VALUES, dtype=F64)).sum().backward()
        bias.append(np.linalg.norm(logits.grad.mean(0) - truth))
        var.append(logits.grad.var(0).sum())
    assert bias[0] > bias[1] > bias[2]
    assert var[0] < var[1] < var[2]


def test_hard_gumbel_forward_is_an_exact_categorical_draw():
    logits = mv.tensor(np.broadcast_to(CAT_LOGITS, (40000, 4)).copy(), requires_grad=True, dtype=F64)
    y = D.gumbel_softmax(logits, 0.5, rng=Generator(7), hard=True)
    assert np.all(y.numpy().sum(-1) == 1.0) and set(np.unique(y.numpy())) == {0.0, 1.0}
    p = np.exp(CAT_LOGITS) / np.exp(CAT_LOGITS).sum()
    np.testing.assert_allclose(y.numpy().mean(0), p, atol=0.01)
    y.sum().backward()  # the gradient of the soft y reaches the logits
    assert logits.grad is not None


def test_hard_relaxed_bernoulli_is_an_exact_bernoulli_draw():
    logits = mv.tensor(np.broadcast_to(LOGITS, (40000, 4)).copy(), dtype=F64)
    y = D.relaxed_bernoulli(logits, 0.3, rng=Generator(8), hard=True)
    np.testing.assert_allclose(y.numpy().mean(0), sigmoid(LOGITS), atol=0.01)


# ----------------------------------------------------------------------------
# gradchecks where the backward is the derivative of the forward
# ----------------------------------------------------------------------------
def test_gradcheck_relaxations_with_fixed_noise():
    rng = Generator(9)
    logits = mv.tensor(Generator(10).normal((3, 4), dtype=F64), requires_grad=True, dtype=F64)
    mv.gradcheck(lambda l: D.gumbel_softmax(l, 0.7, rng=rng), [logits], rng=rng)
    mv.gradcheck(lambda l: D.relaxed_bernoulli(l, 0.7, rng=rng), [logits], rng=rng)
    noise = D.gumbel_noise((3, 4), Generator(11))
    mv.gradcheck(lambda l: D.gumbel_softmax(l, 0.3, noise=noise), [logits])


def test_gradcheck_log_probs_and_kl():
    logits = mv.tensor(Generator(12).normal((3, 5), dtype=F64, std=2.0), requires_grad=True, dtype=F64)
    z = D.sample_bernoulli(logits, Generator(13))
    onehot = D.sample_categorical(logits, Generator(14))
    mv.gradcheck(lambda l: D.bernoulli_log_prob(l, z), [logits])
    mv.gradcheck(lambda l: D.categorical_log_prob(l, onehot), [logits])
    mv.gradcheck(D.bernoulli_kl_uniform, [logits])


def test_log_probs_and_kl_are_stable_and_correct():
    logits = mv.tensor([[-80.0, 0.0, 80.0]], dtype=F64)
    lp = D.bernoulli_log_prob(logits, mv.tensor([[0.0, 1.0, 1.0]], dtype=F64)).item()
    np.testing.assert_allclose(lp, np.log(0.5), atol=1e-12)
    kl = D.bernoulli_kl_uniform_per_dim(logits).numpy()
    np.testing.assert_allclose(kl, [[np.log(2), 0.0, np.log(2)]], atol=1e-12)
    cat = D.categorical_log_prob(mv.tensor([[1000.0, 0.0]], dtype=F64), mv.tensor([[0.0, 1.0]], dtype=F64))
    np.testing.assert_allclose(cat.item(), -1000.0)


def test_samplers_are_deterministic_per_seed_and_validate():
    logits = mv.tensor(np.zeros((5, 3)), dtype=F64)
    a = D.gumbel_softmax(logits, 0.5, rng=Generator(1)).numpy()
    b = D.gumbel_softmax(logits, 0.5, rng=Generator(1)).numpy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="tau"):
        D.gumbel_softmax(logits, 0.0, rng=Generator(1))
    with pytest.raises(ValueError, match="rng"):
        D.relaxed_bernoulli(logits, 1.0)


# ----------------------------------------------------------------------------
# baselines
# ----------------------------------------------------------------------------
def test_moving_average_baseline():
    ma = MovingAverageBaseline(decay=0.5)
    assert ma.update(np.array([2.0, 4.0])) == 3.0  # first update: the batch mean
    assert ma.update(np.array([5.0])) == 4.0
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(1.0)


def test_leave_one_out_and_optimal_control_variate():
    np.testing.assert_allclose(leave_one_out_baseline(np.array([1.0, 2.0, 6.0])), [4.0, 3.5, 1.5])
    s = Generator(15).normal((1000, 2), dtype=F64)
    # f constant: the best coefficient is that constant, and it removes all the noise
    np.testing.assert_allclose(optimal_control_variate(np.full(1000, 3.0), s), [3.0, 3.0])
    assert optimal_control_variate(np.full(1000, 3.0), s, per_parameter=False) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="expected"):
        optimal_control_variate(np.ones(5), np.ones((4, 2)))


def test_learned_baseline_learns_the_conditional_mean():
    rng = Generator(16)
    net = LearnedBaseline(2, hidden=16, rng=rng, dtype=F64)
    opt = mv.optim.Adam(net.parameters(), lr=0.02)
    x = mv.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    for _ in range(300):
        f = mv.tensor(np.array([5.0, -2.0]) + rng.normal(2, dtype=F64), dtype=F64)  # E[f | x] = 5, -2
        opt.zero_grad()
        net.loss(x, f).backward()
        opt.step()
    np.testing.assert_allclose(net(x).numpy(), [5.0, -2.0], atol=0.4)


# ----------------------------------------------------------------------------
# the binary-latent VAE
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bvae_trains_with_each_estimator(estimator):
    train, test = load_digits("train"), load_digits("test")
    rng = Generator(0)
    model = build_bvae(train.dim, 20, [64], rng, estimator=estimator)
    opt = mv.optim.Adam(model.parameters(), lr=3e-3)
    before = model.neg_elbo(test.x, Generator(1), samples=2)
    for step in range(60):
        xb = train.x[(step * 32) % 1400 : (step * 32) % 1400 + 32]
        out = model.loss(xb, None, rng)
        assert set(out) >= {"loss", "recon", "kl", "neg_elbo"} and out["loss"].shape == ()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = model.neg_elbo(test.x, Generator(1), samples=2)
    assert after < before - 10.0, (before, after)


def test_bvae_is_deterministic_and_has_the_model_protocol():
    def run():
        rng = Generator(3)
        m = BernoulliVAE(64, 20, 32, rng=rng, estimator="reinforce-baseline")
        x = load_digits("test").x[:16]
        return m.loss(x, None, rng)["loss"].item(), m
    (a, m), (b, _) = run(), run()
    assert a == b
    x = load_digits("test").x[:5]
    assert m.encode(x).shape == (5, 20) and m.decode(np.zeros((5, 20), np.float32)).shape == (5, 64)
    s = m.sample(7, Generator(0)).numpy()
    assert s.shape == (7, 64) and s.min() >= 0 and s.max() <= 1
    with pytest.raises(ValueError, match="estimator"):
        BernoulliVAE(64, 20, 32, rng=Generator(0), estimator="magic")


def test_the_labs_sigma_form_of_the_gaussian_log_density_is_pinned_to_its_home():
    """labs.estimators.gaussian_log_prob (σ, for the lab's ∂/∂σ) equals Normal.log_prob with logvar = 2 ln σ,
    in value and in the gradient with respect to mu (the σ-gradient differs by the chain rule only)."""
    rng = np.random.default_rng(5)
    z, mu, sigma = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.uniform(0.3, 2.0, size=(4, 3))
    mu_a, mu_b = mv.tensor(mu, requires_grad=True), mv.tensor(mu, requires_grad=True)
    s = mv.tensor(sigma, requires_grad=True)
    lab = gaussian_log_prob(mv.tensor(z), mu_a, s)
    home = mv.Normal(mu_b, mv.tensor(2 * np.log(sigma))).log_prob(mv.tensor(z))
    np.testing.assert_allclose(lab.numpy(), home.numpy(), rtol=1e-12)
    lab.sum().backward(), home.sum().backward()
    np.testing.assert_allclose(mu_a.grad, mu_b.grad, rtol=1e-12)
    np.testing.assert_allclose(s.grad, ((z - mu) ** 2 - sigma**2) / sigma**3, rtol=1e-10)  # ∂/∂σ of ln N
