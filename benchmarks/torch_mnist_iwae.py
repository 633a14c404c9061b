"""MNIST, IWAE paper Table 1, PyTorch twin of ``mnist_iwae.py``.

Same experiment (``iwae_experiment.py``: architecture, Glorot-uniform weights from
one NumPy seed, batches and dynamic binarization, schedule, Adam settings, noise
drawn from NumPy's PCG64 with the same seeds and shapes), written the way one
would in PyTorch: nn.Linear layers, torch.optim.Adam, autograd. The records land
next to minivae's; ``python benchmarks/mnist_iwae.py --report`` joins them.

    OMP_NUM_THREADS=1 python benchmarks/torch_mnist_iwae.py --stages 2 --stop-at 09:12
"""

from __future__ import annotations

import math
import os
import sys

if __name__ == "__main__":  # one thread per process, set before NumPy loads its BLAS (not when imported)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iwae_experiment as exp  # noqa: E402

LOG_2PI = math.log(2 * math.pi)


class Net(nn.Module):
    """Encoder 784-200-200-(50, 50) and decoder 50-200-200-784, tanh hidden units."""

    def __init__(self) -> None:
        super().__init__()
        h1, h2 = exp.HIDDEN
        self.enc = nn.Sequential(nn.Linear(exp.INPUT, h1), nn.Tanh(), nn.Linear(h1, h2), nn.Tanh())
        self.mu, self.logvar = nn.Linear(h2, exp.LATENT), nn.Linear(h2, exp.LATENT)
        self.dec = nn.Sequential(nn.Linear(exp.LATENT, h2), nn.Tanh(), nn.Linear(h2, h1), nn.Tanh(),
                                 nn.Linear(h1, exp.INPUT))

    def load_shared(self, weights: dict[str, np.ndarray]) -> None:
        """Copy the shared (in, out) weights into nn.Linear's (out, in) layout."""
        layers = {"encoder.body.0": self.enc[0], "encoder.body.2": self.enc[2], "encoder.mu": self.mu,
                  "encoder.logvar": self.logvar, "decoder.net.0": self.dec[0], "decoder.net.2": self.dec[2],
                  "decoder.net.4": self.dec[4]}
        with torch.no_grad():
            for name, layer in layers.items():
                layer.weight.copy_(torch.from_numpy(weights[name + ".weight"].T.copy()))
                layer.bias.copy_(torch.from_numpy(weights[name + ".bias"]))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        return self.mu(h), self.logvar(h)

    def log_px_z(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ln p(x | z), Bernoulli, summed over pixels; z may carry a leading sample axis."""
        logits = self.dec(z)
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def kl_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logvar.exp() + mu * mu - 1 - logvar).sum(-1)


def log_weights(net: Net, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """ln w = ln p(x|z) + ln p(z) - ln q(z|x) for z = mu + σ·eps; shape (k, batch)."""
    mu, logvar = net.posterior(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_pz = -0.5 * (z * z + LOG_2PI).sum(-1)
    log_qz = -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)
    return net.log_px_z(z, x) + log_pz - log_qz


class TorchAdapter(exp.Adapter):
    name = "torch"

    def __init__(self, model: str, k: int, weights: dict[str, np.ndarray], noise_seed: int) -> None:
        self.model, self.k = model, k
        self.net = Net()
        self.net.load_shared(weights)
        self.noise = np.random.Generator(np.random.PCG64(noise_seed))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, betas=exp.ADAM_BETAS, eps=exp.ADAM_EPS)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        eps = torch.from_numpy(exp.normal_noise(self.noise, (self.k, len(x), exp.LATENT)))
        log_w = log_weights(self.net, x, eps)
        if self.model == "vae":  # the k-sample Monte Carlo ELBO: the mean of the log-weights
            return -log_w.mean(0).mean()
        bound = torch.logsumexp(log_w, 0) - math.log(self.k)
        return -bound.mean()

    def step(self, x: np.ndarray, lr: float) -> float:
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad()
        loss = self.loss(torch.from_numpy(x))
        loss.backward()
        self.opt.step()
        return float(loss.item())

    @torch.no_grad()
    def log_likelihood(self, x, k, rows, chunk, seed, desc):
        rng = np.random.Generator(np.random.PCG64(seed))
        out = []
        for start in tqdm(range(0, len(x), rows), desc=desc, mininterval=30, leave=False):
            xb = torch.from_numpy(x[start : start + rows])
            parts = []
            for done in range(0, k, chunk):
                m = min(chunk, k - done)
                eps = torch.from_numpy(exp.normal_noise(rng, (m, len(xb), exp.LATENT)))
                parts.append(log_weights(self.net, xb, eps).double())
            out.append((torch.logsumexp(torch.cat(parts), 0) - math.log(k)).numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def neg_elbo(self, x, seed):
        rng, total = np.random.Generator(np.random.PCG64(seed)), 0.0
        for start in range(0, len(x), 500):
            xb = torch.from_numpy(x[start : start + 500])
            mu, logvar = self.net.posterior(xb)
            z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(exp.normal_noise(rng, tuple(mu.shape)))
            total += float((-self.net.log_px_z(z, xb) + kl_standard(mu, logvar)).sum())
        return total / len(x)

    @torch.no_grad()
    def posterior_mean(self, x):
        return np.concatenate([self.net.posterior(torch.from_numpy(x[s : s + 1000]))[0].numpy()
                               for s in range(0, len(x), 1000)])


if __name__ == "__main__":
    torch.set_num_threads(1)  # one core per framework: the two run side by side
    sys.exit(exp.run_all("torch", TorchAdapter))
