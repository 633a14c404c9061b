"""Figures of a trained model: shown inline in Jupyter, or saved as PNG files.

Built on matplotlib's object interface (``matplotlib.figure.Figure`` rendered by
the Agg canvas), so nothing here needs a display or touches pyplot's global state.
Every ``plot_*`` helper takes an optional ``path``: given one, it writes the PNG
there and returns the path; without one, it returns the figure, an
:class:`InlineFigure` that a Jupyter cell shows as a picture (pyplot or not).

- :func:`plot_reconstructions`  inputs in the top row, their reconstructions below
- :func:`plot_samples`          decoder outputs for z drawn from the model's prior (the generative model)
- :func:`plot_latent_manifold`  a 2-D latent space decoded on a grid (needs latent = 2)
- :func:`plot_latent_scatter`   posterior means of data, coloured by label
- :func:`plot_loss_curves`      total, reconstruction and KL, train and test, per epoch
- :func:`plot_class_samples`    CVAE: one row per class, one z per column
- :func:`write_figures`         all of the above that apply to a model, into one folder

For 2-D point data (no ``image_shape``) the image figures become scatter plots.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure as _MatplotlibFigure
from scipy.special import ndtri  # Φ⁻¹, what scipy.stats.norm.ppf computes (scipy.stats takes ~0.5 s to import)

from minivae.nn import Module
from minivae.providers import backend
from minivae.random import Generator
from minivae.tensor import Tensor, no_grad
from minivae.training.data import Dataset
from minivae.training.runfolder import FIGURE_NAMES, atomic_write_bytes  # noqa: F401 (FIGURE_NAMES re-exported)


def _numpy(t: Any) -> np.ndarray:
    return t.numpy() if isinstance(t, Tensor) else np.asarray(t)


class InlineFigure(_MatplotlibFigure):
    """A matplotlib Figure that Jupyter displays as a PNG through ``_repr_png_``.

    A bare ``matplotlib.figure.Figure`` shows inline only once pyplot's inline backend
    has registered its display hook; this one needs nothing but IPython.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


Figure = InlineFigure  # every figure below is built from this class
PathLike = str | os.PathLike

#: The formats a figure may be saved in, chosen by the file's suffix (PNG without one).
FIGURE_FORMATS = ("png", "pdf", "svg")


def save_figure(fig: _MatplotlibFigure, path: PathLike) -> Path:
    """Render to memory in the format the suffix names, then write atomically (a half-written file
    never replaces a good one)."""
    kind = Path(path).suffix.lower().lstrip(".") or "png"
    if kind not in FIGURE_FORMATS:
        raise ValueError(f"{path}: cannot save a figure as .{kind}; use {', '.join('.' + f for f in FIGURE_FORMATS)}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=kind, dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def show_or_save(fig: _MatplotlibFigure, path: PathLike | None) -> "Path | _MatplotlibFigure":
    """The figure itself when ``path`` is None (for a notebook), else ``save_figure(fig, path)``."""
    return fig if path is None else save_figure(fig, path)


def image_grid(images: np.ndarray, rows: int, cols: int, image_shape: Sequence[int], pad: int = 1) -> np.ndarray:
    """Tile rows × cols images (given as flat rows, in row-major order) into one array, with light grey gaps."""
    h, w = int(image_shape[0]), int(image_shape[1])
    grid = 0.25 * np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.float32)
    for i, img in enumerate(np.asarray(images)[: rows * cols]):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = img.reshape(h, w)
    return grid


def _show_grid(ax, grid: np.ndarray, title: str) -> None:
    # Dark digits on a light page: gray_r maps 1 (ink) to black.
    ax.imshow(grid, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _labels_of(model: Module, data: Dataset, rows: slice | np.ndarray) -> np.ndarray | None:
    """Labels to pass to a conditional model (others get None)."""
    return data.y[rows] if getattr(model, "conditional", False) else None


def plot_reconstructions(
    model: Module, data: Dataset, path: PathLike | None = None, n: int = 12
) -> Path | InlineFigure:
    """Top: n inputs from ``data``; bottom: decode(encode(x)) through the posterior mean."""
    if data.image_shape is None:
        return _scatter_pairs(data.x, _reconstruct_all(model, data), "data", "reconstruction", path,
                              f"{data.name}: points and their reconstructions")
    rows = np.linspace(0, len(data) - 1, min(n, len(data))).astype(int)  # spread over the set
    x, y = data.x[rows], _labels_of(model, data, rows)
    with no_grad():
        out = _numpy(model.decode(model.encode(x, y), y))
    fig = Figure(figsize=(1.0 * len(rows), 2.4))
    ax = fig.add_subplot()
    _show_grid(ax, image_grid(np.concatenate([x, out]), 2, len(rows), data.image_shape), "inputs (top) and reconstructions (bottom)")
    return show_or_save(fig, path)


def _reconstruct_all(model: Module, data: Dataset) -> np.ndarray:
    with no_grad():
        y = _labels_of(model, data, slice(None))
        return _numpy(model.decode(model.encode(data.x, y), y))


def prior_label(model: Module) -> str:
    """How the model draws z for generation, in words (a model may say it with a ``prior_label`` attribute)."""
    from minivae.models.ae import Autoencoder

    label = getattr(model, "prior_label", None)
    if label:
        return str(label)
    if isinstance(model, Autoencoder):  # no prior was trained: the codes need not look like N(0, I)
        return "z ~ N(0, I), which a plain autoencoder never learned"
    return "z ~ Bernoulli(½) per dimension" if _discrete_latents(model) else "z ~ N(0, I)"


def _discrete_latents(model: Module) -> bool:
    from minivae.models.bvae import BernoulliVAE  # only to ask the type; figures stay importable on their own

    return isinstance(model, BernoulliVAE) or bool(getattr(model, "discrete_latents", False))


def _loss_units(model: Module) -> str:
    likelihood = getattr(model, "likelihood", None) or getattr(getattr(model, "decoder", None), "likelihood", None)
    return "squared error per example" if likelihood == "mse" else "nats per example"


def _scatter_pairs(
    a: np.ndarray, b: np.ndarray, label_a: str, label_b: str, path: PathLike | None, title: str = ""
) -> Path | InlineFigure:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.set_title(title or f"{label_a} and {label_b}")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.scatter(a[:, 0], a[:, 1], s=4, alpha=0.4, c="0.5", label=label_a)
    ax.scatter(b[:, 0], b[:, 1], s=4, alpha=0.6, c="tab:red", label=label_b)
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    return show_or_save(fig, path)


def plot_samples(
    model: Module, rng: Generator, image_shape: Sequence[int] | None, path: PathLike | None = None,
    n: int = 100, data: Dataset | None = None, y: int | None = None,
) -> Path | InlineFigure:
    """Decoder means for n draws from the model's prior: what it generates (class ``y`` for a CVAE)."""
    with no_grad():
        samples = _numpy(model.sample(n, rng) if y is None else model.sample(n, rng, y=y))
    if image_shape is None:
        reference = data.x if data is not None else samples[:0]
        return _scatter_pairs(reference, samples, "data", "samples (decoder means)", path,
                              f"samples from the prior, {prior_label(model)}")
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(0.55 * cols + 0.5, 0.55 * rows + 0.7))
    _show_grid(fig.add_subplot(), image_grid(samples, rows, cols, image_shape),
               f"samples from the prior, {prior_label(model)}" + (f", class {y}" if y is not None else ""))
    return show_or_save(fig, path)


def plot_latent_manifold(
    model: Module, image_shape: Sequence[int], path: PathLike | None = None, grid: int = 15, y: int | None = None
) -> Path | InlineFigure:
    """decode(z) over a grid of a 2-D latent space.

    The grid points are z = Φ⁻¹(u) for u evenly spaced in (0, 1), Φ the standard
    normal CDF: equal prior mass between neighbours, so the picture shows the
    whole prior and not just its centre.
    """
    latent = getattr(model, "latent", None)
    if latent != 2:
        raise ValueError(f"plot_latent_manifold: needs a 2-D latent space, this model has latent={latent}")
    u = np.linspace(0.5 / grid, 1 - 0.5 / grid, grid)
    values = ndtri(u)
    # Rows top to bottom: z₂ from high to low (like a y axis); columns: z₁ low to high.
    z = np.array([[z1, z2] for z2 in values[::-1] for z1 in values], dtype=np.float32)
    labels = None if y is None else np.full(len(z), int(y))
    with no_grad():
        images = _numpy(model.decode(z, labels))
    fig = Figure(figsize=(0.5 * grid + 1, 0.5 * grid + 1))
    ax = fig.add_subplot()
    _show_grid(ax, image_grid(images, grid, grid, image_shape), "decoder over the latent plane, z = Φ⁻¹(u)")
    ax.set_xlabel(f"z₁ from {values[0]:.2f} to {values[-1]:.2f}")
    ax.set_ylabel(f"z₂ from {values[-1]:.2f} (top) to {values[0]:.2f}")
    return show_or_save(fig, path)


def plot_latent_scatter(model: Module, data: Dataset, path: PathLike | None = None) -> Path | InlineFigure:
    """Posterior means of ``data``, coloured by label; latent > 2 is projected on its first two principal axes."""
    with no_grad():
        codes = _numpy(model.encode(data.x, _labels_of(model, data, slice(None))))
    axes_names = ("z₁", "z₂")
    if codes.shape[1] > 2:
        centred = codes - codes.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        codes, axes_names = centred @ vt[:2].T, ("PC 1 of the means", "PC 2 of the means")
    elif codes.shape[1] == 1:
        codes = np.concatenate([codes, np.zeros_like(codes)], axis=1)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    if data.y is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=5, alpha=0.7)
    else:
        points = ax.scatter(codes[:, 0], codes[:, 1], c=data.y, cmap="tab10", s=6, alpha=0.8,
                            vmin=-0.5, vmax=max(9, int(data.y.max())) + 0.5)
        fig.colorbar(points, ax=ax, ticks=range(int(data.y.max()) + 1), label="label")
    ax.set_xlabel(axes_names[0])
    ax.set_ylabel(axes_names[1])
    ax.set_title(f"posterior means of {data.name}")
    return show_or_save(fig, path)


def plot_loss_curves(
    history: list[dict[str, Any]], path: PathLike | None = None, units: str = "nats per example"
) -> Path | InlineFigure:
    """One panel per quantity (loss, recon, kl when present): train and test per epoch, in ``units``."""
    if not history:
        raise ValueError("plot_loss_curves: the history is empty (no epoch finished)")
    names = [n for n in ("loss", "recon", "kl") if n in history[0]["train"]]
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(4.2 * len(names), 3.4))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for split, style in (("train", "-"), ("test", "--")):
            ax.plot(epochs, [row[split][name] for row in history], style, label=split)
        ax.set_title({"loss": "total loss", "recon": "reconstruction", "kl": "KL"}[name])
        ax.set_xlabel("epoch")
        ax.set_ylabel(units)
        ax.legend()
    fig.tight_layout()
    return show_or_save(fig, path)


def plot_class_samples(
    model: Module, rng: Generator, image_shape: Sequence[int], path: PathLike | None = None, per_class: int = 10
) -> Path | InlineFigure:
    """CVAE: row c shows class c; column j uses the same z in every row, so a column keeps one style."""
    classes = int(model.num_classes)
    z = backend.to_numpy(rng.normal((per_class, model.latent)))
    z_all = np.tile(z, (classes, 1))  # row-major order: class by class, the same z's in each
    labels = np.repeat(np.arange(classes), per_class)
    with no_grad():
        images = _numpy(model.decode(z_all, labels))
    fig = Figure(figsize=(0.55 * per_class + 0.8, 0.55 * classes + 0.7))
    ax = fig.add_subplot()
    _show_grid(ax, image_grid(images, classes, per_class, image_shape), "class-conditional samples (rows: classes)")
    return show_or_save(fig, path)


def plot_codebook_usage(model: Module, data: Dataset, path: PathLike | None = None) -> Path | InlineFigure:
    """VQ-VAE: how often each code is chosen on ``data``, one colour per position; dead codes marked."""
    index = model.codes(data.x)
    report = model.codebook_report(data.x)
    k = report["codebook_size"]
    fig = Figure(figsize=(max(6.0, 0.18 * k + 2), 3.4))
    ax = fig.add_subplot()
    bottom = np.zeros(k)
    for m in range(index.shape[1]):
        counts = np.bincount(index[:, m], minlength=k)
        ax.bar(np.arange(k), counts, bottom=bottom, width=0.85, label=f"position {m + 1}")
        bottom += counts
    for d in report["dead_codes"]:
        ax.plot(d, 0, "x", color="tab:red", markersize=6)
    ax.set_xlabel("code")
    ax.set_ylabel(f"times chosen on {data.name}")
    ax.set_title(f"codebook usage: {report['codes_used']} of {k} codes used, {len(report['dead_codes'])} dead (x), "
                 f"perplexity {report['perplexity']:.1f}")
    if index.shape[1] <= 8:
        ax.legend(fontsize=7, ncol=min(4, index.shape[1]))
    fig.tight_layout()
    return show_or_save(fig, path)


def write_figures(
    model: Module,
    train: Dataset,
    test: Dataset,
    history: list[dict[str, Any]],
    out_dir: str | os.PathLike,
    seed: int = 0,
) -> list[Path]:
    """Every figure that applies to ``model``; returns the paths written. A model of your own
    (the protocol in :class:`~minivae.training.trainer.Trainer`) gets those its methods allow:
    loss curves always, reconstructions with ``encode`` and ``decode``, samples with ``sample``."""
    out_dir = Path(out_dir)
    rng = Generator(seed)
    model.eval()
    written = []
    if hasattr(model, "encode") and hasattr(model, "decode"):
        written.append(plot_reconstructions(model, test, out_dir / "reconstructions.png"))
    if hasattr(model, "fit_prior"):  # VQ-VAE: the prior over codes is fitted after training
        model.fit_prior(train.x)
    if hasattr(model, "codebook_report"):
        written.append(plot_codebook_usage(model, test, out_dir / "codebook_usage.png"))
    if hasattr(model, "sample"):
        written.append(plot_samples(model, rng, test.image_shape, out_dir / "samples.png", data=train))
    # The manifold decodes a continuous grid: meaningless for binary codes the decoder never sees in between.
    if (getattr(model, "latent", None) == 2 and test.image_shape is not None and not getattr(model, "conditional", False)
            and hasattr(model, "decode") and not _discrete_latents(model)):
        written.append(plot_latent_manifold(model, test.image_shape, out_dir / "latent_manifold.png"))
    if hasattr(model, "encode"):
        written.append(plot_latent_scatter(model, test, out_dir / "latent_scatter.png"))
    if history:
        written.append(plot_loss_curves(history, out_dir / "loss_curves.png", units=_loss_units(model)))
    if getattr(model, "conditional", False) and test.image_shape is not None:
        written.append(plot_class_samples(model, rng, test.image_shape, out_dir / "class_samples.png"))
    return written
