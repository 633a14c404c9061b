"""The computation graph of a VAE's loss, as the README and a slide show it.

    python examples/vae_loss_graph.py [--out examples/results/vae_loss_graph.png] [--engine auto|dot|matplotlib]

The digits VAE (64 pixels, 2-D latent, one hidden layer of 128) on a batch of 8: encoder,
the sampling node z = mu + σ·ε with its noise ε as an input, decoder, and
loss = mean(reconstruction + β·KL). Parameters carry their dotted names.
"""

from __future__ import annotations

import argparse

import numpy as np

from minivae import draw_graph
from minivae.models import build_model
from minivae.random import Generator


def main(out: str = "examples/results/vae_loss_graph.png", engine: str = "auto") -> str:
    model = build_model("vae", 64, 2, [128], Generator(0))
    x = np.random.default_rng(0).random((8, 64)).astype("float32")
    loss = model.loss(x, None, Generator(1))["loss"]
    picture = draw_graph(loss, out, module=model, engine=engine)
    print(f"wrote {out} ({picture.engine}; text {picture.fullscreen_font_px:.1f} px at 1920x1080)")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/results/vae_loss_graph.png")
    parser.add_argument("--engine", choices=("auto", "dot", "matplotlib"), default="auto")
    args = parser.parse_args()
    main(args.out, args.engine)
