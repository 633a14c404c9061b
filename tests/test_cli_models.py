"""The demo, train, eval, sample and gradcheck commands, end to end, and their argument errors."""

import json

import numpy as np
import pytest

from minivae.cli import main
from minivae.models.checks import gradcheck_model

DEMO_FIGURES = ("reconstructions.png", "samples.png", "latent_manifold.png", "latent_scatter.png", "loss_curves.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_writes_figures_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "3", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "neg_elbo" in printed
    for name in DEMO_FIGURES:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["latent"] == 2 and len(metrics["epochs"]) == 3
    assert np.isfinite(metrics["final"]["test_neg_elbo_nats"])
    # Running the demo again into the same folder replaces nothing unless asked to.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["demo", "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["demo", "--epochs", "1", "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 1


def test_train_resume_eval_and_sample_a_cvae(tmp_path, capsys):
    run = tmp_path / "cvae"
    args = ["train", "cvae", "--data", "digits", "--hidden", "32", "--batch-size", "128", "--seed", "1",
            "--binarize", "dynamic", "--out", str(run), "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    assert (run / "class_samples.png").read_bytes()[:8] == PNG_MAGIC
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert len(json.loads((run / "metrics.json").read_text())["epochs"]) == 2
    capsys.readouterr()

    assert main(["eval", str(run), "--k", "20"]) == 0
    printed = capsys.readouterr().out
    assert "-ELBO" in printed and "importance-sampled" in printed
    assert "ln p(x|y), importance-sampled" in printed  # a CVAE's likelihood is conditional on the label
    result = json.loads((run / "eval.json").read_text())
    assert result["epoch"] == 2 and result["k"] == 20 and result["test_examples"] == 359
    # ln p(x) >= ELBO on average (importance sampling with k = 20 tightens the bound).
    assert result["test_log_likelihood"] > -result["test_neg_elbo"] - 0.5

    png = tmp_path / "sevens.png"
    assert main(["sample", str(run), "--n", "9", "--label", "7", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert main(["sample", str(run), "--n", "9", "--label", "12"]) == 2
    assert "--label must be in [0, 10)" in capsys.readouterr().err


def test_train_exact_setup_flags_reach_the_config(tmp_path):
    run = tmp_path / "vae"
    argv = ["train", "vae", "--data", "digits", "--latent", "2", "--hidden", "128", "--epochs", "1",
            "--batch-size", "64", "--lr", "1e-3", "--out", str(run), "--quiet", "--no-figures"]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["model"], config["latent"], config["hidden"], config["batch_size"], config["lr"]) == (
        "vae", 2, [128], 64, 1e-3
    )
    assert config["likelihood"] == "bernoulli" and config["test_fraction"] == 0.2
    assert json.loads((run / "metrics.json").read_text())["epochs"][0]["step"] == 23  # ceil(1438 / 64)
    assert not (run / "samples.png").exists()


@pytest.mark.parametrize("name", ["ae", "dae", "vae", "cvae", "iwae", "bvae"])
def test_gradcheck_command_passes_for_every_model(name, capsys):
    assert main(["gradcheck", name]) == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed and "FAIL" not in printed
    assert "decoder" in printed and ".weight" in printed  # one row per parameter


def test_gradcheck_report_lists_every_parameter():
    report = gradcheck_model("vae")
    assert report.ok and len(report.inputs) == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "vae", "--epochs", "-3"], "expected a positive integer, got -3"),
        (["train", "vae", "--epochs", "many"], "expected a positive integer, got 'many'"),
        (["train", "no-such-model"], "invalid choice: 'no-such-model'"),
        (["eval", "somewhere", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["sample", "somewhere", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["gradcheck", "vae", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["train", "vae", "--seed", "-1"], "argument --seed: expected an integer >= 0, got -1"),
        (["estimators", "--dim", "0"], "argument --dim: expected a positive integer, got 0"),
        (["train", "vae", "--data", "cifar"], "invalid choice: 'cifar'"),
        (["train", "vae", "--lr", "0"], "expected a positive number"),
        (["gradcheck", "nope"], "invalid choice: 'nope'"),
        (["sample", "somewhere", "--n", "0"], "expected a positive integer, got 0"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_or_existing_run_directories_give_clear_errors(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert main(["eval", str(missing)]) == 2
    assert f"run directory {missing} does not exist" in capsys.readouterr().err
    assert main(["sample", str(missing)]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", str(empty)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err

    run = tmp_path / "run"
    base = ["train", "vae", "--hidden", "16", "--epochs", "1", "--out", str(run), "--quiet", "--no-figures"]
    assert main(base) == 0
    assert main(base) == 2  # would overwrite a finished run
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main(base + ["--resume", "--lr", "0.01"]) == 2
    assert "lr: saved 0.001, now 0.01" in capsys.readouterr().err
    assert main(base[:3] + ["32"] + base[4:] + ["--resume"]) == 2  # another architecture
    err = capsys.readouterr().err
    assert "another architecture" in err and "hidden: saved [16], now [32]" in err
    assert main(["train", "cvae", "--data", "ring", "--epochs", "1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "num_classes" in capsys.readouterr().err


def test_train_bvae_with_each_estimator_flag_and_report_diagnostics(tmp_path, capsys):
    out = tmp_path / "bvae"
    code = main(["train", "bvae", "--estimator", "gumbel", "--latent", "8", "--hidden", "16", "--epochs", "1",
                 "--out", str(out), "--quiet", "--no-figures"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "active units:" in printed and "I(z; x)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["estimator"] == "gumbel"
    diagnostics = metrics["final"]["diagnostics"]
    assert diagnostics["posterior"] == "bernoulli" and diagnostics["latent_dim"] == 8
    assert 0.0 <= diagnostics["mutual_information"] <= diagnostics["mi_upper_bound"] + 1e-9


def test_vae_training_report_has_active_units_and_mutual_information(tmp_path):
    out = tmp_path / "vae"
    assert main(["train", "vae", "--latent", "3", "--hidden", "16", "--epochs", "2", "--out", str(out),
                 "--quiet", "--no-figures"]) == 0
    diagnostics = json.loads((out / "metrics.json").read_text())["final"]["diagnostics"]
    assert diagnostics["posterior"] == "gaussian" and len(diagnostics["kl_per_dim"]) == 3
    assert diagnostics["active_units"] == sum(diagnostics["active_mask"])
