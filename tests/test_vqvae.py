"""The VQ-VAE: its three nodes (nearest code, stop-gradient, straight-through), the model, its codebook updates."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minivae as mv
from minivae.derivations.table import central_difference
from minivae.models.checks import gradcheck_model
from minivae.models import build_model
from minivae.models.vqvae import (
    VQVAE, code_counts, format_codebook_report, nearest_code, perplexity, stop_gradient, straight_through,
)
from minivae.random import Generator
from minivae.tensor import no_grad


def _t(a, grad=True):
    return mv.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad, dtype="float64")


# --------------------------------------------------------------------------- nearest_code
def test_nearest_code_picks_the_closest_code_on_any_leading_shape():
    rng = np.random.default_rng(0)
    codebook = rng.normal(size=(7, 3))
    z = rng.normal(size=(4, 2, 3))
    z_q, index = nearest_code(_t(z), _t(codebook))
    brute = np.argmin(((z[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(index, brute)
    assert index.shape == (4, 2) and z_q.shape == (4, 2, 3)
    np.testing.assert_array_equal(z_q.numpy(), codebook[brute])


def test_nearest_code_vjp_scatters_rows_onto_their_codes_and_gives_z_nothing():
    rng = np.random.default_rng(1)
    codebook, z = rng.normal(size=(5, 2)), rng.normal(size=(9, 2))
    zt, et = _t(z), _t(codebook)
    weights = rng.normal(size=(9, 2))
    z_q, index = nearest_code(zt, et)
    (z_q * mv.tensor(weights, dtype="float64")).sum().backward()
    expected = np.zeros_like(codebook)
    np.add.at(expected, index, weights)
    np.testing.assert_allclose(et.grad, expected, atol=1e-14)
    assert zt.grad is None  # the argmin is flat: no gradient for z
    # Finite differences agree for both inputs (z: 0 away from the cell edges).
    report = mv.gradcheck(lambda a, b: nearest_code(a, b)[0], [_t(z), _t(codebook)])
    assert report.ok and report.inputs[0].max_abs_error == 0.0


def test_nearest_code_with_a_codebook_used_twice_in_one_graph_accumulates():
    codebook = _t([[0.0, 0.0], [1.0, 1.0]])
    a, _ = nearest_code(_t([[0.1, 0.0]]), codebook)
    b, _ = nearest_code(_t([[0.9, 1.2], [0.0, -0.2]]), codebook)
    (a.sum() + 2 * b.sum()).backward()
    np.testing.assert_allclose(codebook.grad, [[3.0, 3.0], [2.0, 2.0]])


@pytest.mark.parametrize(
    "z, codebook, error, message",
    [
        (np.zeros((3, 2)), np.zeros((4, 3)), ValueError, r"vectors of size 3 on the last axis, got shape \(3, 2\)"),
        (np.zeros((3, 2)), np.zeros(4), ValueError, r"codebook must have shape \(K >= 1, D\)"),
        (np.zeros((3, 2)), np.zeros((0, 2)), ValueError, "codebook must have shape"),
    ],
)
def test_nearest_code_rejects_bad_shapes(z, codebook, error, message):
    with pytest.raises(error, match=message):
        nearest_code(_t(z), _t(codebook))


def test_nearest_code_rejects_mixed_precision_and_arrays():
    with pytest.raises(TypeError, match="float32"):
        nearest_code(mv.tensor(np.zeros((2, 2)), dtype="float32"), _t(np.zeros((3, 2))))
    with pytest.raises(TypeError, match="must be minivae Tensors"):
        nearest_code(np.zeros((2, 2)), _t(np.zeros((3, 2))))


def test_nearest_code_on_an_empty_batch_gives_empty_codes():
    z_q, index = nearest_code(_t(np.zeros((0, 2))), _t(np.ones((3, 2))))
    assert z_q.shape == (0, 2) and index.shape == (0,)


# --------------------------------------------------------------------------- stop_gradient, straight_through
def test_stop_gradient_keeps_the_value_and_cuts_the_gradient():
    x = _t([1.0, -2.0, 3.0])
    y = (x * stop_gradient(x)).sum()  # d/dx = sg[x] = x (not 2x)
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0, -2.0, 3.0])
    assert y.item() == 14.0


def test_straight_through_value_is_z_q_and_its_vjp_is_the_surrogates_derivative():
    """Forward exactly z_q; backward = derivative of f(z + c) with c = z_q - z frozen (float64 differences)."""
    rng = np.random.default_rng(2)
    z0, zq0 = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    w = rng.normal(size=(3, 2))
    f = lambda v: float(np.sum(np.sin(v) * w))  # noqa: E731
    zt, qt = _t(z0), _t(zq0)
    out = straight_through(zt, qt)
    np.testing.assert_array_equal(out.numpy(), zq0)
    (mv.sin(out) * mv.tensor(w, dtype="float64")).sum().backward()
    numeric = central_difference(lambda v: f(v + (zq0 - z0)), z0, 1e-6)
    np.testing.assert_allclose(zt.grad, numeric, atol=1e-8)
    assert qt.grad is None  # the sg[] part: z_q gets nothing


def test_straight_through_and_stop_gradient_pass_gradcheck_against_their_frozen_surrogates():
    """minivae.gradcheck takes backward() with recording on and differences values under no_grad():
    the nodes when recording, the surrogate (sg[.] replaced by its value at the point) when not."""
    rng = np.random.default_rng(3)
    z0, q0 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    zq = _t(q0, grad=False)
    shift = mv.tensor(q0 - z0, dtype="float64")
    frozen = mv.tensor(z0, dtype="float64")

    def fn(z):
        if mv.is_grad_enabled():
            return mv.sin(straight_through(z, zq)) * z + z * stop_gradient(z)
        return mv.sin(z + shift) * z + z * frozen

    report = mv.gradcheck(fn, [_t(z0)])
    assert report.ok and report.inputs[0].max_abs_error < 1e-8


def test_straight_through_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match=r"z_e is float64 \(2, 3\) and z_q is float64 \(3, 2\)"):
        straight_through(_t(np.zeros((2, 3))), _t(np.zeros((3, 2))))


# --------------------------------------------------------------------------- the model's gradient
@pytest.mark.parametrize("ema", [False, True])
def test_vqvae_gradcheck_against_the_straight_through_surrogate(ema):
    model = build_model("vqvae", 6, 2, 8, Generator(0), ema=ema).astype("float64")
    data = Generator(1)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data = p.data + data.normal(p.shape, dtype="float64", std=0.5)
    x = data.numpy.random((4, 6))
    report = mv.gradcheck(model.gradcheck_loss(x, None, Generator(2)), model)
    names = [c.name for c in report.inputs]
    assert "codebook" in names and "encoder.net.0.weight" in names and report.ok
    # The real loss is piecewise constant in z_e: plain finite differences disagree with the nodes.
    plain = mv.gradcheck(lambda: model.loss(x, None, Generator(2))["loss"], model, raise_on_failure=False)
    failed = {c.name for c in plain.inputs if not c.passed}
    assert "encoder.net.0.weight" in failed


def test_gradcheck_command_passes_for_vqvae(capsys):
    from minivae.cli import main

    report = gradcheck_model("vqvae")
    assert report.ok and any(c.name == "codebook" for c in report.inputs)
    assert main(["gradcheck", "vqvae"]) == 0
    printed = capsys.readouterr().out
    assert "surrogate" in printed and "codebook" in printed and "FAIL" not in printed


def test_codebook_gets_gradient_only_from_the_codebook_term():
    model = VQVAE(6, 2, 8, rng=Generator(0), codebook_size=5, positions=2)
    x = np.random.default_rng(0).random((8, 6))
    out = model.loss(x, None, Generator(1))
    out["loss"].backward()
    by_loss = model.codebook.grad.copy()
    model.zero_grad()
    out = model.loss(x, None, Generator(1))
    out["codebook"].mean().backward()  # the codebook term alone
    np.testing.assert_allclose(model.codebook.grad, by_loss, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- codebook updates
def test_ema_update_is_the_running_mean_of_the_assigned_outputs():
    model = VQVAE(6, 2, 8, rng=Generator(0), codebook_size=4, positions=3, ema=True, decay=0.5).astype("float64")
    x = np.random.default_rng(3).random((10, 6))
    before = model.codebook.numpy().copy()
    with no_grad():
        z_e, _, index = model.quantize(x)
    rows, flat = z_e.numpy().reshape(-1, 2), index.reshape(-1)
    counts = np.bincount(flat, minlength=4)
    sums = np.stack([rows[flat == k].sum(axis=0) for k in range(4)])
    out = model.loss(x, None, Generator(1))
    assert "codebook" not in out  # EMA mode: no codebook term in the loss
    n = 0.5 * 1.0 + 0.5 * counts
    m = 0.5 * before + 0.5 * sums
    expected = (m + 1e-5 * before) / (n[:, None] + 1e-5)
    np.testing.assert_allclose(model.codebook.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(model.ema_count.numpy(), n)


def test_statistics_change_only_in_training_mode_with_gradients_on():
    model = VQVAE(6, 2, 8, rng=Generator(0), codebook_size=4, ema=True)
    x = np.random.default_rng(3).random((10, 6))
    before = model.state_dict()
    model.eval()
    model.loss(x, None, Generator(1))
    model.train()
    with no_grad():
        model.loss(x, None, Generator(1))
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    model.loss(x, None, Generator(1))
    assert not np.array_equal(model.codebook.numpy(), before["codebook"])


def test_dead_codes_are_restarted_onto_encoder_outputs():
    model = VQVAE(6, 2, 8, rng=Generator(0), codebook_size=4, positions=2, restart_dead=True)
    model.codebook.data[3] = 1e3  # never chosen
    model.usage.data[3] = 0.0  # and counted as unused for a long time
    x = np.random.default_rng(4).random((6, 6))
    with no_grad():
        z_e = model.quantize(x)[0].numpy().reshape(-1, 2)
    model.loss(x, None, Generator(1))
    moved = model.codebook.numpy()[3]
    assert model.restarts == 1
    assert np.min(np.abs(z_e - moved).sum(axis=1)) == 0.0  # it sits on one of the batch's encoder outputs
    assert model.usage.numpy()[3] == pytest.approx(0.25)


# --------------------------------------------------------------------------- diagnostics, prior, sampling
def test_perplexity_and_counts():
    assert perplexity([5, 5, 5, 5]) == pytest.approx(4.0)
    assert perplexity([7, 0, 0]) == pytest.approx(1.0)
    np.testing.assert_array_equal(code_counts(np.array([[0, 2], [2, 2]]), 4), [1, 0, 3, 0])
    with pytest.raises(ValueError, match="no code"):
        perplexity([0, 0])


def test_codebook_report_fit_prior_and_sampling():
    model = VQVAE(6, 2, 8, rng=Generator(0), codebook_size=8, positions=3)
    x = np.random.default_rng(5).random((50, 6))
    report = model.codebook_report(x)
    assert sum(report["counts"]) == 150 and report["codes_used"] + len(report["dead_codes"]) == 8
    assert 1.0 <= report["perplexity"] <= report["codes_used"]
    assert "codes used" in format_codebook_report(report)
    with pytest.raises(RuntimeError, match="fit_prior"):
        model.sample(4, Generator(0))
    prior = model.fit_prior(x)
    assert prior.shape == (3, 8) and np.allclose(prior.sum(axis=1), 1.0)
    a = model.sample(5, Generator(7)).numpy()
    b = model.sample(5, Generator(7)).numpy()
    assert a.shape == (5, 6) and np.array_equal(a, b) and np.all((a >= 0) & (a <= 1))
    with pytest.raises(ValueError, match=r"indices of shape \(N, 3\)"):
        model.decode_codes(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match=r"in \[0, 8\)"):
        model.decode_codes(np.full((1, 3), 8))


def test_loss_reports_usage_and_the_uniform_prior_bound():
    model = VQVAE(6, 2, 8, rng=Generator(0), codebook_size=16, positions=4)
    out = model.loss(np.random.default_rng(0).random((32, 6)), None, Generator(0))
    assert out["neg_elbo"].item() == pytest.approx(out["recon"].item() + 4 * math.log(16), rel=1e-6)
    assert 1 <= out["codes_used"].item() <= 16 and 1.0 <= out["perplexity"].item() <= out["codes_used"].item()


@pytest.mark.parametrize("options, message", [
    ({"codebook_size": 0}, "codebook_size"), ({"positions": 1.5}, "positions"),
    ({"commitment": -1.0}, "commitment"), ({"decay": 1.0}, "decay"),
])
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        VQVAE(6, 2, 8, rng=Generator(0), **options)


# --------------------------------------------------------------------------- the command line
def test_train_resume_sample_and_eval_a_vqvae_from_the_command_line(tmp_path, capsys):
    from minivae.cli import main

    run = tmp_path / "vq"
    args = ["train", "vqvae", "--data", "digits", "--latent", "3", "--hidden", "16", "--batch-size", "256",
            "--codebook-size", "8", "--positions", "2", "--ema", "--restart-dead", "--out", str(run), "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "codes used" in printed and "perplexity" in printed
    for name in ("codebook_usage.png", "samples.png", "reconstructions.png", "checkpoint.npz"):
        assert (run / name).stat().st_size > 0, name
    codebook = __import__("json").loads((run / "codebook.json").read_text())
    assert codebook["codebook_size"] == 8 and sum(codebook["counts"]) == 359 * 2
    assert codebook["codes_used"] + len(codebook["dead_codes"]) == 8
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    metrics = __import__("json").loads((run / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and "perplexity" in metrics["epochs"][-1]["test"]
    assert metrics["config"]["ema"] is True and metrics["config"]["codebook_size"] == 8
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["eval", str(run)]) == 0
    assert "-ELBO" in capsys.readouterr().out


def test_bad_vqvae_options_are_refused(capsys):
    from minivae.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "vqvae", "--codebook-size", "0"])
    assert info.value.code == 2 and "expected a positive integer, got 0" in capsys.readouterr().err
    from minivae.training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="--commitment"):
        TrainConfig(model="vqvae", commitment=-1.0)
    assert TrainConfig(model="vqvae", codebook_size=9, ema=True).model_kwargs(10)["codebook_size"] == 9


def test_a_config_saved_before_the_vq_and_made_options_still_matches_for_resume():
    from minivae.training.config import TrainConfig, config_differences

    current = TrainConfig(model="vae").to_dict()
    old = {k: v for k, v in current.items()
           if k not in ("codebook_size", "positions", "commitment", "ema", "restart_dead", "made_hidden", "free_bits")}
    assert config_differences(old, current) == []
    assert config_differences({**old, "latent": 5}, current) == ["latent: saved 5, now 2"]
    assert config_differences(old, {**current, "ema": True}) == ["ema: saved False, now True"]
