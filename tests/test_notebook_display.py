"""Notebook-first results: figures a Jupyter cell shows inline, reports that read the same in print and display.

A notebook shows a cell's last value through IPython's display machinery: ``_repr_png_``
for a picture, ``_repr_html_`` for a table, ``_repr_pretty_`` for text. These tests call
that machinery the way Jupyter does (IPython's formatters), without a kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from IPython.core.formatters import DisplayFormatter
from IPython.lib.pretty import pretty

import minivae as mv
from minivae.labs import decoders, variance
from minivae.models import build_model
from minivae.random import Generator
from minivae.training import diagnostics, figures, trainer
from minivae.training.data import load_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _shown_as_png(obj) -> bytes:
    """What Jupyter puts in a cell's output for ``obj`` (the PNG bytes), failing when it would show only text."""
    data, _ = DisplayFormatter().format(obj)
    assert "image/png" in data, f"{type(obj).__name__} would show as text only: {data.get('text/plain')!r}"
    png = data["image/png"]
    return png if isinstance(png, bytes) else __import__("base64").b64decode(png)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "test").subset(slice(0, 40))


@pytest.fixture(scope="module")
def vae(digits):
    return build_model("vae", digits.dim, 2, [8], Generator(0))


HISTORY = [{"epoch": e, "train": {"loss": 3.0 - e, "recon": 2.0, "kl": 1.0},
            "test": {"loss": 3.1 - e, "recon": 2.1, "kl": 1.0}} for e in (1, 2)]


def _every_plot(model, data, path_of):
    """Each figure helper called with the path ``path_of(name)`` gives (None: no file)."""
    rng = Generator(1)
    cvae = build_model("cvae", data.dim, 2, [8], Generator(0), num_classes=10)
    vq = build_model("vqvae", data.dim, 4, [8], Generator(0))
    return {
        "reconstructions": figures.plot_reconstructions(model, data, path_of("reconstructions")),
        "samples": figures.plot_samples(model, rng, data.image_shape, path_of("samples"), n=9),
        "manifold": figures.plot_latent_manifold(model, data.image_shape, path_of("manifold"), grid=4),
        "scatter": figures.plot_latent_scatter(model, data, path_of("scatter")),
        "loss": figures.plot_loss_curves(HISTORY, path_of("loss")),
        "class_samples": figures.plot_class_samples(cvae, rng, data.image_shape, path_of("class_samples"), per_class=2),
        "codebook": figures.plot_codebook_usage(vq, data, path_of("codebook")),
    }


def test_every_figure_helper_without_a_path_returns_a_figure_jupyter_shows(digits, vae, tmp_path):
    shown = _every_plot(vae, digits, lambda name: None)
    for name, fig in shown.items():
        assert isinstance(fig, figures.InlineFigure), name
        assert _shown_as_png(fig)[:8] == PNG_MAGIC, name
        assert fig.axes and fig.axes[0].get_title(), name  # the same labelled figure as the saved one
    assert not list(tmp_path.iterdir())  # and nothing was written anywhere


def test_every_figure_helper_with_a_path_still_writes_the_png_and_returns_the_path(digits, vae, tmp_path):
    written = _every_plot(vae, digits, lambda name: tmp_path / f"{name}.png")
    for name, path in written.items():
        assert path == tmp_path / f"{name}.png", name
        assert path.read_bytes()[:8] == PNG_MAGIC, name


def test_point_data_figures_are_inline_too():
    moons = load_dataset("moons", "test", n=60)
    model = build_model("ae", moons.dim, 2, [8], Generator(0), likelihood="mse")
    for fig in (figures.plot_reconstructions(model, moons), figures.plot_samples(model, Generator(0), None, n=20)):
        assert _shown_as_png(fig)[:8] == PNG_MAGIC


def test_variance_lab_figures_show_inline_and_plot_sweeps_still_saves(tmp_path):
    kw = dict(dims=[1, 2], samples=[4, 8], seeds=3, fixed_dim=2, fixed_samples=4)
    shown = variance.sweep_figures("quadratic", **kw)
    assert len(shown) == 2
    for fig in shown:
        assert _shown_as_png(fig)[:8] == PNG_MAGIC
        assert {line.get_label() for line in fig.axes[0].get_lines()} == set(variance.ESTIMATORS)
    paths = variance.plot_sweeps("quadratic", kw["dims"], kw["samples"], kw["seeds"], str(tmp_path), 2, 4)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["quadratic_variance_vs_dim.png", "quadratic_variance_vs_samples.png"]
    assert all(open(p, "rb").read(8) == PNG_MAGIC for p in paths)


def _decoder_lab_results():
    row = lambda label, kl: {"label": label, "test_kl": kl, "mutual_information": kl / 2,  # noqa: E731
                             "active_units": 2, "test_neg_elbo": 30.0 - kl}
    return {
        "decoders": [row("factorised", 5.0), row("direct", 1.0)],
        "remedies": [{**row("direct + free bits", 2.0), "remedy": "free-bits"}],
        "config": {"latent": 3, "epochs": 2, "seed": 0},
        "wall_seconds": 1.0,
        "machine": {"cpu": "test cpu", "usable_cores": 2, "blas": ["openblas"]},
    }


def test_decoder_lab_figure_shows_inline_and_saves_with_a_path(tmp_path):
    results = _decoder_lab_results()
    fig = decoders.plot_lab(results)
    assert _shown_as_png(fig)[:8] == PNG_MAGIC and len(fig.axes) == 4
    path = decoders.plot_lab(results, tmp_path / "decoders.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def _report(planted_error: float):
    """gradcheck of sum(x²) + sum(2y), x's backward off by ``planted_error`` (0: both correct), not raising."""
    x = mv.tensor(np.arange(1.0, 5.0).reshape(2, 2), dtype="float64", requires_grad=True)
    y = mv.tensor(np.ones(3), dtype="float64", requires_grad=True)
    square = lambda x: mv.Tensor.from_op(  # noqa: E731
        x.data**2, (x,), lambda g: (g * (2 * x.data + planted_error),), "planted_square")
    return mv.gradcheck(lambda x, y: square(x).sum() + (y * 2.0).sum(), [x, y], raise_on_failure=False)


def test_gradcheck_report_reads_the_same_in_print_repr_and_ipython():
    report = _report(0.0)
    text = str(report)
    assert text.splitlines()[0].split()[:2] == ["input", "shape"]
    assert len(text.splitlines()) == 1 + 2 + 1  # head, one row per input, the legend
    assert repr(report) == text and pretty(report) == text  # no dataclass dump anywhere
    data, _ = DisplayFormatter().format(report)
    assert data["text/plain"] == text


def test_gradcheck_report_html_is_a_table_with_failures_marked():
    ok = _report(0.0)._repr_html_()
    assert "all inputs pass" in ok and ok.count("<tr") == 3 and "FAIL" not in ok
    bad = _report(0.5)._repr_html_()
    assert "GRADCHECK FAILED" in bad and bad.count("color:#b00020") == 1 and "FAIL" in bad


def test_a_failing_gradcheck_reads_clearly_from_the_error_and_from_one_input():
    x = mv.tensor([0.5, -1.0], dtype="float64", requires_grad=True)

    def wrong_square(x):  # d(x²)/dx = 2x; this backward forgets the 2
        return mv.Tensor.from_op(x.data**2, (x,), lambda g: (g * x.data,), "wrong_square")

    with pytest.raises(mv.GradcheckError) as info:
        mv.gradcheck(lambda x: wrong_square(x).sum(), x)
    message = str(info.value)
    assert message.startswith("gradcheck failed:\n") and "FAIL" in message
    line = str(info.value.report.inputs[0])
    assert line.startswith("FAIL input[0] (2,)") and "analytic" in line and "numeric" in line
    assert pretty(info.value.report.inputs[0]) == line


def test_estimator_stats_display_one_readable_line():
    problem = variance.make_problem("quadratic", 2)
    stats = variance.run_estimators(problem, samples=4, seeds=3, estimators=("reparam", "score"))
    for s in stats:
        assert pretty(s) == str(s) and str(s).startswith(f"{s.estimator}: mean variance")
        assert "array(" not in pretty(s)


def test_training_progress_uses_tqdm_auto():
    """tqdm.auto picks the Jupyter widget in a notebook and the text bar in a terminal."""
    import tqdm.auto

    assert trainer.tqdm is tqdm.auto.tqdm and diagnostics.tqdm is tqdm.auto.tqdm
