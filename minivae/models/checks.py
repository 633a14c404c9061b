"""A gradient check of every registered model: a tiny one in float64, its loss against finite differences."""

from __future__ import annotations

from minivae import gradcheck
from minivae.gradcheck import GradcheckReport
from minivae.models import build_model
from minivae.random import Generator


def gradcheck_model(name: str, seed: int = 0) -> GradcheckReport:
    """Finite differences vs backward for a tiny model's loss, in float64, with common random numbers.

    Returns the :class:`minivae.GradcheckReport` (one row per parameter).
    """
    input_dim, latent, hidden, batch, classes = 6, 2, 8, 4, 3
    # A score-function surrogate's gradient is right only in expectation, so the discrete-latent
    # model is checked with its Gumbel-softmax relaxation, which is differentiable for fixed noise.
    options = {"estimator": "gumbel"} if name == "bvae" else {}
    model = build_model(name, input_dim, latent, hidden, Generator(seed), num_classes=classes, **options)
    model.astype("float64")
    data = Generator(seed + 1)
    # Biases start at exactly 0, so at initialisation a dead ReLU layer can hand the next
    # layer a pre-activation of exactly 0: a kink, where finite differences are meaningless.
    # Checking at a random point (biases ~ N(0, 0.5²)) avoids that and keeps units active.
    for pname, p in model.named_parameters():
        if pname.endswith("bias"):
            p.data = p.data + data.normal(p.shape, dtype="float64", std=0.5)
    x = data.numpy.random((batch, input_dim))  # pixels in [0, 1]
    y = data.numpy.integers(0, classes, size=batch)
    noise = Generator(seed + 2)  # rewound before every evaluation: the same eps each time
    # The VQ-VAE's loss is piecewise constant in the encoder output; its gradient comes from
    # straight-through nodes, checked against the surrogate they differentiate (models/vqvae.py).
    fn = model.gradcheck_loss(x, y, noise) if hasattr(model, "gradcheck_loss") else lambda: model.loss(x, y, noise)["loss"]
    return gradcheck(fn, model, rng=noise, raise_on_failure=False)
