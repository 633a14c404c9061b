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
