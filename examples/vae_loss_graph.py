"""The computation graph of a VAE's loss, as the README and a slide show it.

    python examples/vae_loss_graph.py [--out examples/results/vae_loss_graph.png] [--engine auto|dot|matplotlib]
    python examples/vae_loss_graph.py --grads --out examples/results/vae_loss_graph_grads.png

The digits VAE (64 pixels, 2-D latent, one hidden layer of 128) on a batch of 8: encoder,
the sampling node z = mu + σ·ε with its noise ε as an input, decoder, and
loss = mean(reconstruction + β·KL). Parameters carry their dotted names. ``--grads``: a tiny
VAE (4 pixels, 3 hidden units, batch of 2) after ``backward()``, each box showing its gradient.
"""

from __future__ import annotations

import argparse

import numpy as np

from minivae import draw_graph
from minivae.graphview import retain_grads
from minivae.models import build_model
from minivae.random import Generator


def main(out: str = "examples/results/vae_loss_graph.png", engine: str = "auto", grads: bool = False,
         hidden: tuple[int, ...] = (128,)) -> str:
    pixels, hidden, batch = (4, (3,), 2) if grads else (64, tuple(hidden), 8)  # gradients in full need tiny tensors
    model = build_model("vae", pixels, 2, list(hidden), Generator(0))
    x = (np.random.default_rng(0).random((batch, pixels)) > 0.5).astype("float32")
    loss = model.loss(x, None, Generator(1))["loss"]
    if grads:
        retain_grads(loss)  # keep every node's gradient, and the graph, through backward()
        loss.backward(retain_graph=True)
    picture = draw_graph(loss, out, module=model, engine=engine, contents="grad" if grads else "shape")
    print(f"wrote {out} ({picture.engine}; text {picture.fullscreen_font_px:.1f} px at 1920x1080)")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/results/vae_loss_graph.png")
    parser.add_argument("--engine", choices=("auto", "dot", "matplotlib"), default="auto")
    parser.add_argument("--grads", action="store_true", help="a tiny VAE after backward(), gradients in the boxes")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128], help="hidden widths (the demo: 256 128)")
    args = parser.parse_args()
    main(args.out, args.engine, args.grads, tuple(args.hidden))
