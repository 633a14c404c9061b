"""MADE: the masked dense node, the autoregressive property (through the engine's gradients), the MADE VAE."""

from __future__ import annotations

import numpy as np
import pytest

import minivae as mv
from minivae.models.checks import gradcheck_model
from minivae.models.made import MADEDecoder, MADEVAE, MaskedLinear, hidden_degrees, made_masks, masked_linear
from minivae.optim import Adam
from minivae.random import Generator
from minivae.tensor import no_grad


def _t(a, grad=True):
    return mv.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad, dtype="float64")


def test_masked_linear_gradcheck_and_masked_weight_gradient_is_zero():
    rng = np.random.default_rng(0)
    mask = rng.random((4, 3)) < 0.5
    x, w, b = _t(rng.normal(size=(2, 5, 4))), _t(rng.normal(size=(4, 3))), _t(rng.normal(size=3))
    assert mv.gradcheck(lambda x, w, b: masked_linear(x, w, mask, b), [x, w, b]).ok
    out = masked_linear(x, w, mask, b)
    np.testing.assert_allclose(out.numpy(), x.numpy() @ (w.numpy() * mask) + b.numpy(), atol=1e-14)
    out.sum().backward()
    assert np.all(w.grad[~mask] == 0.0) and np.any(w.grad[mask] != 0.0)


def test_masked_linear_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"weight \(4, 3\) and mask \(3, 4\)"):
        masked_linear(_t(np.zeros((2, 4))), _t(np.zeros((4, 3))), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\) does not fit weight of shape \(4, 3\)"):
        masked_linear(_t(np.zeros((2, 5))), _t(np.zeros((4, 3))), np.ones((4, 3)))
    with pytest.raises(TypeError, match="float32"):
        masked_linear(mv.tensor(np.zeros((2, 4)), dtype="float32"), _t(np.zeros((4, 3))), np.ones((4, 3)))


def test_masks_follow_the_degrees():
    masks, direct = made_masks(4, [3])
    np.testing.assert_array_equal(hidden_degrees(3, 4), [1, 2, 3])
    np.testing.assert_array_equal(masks[0].astype(int), [[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(masks[1].astype(int), [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(direct, np.triu(np.ones((4, 4), dtype=bool), k=1))
    with pytest.raises(ValueError, match="at least 2 inputs"):
        made_masks(1, [3])


@pytest.mark.parametrize("made_hidden, condition_hidden", [((), True), ((16,), True), ((16, 12), True), ((16,), False)])
def test_output_i_does_not_depend_on_inputs_at_or_after_i(made_hidden, condition_hidden):
    """∂l_i/∂x_j from the engine's backward: exactly 0 for j >= i, and not all 0 for j < i."""
    d = 7
    decoder = MADEDecoder(3, d, 8, made_hidden, rng=Generator(0), condition_hidden=condition_hidden).astype("float64")
    rng = np.random.default_rng(1)
    for name, p in decoder.named_parameters():  # random biases: no unit sits exactly at a ReLU kink
        if name.endswith("bias"):
            p.data = p.data + rng.normal(size=p.shape)
    z = _t(rng.normal(size=(5, 3)), grad=False)
    jac = np.zeros((d, d))
    for i in range(d):
        x = _t(rng.random((5, d)) < 0.5)
        decoder(z, x)[:, i].sum().backward()
        jac[i] = np.abs(x.grad).sum(axis=0)
    assert np.all(np.triu(jac) == 0.0), jac  # j >= i: no dependence
    assert np.all(jac[np.tril_indices(d, -1)] > 0.0), jac  # j < i: every earlier pixel is used


def test_masked_weights_stay_zero_through_training():
    model = MADEVAE(6, 2, 8, rng=Generator(0), made_hidden=(10,))
    opt = Adam(model.parameters(), lr=0.05)
    x = (np.random.default_rng(2).random((16, 6)) < 0.4).astype(np.float32)
    for _ in range(5):
        opt.zero_grad()
        model.loss(x, None, Generator(3))["loss"].backward()
        opt.step()
    for layer in (model.decoder.direct, model.decoder.masked0, model.decoder.out):
        assert isinstance(layer, MaskedLinear)
        off = np.asarray(layer.mask) == 0
        assert np.all(layer.weight.numpy()[off] == 0.0)


@pytest.mark.parametrize("options", [{}, {"free_bits": 0.5}])
def test_madevae_gradcheck(options, monkeypatch):
    import minivae.models as models

    original = models.MODELS["madevae"]
    monkeypatch.setitem(models.MODELS, "madevae", lambda *a, **k: original(*a, **{**k, **options}))
    report = gradcheck_model("madevae")
    assert report.ok and any(c.name == "decoder.masked0.weight" for c in report.inputs)


def test_free_bits_floor_the_rate_and_neg_elbo_stays_the_true_bound():
    x = (np.random.default_rng(4).random((8, 6)) < 0.5).astype(np.float32)
    plain = MADEVAE(6, 3, 8, rng=Generator(0))
    floored = MADEVAE(6, 3, 8, rng=Generator(0), free_bits=50.0)  # every dimension far below λ
    a, b = plain.loss(x, None, Generator(1)), floored.loss(x, None, Generator(1))
    assert b["loss"].item() == pytest.approx(b["recon"].item() + 3 * 50.0, rel=1e-6)
    assert a["neg_elbo"].item() == pytest.approx(b["neg_elbo"].item(), rel=1e-6)
    b["loss"].backward()  # below λ the rate passes no gradient: logvar's head learns from recon only
    floored.zero_grad()
    b = floored.loss(x, None, Generator(1))
    b["recon"].backward()
    from_recon = floored.encoder.logvar.bias.grad.copy()
    floored.zero_grad()
    floored.loss(x, None, Generator(1))["loss"].backward()
    np.testing.assert_allclose(floored.encoder.logvar.bias.grad, from_recon, rtol=1e-6)


def test_warmup_ramps_the_kl_weight():
    model = MADEVAE(6, 2, 8, rng=Generator(0), warmup_steps=10, beta=2.0)
    assert model.kl_weight(5) == pytest.approx(1.0)
    assert model.kl_weight(50) == pytest.approx(2.0)
    assert model.kl_weight() == pytest.approx(2.0)  # no step: after the warm-up


def test_generation_is_sequential_and_seeded():
    model = MADEVAE(6, 2, 8, rng=Generator(0), made_hidden=(12,))
    a, b = model.sample(4, Generator(9)).numpy(), model.sample(4, Generator(9)).numpy()
    assert a.shape == (4, 6) and np.array_equal(a, b) and np.all((a > 0) & (a < 1))
    z = mv.tensor(np.random.default_rng(0).normal(size=(3, 2)), dtype="float32")
    probs, pixels = model.decoder.generate(z)
    # Greedy decoding: each probability is the model's for the pixels chosen before it.
    with no_grad():
        again = mv.sigmoid(model.decoder(z, mv.tensor(pixels, dtype="float32"))).numpy()
    np.testing.assert_allclose(again, probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pixels, probs > 0.5)


def test_factorised_decoder_is_the_plain_vae_decoder():
    model = MADEVAE(6, 2, 8, rng=Generator(0), made_hidden=None)
    assert not any(name.startswith("decoder.masked") for name, _ in model.named_parameters())
    z = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    with no_grad():
        direct = mv.sigmoid(model.decoder.base(mv.tensor(z))).numpy()
    np.testing.assert_allclose(model.decode(z).numpy(), direct, rtol=1e-6)


def test_log_weights_shape_and_importance_bound():
    from minivae.models import importance_log_likelihood

    model = MADEVAE(6, 2, 8, rng=Generator(0))
    x = (np.random.default_rng(5).random((7, 6)) < 0.5).astype(np.float32)
    assert model.log_weights(x, None, 4, Generator(1)).shape == (4, 7)
    ll = importance_log_likelihood(model, x, k=200, rng=Generator(2))
    with no_grad():
        elbo = -np.mean([model.loss(x, None, Generator(10 + i))["neg_elbo"].item() for i in range(50)])
    assert ll.mean() >= elbo - 0.05


def test_train_a_madevae_from_the_command_line(tmp_path, capsys):
    from minivae.cli import main

    run = tmp_path / "made"
    assert main(["train", "madevae", "--data", "digits", "--latent", "2", "--hidden", "16", "--made-hidden", "8",
                 "--free-bits", "0.1", "--batch-size", "256", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    assert "active units" in capsys.readouterr().out  # the latent diagnostics ran
    for name in ("samples.png", "reconstructions.png", "latent_manifold.png"):
        assert (run / name).stat().st_size > 0, name
    config = __import__("json").loads((run / "config.json").read_text())
    assert config["made_hidden"] == [8] and config["free_bits"] == 0.1
    assert main(["train", "madevae", "--made-hidden", "--epochs", "1", "--hidden", "16", "--batch-size", "512",
                 "--out", str(tmp_path / "direct"), "--quiet", "--no-figures"]) == 0  # the direct path only
