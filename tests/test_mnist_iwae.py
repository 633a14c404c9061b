"""The IWAE-paper benchmark at toy size: it runs, writes its record, and the PyTorch twin
sees the same weights, batches and noise (so the two agree to float32 rounding)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import iwae_experiment as exp  # noqa: E402

pytestmark = pytest.mark.skipif(not exp.data_available(), reason=f"MNIST IDX files not in {exp.DEFAULT_DATA}")

TINY = ["--stages", "2", "--train-images", "60", "--eval-images", "20", "--curve-images", "20", "--k-eval", "40",
        "--runs", "vae:1", "iwae:1", "iwae:5", "--quiet"]


def test_shared_pieces_are_seeded_and_follow_the_paper():
    w1, w2 = exp.glorot_weights(0), exp.glorot_weights(0)
    assert all(np.array_equal(w1[n], w2[n]) for n in w1)
    bound = np.sqrt(6 / (784 + 200))
    assert np.abs(w1["encoder.body.0.weight"]).max() <= bound and w1["encoder.body.0.bias"].sum() == 0
    s = exp.Settings(stages=8)
    assert sum(st["passes"] for st in s.schedule()) == 3280  # the paper's full schedule
    assert s.epochs()[:4] == [1e-3] + [pytest.approx(1e-3 * 10 ** (-1 / 7))] * 3


def test_both_sides_run_write_records_and_agree(tmp_path):
    import mnist_iwae

    assert mnist_iwae.main(TINY + ["--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "minivae-iwae-k5.json").read_text())
    assert rec["passes"] == 4 and len(rec["test_nll_per_image"]) == 20
    assert 0 < rec["active_units"] <= 50
    assert rec["test_nll"] <= rec["test_neg_elbo"] + 5  # L_40 is tighter than the ELBO (up to noise)
    assert rec["schedule"][1]["passes"] == 3 and rec["seeds"]["init"] == 0
    assert not list(tmp_path.glob(".*partial*"))  # the progress file is gone once the record is written
    # k = 1: the paper's VAE (mean log-weight) and IWAE (L_1) are one algorithm: identical runs
    vae1, iwae1 = (json.loads((tmp_path / f"minivae-{m}-k1.json").read_text()) for m in ("vae", "iwae"))
    assert vae1["test_nll_per_image"] == iwae1["test_nll_per_image"]
    assert [r["train_loss"] for r in vae1["curve"]] == [r["train_loss"] for r in iwae1["curve"]]

    pytest.importorskip("torch")
    import torch_mnist_iwae

    assert exp.run_all("torch", torch_mnist_iwae.TorchAdapter, TINY + ["--out", str(tmp_path)]) == 0
    for cell in ("vae-k1", "iwae-k5"):
        mv = json.loads((tmp_path / f"minivae-{cell}.json").read_text())
        pt = json.loads((tmp_path / f"torch-{cell}.json").read_text())
        # same initial weights, batches, binarization and noise: only float32 rounding differs
        np.testing.assert_allclose(mv["test_nll_per_image"], pt["test_nll_per_image"], atol=0.05)
        assert mv["test_neg_elbo"] == pytest.approx(pt["test_neg_elbo"], abs=0.05)
    # a second worker finds every cell done and runs nothing
    assert mnist_iwae.main(TINY + ["--out", str(tmp_path)]) == 0


def test_report_joins_seeds_pairs_the_gap_and_checks_the_k1_identity(tmp_path, capsys):
    import mnist_iwae

    cells = ["--runs", "vae:1", "iwae:1"]
    small = TINY[: TINY.index("--runs")] + cells + ["--quiet"]
    folders = [tmp_path / "seed-0", tmp_path / "seed-1"]
    for seed, folder in zip((0, 1), folders):
        assert mnist_iwae.main(small + ["--seed", str(seed), "--out", str(folder)]) == 0
    from minivae.providers import get_kernels, set_kernels

    previous = get_kernels()
    try:
        assert mnist_iwae.main(small + ["--seed", "0", "--out", str(folders[0]), "--reference-kernels"]) == 0
    finally:
        set_kernels(previous)  # --reference-kernels chooses the kernel set for the whole process
    try:  # the paired gap needs the PyTorch twin; without it the report still joins minivae's seeds
        import torch
        import torch_mnist_iwae
    except ImportError:
        torch = None
    if torch is not None:
        for seed, folder in zip((0, 1), folders):
            assert exp.run_all("torch", torch_mnist_iwae.TorchAdapter, small + ["--seed", str(seed), "--out",
                                                                                str(folder)]) == 0
    # a run stopped early by --stop-at is not a seed of the same schedule: left out
    stray = tmp_path / "stray"
    stray.mkdir()
    rec = json.loads((folders[0] / "minivae-vae-k1.json").read_text())
    rec.update(truncated=True, settings={**rec["settings"], "seed": 7})
    (stray / "minivae-vae-k1.json").write_text(json.dumps(rec))

    assert mnist_iwae.report(folders + [stray], "test", results=tmp_path / "results") == 0
    out = json.loads((tmp_path / "results" / "mnist_iwae-test.json").read_text())
    assert (tmp_path / "results" / "mnist_iwae-test.png").stat().st_size > 0
    assert out["seeds"] == [0, 1] and len(out["runs"]) == (10 if torch is not None else 6)
    vae1 = next(c for c in out["cells"] if (c["model"], c["k"]) == ("vae", 1))
    mv = vae1["minivae"]
    assert mv["seeds"] == [0, 1] and mv["nll"]["n"] == 2
    assert mv["nll"]["mean"] == pytest.approx(np.mean(mv["test_nll"]))
    assert out["ordering"]["minivae"]["vae k=1 identical to iwae k=1"] == "2/2"
    # the yardstick: minivae against itself on the reference kernels (same math, other rounding)
    yard = vae1["gap_to_reference_kernels"]
    runs = {(r["framework"], r["settings"]["seed"]): r for r in out["runs"] if (r["model"], r["k"]) == ("vae", 1)}
    mine, ref = runs[("minivae", 0)]["test_nll_per_image"], runs[("minivae-reference", 0)]["test_nll_per_image"]
    assert yard["seeds"] == [0] and yard["per_seed"] == [pytest.approx(np.mean(np.subtract(mine, ref)), abs=1e-9)]
    assert out["ordering"]["minivae"]["iwae<=vae k=1"] == {"seed_means": True, "seeds_held": "2/2"}
    table = capsys.readouterr().out
    assert "| VAE | 1 | 86.76 |" in table and "left out (truncated" in table
    if torch is not None:
        gap = vae1["gap"]
        for i, seed in enumerate((0, 1)):
            mine, theirs = (runs[(fw, seed)]["test_nll_per_image"] for fw in ("minivae", "torch"))
            diff = np.subtract(mine, theirs)
            assert gap["per_seed"][i] == pytest.approx(diff.mean(), abs=1e-9)
        assert gap["n"] == 2 and gap["within_target"] == (abs(gap["mean"]) <= 0.3)


@pytest.mark.parametrize("model,k", [("vae", 1), ("vae", 5), ("iwae", 5)])
def test_twins_compute_the_same_loss_and_gradients_in_float64(model, k):
    """Same weights, batch and noise in float64: the two frameworks agree to rounding (1e-10),
    so any gap in the float32 table is float32 rounding amplified by training, not different math."""
    torch = pytest.importorskip("torch")
    import mnist_iwae
    import torch_mnist_iwae

    weights = exp.glorot_weights(3)
    from minivae.random import Generator
    from minivae.training.data import binarize, load_mnist

    x = binarize(load_mnist(exp.DEFAULT_DATA, "test").x[:7], Generator(1)).astype(np.float64)
    net = mnist_iwae.build(model, k, weights).astype("float64")
    loss = net.loss(x, None, Generator(11))["loss"]  # eps: PCG64(11) standard normals, as below
    loss.backward()

    twin = torch_mnist_iwae.Net()
    twin.load_shared(weights)
    twin.double()
    eps = torch.from_numpy(np.random.Generator(np.random.PCG64(11)).standard_normal((k, 7, exp.LATENT)))
    log_w = torch_mnist_iwae.log_weights(twin, torch.from_numpy(x), eps)
    bound = log_w.mean(0) if model == "vae" else torch.logsumexp(log_w, 0) - np.log(k)
    twin_loss = -bound.mean()
    twin_loss.backward()

    assert loss.item() == pytest.approx(twin_loss.item(), rel=1e-12)
    grads = dict(net.named_parameters())
    layers = {"encoder.body.0": twin.enc[0], "encoder.mu": twin.mu, "encoder.logvar": twin.logvar,
              "decoder.net.2": twin.dec[2], "decoder.net.4": twin.dec[4]}
    for name, layer in layers.items():
        np.testing.assert_allclose(grads[name + ".weight"].grad, layer.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads[name + ".bias"].grad, layer.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_time_eval_covers_every_test_image(tmp_path):
    import mnist_iwae

    assert mnist_iwae.main(["--k-eval", "3", "--time-eval", "--quiet", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "minivae-l5000-full.json").read_text())
    assert rec["images"] == 10000 and rec["k"] == 3 and rec["seconds"] > 0
    assert rec["s_per_image"] == pytest.approx(rec["seconds"] / 10000, rel=0.01, abs=1e-5)
    assert 0 < rec["untrained_nll"] < 784 * 5  # finite and per image, in nats
