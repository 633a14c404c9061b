"""A student's own model in the Trainer: run folder, checkpoints, exact resume and figures.

The model is defined here, not in minivae.models: the Trainer must need nothing of it but
the protocol in its docstring.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import minivae as mv
from minivae.training.checkpoint import load_checkpoint
from minivae.training.config import TrainConfig
from minivae.training.figures import write_figures
from minivae.training.trainer import CheckpointError, Trainer, load_run


class TinyAutoencoder(mv.nn.Module):
    """A linear autoencoder with a little noise on the code: squared error plus a small code penalty."""

    latent = 2

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        rng = mv.random.Generator(seed)
        self.enc = mv.nn.Linear(dim, self.latent, rng=rng)
        self.dec = mv.nn.Linear(self.latent, dim, rng=rng)

    def encode(self, x, y=None):
        return self.enc(mv.tensor(x))

    def decode(self, z, y=None):
        return mv.sigmoid(self.dec(z if isinstance(z, mv.Tensor) else mv.tensor(z)))

    def sample(self, n, rng):
        return self.decode(mv.tensor(rng.normal((n, self.latent))))

    def loss(self, x, y, rng):
        z = self.encode(x)
        z = z + 0.1 * mv.tensor(rng.normal(z.shape))  # noise from the checkpointed stream
        recon = ((self.decode(z) - mv.tensor(x)) ** 2).sum(axis=-1).mean()
        code = 1e-3 * (z * z).sum(axis=-1).mean()
        return {"loss": recon + code, "recon": recon, "code": code}


def config(epochs: int) -> TrainConfig:
    return TrainConfig(data="digits", epochs=epochs, batch_size=256, lr=1e-2, seed=3)


def test_a_model_defined_here_trains_with_run_folder_checkpoints_resume_and_figures(tmp_path):
    with Trainer(config(2), tmp_path / "straight", model=TinyAutoencoder(64), progress=False) as straight:
        history = straight.fit()
    assert [row["epoch"] for row in history] == [1, 2] and history[1]["train"]["loss"] < history[0]["train"]["loss"]
    run = tmp_path / "straight"
    assert json.loads((run / "config.json").read_text())["model"] == "custom"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["final"]["test"]) == {"loss", "recon", "code"} and metrics["final"]["epoch"] == 2

    # Stop after epoch 1, resume with a fresh object of the same model: bit-identical parameters.
    with Trainer(config(1), tmp_path / "resumed", model=TinyAutoencoder(64), progress=False) as first:
        first.fit()
    with Trainer(config(2), tmp_path / "resumed", model=TinyAutoencoder(64), resume=True, progress=False,
                 log=lambda _: None) as resumed:
        resumed.fit()
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)

    # Loaded back by the user (load_run knows only registered models, and says so).
    again = TinyAutoencoder(64, seed=99)
    load_checkpoint(run / "checkpoint.npz", again)
    np.testing.assert_array_equal(again.enc.weight.data, straight.model.enc.weight.data)
    with pytest.raises(CheckpointError, match="model of your own.*load_checkpoint"):
        load_run(run)

    written = {p.name for p in write_figures(straight.model, straight.train_set, straight.test_set, history, run)}
    assert {"reconstructions.png", "samples.png", "latent_scatter.png", "latent_manifold.png",
            "loss_curves.png"} <= written
    assert all((run / name).stat().st_size > 1000 for name in written)


def test_a_model_with_only_loss_and_parameters_gets_the_loss_curves(tmp_path):
    class LossOnly(mv.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = mv.nn.Parameter(np.zeros(64, dtype=np.float32))

        def loss(self, x, y, rng):
            return {"loss": ((mv.tensor(x) - self.w) ** 2).mean()}

    with Trainer(config(1), tmp_path, model=LossOnly(), progress=False) as trainer:
        history = trainer.fit()
    written = [p.name for p in write_figures(trainer.model, trainer.train_set, trainer.test_set, history, tmp_path)]
    assert written == ["loss_curves.png"]


def test_a_model_without_the_protocol_is_a_one_line_error_naming_what_it_lacks(tmp_path):
    class NoLoss(mv.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = mv.nn.Parameter(np.zeros(3, dtype=np.float32))

    with pytest.raises(TypeError, match=r"NoLoss lacks loss; a model needs loss\(x, y, rng\)") as err:
        Trainer(config(1), tmp_path / "a", model=NoLoss(), progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(TypeError, match="object lacks loss, parameters, train, eval"):
        Trainer(config(1), tmp_path / "b", model=object(), progress=False)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


class _Returns(mv.nn.Module):
    """A model whose loss returns what a student might write instead of {"loss": tensor}."""

    def __init__(self, wrong) -> None:
        super().__init__()
        self.lin, self.wrong = mv.nn.Linear(64, 64, rng=mv.random.Generator(0)), wrong

    def loss(self, x, y, rng):
        return self.wrong(mv.losses.mse(self.lin(mv.tensor(x)), x))


@pytest.mark.parametrize("wrong, message", [
    (lambda r: r, r"returned a Tensor, not a dict"),
    (lambda r: (r, {}), r"returned a tuple, not a dict"),
    (lambda r: {"total": r}, r"returned a dict without a 'loss' entry \(it has 'total'\)"),
    (lambda r: {"loss": float(r)}, r"returned 'loss' as a float, not a one-element Tensor"),
    (lambda r: {"loss": r, "mse": r * mv.tensor(np.ones(3, dtype="float32"))},
     r"returned 'mse' with shape \(3,\), not one element"),
    (lambda r: {"loss": r.detach()}, r"returned a 'loss' that does not require grad"),
])
def test_a_loss_that_breaks_the_protocol_is_one_line_naming_the_model_and_the_fix(tmp_path, wrong, message):
    """Found in QA: these ended in 'getitem: index 'loss' is invalid ...', "'float' object has no
    attribute 'item'" or 'tuple indices must be integers', deep inside the training step."""
    with Trainer(TrainConfig(data="digits", epochs=1), tmp_path / "run", model=_Returns(wrong),
                 progress=False, log=lambda line: None) as trainer:
        with pytest.raises(TypeError, match=rf"^_Returns\.loss\(x, y, rng\) {message}.*"
                                            r"\{'loss': loss, \.\.\.\}"):
            trainer.fit()
