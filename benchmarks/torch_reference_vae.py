"""The established-framework reference for the VAE acceptance check: the same VAE in PyTorch (CPU).

The setup is exactly that of minivae_reference_vae.py (read its docstring):
digits split seed 0 / 20 % test, encoder 64 -> 128 ReLU -> (mu, logvar) of
size 2, decoder 2 -> 128 ReLU -> 64 logits, He-normal weights N(0, 2/fan_in)
and zero biases, Adam lr 1e-3, batch 64, 100 epochs, loss = BCE-with-logits
summed over the pixels + analytic KL, averaged over the batch. The test
-ELBO is averaged over the test images and over EVAL_DRAWS fixed noise draws
per image (the same draws as the minivae twin uses).

Two ways to seed PyTorch, both reported:

- ``native``: the independent reference. torch.Generator(seed) draws the
  initial weights (nn.init.normal_), the batch order (randperm) and the noise
  (randn). Nothing is shared with minivae except the data and the setup.
- ``shared``: the initial weights, batch order and training noise are the very
  numbers minivae draws from mv.random.Generator(seed), in the same order. Both
  engines then follow the same trajectory up to float32 rounding, so any real
  difference in the math (a wrong gradient, a wrong Adam step) would show.

The script trains every seed with PyTorch (both modes) and with minivae,
prints mean ± std (sample std over seeds) and writes
benchmarks/results/vae_digits_reference.json.

Run:  python benchmarks/torch_reference_vae.py  [--seeds 0 1 2] [--epochs 100] [--no-save]
Needs torch (pip install torch==2.13.0, CPU wheel). Torch keeps its default
thread count (recorded in the JSON): torch.set_num_threads(1) was tried and made
minivae's NumPy loop, run in the same process afterwards, about 10x slower here.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import minivae as mv
from minivae.training.data import batches

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "vae_digits_reference.json"
MODES = ("native", "shared")


def _load_twin():
    """The minivae twin, imported from the file beside this one (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("minivae_reference_vae", HERE / "minivae_reference_vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_twin()  # setup constants, data split, evaluation noise and the minivae loop


class TorchVAE(nn.Module):
    """The same five layers as minivae_reference_vae.VAE (torch stores weights as (out, in))."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_hidden = nn.Linear(ref.INPUT_DIM, ref.HIDDEN)
        self.enc_mu = nn.Linear(ref.HIDDEN, ref.LATENT)
        self.enc_logvar = nn.Linear(ref.HIDDEN, ref.LATENT)
        self.dec_hidden = nn.Linear(ref.LATENT, ref.HIDDEN)
        self.dec_out = nn.Linear(ref.HIDDEN, ref.INPUT_DIM)

    def layers(self) -> list[nn.Linear]:
        return [self.enc_hidden, self.enc_mu, self.enc_logvar, self.dec_hidden, self.dec_out]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.enc_hidden(x))
        return self.enc_mu(h), self.enc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec_out(F.relu(self.dec_hidden(z)))


def init_native(model: TorchVAE, gen: torch.Generator) -> None:
    """He-normal from torch's own generator: W ~ N(0, 2 / fan_in), b = 0."""
    with torch.no_grad():
        for layer in model.layers():
            nn.init.normal_(layer.weight, mean=0.0, std=math.sqrt(2.0 / layer.in_features), generator=gen)
            nn.init.zeros_(layer.bias)


def init_shared(model: TorchVAE, rng: mv.random.Generator) -> None:
    """The exact weights minivae's Linear(init="he") draws, layer by layer, transposed to torch's (out, in)."""
    with torch.no_grad():
        for layer in model.layers():
            std = 1.0 / math.sqrt(layer.in_features / 2)  # minivae's formula for "he"
            w = rng.normal((layer.in_features, layer.out_features), dtype="float32", std=std)
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            nn.init.zeros_(layer.bias)


def negative_elbo(model: TorchVAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Batch mean of [BCE-with-logits summed over pixels + analytic KL to N(0, I)]."""
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    reconstruction = F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").sum(dim=1)
    kl = 0.5 * (torch.exp(logvar) + mu * mu - 1.0 - logvar).sum(dim=1)
    return (reconstruction + kl).mean()


def evaluate_negative_elbo(model: TorchVAE, x: np.ndarray) -> float:
    """Test -ELBO per image, averaged over images and the shared fixed evaluation draws."""
    noise = torch.from_numpy(ref.eval_noise(len(x)))
    xt = torch.from_numpy(x)
    with torch.no_grad():
        return float(np.mean([negative_elbo(model, xt, eps).item() for eps in noise]))


def train_one(seed: int, mode: str = "native", epochs: int = ref.EPOCHS) -> dict[str, Any]:
    """Train one VAE in PyTorch; `mode` picks where the randomness comes from (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x_train, x_test = ref.load_split()
    model = TorchVAE()
    if mode == "native":
        gen = torch.Generator().manual_seed(seed)
        init_native(model, gen)
    else:
        rng = mv.random.Generator(seed)
        init_shared(model, rng)
    opt = torch.optim.Adam(model.parameters(), lr=ref.LR)
    xt = torch.from_numpy(x_train)
    start = time.perf_counter()
    epoch_losses = []
    for _ in range(epochs):
        if mode == "native":
            order = torch.randperm(len(x_train), generator=gen)
            batch_list = [(xt[order[i : i + ref.BATCH_SIZE]], None) for i in range(0, len(x_train), ref.BATCH_SIZE)]
        else:
            batch_list = [(torch.from_numpy(xb), None) for xb, _ in batches(x_train, ref.BATCH_SIZE, rng=rng)]
        total = 0.0
        for xb, _ in batch_list:
            if mode == "native":
                eps = torch.randn(len(xb), ref.LATENT, generator=gen)
            else:
                eps = torch.from_numpy(rng.normal((len(xb), ref.LATENT)))
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


def machine_description() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:  # the model name is more telling than "x86_64", where /proc/cpuinfo exists
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
    }


def main(seeds: Sequence[int] = (0, 1, 2), epochs: int = ref.EPOCHS) -> dict[str, Any]:
    """Every seed with PyTorch (native and shared randomness) and with minivae; the comparison."""
    results = {
        "torch_native": ref.summarize([train_one(s, "native", epochs) for s in seeds]),
        "torch_shared_rng": ref.summarize([train_one(s, "shared", epochs) for s in seeds]),
        "minivae": ref.summarize([ref.train_one(s, epochs) for s in seeds]),
    }
    mini = results["minivae"]["mean"]
    return {
        "what": "VAE on digits: test -ELBO per image in nats (lower is better), mean ± sample std over seeds",
        "setup": {
            "data": "minivae.training.data.load_digits, split seed 0, test_fraction 0.2 (1438 train / 359 test), pixels/16",
            "encoder": "64 -> 128 ReLU -> (mu, logvar), latent 2",
            "decoder": "2 -> 128 ReLU -> 64 logits (Bernoulli)",
            "init": "He-normal weights N(0, 2/fan_in), zero biases",
            "loss": "BCE-with-logits summed over 64 pixels + analytic KL, mean over batch",
            "optimizer": f"Adam lr {ref.LR}, batch {ref.BATCH_SIZE} (last batch kept), {epochs} epochs",
            "seeds": list(seeds),
            "evaluation": (
                f"-ELBO per test image averaged over the {ref.EVAL_DRAWS} fixed reparameterized draws per image "
                f"(NumPy default_rng({ref.EVAL_SEED}), shared by every run), then over the test images"
            ),
            "randomness": {
                "torch_native": "torch.Generator(seed): init normal_, randperm, randn",
                "torch_shared_rng": "the draws of mv.random.Generator(seed), in minivae's order",
                "minivae": "mv.random.Generator(seed)",
            },
        },
        "results": results,
        "relative_difference_minivae_vs_torch_native": abs(mini - results["torch_native"]["mean"]) / results["torch_native"]["mean"],
        "relative_difference_minivae_vs_torch_shared_rng": abs(mini - results["torch_shared_rng"]["mean"])
        / results["torch_shared_rng"]["mean"],
        "note_on_train_seconds": (
            "wall time of each run, for information only: all runs share one process, and PyTorch's and "
            "NumPy's thread pools disturb each other, so this is not a speed comparison"
        ),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "minivae": mv.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
    }


def _print(report: dict[str, Any]) -> None:
    names = {"torch_native": "PyTorch (own RNG)", "torch_shared_rng": "PyTorch (minivae's draws)", "minivae": "minivae"}
    print(report["what"])
    for key, name in names.items():
        r = report["results"][key]
        per_seed = ", ".join(f"{run['test_neg_elbo']:.3f}" for run in r["per_seed"])
        print(f"{name:<27} {r['mean']:.3f} ± {r['std']:.3f}   seeds: {per_seed}")
    print(f"minivae vs PyTorch (own RNG):      {100 * report['relative_difference_minivae_vs_torch_native']:.2f} % apart")
    print(f"minivae vs PyTorch (same draws):   {100 * report['relative_difference_minivae_vs_torch_shared_rng']:.3f} % apart")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=ref.EPOCHS)
    parser.add_argument("--no-save", action="store_true", help="print only; do not write the JSON file")
    args = parser.parse_args()
    report = main(args.seeds, args.epochs)
    _print(report)
    if not args.no_save:
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {RESULTS_PATH.relative_to(HERE.parent)}")
