"""Diagnostics on constructed posteriors: active vs collapsed dimensions, KL per dimension, I(z; x)."""

import math

import numpy as np
import pytest

import minivae as mv
from minivae.training.diagnostics import (
    active_units,
    collapse_warning,
    diagnostics_report,
    format_report,
    kl_per_dimension,
    mutual_information,
)
from minivae.models.bvae import BernoulliPosterior, BernoulliVAE
from minivae.random import Generator

N = 300


class FakeGaussianModel:
    """q(z | x): dims 0, 1 follow x closely (informative); dims 2, 3 are exactly the prior N(0, 1)."""

    def posterior(self, x, y=None):
        x = np.asarray(x, dtype=np.float64)
        mu = np.concatenate([2.0 * x[:, :2], np.zeros((len(x), 2))], axis=1)
        logvar = np.concatenate([np.full((len(x), 2), -4.0), np.zeros((len(x), 2))], axis=1)
        return mv.Normal(mv.tensor(mu, dtype="float64"), mv.tensor(logvar, dtype="float64"))


class FakeBernoulliModel:
    """Dim 0 copies the sign of x almost surely; dims 1, 2 are Bernoulli(1/2) for every x."""

    def posterior(self, x, y=None):
        x = np.asarray(x, dtype=np.float64)
        logits = np.concatenate([np.where(x[:, :1] > 0, 8.0, -8.0), np.zeros((len(x), 2))], axis=1)
        return BernoulliPosterior(mv.tensor(logits, dtype="float64"))


def data():
    return Generator(0).normal((N, 2), dtype="float64")


def test_gaussian_active_and_collapsed_dimensions():
    r = diagnostics_report(FakeGaussianModel(), data())
    assert r["posterior"] == "gaussian" and r["latent_dim"] == 4
    assert r["active_units"] == 2 and r["active_mask"] == [True, True, False, False]
    np.testing.assert_allclose(r["kl_per_dim"][2:], 0.0, atol=1e-12)
    assert min(r["kl_per_dim"][:2]) > 1.0
    assert "dims [2, 3]" in r["collapse_warning"]
    # Two well-separated dims carry a lot of information, but never more than ln N.
    assert 3.0 < r["mutual_information"] <= math.log(N) + 1e-9
    assert "WARNING" in format_report(r)


def test_fully_collapsed_posterior_has_zero_information():
    class Prior:
        def posterior(self, x, y=None):
            z = np.zeros((len(x), 3))
            return mv.Normal(mv.tensor(z, dtype="float64"), mv.tensor(z, dtype="float64"))

    r = diagnostics_report(Prior(), data())
    assert r["active_units"] == 0 and r["kl_total"] == 0.0
    assert abs(r["mutual_information"]) < 1e-9
    assert r["collapse_warning"].startswith("posterior collapse: all 3")


def test_bernoulli_posterior_diagnostics():
    r = diagnostics_report(FakeBernoulliModel(), data())
    assert r["posterior"] == "bernoulli" and r["active_units"] == 1
    np.testing.assert_allclose(r["kl_per_dim"], [math.log(2), 0.0, 0.0], atol=5e-3)  # logit ±8: KL = ln 2 - H(σ(8))
    # z_0 = sign(x_0) is one fair bit: I(z; x) = ln 2
    assert abs(r["mutual_information"] - math.log(2)) < 0.05


def test_no_warning_when_every_dimension_is_used():
    assert collapse_warning(np.array([1.0, 2.0]), np.array([True, True])) is None


def test_building_blocks_and_errors():
    count, mask, var = active_units(np.array([[0.0, 1.0], [0.0, -1.0]]))
    assert count == 1 and mask.tolist() == [False, True]
    kl = kl_per_dimension("gaussian", {"mu": np.array([[1.0]]), "logvar": np.array([[0.0]])})
    np.testing.assert_allclose(kl, [0.5])
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(np.zeros((1, 3)))
    with pytest.raises(TypeError, match="posterior"):
        diagnostics_report(object(), data())


def test_report_on_the_binary_vae_runs():
    model = BernoulliVAE(64, 16, 32, rng=Generator(0))
    x = Generator(1).uniform((50, 64))
    r = diagnostics_report(model, x)
    assert r["latent_dim"] == 16 and 0 <= r["mutual_information"] <= math.log(50) + 1e-9


def test_inactive_dimensions_warn_even_when_their_kl_is_large():
    # After too large a learning rate: q(z|x) is far from the prior (KL > 1 nat) yet the same for every x.
    kl = np.array([1.49, 1.63])
    warning = collapse_warning(kl, np.array([False, False]))
    assert warning.startswith("posterior collapse: all 2 latent dimensions are inactive")
    assert "KL 3.12 nats paid for a posterior that ignores x" in warning
    partial = collapse_warning(np.array([2.0, 1.5]), np.array([True, False]))
    assert "1 of 2 latent dimensions are unused" in partial and "dims [1]" in partial


def test_mutual_information_progress_bar_does_not_change_the_estimate(capsys):
    params = {"mu": data(), "logvar": np.zeros((N, 2))}
    quiet = mutual_information("gaussian", params, Generator(3))
    shown = mutual_information("gaussian", params, Generator(3), progress=True)
    assert quiet == shown
    assert "I(z; x) on" in capsys.readouterr().err
