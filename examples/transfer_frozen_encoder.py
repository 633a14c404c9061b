"""Lesson: an autoencoder's encoder as a frozen feature extractor (dimension reduction + transfer).

Step 1 (unsupervised, no labels): train an autoencoder
    encoder  64 -> h ReLU -> k          (z, the code: k "synthetic features")
    decoder  k -> h ReLU -> 64 logits   (Bernoulli pixels, loss = BCE summed over pixels)
on the digits images.

Step 2 (supervised, a new task): throw the decoder away, FREEZE the encoder
and train only a new softmax head  p(y | z) = softmax(z W + b)  on the codes,
with the negative log-likelihood  -ln p(y | z) = -log_softmax(z W + b)[y].

"Frozen" means two things in code, and this script does both:
- the encoder runs under ``mv.no_grad()``, so no graph is recorded through it
  and backward() cannot reach its weights;
- the optimizer is given the head's parameters only.
The script checks afterwards that the encoder's weights are bit-for-bit what
they were before the head was trained.

To judge the features, the same head (same budget, same batch order) is also
trained on
- the raw 64 pixels (no reduction at all: an upper reference for a linear head),
- the top-k PCA coordinates (the best LINEAR k-dimensional code, see
  examples/pca_linear_ae.py).
Expect: raw pixels win (the head sees everything); at very small k the
nonlinear AE code tends to beat PCA, and the advantage shrinks as k grows,
because with more dimensions even a linear code keeps most class information.

Run:  python examples/transfer_frozen_encoder.py
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Sequence

import numpy as np

import minivae as mv
from minivae.training.data import Dataset, batches, load_digits

NUM_CLASSES = 10
BATCH_SIZE = 64

# A feature map turns a NumPy batch of images into the head's input tensor.
FeatureMap = Callable[[np.ndarray], mv.Tensor]


# ---------------------------------------------------------------------------
# Step 1: the autoencoder
# ---------------------------------------------------------------------------
def build_autoencoder(k: int, hidden: int, rng: mv.random.Generator) -> tuple[mv.nn.Sequential, mv.nn.Sequential]:
    """Encoder and decoder as two separate modules, so the encoder can be kept alone."""
    # He init for layers that feed a ReLU, Xavier for the linear output layers.
    encoder = mv.nn.Sequential(
        mv.nn.Linear(64, hidden, rng=rng, init="he"), mv.nn.ReLU(), mv.nn.Linear(hidden, k, rng=rng, init="xavier")
    )
    decoder = mv.nn.Sequential(
        mv.nn.Linear(k, hidden, rng=rng, init="he"), mv.nn.ReLU(), mv.nn.Linear(hidden, 64, rng=rng, init="xavier")
    )
    return encoder, decoder


def reconstruction_loss(encoder: mv.nn.Module, decoder: mv.nn.Module, x: np.ndarray) -> mv.Tensor:
    """Bernoulli negative log-likelihood: BCE-with-logits summed over the 64 pixels, averaged over images."""
    logits = decoder(encoder(mv.tensor(x)))
    return mv.losses.bce_with_logits(logits, x, reduction="sum") * (1.0 / len(x))


def train_autoencoder(
    data: Dataset, k: int, hidden: int, epochs: int, lr: float, rng: mv.random.Generator
) -> tuple[mv.nn.Sequential, mv.nn.Sequential, list[float]]:
    """Mini-batch Adam on the reconstruction loss; returns encoder, decoder and the mean loss per epoch."""
    encoder, decoder = build_autoencoder(k, hidden, rng)
    opt = mv.optim.Adam(encoder.parameters() + decoder.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        total = 0.0
        for xb, _ in batches(data, BATCH_SIZE, rng=rng):
            opt.zero_grad()
            loss = reconstruction_loss(encoder, decoder, xb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        history.append(total / len(data))
    return encoder, decoder, history


# ---------------------------------------------------------------------------
# Step 2: a softmax head on fixed features
# ---------------------------------------------------------------------------
def frozen_encoder_features(encoder: mv.nn.Module) -> FeatureMap:
    """z = encoder(x) computed without a graph: the encoder is a fixed function now."""

    def features(x: np.ndarray) -> mv.Tensor:
        with mv.no_grad():
            return encoder(mv.tensor(x))

    return features


def pca_features(train_x: np.ndarray, k: int) -> FeatureMap:
    """The coordinates of (x - mean) on the top-k principal directions of the TRAINING images."""
    mean = train_x.mean(axis=0)
    _, _, vt = np.linalg.svd(train_x - mean, full_matrices=False)
    top = vt[:k].T.astype(np.float32)
    return lambda x: mv.tensor((x - mean) @ top)


def pixel_features(x: np.ndarray) -> mv.Tensor:
    """No reduction: the 64 raw pixels."""
    return mv.tensor(x)


def nll(logits: mv.Tensor, labels: np.ndarray) -> mv.Tensor:
    """Mean negative log-likelihood of the labels under softmax(logits): -Σ_c onehot_c · log_softmax_c."""
    log_probs = mv.log_softmax(logits, axis=-1)
    return -(log_probs * mv.one_hot(labels, NUM_CLASSES)).sum(axis=-1).mean()


def train_head(
    features: FeatureMap, data: Dataset, epochs: int, lr: float, seed: int
) -> tuple[mv.nn.Linear, list[float]]:
    """A linear softmax classifier on features(x), trained by Adam; only its own weights are updated."""
    rng = mv.random.Generator(seed)
    dim = features(data.x[:1]).shape[-1]
    head = mv.nn.Linear(dim, NUM_CLASSES, rng=rng, init="xavier")
    opt = mv.optim.Adam(head.parameters(), lr=lr)  # the head's parameters and nothing else
    history = []
    for _ in range(epochs):
        total = 0.0
        for xb, yb in batches(data, BATCH_SIZE, rng=rng):
            opt.zero_grad()
            loss = nll(head(features(xb)), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        history.append(total / len(data))
    return head, history


def accuracy(head: mv.nn.Module, features: FeatureMap, data: Dataset) -> float:
    with mv.no_grad():
        predicted = head(features(data.x)).numpy().argmax(axis=-1)
    return float(np.mean(predicted == data.y))


# ---------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------
def main(
    seed: int = 0,
    ks: Sequence[int] = (2, 4, 8),
    hidden: int = 32,
    ae_epochs: int = 100,
    head_epochs: int = 50,
    ae_lr: float = 3e-3,
    head_lr: float = 1e-2,
) -> dict[str, Any]:
    """For each code size k: train an AE, freeze its encoder, and compare softmax heads. Returns the numbers."""
    train, test = load_digits("train", seed=0), load_digits("test", seed=0)
    # Every head uses the same seed, hence the same initial-weight stream and the same batch order.
    head_seed = seed + 1000

    pixel_head, _ = train_head(pixel_features, train, head_epochs, head_lr, head_seed)
    results: dict[str, Any] = {
        "seed": seed,
        "budget": {"ae_epochs": ae_epochs, "head_epochs": head_epochs, "hidden": hidden},
        "chance_accuracy": 1.0 / NUM_CLASSES,
        "raw_pixels_test_accuracy": accuracy(pixel_head, pixel_features, test),
        "per_k": {},
    }
    for k in ks:
        rng = mv.random.Generator(seed + k)
        encoder, decoder, ae_history = train_autoencoder(train, k, hidden, ae_epochs, ae_lr, rng)
        with mv.no_grad():
            ae_test_loss = reconstruction_loss(encoder, decoder, test.x).item()

        encoder.zero_grad()  # forget the AE's last gradients, so "no gradient reached it" can be checked
        before = encoder.state_dict()
        encode = frozen_encoder_features(encoder)
        ae_head, head_history = train_head(encode, train, head_epochs, head_lr, head_seed)
        after = encoder.state_dict()

        pca = pca_features(train.x, k)
        pca_head, _ = train_head(pca, train, head_epochs, head_lr, head_seed)
        results["per_k"][k] = {
            "ae_train_loss_first_epoch": ae_history[0],
            "ae_train_loss_last_epoch": ae_history[-1],
            "ae_test_loss": ae_test_loss,
            "head_train_nll_first_epoch": head_history[0],
            "head_train_nll_last_epoch": head_history[-1],
            "ae_code_test_accuracy": accuracy(ae_head, encode, test),
            "pca_test_accuracy": accuracy(pca_head, pca, test),
            # Freezing, checked: every encoder weight identical, and no gradient ever reached one.
            "encoder_unchanged": all(np.array_equal(before[name], after[name]) for name in before),
            "encoder_grads_none": all(p.grad is None for p in encoder.parameters()),
        }
    return results


def _print(results: dict[str, Any]) -> None:
    b = results["budget"]
    print(
        f"Frozen AE encoder + softmax head on digits (AE {b['ae_epochs']} epochs, hidden {b['hidden']}; "
        f"heads {b['head_epochs']} epochs)"
    )
    print(f"test accuracy, raw 64 pixels: {results['raw_pixels_test_accuracy']:.3f}   (chance {results['chance_accuracy']:.2f})")
    print(f"{'k':>2} {'AE code':>8} {'PCA':>8} {'AE test BCE':>12} {'encoder frozen':>15}")
    for k, r in results["per_k"].items():
        frozen = "yes" if r["encoder_unchanged"] and r["encoder_grads_none"] else "NO"
        print(f"{k:>2} {r['ae_code_test_accuracy']:>8.3f} {r['pca_test_accuracy']:>8.3f} {r['ae_test_loss']:>12.2f} {frozen:>15}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ae-epochs", type=int, default=100)
    parser.add_argument("--head-epochs", type=int, default=50)
    args = parser.parse_args()
    _print(main(seed=args.seed, ae_epochs=args.ae_epochs, head_epochs=args.head_epochs))
