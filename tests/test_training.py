"""Training loop: metrics files, exact resume, NaN stop, architecture mismatch, atomic writes."""

import csv
import json
import os

import numpy as np
import pytest

from minivae.nn import StateDictError
from minivae.models import build_model
from minivae.random import Generator
from minivae.training.trainer import (
    CheckpointError, TrainConfig, Trainer, TrainingDiverged, atomic_write_bytes, load_checkpoint, load_run,
    read_checkpoint,
)
from minivae.training.runfolder import RunFolderError


def small(**overrides):
    settings = dict(model="vae", data="digits", latent=2, hidden=[16], epochs=2, batch_size=128, lr=3e-3, seed=5)
    settings.update(overrides)
    return TrainConfig(**settings)


def params_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_a_run_writes_config_metrics_and_checkpoint(tmp_path):
    trainer = Trainer(small(epochs=3), tmp_path, progress=False)
    history = trainer.fit()
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["step"] == 3 * trainer.steps_per_epoch == 3 * 12  # 1438 training digits / 128
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == "vae" and config["likelihood"] == "bernoulli" and config["hidden"] == [16]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3
    final = metrics["final"]["test_neg_elbo_nats"]
    assert final == history[-1]["test"]["neg_elbo"] and 15 < final < 60
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 3 and float(rows[-1]["test_neg_elbo"]) == pytest.approx(final)
    assert {"train_loss", "train_recon", "train_kl", "test_loss", "test_kl"} <= set(rows[0])

    ckpt = read_checkpoint(tmp_path / "checkpoint.npz")  # no pickle needed
    assert ckpt.epoch == 3 and ckpt.config == config and ckpt.optimizer["steps"] == 36
    assert ckpt.rng_state["bit_generator"]["bit_generator"] == "PCG64"
    assert set(ckpt.params) == set(trainer.model.state_dict())
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_resume_after_epoch_k_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    # A DAE and a warmed-up VAE draw noise every step; the VAE's warm-up also depends on the step count.
    for overrides in ({"model": "vae", "warmup": 2}, {"model": "dae", "noise": "mask"}):
        where = tmp_path / overrides["model"]
        straight = Trainer(small(epochs=4, **overrides), where / "straight", progress=False)
        straight.fit()

        first = Trainer(small(epochs=2, **overrides), where / "stopped", progress=False)
        first.fit()
        del first  # "the process stopped"
        resumed = Trainer(small(epochs=4, **overrides), where / "stopped", resume=True, progress=False, log=print)
        assert resumed.epoch == 2
        resumed.fit()

        a, b = params_of(straight.model), params_of(resumed.model)
        for name in a:
            assert np.array_equal(a[name], b[name]), name
        for key, value in straight.optimizer.state_dict().items():
            np.testing.assert_array_equal(value, resumed.optimizer.state_dict()[key])
        assert straight.history[-1]["test"] == resumed.history[-1]["test"]
        assert [r["train"] for r in straight.history] == [r["train"] for r in resumed.history]


def test_resume_refuses_other_settings_and_fresh_runs_refuse_to_overwrite(tmp_path):
    Trainer(small(epochs=1), tmp_path, progress=False).fit()
    with pytest.raises(CheckpointError, match="lr: saved 0.003, now 0.01"):
        Trainer(small(epochs=2, lr=1e-2), tmp_path, resume=True, progress=False)
    with pytest.raises(RunFolderError, match="already holds a run .*pass --resume to continue it, --overwrite"):
        Trainer(small(epochs=2), tmp_path, progress=False)
    (tmp_path / "eval.json").write_text("{}")  # by hand: not in the run's manifest, so the user's
    (tmp_path / "notes.txt").write_text("mine")  # not a run file: never touched
    Trainer(small(epochs=1, lr=1e-2), tmp_path, overwrite=True, progress=False)  # explicitly allowed
    # The old run's files are gone, so nothing of it mixes with the new run; the user's files stay.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "eval.json", "minivae-run.json", "notes.txt"]
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 1e-2


def test_loading_another_architecture_names_parameters_and_settings(tmp_path):
    Trainer(small(epochs=1), tmp_path, progress=False).fit()
    other = small(latent=3)
    model = build_model("vae", 64, 3, [16], Generator(0))
    with pytest.raises(StateDictError) as info:
        load_checkpoint(tmp_path / "checkpoint.npz", model, config=other.to_dict())
    message = str(info.value)
    assert "encoder.mu.weight: saved (16, 2), model (16, 3)" in message
    assert "latent: saved 2, now 3" in message
    with pytest.raises(StateDictError, match="hidden: saved \\[16\\], now \\[32\\]"):
        Trainer(small(hidden=[32]), tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.npz", model)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="not a minivae checkpoint"):
        read_checkpoint(tmp_path / "junk.npz")


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(tmp_path):
    trainer = Trainer(small(epochs=1), tmp_path, progress=False)
    trainer.fit()
    saved = read_checkpoint(tmp_path / "checkpoint.npz")
    saved_bytes = (tmp_path / "checkpoint.npz").read_bytes()

    trainer.config.epochs = 3
    trainer.model.decoder.net[0].bias.data[:] = np.nan  # something went badly wrong
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "epoch 2, step 13" in message and "batch 1 of 12" in message
    assert "checkpoint.npz (after epoch 1) and the metrics were kept" in message
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved_bytes
    assert all(np.isfinite(v).all() for v in saved.params.values())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stopped"]["checkpoint_epoch"] == 1 and "epoch 2, step 13" in metrics["stopped"]["reason"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf in the forward pass, on purpose
def test_nan_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path):
    trainer = Trainer(small(epochs=1), tmp_path, progress=False)
    trainer.model.encoder.mu.bias.data[:] = np.inf
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1 .*no checkpoint had been written yet"):
        trainer.fit()
    assert not (tmp_path / "checkpoint.npz").exists()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.npz"
    atomic_write_bytes(target, b"good")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"half-written")
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["checkpoint.npz"]  # the temporary file was removed


def test_other_models_and_point_data_train(tmp_path):
    for model, data, extra in (("cvae", "digits", {}), ("iwae", "digits", {"k": 3}), ("vae", "ring", {}),
                               ("ae", "moons", {}), ("dae", "digits", {"noise": "mask"})):
        trainer = Trainer(small(model=model, data=data, epochs=1, **extra), tmp_path / f"{model}-{data}", progress=False)
        history = trainer.fit()
        assert np.isfinite(history[-1]["test"]["loss"])
        if data == "ring":
            assert trainer.config.likelihood == "gaussian"
    config, model, ckpt = load_run(tmp_path / "cvae-digits")
    assert config.model == "cvae" and ckpt.epoch == 1 and model.num_classes == 10


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="--epochs must be a positive integer"):
        small(epochs=-1)
    with pytest.raises(ValueError, match="unknown 'no-such-model'"):
        small(model="no-such-model")
    with pytest.raises(ValueError, match="data: unknown 'cifar'"):
        small(data="cifar")
    with pytest.raises(ValueError, match="--lr must be positive"):
        small(lr=0.0)
    with pytest.raises(ValueError, match="--seed must be an integer >= 0, got -1"):
        small(seed=-1)
    with pytest.raises(ValueError, match="--likelihood mse: model vae supports bernoulli, gaussian"):
        small(likelihood="mse")


def test_iwae_trained_model_has_a_likelihood_at_least_as_good_as_the_vae(tmp_path):
    """The IWAE paper's comparison on the digits: same networks, ln p(x) by importance sampling (k = 500).

    Measured over seeds 1-3 with 30 epochs: the IWAE (k = 10) is better by 0.15-0.42 nats.
    """
    from minivae.models import importance_log_likelihood

    gaps = []
    for seed in (1, 2):
        ll = {}
        for model, extra in (("vae", {}), ("iwae", {"k": 10})):
            config = small(model=model, hidden=[64], epochs=30, batch_size=64, lr=2e-3, seed=seed, **extra)
            trainer = Trainer(config, tmp_path / f"{model}-{seed}", progress=False)
            trainer.fit()
            ll[model] = importance_log_likelihood(trainer.model, trainer.test_set.x, k=500, rng=Generator(1)).mean()
        assert ll["iwae"] >= ll["vae"] - 0.05, (seed, ll)
        gaps.append(ll["iwae"] - ll["vae"])
    assert np.mean(gaps) > 0.1


def test_checkpoints_every_save_every_epochs_and_after_the_last(tmp_path):
    from minivae.training.trainer import read_checkpoint

    trainer = Trainer(small(epochs=5), tmp_path, progress=False, save_every=2)
    saved = []
    trainer.fit(on_epoch_end=lambda row: saved.append(
        read_checkpoint(trainer.checkpoint_path).epoch if trainer.checkpoint_path.exists() else None))
    assert saved == [None, 2, 2, 4, 5]
    assert json.loads((tmp_path / "metrics.json").read_text())["final"]["epoch"] == 5
    with pytest.raises(ValueError, match="save_every must be a positive"):
        Trainer(small(epochs=1), tmp_path / "x", progress=False, save_every=0)
    assert Trainer(small(epochs=300), tmp_path / "long", progress=False).save_every == 6


def test_the_variance_lab_trains_with_the_shared_training_step(monkeypatch):
    import minivae.training.step as step
    from minivae.labs.variance import vae_encoder_gradient_variance

    calls = []
    real = step.training_step

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(step, "training_step", counted)
    result = vae_encoder_gradient_variance(train_steps=3, repeats=3, batch=8, latent=2, hidden=8)
    assert len(calls) == 3 and result


def test_training_step_refuses_a_bad_loss_before_updating():
    from minivae.optim import Adam
    from minivae.training.step import BadLoss, training_step

    model = build_model("ae", 4, 2, [3], Generator(0), likelihood="mse")
    opt = Adam(model.parameters(), lr=0.1)
    x = np.ones((2, 4), dtype=np.float32)
    before = params_of(model)
    with pytest.raises(BadLoss, match="beyond 1e-06 \\(exploding\\)"):
        training_step(model, opt, x, None, Generator(1), limit=1e-6)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items()) and opt.steps == 0
    training_step(model, opt, x, None, Generator(1))
    assert opt.steps == 1


def test_every_file_a_run_writes_is_a_run_file(tmp_path):
    """--overwrite removes exactly the run files: one missing from RUN_FILES would survive into the next run."""
    import fnmatch

    from minivae.training import trainer as trainer_module
    from minivae.training.runfolder import RUN_FILES

    names = ["config.json", "metrics.json", "metrics.csv", trainer_module.CHECKPOINT, trainer_module.BINARIZED_TRAIN]
    for name in names:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in RUN_FILES), name
