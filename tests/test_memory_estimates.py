"""The memory estimates against the real peak, for every model at a few sizes; a process limit
(ulimit -v) is respected; loading a run and sampling are checked too (issue 26)."""

from __future__ import annotations

import io
import json
import resource
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minivae.cli import main
from minivae.models import MODELS, build_model
from minivae.optim import Adam
from minivae.random import Generator
from minivae.training.checkpoint import save_checkpoint
from minivae.training.config import TrainConfig
from minivae.training.memory import training_bytes
from minivae.training.step import training_step

TINY = ["--hidden", "8", "--batch-size", "256", "--quiet", "--no-figures"]
OPTIONS = {"iwae": {"k": 20}, "vqvae": {"positions": 16, "codebook_size": 64}, "madevae": {"made_hidden": [64, 64]}}


def measured_peak(model_name: str, hidden: list[int], batch: int, latent: int, tmp_path: Path) -> tuple[int, int]:
    """(traced peak bytes of building the model, two training steps and a checkpoint; the estimate)."""
    dim, classes = 64, 10
    config = TrainConfig(model=model_name, latent=latent, hidden=hidden, batch_size=batch,
                         **OPTIONS.get(model_name, {}))
    options = config.model_kwargs(10)
    rng = Generator(0)
    x = rng.numpy.random((batch, dim)).astype(np.float32)
    y = rng.numpy.integers(0, classes, batch)
    tracemalloc.start()  # NumPy reports its array allocations to tracemalloc
    try:
        model = build_model(model_name, dim, latent, hidden, rng, num_classes=classes, **options)
        optimizer = Adam(model.parameters(), lr=1e-3)
        for _ in range(2):
            training_step(model, optimizer, x, y, rng)
        save_checkpoint(tmp_path / "checkpoint.npz", model, optimizer, rng, 1, config.to_dict(), [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    samples = options.get("k", 1)
    estimate = training_bytes(dim, latent, hidden, batch, samples, model=model_name, options=options,
                              num_classes=classes)
    return peak, estimate


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_the_estimate_covers_the_measured_peak_of_every_model_at_a_few_sizes(model_name, tmp_path):
    measured_peak(model_name, [8], 4, 2, tmp_path)  # first use: caches and compiled kernels, not the model's
    for hidden, batch, latent in (([64], 32, 2), ([256, 256], 128, 8), ([512], 512, 16)):
        peak, estimate = measured_peak(model_name, hidden, batch, latent, tmp_path)
        # Never below the peak (the margin), and not so far above that fitting settings are refused.
        assert peak <= estimate <= 12 * peak, (model_name, hidden, batch, latent, peak, estimate)


def _limited(megabytes: int):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))
    return limit


def test_a_process_memory_limit_is_respected(tmp_path):
    # ~7 GB of parameters and Adam state: more than a 2 GB ulimit -v leaves, whatever the machine has.
    argv = [sys.executable, "-m", "minivae.cli", "train", "vae", "--hidden", "8192", "8192", "--batch-size", "1024",
            "--epochs", "1", "--quiet", "--no-figures", "--out", str(tmp_path / "run")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, preexec_fn=_limited(2048))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs about" in lines[0] and "--hidden 8192 8192" in lines[0], done.stderr
    assert not (tmp_path / "run").exists()


def test_iwae_k_and_vqvae_positions_are_in_the_estimate():
    base = training_bytes(64, 2, [128], 64, 1, model="iwae", options={"k": 1})
    assert training_bytes(64, 2, [128], 64, 100_000, model="iwae", options={"k": 100_000}) > 50_000 * base
    small = training_bytes(64, 2, [128], 64, model="vqvae", options={"positions": 4, "codebook_size": 32})
    huge = training_bytes(64, 2, [128], 64, model="vqvae", options={"positions": 1_000_000, "codebook_size": 32})
    assert huge > 100 * 1e9 > 1000 * small  # the 11.7 GB and more, before anything is allocated


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("memory") / "run"
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *TINY]) == 0
    return out


def test_a_checkpoint_asking_for_a_huge_model_is_refused_when_loading(run, tmp_path, capsys):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    path = target / "checkpoint.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    config = json.loads(str(arrays["config"][()]))
    config["hidden"] = [10 ** 12]
    arrays["config"] = np.array(json.dumps(config))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    assert zipfile.is_zipfile(path)
    for command in (["eval", str(target), "--k", "2"], ["sample", str(target), "--n", "4"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "needs about" in lines[0] and "--hidden 1000000000000" in lines[0], err
        assert "ArrayMemoryError" not in err and "Traceback" not in err


def test_sample_n_under_a_memory_limit_is_a_clear_error(run):
    done = subprocess.run([sys.executable, "-m", "minivae.cli", "sample", str(run), "--n", "100000000"],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limited(2048))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--n 100000000 needs about" in lines[0], done.stderr
