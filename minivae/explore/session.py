"""What the latent explorer computes: everything the page shows comes from here, on the server.

An :class:`Explorer` holds one trained run (its model and its test set, loaded by the same
code as ``minivae eval``) and answers the questions the page asks: where the test set's
codes lie on a plane through the latent space, what a point of that plane decodes to,
what the model makes of one test image (its posterior, ELBO terms and ln p(x)), and the
images along a straight line between two codes. No formula is written twice: decoding is
``model.decode``, the ELBO terms are ``model.loss`` and ln p(x) is
``importance_log_likelihood``, as in training and ``eval``.

The server answers requests from several threads at once; the model's forward pass
and the providers' buffers are not written for that, so every model call holds one lock.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Models with a continuous latent the explorer can walk through.
SUPPORTED = ("vae", "cvae", "iwae", "ae", "dae")
MAX_STEPS = 32  # images in one interpolation strip
ELBO_DRAWS = 64  # z draws averaged for an example's reconstruction term
LOG_LIKELIHOOD_SEED = 1  # eval's ln p(x) uses seed + 1 with its default seed 0: the same draws per block


class ExploreError(ValueError):
    """A request or run the explorer cannot serve; the message is one line, ready for the client."""


@dataclass
class Plane:
    """z = origin + u·basis[0] + v·basis[1], with the test set's codes projected onto (u, v)."""

    origin: np.ndarray  # (d,)
    basis: np.ndarray  # (2, d), orthonormal rows
    description: str

    def project(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, dtype=np.float64) - self.origin) @ self.basis.T

    def to_dict(self) -> dict[str, Any]:
        return {"origin": self.origin.tolist(), "basis": self.basis.tolist(), "description": self.description}


def png_bytes(image: np.ndarray) -> bytes:
    """A greyscale 8-bit PNG of ``image`` (values in [0, 1], shape (h, w)), with the standard library only."""
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(h))  # filter type 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8 bits, greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def run_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The run's last test metrics from its metrics.json (empty when missing or unreadable: they are optional)."""
    try:
        final = json.loads((Path(run_dir) / "metrics.json").read_text()).get("final") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {"epoch": final.get("epoch"), **{f"test_{k}": v for k, v in (final.get("test") or {}).items()}}


class Explorer:
    """One trained run, ready to be explored (see the module docstring)."""

    def __init__(self, config: Any, model: Any, test: Any, *, run_dir: str, metrics: dict[str, Any] | None = None,
                 k: int = 1000) -> None:
        from minivae.training.data import log_likelihood_refusal

        if config.model not in SUPPORTED:
            raise ExploreError(f"explore: a {config.model} run has no continuous latent to explore; "
                               f"explore supports {', '.join(SUPPORTED)} runs")
        if test.image_shape is None:
            raise ExploreError(f"explore: the {config.data} data are points, not images; explore shows decoded "
                               "images (train on digits, mnist or fashion-mnist)")
        self.config, self.model, self.test = config, model, test
        self.run_dir, self.metrics, self.k = str(run_dir), metrics or {}, int(k)
        self.latent = int(model.latent)
        self.conditional = bool(getattr(model, "conditional", False))
        self.probabilistic = hasattr(model, "posterior")  # vae, cvae, iwae: q(z|x) with a mean and a variance
        self.lock = threading.Lock()
        self.scale = max(1, 160 // max(test.image_shape))  # decoded images about 160 px wide
        # ln p(x) by eval's rule: a model with importance weights, and a likelihood that is one.
        if hasattr(model, "log_weights"):
            self.log_likelihood_refusal = log_likelihood_refusal(test.x, config.likelihood, config.binarize)
        else:
            self.log_likelihood_refusal = f"a {config.model} is not a probabilistic model: it defines no p(x)"
        self.has_log_likelihood = self.log_likelihood_refusal is None
        self.means, self.logvars = self._encode_all()
        self._pca = self._principal_plane()

    # -- the model, behind the lock ----------------------------------------------------
    def _labels(self, rows: np.ndarray | slice) -> np.ndarray | None:
        return None if self.test.y is None else self.test.y[rows]

    def _encode_all(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Posterior means (and log-variances) of every test example; the code for an AE."""
        from minivae.tensor import no_grad

        means, logvars = [], []
        with self.lock, no_grad():
            for start in range(0, len(self.test), 500):
                rows = slice(start, start + 500)
                y = self._labels(rows) if self.conditional else None
                if self.probabilistic:
                    q = self.model.posterior(self.test.x[rows], y)
                    means.append(q.mu.numpy())
                    logvars.append(np.broadcast_to(q.logvar.numpy(), q.mu.shape))
                else:
                    means.append(self.model.encode(self.test.x[rows]).numpy())
        mean = np.concatenate(means).astype(np.float64)
        return mean, (np.concatenate(logvars).astype(np.float64) if logvars else None)

    def decode(self, z: np.ndarray, label: int | None = None) -> np.ndarray:
        """E[x | z] for each row of z, as images (n, h, w) with values in [0, 1]."""
        from minivae.tensor import no_grad

        z = np.asarray(z, dtype=self.model.dtype).reshape(-1, self.latent)
        y = None
        if self.conditional:
            y = np.full(len(z), 0 if label is None else label, dtype=np.int64)  # class 0 unless one is chosen
        with self.lock, no_grad():
            x = self.model.decode(z, y).numpy()
        return np.clip(x, 0, 1).reshape(len(z), *self.test.image_shape)

    # -- the plane ---------------------------------------------------------------------
    def _principal_plane(self) -> Plane:
        centre = self.means.mean(axis=0)
        if self.latent == 2:
            return Plane(np.zeros(2), np.eye(2), "z1, z2 (the 2-D latent itself)")
        _, _, vt = np.linalg.svd(self.means - centre, full_matrices=False)
        basis = vt[:2] * np.sign(vt[:2].sum(axis=1, keepdims=True) + 1e-300)  # a fixed orientation
        return Plane(centre, basis, "the top two principal directions of the test set's posterior means")

    def plane(self, axes: str | None = None, hold: float = 0.0) -> Plane:
        """``axes=None`` or "pca": the principal plane (the latent itself when d = 2); "i,j": those two
        coordinates, every other one held at ``hold``."""
        if axes in (None, "", "pca"):
            return self._pca
        parts = axes.split(",")
        try:
            i, j = (int(p) for p in parts)
        except ValueError:
            raise ExploreError(f"axes: expected 'pca' or two latent indices 'i,j', got {axes!r}") from None
        if not (0 <= i < self.latent and 0 <= j < self.latent) or i == j:
            raise ExploreError(f"axes: expected two different indices in [0, {self.latent}), got {axes!r}")
        if not math.isfinite(hold):
            raise ExploreError(f"hold: expected a finite number, got {hold}")
        origin = np.full(self.latent, float(hold))
        origin[[i, j]] = 0.0
        basis = np.zeros((2, self.latent))
        basis[0, i] = basis[1, j] = 1.0
        return Plane(origin, basis, f"z{i + 1}, z{j + 1}, the others held at {hold:g}")

    def plane_view(self, axes: str | None = None, hold: float = 0.0) -> dict[str, Any]:
        """The plane, its extent and the test set's codes on it (u, v, label), for the scatter."""
        plane = self.plane(axes, hold)
        uv = plane.project(self.means)
        low, high = np.percentile(uv, 0.5, axis=0), np.percentile(uv, 99.5, axis=0)
        if self.probabilistic:  # the prior's bulk too: most of N(0, I) lies within ±3
            low, high = np.minimum(low, -3.0), np.maximum(high, 3.0)
        pad = 0.08 * (high - low) + 1e-6
        labels = self.test.y.tolist() if self.test.y is not None else [None] * len(uv)
        return {
            **plane.to_dict(),
            "range": [[float(low[0] - pad[0]), float(high[0] + pad[0])], [float(low[1] - pad[1]), float(high[1] + pad[1])]],
            "points": [[round(float(u), 4), round(float(v), 4), lab] for (u, v), lab in zip(uv, labels)],
        }

    # -- one test example ---------------------------------------------------------------
    def check_index(self, index: int) -> int:
        if not 0 <= index < len(self.test):
            raise ExploreError(f"index: expected an integer in [0, {len(self.test)}), got {index}")
        return index

    def test_image(self, index: int) -> np.ndarray:
        return self.test.x[self.check_index(index)].reshape(self.test.image_shape)

    def encode(self, index: int, axes: str | None = None, hold: float = 0.0) -> dict[str, Any]:
        """What the model makes of test example ``index`` (the JSON of /api/encode)."""
        from minivae.random import Generator
        from minivae.tensor import no_grad

        index = self.check_index(index)
        plane = self.plane(axes, hold)
        x = self.test.x[index:index + 1]
        y = self._labels(slice(index, index + 1))
        label = None if y is None else int(y[0])
        mean = self.means[index]
        out: dict[str, Any] = {"index": index, "label": label, "mean": mean.tolist(),
                               "plane": {"mean": plane.project(mean).tolist()}}
        rng = Generator(index)  # the same answer for the same example, every time
        yy = y if self.conditional else None
        if self.probabilistic:
            logvar = self.logvars[index]
            out["logvar"] = logvar.tolist()
            # The posterior on the plane: covariance B diag(σ²) Bᵀ; its ellipse at ±2 sd.
            cov = plane.basis @ np.diag(np.exp(logvar)) @ plane.basis.T
            eigval, eigvec = np.linalg.eigh(cov)
            out["plane"]["ellipse"] = {
                "radii": (2 * np.sqrt(np.maximum(eigval[::-1], 0))).tolist(),  # major, minor: mean ± 2 sd
                "angle": float(math.atan2(eigvec[1, 1], eigvec[0, 1])),  # of the major axis, radians from u
            }
            # The ELBO terms from the model's own loss, over ELBO_DRAWS copies of x: the
            # reconstruction term averaged over that many z draws, the KL exact.
            batch = np.repeat(x, ELBO_DRAWS, axis=0)
            ys = None if y is None else np.repeat(y, ELBO_DRAWS)
            with self.lock, no_grad():
                terms = self.model.loss(batch, ys, rng)
            out["recon"] = float(terms["recon"].item())
            out["kl"] = float(terms["kl"].item())
            out["neg_elbo"] = out["recon"] + out["kl"]
        else:
            with self.lock, no_grad():  # an AE: the reconstruction term of its code, no KL
                out["recon"] = float(self.model.decoder.nll(self.model.decoder(self.model.encode(x)), x).mean().item())
        if self.has_log_likelihood:
            from minivae.models import importance_log_likelihood

            with self.lock:
                ll = importance_log_likelihood(self.model, x, k=self.k, rng=Generator(LOG_LIKELIHOOD_SEED), y=yy,
                                               chunk=min(100, self.k), batch_size=1)
            out["log_likelihood"] = float(ll[0])
            out["log_likelihood_k"] = self.k
        elif self.log_likelihood_refusal:
            out["log_likelihood_refused"] = self.log_likelihood_refusal
        return out

    def interpolate(self, start: int, end: int, steps: int, label: int | None = None) -> np.ndarray:
        """Decoded images along the straight line between two posterior means, side by side (h, steps·w)."""
        start, end = self.check_index(start), self.check_index(end)
        if not 2 <= steps <= MAX_STEPS:
            raise ExploreError(f"steps: expected an integer in [2, {MAX_STEPS}], got {steps}")
        t = np.linspace(0.0, 1.0, steps)[:, None]
        z = (1 - t) * self.means[start] + t * self.means[end]
        if label is None and self.conditional:
            label = int(self.test.y[start])
        images = self.decode(z, label)
        h, w = self.test.image_shape
        gap = np.ones((h, 1))
        return np.concatenate([part for img in images for part in (img, gap)][:-1], axis=1)

    # -- the run -----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        c = self.config
        return {
            "run": self.run_dir, "model": c.model, "data": c.data, "latent": self.latent,
            "likelihood": c.likelihood, "binarize": c.binarize, "beta": getattr(c, "beta", None),
            "test_examples": len(self.test), "image_shape": list(self.test.image_shape),
            "conditional": self.conditional, "num_classes": self.test.num_classes,
            "probabilistic": self.probabilistic, "log_likelihood": self.has_log_likelihood,
            "log_likelihood_refused": self.log_likelihood_refusal, "k": self.k, "metrics": self.metrics,
            "max_steps": MAX_STEPS,
        }

    def image_png(self, image: np.ndarray) -> bytes:
        """A PNG of one image, each pixel a ``scale``-sized square (nearest neighbour)."""
        return png_bytes(np.kron(image, np.ones((self.scale, self.scale))))
