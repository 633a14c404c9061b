"""Figures say what they show: the prior a model really samples from, the loss units, labelled axes."""

from __future__ import annotations

import pytest

from minivae.models import build_model
from minivae.random import Generator
from minivae.training import figures
from minivae.training.data import load_dataset
from minivae.training.runfolder import RUN_FILES


@pytest.fixture
def drawn(monkeypatch):
    """Every figure write_figures saves, by file name, with its axes' titles and labels."""
    saved = {}

    def capture(fig, path):
        saved[path.name] = [(ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
        return path

    monkeypatch.setattr(figures, "save_figure", capture)
    return saved


def _history():
    return [{"epoch": e, "train": {"loss": 3.0 - e, "recon": 2.0}, "test": {"loss": 3.1 - e, "recon": 2.1}}
            for e in (1, 2)]


def test_binary_vae_samples_say_bernoulli_and_draw_no_continuous_manifold(drawn, tmp_path):
    digits = load_dataset("digits", "test")
    model = build_model("bvae", digits.dim, 2, [8], Generator(0))
    figures.write_figures(model, digits, digits, _history(), tmp_path)
    assert "latent_manifold.png" not in drawn  # binary codes: no continuous grid to decode
    title = drawn["samples.png"][0][0]
    assert "Bernoulli" in title and "N(0, I)" not in title
    vae = build_model("vae", digits.dim, 2, [8], Generator(0))
    drawn.clear()
    figures.write_figures(vae, digits, digits, _history(), tmp_path)
    assert "N(0, I)" in drawn["samples.png"][0][0] and "latent_manifold.png" in drawn


def test_mse_loss_curves_are_not_in_nats_and_point_scatters_are_labelled(drawn, tmp_path):
    moons = load_dataset("moons", "test")
    model = build_model("ae", moons.dim, 2, [8], Generator(0), likelihood="mse")
    figures.write_figures(model, moons, moons, _history(), tmp_path)
    assert {label for _, _, label in drawn["loss_curves.png"]} == {"squared error per example"}
    assert "never learned" in drawn["samples.png"][0][0]  # an AE has no prior to sample from
    for name in ("reconstructions.png",):
        title, xlabel, ylabel = drawn[name][0]
        assert title and (xlabel, ylabel) == ("x₁", "x₂")


def test_every_figure_a_run_writes_is_a_run_file(tmp_path):
    """--overwrite removes exactly the run files: a figure missing from RUN_FILES would survive it."""
    import fnmatch

    digits = load_dataset("digits", "test")
    for name in ("vae", "cvae", "bvae", "ae"):
        model = build_model(name, digits.dim, 2, [8], Generator(0), num_classes=10)
        for path in figures.write_figures(model, digits, digits, _history(), tmp_path / name):
            assert any(fnmatch.fnmatch(path.name, pattern) for pattern in RUN_FILES), path.name
