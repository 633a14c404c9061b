"""Settings that cannot work, broken files and signals outside training (issue 26): one line naming the
flag or the file, the right exit code, and nothing on disk changed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import one_line, snapshot

from minivae.cli import main
from minivae.training import data as D

TINY = ["--hidden", "8", "--batch-size", "256", "--quiet", "--no-figures"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "run"
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *TINY]) == 0
    return out


# =============================================================================
# splits and flags
# =============================================================================


@pytest.mark.parametrize("fraction, left", [("0.001", "0 test examples"), ("0.998", "0 training")])
def test_a_split_that_leaves_a_side_empty_is_refused_naming_the_flag(tmp_path, capsys, fraction, left):
    out = tmp_path / "run"
    assert main(["train", "vae", "--epochs", "1", "--test-fraction", fraction, "--out", str(out), *TINY]) == 2
    one_line(capsys.readouterr().err, f"--test-fraction {fraction}", left, "--batch-size 256")
    assert not out.exists()


@pytest.mark.parametrize("flags, named", [(["--lr", "inf"], "--lr must be positive and finite"),
                                          (["--test-fraction", "1.5"], "--test-fraction must lie strictly")])
def test_out_of_range_settings_name_the_flag_not_a_python_name(tmp_path, capsys, flags, named):
    assert main(["train", "vae", "--epochs", "1", "--out", str(tmp_path / "r"), *TINY, *flags]) == 2
    line = one_line(capsys.readouterr().err, named)
    assert "Adam" not in line and "test_fraction" not in line


# =============================================================================
# data files: corrupt gzip, a folder or a link loop in the file's place
# =============================================================================


def _mnist(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        D.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 6, 6), dtype=np.uint8))
        D.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))


def test_every_flipped_byte_of_a_gzip_data_file_is_a_one_line_data_error(tmp_path):
    _mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    good = path.read_bytes()
    seen = set()
    for offset in range(10, len(good) - 8):  # the deflate stream: a flip there is what raised zlib.error
        for bit in (0, 3, 7):
            bad = bytearray(good)
            bad[offset] ^= 1 << bit
            path.write_bytes(bytes(bad))
            try:
                D.read_idx(path)
            except D.DataError as err:
                assert str(path) in str(err) and "\n" not in str(err)
                seen.add(type(err).__name__)
    assert seen == {"DataError"}
    # Through the command line too: exit 2, one line naming the file.
    bad = bytearray(good)
    bad[12] ^= 0xFF
    path.write_bytes(bytes(bad))
    done = subprocess.run([sys.executable, "-m", "minivae.cli", "train", "vae", "--data", "mnist", "--data-dir",
                           str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "run"), *TINY],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    one_line(done.stderr, str(tmp_path))


def test_a_folder_or_a_link_loop_where_a_data_file_should_be_is_not_called_missing(tmp_path, capsys):
    _mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.unlink()
    (tmp_path / "train-images-idx3-ubyte").mkdir()
    argv = ["train", "vae", "--data", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", *TINY]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    line = one_line(capsys.readouterr().err, "is a folder", "train-images-idx3-ubyte")
    assert "not found" not in line
    (tmp_path / "train-images-idx3-ubyte").rmdir()
    os.symlink(images, images)  # a link to itself: a loop
    assert main([*argv, "--out", str(tmp_path / "b")]) == 2
    line = one_line(capsys.readouterr().err, "link loop", "train-images-idx3-ubyte.gz")
    assert "not found" not in line


# =============================================================================
# output names: too long, the wrong picture format, a lab's folder
# =============================================================================


def test_names_the_file_system_cannot_hold_are_refused_before_any_work(run, tmp_path, capsys):
    before = snapshot(run)
    long_folder = tmp_path / ("x" * 256)
    assert main(["train", "vae", "--epochs", "1", "--out", str(long_folder), *TINY]) == 2
    one_line(capsys.readouterr().err, "--out", "at most 255")
    # 250 characters fit a file system, but not with the temporary file's 14 extra: refused up front.
    for command in (["eval", str(run), "--k", "2"], ["sample", str(run), "--n", "4"]):
        name = "y" * 246 + (".json" if command[0] == "eval" else ".png")
        assert main([*command, "--out", str(tmp_path / name)]) == 2
        one_line(capsys.readouterr().err, "--out", "at most 241")
    assert snapshot(run) == before


def test_sample_writes_the_format_its_suffix_names_or_refuses(run, tmp_path, capsys):
    for suffix, magic in ((".pdf", b"%PDF"), (".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"s{suffix}"
        assert main(["sample", str(run), "--n", "4", "--out", str(out)]) == 0
        assert out.read_bytes().startswith(magic)
    assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.txt")]) == 2
    one_line(capsys.readouterr().err, "--out", "s.txt", ".png, .pdf or .svg")
    assert not (tmp_path / "s.txt").exists()


def test_lab_decoders_checks_its_out_folder_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    started = time.process_time()
    assert main(["lab", "decoders", "--epochs", "1", "--quick", "--out", str(blocker / "lab")]) == 2
    one_line(capsys.readouterr().err, "--out", "is a file")
    assert time.process_time() - started < 5  # refused at once, not after the lab ran (minutes)
    assert blocker.read_text() == "mine"


# =============================================================================
# the run folder's own files: a folder in a file's place, an edited config.json
# =============================================================================


def test_metrics_json_that_is_a_folder_is_one_line_and_keeps_the_checkpoint(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / "metrics.json").unlink()
    (out / "metrics.json").mkdir()
    checkpoint = (out / "checkpoint.npz").read_bytes()
    assert main(["train", "vae", "--epochs", "2", "--out", str(out), *TINY, "--resume"]) == 1
    one_line(capsys.readouterr().err, "metrics.json", "it is a folder", "training stopped")
    assert (out / "checkpoint.npz").read_bytes() == checkpoint and (out / "metrics.json").is_dir()


def test_an_edited_config_json_is_reported_and_the_checkpoint_wins(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    config = json.loads((out / "config.json").read_text())
    config["lr"] = 0.5
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "vae", "--epochs", "2", "--out", str(out), *TINY[:-2], "--no-figures", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "config.json differs from the settings saved in the checkpoint (lr: saved 0.001, now 0.5)" in printed
    assert "the checkpoint is authoritative" in printed
    assert json.loads((out / "config.json").read_text())["lr"] == 0.001


# =============================================================================
# SIGTERM and SIGHUP outside training
# =============================================================================


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_eval_with_a_message_and_the_shell_code(run, tmp_path, sig, code):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = snapshot(out)
    process = subprocess.Popen([sys.executable, "-m", "minivae.cli", "eval", str(out), "--k", "100000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout.readline().startswith("evaluating")  # it is computing now
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last == f"minivae eval: interrupted ({signal.Signals(sig).name})" and "Traceback" not in err
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "minivae-run.json"} == \
        {k: v for k, v in before.items() if k != "minivae-run.json"}
    assert "eval.json" not in json.loads(after["minivae-run.json"])["files"]  # listed, not written: pruned


def _mnist_of_size(folder: Path, rows: int, cols: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 300), ("t10k", 10)):
        D.write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, rows, cols), dtype=np.uint8))
        D.write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))


def test_zero_pixel_images_name_the_file_not_a_layer(tmp_path, capsys):
    _mnist_of_size(tmp_path / "empty", 0, 5)
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(tmp_path / "empty"), "--epochs", "1",
                 "--out", str(tmp_path / "run"), *TINY]) == 2
    line = one_line(capsys.readouterr().err, "train-images-idx3-ubyte", "0x5 pixels")
    assert "Linear" not in line


def test_data_of_another_size_is_not_called_another_architecture(tmp_path, capsys):
    _mnist_of_size(tmp_path / "six", 6, 6)
    _mnist_of_size(tmp_path / "eight", 8, 8)
    out = tmp_path / "run"
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(tmp_path / "six"), "--epochs", "1",
                 "--out", str(out), *TINY]) == 0
    for command in (["eval", str(out), "--k", "2"], ["train", "vae", "--data", "mnist", "--epochs", "2",
                                                      "--out", str(out), *TINY, "--resume"]):
        assert main([*command, "--data-dir", str(tmp_path / "eight")]) == 2
        line = one_line(capsys.readouterr().err, "trained on data of another size", "--data-dir")
        assert "another architecture" not in line


def test_gradcheck_given_raw_arrays_says_what_it_expects():
    from minivae import gradcheck

    for inputs, named in (([np.ones(3)], "input[0] is a ndarray"), (np.ones(3), "inputs is a ndarray")):
        with pytest.raises(TypeError, match="gradcheck: " + named.replace("[", r"\[").replace("]", r"\]")):
            gradcheck(lambda a: (a * a).sum(), inputs)
