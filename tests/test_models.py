"""Models: gradients (finite differences, float64, common random numbers), the loss
decompositions, IWAE bound ordering, importance-sampled likelihoods and the registry."""

import math

import numpy as np
import pytest

import minivae as mv
from minivae.training.data import batches, load_digits
from minivae.distributions import Normal
from minivae.models import (
    MODELS, IWAE, VAE, Autoencoder, ConditionalVAE, DenoisingAutoencoder, build_model,
    importance_log_likelihood, iwae_bound,
)
from minivae.optim import Adam
from minivae.random import Generator

D, LATENT, HIDDEN, BATCH, CLASSES = 6, 2, 8, 4, 3

CASES = [
    ("ae", {}),
    ("ae", {"likelihood": "mse"}),
    ("ae", {"likelihood": "gaussian"}),
    ("dae", {"noise": "gaussian", "level": 0.3}),
    ("dae", {"noise": "mask", "level": 0.4}),
    ("vae", {}),
    ("vae", {"likelihood": "gaussian", "beta": 2.5}),
    ("cvae", {}),
    ("iwae", {"k": 4}),
]


def tiny(name, seed=0, **options):
    """A float64 model with biases moved off 0 (no ReLU kinks at exact zeros) and a batch."""
    model = build_model(name, D, LATENT, HIDDEN, Generator(seed), num_classes=CLASSES, **options).astype("float64")
    g = Generator(seed + 100)
    for pname, p in model.named_parameters():
        if pname.endswith("bias"):
            p.data = p.data + g.normal(p.shape, dtype="float64", std=0.5)
    return model, g.numpy.random((BATCH, D)), g.numpy.integers(0, CLASSES, size=BATCH)


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in CASES])
def test_every_model_loss_passes_gradcheck(name, options):
    model, x, y = tiny(name, **options)
    noise = Generator(7)  # rewound before every evaluation: the same eps / masks each time
    report = mv.gradcheck(lambda: model.loss(x, y, noise)["loss"], model, rng=noise)
    assert report.ok
    assert len(report.inputs) == len(model.parameters())
    # Not a vacuous check: every parameter really gets a gradient.
    noise2 = Generator(7)
    model.loss(x, y, noise2)["loss"].backward()
    for pname, p in model.named_parameters():
        assert np.abs(p.grad).max() > 1e-8, pname


@pytest.mark.parametrize("name", ["ae", "vae", "iwae", "cvae", "bvae", "madevae", "vqvae"])
def test_an_input_that_requires_a_gradient_must_match_the_models_dtype(name):
    """Found in QA: a float64 input tensor was silently cast to a float32 model (its gradient in float32)."""
    options = {"k": 2} if name == "iwae" else {}
    model = build_model(name, D, LATENT, HIDDEN, Generator(0), num_classes=CLASSES, **options)
    data = Generator(1).numpy.random((BATCH, D))
    labels = np.arange(BATCH) % CLASSES
    x = mv.tensor(data, dtype="float64", requires_grad=True)
    with pytest.raises(TypeError, match=rf"^\w+: input tensor of shape \({BATCH}, {D}\) is float64 and requires a "
                                        r"gradient, but the model computes in float32; call model.astype\('float64'\)"):
        model.loss(x, labels, Generator(2))
    assert model.loss(data, labels, Generator(2))["loss"].dtype == np.float32  # arrays are data: cast, as before
    assert model.loss(x.detach(), labels, Generator(2))["loss"].dtype == np.float32
    model.astype("float64")
    model.loss(x, labels, Generator(2))["loss"].backward()  # matching dtypes: the gradient reaches the input
    assert x.grad.dtype == np.float64 and x.grad.shape == (BATCH, D) and np.abs(x.grad).max() > 0


def test_same_seed_same_numbers_and_different_seed_differs():
    a, x, y = tiny("vae", seed=3)
    b, _, _ = tiny("vae", seed=3)
    c, _, _ = tiny("vae", seed=4)
    la = a.loss(x, y, Generator(1))["loss"].item()
    assert la == b.loss(x, y, Generator(1))["loss"].item()
    assert la != c.loss(x, y, Generator(1))["loss"].item()
    assert la != a.loss(x, y, Generator(2))["loss"].item()  # the noise matters


def test_vae_loss_is_recon_plus_beta_kl_and_reports_them():
    model, x, y = tiny("vae", beta=3.0)
    out = model.loss(x, y, Generator(0))
    assert set(out) == {"loss", "recon", "kl", "neg_elbo"}
    recon, kl = out["recon"].item(), out["kl"].item()
    assert out["loss"].item() == pytest.approx(recon + 3.0 * kl, rel=1e-12)
    assert out["neg_elbo"].item() == pytest.approx(recon + kl, rel=1e-12)
    assert kl > 0
    # KL term equals the closed form from the encoder's mu, logvar (mean over the batch).
    q = model.posterior(x)
    mu, lv = q.mu.numpy(), q.logvar.numpy()
    assert kl == pytest.approx(np.mean(0.5 * (np.exp(lv) + mu**2 - 1 - lv).sum(axis=1)), rel=1e-10)


def test_kl_warmup_ramps_linearly_to_beta():
    model = VAE(D, LATENT, HIDDEN, rng=Generator(0), beta=2.0, warmup_steps=10)
    weights = []
    for step in (0, 5, 10, 50, None):
        weights.append(model.kl_weight(step))
    assert weights == [0.0, 1.0, 2.0, 2.0, 2.0]  # None: evaluation, after the warm-up
    assert not hasattr(model, "step")  # the training loop passes the step; it never writes it into the model
    assert VAE(D, LATENT, HIDDEN, rng=Generator(0), beta=0.5).kl_weight() == 0.5


def test_ae_loss_is_summed_over_pixels_and_averaged_over_batch():
    model, x, y = tiny("ae", likelihood="mse")
    out = model.reconstruct(x).numpy()
    assert model.loss(x, y, Generator(0))["loss"].item() == pytest.approx(((out - x) ** 2).sum(axis=1).mean())
    model, x, y = tiny("ae")  # bernoulli: BCE from logits, summed
    p = np.clip(model.reconstruct(x).numpy(), 1e-12, 1 - 1e-12)
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1).mean()
    assert model.loss(x, y, Generator(0))["loss"].item() == pytest.approx(bce, rel=1e-8)


def test_dae_reconstructs_the_clean_input_from_a_corrupted_one():
    clean, x, y = tiny("ae")
    for noise in ("gaussian", "mask"):
        dae, _, _ = tiny("dae", noise=noise, level=0.0)
        # No corruption: exactly the autoencoder's loss (same seed, same weights).
        assert dae.loss(x, y, Generator(0))["loss"].item() == clean.loss(x, y, Generator(0))["loss"].item()
    dae, _, _ = tiny("dae", noise="mask", level=0.5)
    big = np.ones((200, D))
    masked = dae.corrupt(mv.tensor(big, dtype="float64"), Generator(1)).numpy()
    assert set(np.unique(masked)) == {0.0, 1.0}
    assert 0.4 < (masked == 0).mean() < 0.6
    noisy = DenoisingAutoencoder(D, LATENT, HIDDEN, rng=Generator(0), noise="gaussian", level=0.2)
    diff = noisy.corrupt(mv.tensor(big), Generator(1)).numpy() - big
    assert abs(diff.std() - 0.2) < 0.02
    # The loss differs from the clean-input loss: the noise is really applied.
    dae, _, _ = tiny("dae", noise="gaussian", level=0.5)
    assert dae.loss(x, y, Generator(0))["loss"].item() != clean.loss(x, y, Generator(0))["loss"].item()
    with pytest.raises(ValueError, match="noise"):
        DenoisingAutoencoder(D, LATENT, HIDDEN, rng=Generator(0), noise="salt")


def test_encoder_and_decoder_work_alone():
    model = VAE(D, 3, [8, 5], rng=Generator(0))
    q = model.encoder(mv.tensor(np.zeros((2, D)), dtype="float32"))
    assert isinstance(q, Normal) and q.mu.shape == (2, 3)
    probs = model.decode(np.random.default_rng(0).normal(size=(7, 3)))  # arbitrary z
    assert probs.shape == (7, D) and 0 < probs.numpy().min() and probs.numpy().max() < 1
    assert model.encode(np.zeros((2, D))).shape == (2, 3)
    samples = model.sample(5, Generator(0)).numpy()
    assert samples.shape == (5, D)
    assert np.array_equal(samples, model.sample(5, Generator(0)).numpy())
    ae = Autoencoder(D, 2, 8, rng=Generator(0))
    assert ae.encoder(mv.tensor(np.zeros((3, D)), dtype="float32")).shape == (3, 2)
    assert ae.sample(4, Generator(0)).shape == (4, D)


def test_cvae_conditions_on_the_label():
    model, x, y = tiny("cvae")
    assert model.conditional
    with pytest.raises(ValueError, match="labels y are required"):
        model.loss(x, None, Generator(0))
    with pytest.raises(ValueError, match="shape"):
        model.loss(x, y[:2], Generator(0))
    z = np.zeros((1, LATENT))
    images = [model.decode(z, np.array([c])).numpy() for c in range(CLASSES)]
    assert not np.allclose(images[0], images[1])  # the label changes the output for the same z
    assert model.sample(6, Generator(0), y=2).shape == (6, D)
    same = model.sample(6, Generator(0), y=np.full(6, 2)).numpy()
    assert np.array_equal(model.sample(6, Generator(0), y=2).numpy(), same)
    with pytest.raises(ValueError, match="num_classes"):
        ConditionalVAE(D, LATENT, HIDDEN, rng=Generator(0), num_classes=None)


def test_iwae_with_one_sample_is_the_one_sample_elbo():
    model = IWAE(D, LATENT, HIDDEN, rng=Generator(0), k=1).astype("float64")
    x = np.random.default_rng(1).random((5, D))
    rng = Generator(3)
    log_w = model.log_weights(x, None, 1, rng).numpy()  # (1, 5)
    assert -model.loss(x, None, Generator(3))["loss"].item() == pytest.approx(log_w.mean(), rel=1e-12)


def test_vae_with_k_samples_averages_the_reconstruction_and_keeps_the_kl_exact():
    model = VAE(D, LATENT, HIDDEN, rng=Generator(0), samples=3).astype("float64")
    x = np.random.default_rng(1).random((5, D))
    out = model.loss(x, None, Generator(3))
    q = model.posterior(x)
    z = q.rsample(rng=Generator(3), sample_shape=(3,))  # the same three draws per example
    recon = model.decoder.nll(model.decoder(z), mv.tensor(x)).numpy().mean(axis=0)
    assert out["recon"].item() == pytest.approx(recon.mean(), rel=1e-12)
    assert out["kl"].item() == pytest.approx(q.kl_standard().numpy().mean(), rel=1e-12)
    noise = Generator(7)  # rewound before every evaluation: the same eps each time
    assert mv.gradcheck(lambda: model.loss(x, None, noise)["loss"], model, rng=noise).ok
    with pytest.raises(ValueError, match="samples"):
        VAE(D, LATENT, HIDDEN, rng=Generator(0), samples=0)


def test_iwae_elbo_objective_is_the_mean_log_weight_and_equals_iwae_at_k1():
    """The paper's k-sample VAE (objective="elbo"): -(1/k) Σ ln w_i from the same samples as L_k."""
    x = np.random.default_rng(1).random((5, D))

    def loss_and_grads(objective, k, dtype="float32"):
        model = IWAE(D, LATENT, HIDDEN, rng=Generator(0), k=k, objective=objective).astype(dtype)
        loss = model.loss(x.astype(dtype), None, Generator(3))["loss"]
        loss.backward()
        return loss.item(), [p.grad.copy() for p in model.parameters()], model

    # k = 1: the same function, so the same float32 numbers bit for bit (loss and every gradient)
    l_iwae, g_iwae, _ = loss_and_grads("iwae", 1)
    l_elbo, g_elbo, _ = loss_and_grads("elbo", 1)
    assert l_iwae == l_elbo and all(np.array_equal(a, b) for a, b in zip(g_iwae, g_elbo))
    # k = 5: mean of the log-weights, which Jensen puts at or below L_k for the same samples
    l_iwae, g_iwae, model = loss_and_grads("iwae", 5, "float64")
    l_elbo, g_elbo, _ = loss_and_grads("elbo", 5, "float64")
    log_w = model.log_weights(x, None, 5, Generator(3)).numpy()
    assert -l_elbo == pytest.approx(log_w.mean(), rel=1e-12)
    assert l_elbo > l_iwae and not all(np.allclose(a, b) for a, b in zip(g_iwae, g_elbo))
    elbo_model = IWAE(D, LATENT, HIDDEN, rng=Generator(2), k=3, objective="elbo").astype("float64")
    noise = Generator(7)  # rewound before every evaluation: the same eps each time
    assert mv.gradcheck(lambda: elbo_model.loss(x, None, noise)["loss"], elbo_model, rng=noise).ok
    with pytest.raises(ValueError, match="objective"):
        IWAE(D, LATENT, HIDDEN, rng=Generator(0), objective="vae")


def test_iwae_bounds_are_ordered_on_digits():
    """E[L_1] <= E[L_5] <= E[L_50] (Burda et al., theorem 1), on test data after brief training."""
    train, test = load_digits("train"), load_digits("test")
    model = VAE(64, 2, 32, rng=Generator(0))
    opt, rng = Adam(model.parameters(), lr=3e-3), Generator(1)
    for _ in range(5):
        for xb, yb in batches(train, 64, rng=rng):
            opt.zero_grad()
            model.loss(xb, yb, rng)["loss"].backward()
            opt.step()
    bounds = {k: np.mean([iwae_bound(model, test.x, k, Generator(10 + r)).mean() for r in range(4)]) for k in (1, 5, 50)}
    # Measured over seeds: L_5 - L_1 ≈ 0.15-0.3 nats, L_50 - L_5 ≈ 0.05-0.12; the Monte Carlo
    # error of each average (359 test digits × 4 replicates) is ≈ 0.015 nats.
    assert bounds[1] + 0.1 < bounds[5]
    assert bounds[5] + 0.02 < bounds[50]
    assert bounds[50] < 0


def test_importance_log_likelihood_chunks_do_not_change_the_answer():
    model, x, y = tiny("vae")
    whole = importance_log_likelihood(model, x, k=37, rng=Generator(5), chunk=1000, batch_size=1000)
    chunked = importance_log_likelihood(model, x, k=37, rng=Generator(5), chunk=5, batch_size=1000)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    assert whole.shape == (BATCH,) and whole.dtype == np.float64
    # It is log of a mean of weights: compare with a direct NumPy computation.
    log_w = model.log_weights(x, None, 37, Generator(5)).numpy()
    direct = np.log(np.mean(np.exp(log_w), axis=0))
    np.testing.assert_allclose(whole, direct, rtol=1e-10)
    # Bounded memory does not mean fewer rows: batching over rows returns every row.
    assert importance_log_likelihood(model, x, k=3, rng=Generator(5), batch_size=3).shape == (BATCH,)
    cvae, x, y = tiny("cvae")
    assert np.isfinite(importance_log_likelihood(cvae, x, k=10, rng=Generator(0), y=y)).all()
    with pytest.raises(ValueError, match="rng"):
        importance_log_likelihood(model, x, k=10)
    with pytest.raises(TypeError, match="log_weights"):
        importance_log_likelihood(tiny("ae")[0], x, k=10, rng=Generator(0))


def test_registry_builds_every_model_and_rejects_bad_names_and_options():
    for name in ("ae", "dae", "vae", "cvae", "iwae"):
        assert name in MODELS
        model = build_model(name, D, LATENT, HIDDEN, Generator(0), num_classes=CLASSES)
        assert isinstance(model, mv.nn.Module)
        out = model.loss(np.random.default_rng(0).random((3, D)), np.array([0, 1, 2]), Generator(0))
        assert out["loss"].shape == () and math.isfinite(out["loss"].item())
    with pytest.raises(ValueError, match="unknown model 'nope'.*ae"):
        build_model("nope", D, LATENT, HIDDEN, Generator(0))
    with pytest.raises(ValueError, match="does not take option.*'k'"):
        build_model("vae", D, LATENT, HIDDEN, Generator(0), k=3)
    with pytest.raises(ValueError, match="likelihood"):
        build_model("vae", D, LATENT, HIDDEN, Generator(0), likelihood="mse")
    with pytest.raises(ValueError, match="hidden"):
        build_model("vae", D, LATENT, 0, Generator(0))
    with pytest.raises(ValueError, match="k"):
        build_model("iwae", D, LATENT, HIDDEN, Generator(0), k=0)
