"""Binarization of grey images for a Bernoulli likelihood: seeded, dynamic, static, saved,
and the refusal to call a Bernoulli score on grey pixels a log-likelihood."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from minivae.random import Generator
from minivae.training.data import (
    BINARIZE_MODES,
    DataError,
    binarize,
    binarize_dataset,
    is_binary,
    load_binarized,
    load_digits,
    load_mnist,
    log_likelihood_refusal,
    save_binarized,
)

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def grey(shape=(50, 64), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_same_seed_same_sample_other_seed_other_sample():
    x = grey()
    a, b, c = binarize(x, Generator(3)), binarize(x, Generator(3)), binarize(x, Generator(4))
    assert a.dtype == np.float32 and a.shape == x.shape and is_binary(a)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.2  # independent draws of p(1-p)-ish pixels disagree often


def test_dynamic_gives_a_fresh_sample_every_use():
    x, rng = grey(), Generator(0)
    first, second = binarize(x, rng), binarize(x, rng)
    assert (first != second).any()
    # ... but black stays black and white stays white, whatever the draw
    edges = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=np.float32)
    for _ in range(20):
        np.testing.assert_array_equal(binarize(edges, rng), edges)


def test_pixel_is_one_with_probability_equal_to_its_grey_level():
    levels = np.array([0.1, 0.5, 0.9], dtype=np.float32)
    x = np.tile(levels, (20000, 1))
    freq = binarize(x, Generator(1)).mean(axis=0)
    # binomial standard error at n = 20000 is at most 0.0036; 5 of them
    np.testing.assert_allclose(freq, levels, atol=0.018)


def test_edge_shapes_and_bad_input():
    assert binarize(np.zeros((0, 784), np.float32), Generator(0)).shape == (0, 784)
    assert binarize(np.float32(1.0), Generator(0)) == 1.0  # 0-d
    with pytest.raises(ValueError, match=r"binarize: .*\[0, 1\].*from 0.0 to 2.0"):
        binarize(np.array([[0.0, 2.0]], np.float32), Generator(0))
    with pytest.raises(ValueError, match="binarize"):
        binarize(np.array([[np.nan, 0.5]], np.float32), Generator(0))
    with pytest.raises(ValueError, match="binarize"):
        binarize(np.array([[0, 255]], np.uint8), Generator(0))  # raw bytes, not grey levels


def test_static_sample_is_fixed_and_saved_with_the_run(tmp_path):
    digits = load_digits("train")
    assert not is_binary(digits.x)
    fixed = binarize_dataset(digits, Generator(7))
    assert is_binary(fixed.x) and fixed.name == "digits-train-binarized"
    np.testing.assert_array_equal(fixed.y, digits.y)
    np.testing.assert_array_equal(fixed.x, binarize_dataset(digits, Generator(7)).x)  # same seed, same set
    path = tmp_path / "binarized_train.npz"
    save_binarized(path, fixed.x)
    np.testing.assert_array_equal(load_binarized(path), fixed.x)
    assert path.stat().st_size < fixed.x.size // 4  # packed bits, not float32
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_saved_binarization_checks(tmp_path):
    with pytest.raises(ValueError, match="save_binarized"):
        save_binarized(tmp_path / "b.npz", grey())  # grey is not 0/1
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="broken.npz"):
        load_binarized(broken)


@pytest.mark.parametrize("failing", ["mkstemp", "replace"])
def test_save_into_read_only_folder_keeps_nothing_half_written(tmp_path, monkeypatch, failing):
    """A read-only folder (simulated: root ignores permission bits) fails either when the temporary
    file is made or when it is renamed into place; either way nothing is left behind."""
    import errno

    import minivae.files

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    target = minivae.files.tempfile if failing == "mkstemp" else minivae.files.os
    monkeypatch.setattr(target, failing, read_only)
    folder = tmp_path / "ro"
    folder.mkdir()
    with pytest.raises(OSError, match="Read-only file system"):
        save_binarized(folder / "b.npz", np.ones((2, 8), np.float32))
    monkeypatch.undo()
    assert list(folder.iterdir()) == []


def test_grey_pixels_under_a_bernoulli_likelihood_are_not_a_log_likelihood():
    x = grey()
    message = log_likelihood_refusal(x, "bernoulli", "none")
    assert message is not None and "not log p(x)" in message and "--binarize" in message
    # binarized data, a binarizing run, or another likelihood: fine
    assert log_likelihood_refusal(binarize(x, Generator(0)), "bernoulli", "none") is None
    assert log_likelihood_refusal(x, "bernoulli", "dynamic") is None
    assert log_likelihood_refusal(x, "bernoulli", "static") is None
    assert log_likelihood_refusal(x, "gaussian", "none") is None
    with pytest.raises(ValueError, match="binarize must be one of"):
        log_likelihood_refusal(x, "bernoulli", "sometimes")
    assert BINARIZE_MODES == ("none", "dynamic", "static")


@pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="MNIST IDX files not in ../shared")
def test_mnist_binarizes_to_its_grey_level_on_average():
    test = load_mnist(MNIST, "test")
    assert test.x.shape == (10000, 784) and not is_binary(test.x)
    sample = binarize(test.x[:2000], Generator(0))
    assert is_binary(sample)
    # each pixel is an independent coin with P(1) = grey level, so the means agree closely
    assert abs(sample.mean() - test.x[:2000].mean()) < 0.002


# -- the command line: --binarize on a real (small) run ------------------------------------


def _train(tmp_path, name, *extra):
    from minivae.cli import main

    run = tmp_path / name
    args = ["train", "vae", "--data", "digits", "--latent", "2", "--hidden", "16", "--batch-size", "256",
            "--epochs", "1", "--out", str(run), "--quiet", "--no-figures", *extra]
    assert main(args) == 0
    return run


def test_static_run_saves_its_sample_and_reports_log_likelihood(tmp_path, capsys):
    import json

    from minivae.cli import main
    from minivae.training.config import TrainConfig
    from minivae.training.trainer import load_data

    run = _train(tmp_path, "static", "--binarize", "static", "--seed", "3")
    saved = load_binarized(run / "binarized_train.npz")
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert config.binarize == "static"
    train, test = load_data(config)
    np.testing.assert_array_equal(saved, train.x)  # the saved sample is the one the run trains on
    assert is_binary(train.x) and is_binary(test.x)
    capsys.readouterr()
    assert main(["eval", str(run), "--k", "10"]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert "test_log_likelihood" in result and "log_likelihood_refused" not in result


def test_grey_run_gets_no_log_likelihood_from_eval(tmp_path, capsys):
    import json

    from minivae.cli import main

    run = _train(tmp_path, "grey")
    assert not (run / "binarized_train.npz").exists()
    capsys.readouterr()
    assert main(["eval", str(run), "--k", "10"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((run / "eval.json").read_text())
    assert "test_log_likelihood" not in result and "not log p(x)" in result["log_likelihood_refused"]
    assert "no ln p(x)" in printed and "importance-sampled" not in printed


def test_binarize_needs_images_and_a_bernoulli_likelihood(capsys):
    from minivae.cli import main

    assert main(["train", "vae", "--data", "moons", "--binarize", "dynamic", "--epochs", "1"]) == 2
    assert "--binarize dynamic" in capsys.readouterr().err
