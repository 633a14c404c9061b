"""Train the binary-latent VAE with each gradient estimator and compare the loss curves.

    python examples/discrete_vae_estimators.py --epochs 10 --out discrete_vae_estimators.png

The README's numbers: ``--epochs 200 --out examples/results/discrete_vae_estimators.png
--json examples/results/discrete_vae_estimators.json`` (the JSON records the command).

Same seed, same initial weights, same mini-batches for every estimator: only the
encoder's gradient differs. Every few steps the discrete negative ELBO (hard
samples, the bound all four estimators try to lower) is measured on the test
digits with a fixed evaluation generator, and one figure shows one line per
estimator. Expect plain REINFORCE to be slowest, the baseline to help, and the
biased but low-variance relaxations to be fast at first.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minivae as mv  # noqa: E402
from minivae.training.data import batches, load_digits  # noqa: E402
from minivae.training.diagnostics import diagnostics_report  # noqa: E402
from minivae.models.bvae import ESTIMATORS, BernoulliVAE  # noqa: E402


def train(estimator: str, epochs: int, latent: int, seed: int, eval_every: int) -> tuple[list[int], list[float], BernoulliVAE]:
    train_set, test_set = load_digits("train"), load_digits("test")
    init_rng, data_rng = mv.random.Generator(seed), mv.random.Generator(seed + 1)
    model = BernoulliVAE(train_set.dim, latent, 128, rng=init_rng, estimator=estimator)
    opt = mv.optim.Adam(model.parameters(), lr=2e-3)
    steps, curve, step = [0], [model.neg_elbo(test_set.x, mv.random.Generator(99), samples=4)], 0
    for _ in range(epochs):
        for xb, _ in batches(train_set, 64, rng=data_rng):
            opt.zero_grad()
            model.loss(xb, None, data_rng)["loss"].backward()
            opt.step()
            step += 1
            if step % eval_every == 0:
                steps.append(step)
                curve.append(model.neg_elbo(test_set.x, mv.random.Generator(99), samples=4))
    return steps, curve, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=10, help="optimizer steps between test evaluations")
    parser.add_argument("--out", default="discrete_vae_estimators.png")
    parser.add_argument("--json", default=None, help="also write each estimator's curve and final numbers here")
    args = parser.parse_args()
    results = {"command": "python " + shlex.join(["examples/discrete_vae_estimators.py", *sys.argv[1:]]),
               "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
               "what": "binary-latent VAE on the digits: discrete test -ELBO (hard samples, 4 per image, "
                       "evaluation generator seed 99) in nats per image, per estimator",
               "estimators": {}}

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    test_x = load_digits("test").x
    for estimator in ESTIMATORS:
        start = time.perf_counter()
        steps, curve, model = train(estimator, args.epochs, args.latent, args.seed, args.eval_every)
        report = diagnostics_report(model, test_x)
        print(
            f"{estimator:<20} test -ELBO {curve[0]:7.2f} -> {curve[-1]:7.2f} nats   "
            f"active units {report['active_units']}/{report['latent_dim']}   "
            f"I(z;x) {report['mutual_information']:.2f} nats   {time.perf_counter() - start:5.1f} s"
        )
        ax.plot(steps, curve, label=estimator)
        results["estimators"][estimator] = {
            "test_neg_elbo_final": curve[-1], "test_neg_elbo_start": curve[0],
            "active_units": report["active_units"], "latent_dim": report["latent_dim"],
            "mutual_information": report["mutual_information"], "steps": steps, "curve": curve}
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("test negative ELBO (nats, hard samples)")
    ax.set_title(f"Binary-latent VAE on digits, {args.latent} Bernoulli latents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
