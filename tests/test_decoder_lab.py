"""The decoder-expressivity lab: a tiny run end to end, its files and its command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minivae.cli import main
from minivae.labs.decoders import CAPACITIES, DecoderLabConfig, autoregressive_parameters, lab_data, run_lab, write_lab
from minivae.models.made import MADEVAE
from minivae.random import Generator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_lab_data_is_binary_fixed_and_seeded():
    train, test = lab_data(0)
    again, _ = lab_data(0)
    other, _ = lab_data(1)
    assert set(np.unique(train.x)) <= {0.0, 1.0} and len(train) == 1438 and len(test) == 359
    assert np.array_equal(train.x, again.x) and not np.array_equal(train.x, other.x)


def test_autoregressive_parameters_grow_with_capacity_and_skip_masked_weights():
    counts = [autoregressive_parameters(MADEVAE(64, 4, 8, rng=Generator(0), made_hidden=h)) for _, h in CAPACITIES]
    assert counts[0] == 0 and counts[1] == 64 * 63 // 2  # the direct path: a strictly triangular matrix
    assert all(a < b for a, b in zip(counts, counts[1:]))


def test_a_tiny_lab_run_writes_its_numbers_and_figure(tmp_path):
    config = DecoderLabConfig(epochs=2, latent=3, hidden=16, capacities=list(CAPACITIES[:2]), remedies=["free-bits"])
    lines: list[str] = []
    results = run_lab(config, log=lines.append)
    assert [r["label"] for r in results["decoders"]] == ["factorised", "direct"] and len(lines) == 3
    for row in results["decoders"] + results["remedies"]:
        assert np.isfinite(row["test_neg_elbo"]) and row["test_kl"] >= 0 and 0 <= row["active_units"] <= 3
        assert row["test_neg_elbo"] == pytest.approx(row["test_recon"] + row["test_kl"], rel=1e-6)
    remedy = results["remedies"][0]
    assert remedy["free_bits"] == 0.25 and remedy["neg_elbo_cost"] == pytest.approx(
        remedy["test_neg_elbo"] - results["decoders"][-1]["test_neg_elbo"])
    assert results["config"]["seed"] == 0 and results["wall_seconds"] > 0 and "cpu" in results["machine"]
    paths = write_lab(results, tmp_path)
    assert json.loads(paths[0].read_text())["decoders"][1]["made_hidden"] == []
    assert paths[1].read_bytes()[:8] == PNG_MAGIC


def test_lab_command_quick_run_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "lab"
    assert main(["lab", "decoders", "--quick", "--epochs", "1", "--latent", "2", "--out", str(out)]) == 0
    assert (out / "decoders.png").read_bytes()[:8] == PNG_MAGIC
    assert "direct" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["lab", "decoders", "--epochs", "0"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["lab"])  # a lab must be named


def test_config_validation():
    with pytest.raises(ValueError, match="remedies"):
        DecoderLabConfig(remedies=["dropout"]).validate()
    with pytest.raises(ValueError, match="epochs"):
        DecoderLabConfig(epochs=0).validate()


def test_lab_command_refuses_a_negative_seed(capsys):
    with pytest.raises(SystemExit) as info:
        main(["lab", "decoders", "--seed", "-1"])
    assert info.value.code == 2 and "-1" in capsys.readouterr().err
