"""The reference VAE on digits, trained with minivae's engine (the twin of torch_reference_vae.py).

This is the exact setup of the VAE acceptance check, written as a plain loop
so that the comparison with PyTorch does not depend on minivae's models or CLI:

    data      minivae.training.data.load_digits, split seed 0, 20 % test (1438 train / 359 test)
    encoder   64 -> 128 ReLU -> (mu, logvar), each of size 2
    decoder   2 -> 128 ReLU -> 64 logits (Bernoulli pixels)
    init      He-normal: W ~ N(0, 2 / fan_in), b = 0 (minivae's Linear(init="he"))
    loss      per image: BCE-with-logits summed over the 64 pixels + analytic
              KL(N(mu, σ²) ‖ N(0, I)); averaged over the batch (= the negative ELBO)
    training  Adam lr 1e-3, batch 64 (shuffled each epoch, last batch of 30 kept), 100 epochs

Evaluation: the test -ELBO per image in nats,

    -ELBO(x) = E_{q(z|x)}[-ln p(x | z)] + KL(q(z|x) ‖ p(z)),

with the expectation estimated by EVAL_DRAWS reparameterized draws
z = mu + σ·eps per test image. The eps are drawn ONCE from a NumPy generator
seeded with EVAL_SEED (the same for every training seed and for the PyTorch
twin), so the evaluation noise is shared and never a source of difference.

Randomness in training (initial weights, batch order, the eps of each batch)
comes from one ``mv.random.Generator(seed)``, consumed in this order: the five
weight matrices (encoder hidden, mu, logvar, decoder hidden, decoder output),
then per epoch a permutation, then per batch a (batch, 2) standard normal.
torch_reference_vae.py can replay exactly these draws ("shared" mode).

Run:  python benchmarks/minivae_reference_vae.py  [--seeds 0 1 2] [--epochs 100]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Sequence

import numpy as np

import minivae as mv
from minivae.training.data import batches, load_digits

INPUT_DIM, HIDDEN, LATENT = 64, 128, 2
LR, BATCH_SIZE, EPOCHS = 1e-3, 64, 100
EVAL_SEED, EVAL_DRAWS = 12345, 10


def load_split() -> tuple[np.ndarray, np.ndarray]:
    """Train and test pixels (float32 in [0, 1]) of the fixed digits split."""
    return load_digits("train", seed=0).x, load_digits("test", seed=0).x


def eval_noise(num_images: int) -> np.ndarray:
    """The fixed evaluation noise, shape (EVAL_DRAWS, num_images, LATENT), float32."""
    return np.random.default_rng(EVAL_SEED).standard_normal((EVAL_DRAWS, num_images, LATENT)).astype(np.float32)


class VAE(mv.nn.Module):
    """Gaussian encoder q(z|x) = N(mu(x), diag exp(logvar(x))), Bernoulli decoder p(x|z), prior N(0, I)."""

    def __init__(self, rng: mv.random.Generator) -> None:
        super().__init__()
        # The order of construction is the order of the weight draws (see the module docstring).
        self.enc_hidden = mv.nn.Linear(INPUT_DIM, HIDDEN, rng=rng, init="he")
        self.enc_mu = mv.nn.Linear(HIDDEN, LATENT, rng=rng, init="he")
        self.enc_logvar = mv.nn.Linear(HIDDEN, LATENT, rng=rng, init="he")
        self.dec_hidden = mv.nn.Linear(LATENT, HIDDEN, rng=rng, init="he")
        self.dec_out = mv.nn.Linear(HIDDEN, INPUT_DIM, rng=rng, init="he")

    def encode(self, x: mv.Tensor) -> tuple[mv.Tensor, mv.Tensor]:
        h = mv.relu(self.enc_hidden(x))
        return self.enc_mu(h), self.enc_logvar(h)

    def decode(self, z: mv.Tensor) -> mv.Tensor:
        return self.dec_out(mv.relu(self.dec_hidden(z)))


def negative_elbo(model: VAE, x: np.ndarray, eps: np.ndarray) -> mv.Tensor:
    """Batch mean of [BCE summed over pixels + KL], with z = mu + σ·eps for the given noise."""
    mu, logvar = model.encode(mv.tensor(x))
    z = mv.reparameterize(mu, logvar, eps)
    reconstruction = mv.losses.bce_with_logits(model.decode(z), x, reduction="sum")
    kl = mv.kl_normal_standard(mu, logvar).sum()
    return (reconstruction + kl) * (1.0 / len(x))


def evaluate_negative_elbo(model: VAE, x: np.ndarray) -> float:
    """Test -ELBO per image in nats, averaged over the images and the EVAL_DRAWS fixed noise draws."""
    noise = eval_noise(len(x))
    with mv.no_grad():
        values = [negative_elbo(model, x, eps).item() for eps in noise]
    return float(np.mean(values))


def train_one(seed: int, epochs: int = EPOCHS) -> dict[str, Any]:
    """Train one VAE from `seed`; returns the test -ELBO, the last epoch's training loss and the wall time."""
    x_train, x_test = load_split()
    rng = mv.random.Generator(seed)
    model = VAE(rng)
    opt = mv.optim.Adam(model.parameters(), lr=LR)
    start = time.perf_counter()
    epoch_losses = []
    for _ in range(epochs):
        total = 0.0
        for xb, _ in batches(x_train, BATCH_SIZE, rng=rng):
            eps = rng.normal((len(xb), LATENT))
            opt.zero_grad()
            loss = negative_elbo(model, xb, eps)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        epoch_losses.append(total / len(x_train))
    seconds = time.perf_counter() - start
    return {
        "seed": seed,
        "test_neg_elbo": evaluate_negative_elbo(model, x_test),
        "train_loss_first_epoch": epoch_losses[0],
        "train_loss_last_epoch": epoch_losses[-1],
        "train_seconds": seconds,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof = 1) of the test -ELBO over seeds."""
    values = np.array([r["test_neg_elbo"] for r in runs])
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"per_seed": runs, "mean": float(values.mean()), "std": std}


def main(seeds: Sequence[int] = (0, 1, 2), epochs: int = EPOCHS) -> dict[str, Any]:
    return summarize([train_one(seed, epochs) for seed in seeds])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    result = main(args.seeds, args.epochs)
    for run in result["per_seed"]:
        print(f"seed {run['seed']}: test -ELBO {run['test_neg_elbo']:.3f} nats/image  ({run['train_seconds']:.1f} s)")
    print(f"minivae: test -ELBO = {result['mean']:.3f} ± {result['std']:.3f} nats per image over {len(args.seeds)} seeds")
