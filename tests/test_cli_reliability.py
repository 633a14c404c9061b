"""A user's mistakes and the machine's faults: one-line errors, exit codes, and nothing on disk lost.

Each case runs the real command (in a subprocess where the process matters: Ctrl-C,
two processes at once, permissions; in-process through ``main`` elsewhere, which is
the same code without the interpreter's start-up) and checks three things: the exit
code, the one-line message naming the flag or file, and that every file already on
disk is byte-identical afterwards.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minivae.cli import main
from minivae.training import data as D
from minivae.training.checkpoint import CheckpointError, read_checkpoint

TINY = ["--hidden", "8", "--batch-size", "256", "--quiet", "--no-figures"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# =============================================================================
# helpers
# =============================================================================


def cli(*args: str, timeout: float = 120):
    """Run ``python -m minivae.cli ARGS`` to the end."""
    return subprocess.run([sys.executable, "-m", "minivae.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def make_read_only(folder: Path) -> bool:
    """chmod 555; for root, which ignores permissions, also the immutable attribute. True if it took."""
    folder.chmod(0o555)
    if IS_ROOT:
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    try:
        (folder / ".probe").write_bytes(b"")
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False


def make_writable(folder: Path) -> None:
    if IS_ROOT:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(stderr: str, *fragments: str) -> str:
    """The single line a failed command printed (progress bars aside), checked for the fragments."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("minivae ") and "Traceback" not in stderr and "allow_pickle" not in stderr, stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One tiny trained VAE run, made once; tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("shared") / "run"
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *TINY]) == 0
    return out


def copy_run(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


# =============================================================================
# broken checkpoints
# =============================================================================


def _broken(kind: str, good: bytes) -> bytes:
    if kind == "empty":
        return b""
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "bit-flipped":  # one bit in the middle of the largest array: its CRC no longer matches
        member = max(zipfile.ZipFile(io.BytesIO(good)).infolist(), key=lambda info: info.file_size)
        start = member.header_offset
        name_length, extra_length = struct.unpack("<HH", good[start + 26 : start + 30])
        flipped = bytearray(good)
        flipped[start + 30 + name_length + extra_length + member.file_size // 2] ^= 0x10
        return bytes(flipped)
    if kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(3))
        return buffer.getvalue()
    if kind == "missing-key":
        with np.load(io.BytesIO(good)) as npz:
            arrays = {k: npz[k] for k in npz.files if k != "rng"}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()
    if kind == "object-array":  # NumPy would advise allow_pickle=True for this one
        buffer = io.BytesIO()
        np.savez(buffer, format=np.array([None, 1], dtype=object))
        return buffer.getvalue()
    assert kind == "random"
    return np.random.default_rng(0).bytes(4096)


BROKEN = ("empty", "truncated", "bit-flipped", "npy", "missing-key", "object-array", "random")
EXPECTED = {
    "empty": "is empty", "truncated": "damaged", "bit-flipped": "damaged", "npy": "single .npy array",
    "missing-key": "lacks 'rng'", "object-array": "never unpickles", "random": "not a minivae checkpoint",
}


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_checkpoint_is_one_line_for_eval_sample_and_resume(kind, run, tmp_path, capsys):
    target = copy_run(run, tmp_path / "run")
    (target / "checkpoint.npz").write_bytes(_broken(kind, (run / "checkpoint.npz").read_bytes()))
    before = snapshot(target)
    for argv in (["eval", target, "--k", "2"], ["sample", target],
                 ["train", "vae", "--epochs", "2", "--out", target, "--resume", *TINY]):
        assert main([str(a) for a in argv]) == 2, argv
        line = one_line_error(capsys.readouterr().err, str(target / "checkpoint.npz"), EXPECTED[kind])
        assert "pickle" not in line.replace("unpickles", "")
        assert snapshot(target) == before


def test_broken_checkpoints_in_a_real_process(run, tmp_path):
    target = copy_run(run, tmp_path / "run")
    (target / "checkpoint.npz").write_bytes(_broken("random", b""))
    before = snapshot(target)
    done = cli("eval", target)
    assert done.returncode == 2
    one_line_error(done.stderr, "not a minivae checkpoint", "starts with")
    assert snapshot(target) == before
    with pytest.raises(CheckpointError, match="lacks 'rng'"):
        (tmp_path / "m.npz").write_bytes(_broken("missing-key", (run / "checkpoint.npz").read_bytes()))
        read_checkpoint(tmp_path / "m.npz")


# =============================================================================
# file-system problems
# =============================================================================


def test_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_bytes(b"keep me")
    assert main(["train", "vae", "--epochs", "1", "--out", str(afile), *TINY]) == 2
    one_line_error(capsys.readouterr().err, f"--out {afile}: is a file, not a folder")
    assert main(["train", "vae", "--epochs", "1", "--out", str(afile / "run"), *TINY]) == 2
    one_line_error(capsys.readouterr().err, f"--out {afile / 'run'}: {afile} is a file")
    assert afile.read_bytes() == b"keep me" and sorted(os.listdir(tmp_path)) == ["afile"]


def test_read_only_folders_are_refused_before_any_work(run, tmp_path):
    locked = tmp_path / "locked"
    copy_run(run, locked / "run")
    (locked / "plots").mkdir()
    folders = (locked / "run", locked / "plots", locked)
    try:
        if not all([make_read_only(folder) for folder in folders]):
            pytest.skip("cannot make a folder read-only here (root without chattr)")
        before = snapshot(locked)
        _refused_in_read_only_folders(locked)
        assert snapshot(locked) == before
    finally:
        for folder in folders:
            make_writable(folder)


def _refused_in_read_only_folders(locked: Path) -> None:
    cases = [
        (("train", "vae", "--epochs", "1", "--out", locked / "new", *TINY), f"--out {locked / 'new'}: cannot write"),
        (("eval", locked / "run", "--k", "2"), "eval.json: cannot write in this folder (permission denied)"),
        (("train", "vae", "--epochs", "1", "--out", locked / "run", "--overwrite", *TINY), "cannot write"),
        (("derive", "05", "--plot", locked / "plots"), f"--plot {locked / 'plots'}: cannot write"),
        (("estimators", "--dim", "2", "--seeds", "2", "--samples", "2", "--plot", locked / "plots"), "--plot"),
    ]
    for argv, message in cases:
        done = cli(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        one_line_error(done.stderr, message)


def test_sample_out_that_is_a_folder_and_sample_never_replaces_the_training_figure(run, tmp_path, capsys):
    target = copy_run(run, tmp_path / "run")
    (target / "samples.png").write_bytes(b"the training's figure")
    assert main(["sample", str(target), "--out", str(tmp_path)]) == 2
    one_line_error(capsys.readouterr().err, f"--out {tmp_path}: is a folder")
    before = snapshot(target)
    assert main(["sample", str(target), "--n", "4"]) == 0
    assert (target / "samples.png").read_bytes() == b"the training's figure"
    made = target / "samples-n4-seed0.png"
    assert made.read_bytes()[:4] == b"\x89PNG"
    assert main(["sample", str(target), "--n", "4"]) == 2  # the same file again: refused
    one_line_error(capsys.readouterr().err, "the file exists; pass --overwrite")
    after = snapshot(target)
    assert json.loads(after.pop("minivae-run.json"))["files"][-1] == made.name  # the run knows what sample wrote
    before.pop("minivae-run.json")
    assert after == {**before, made.name: made.read_bytes()}


# =============================================================================
# run folders: lock, Ctrl-C, overwrite, resume
# =============================================================================


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_second_writer_is_refused_and_ctrl_c_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "vae", "--data", "ring", "--epochs", "2000", "--out", str(out), *TINY]  # minutes: never ends first
    first = subprocess.Popen([sys.executable, "-m", "minivae.cli", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out / "checkpoint.npz", first)
        # A second run into the same folder, even with --overwrite, must not mix its files in.
        second = cli(*argv, "--overwrite")
        assert second.returncode == 2
        one_line_error(second.stderr, "another minivae process is using this folder")
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130, err
    assert "Traceback" not in err
    message = one_line_error(err, "interrupted at epoch", "(SIGINT)", "checkpoint.npz", "resume with: minivae train")
    assert message.rstrip().endswith("--resume")
    saved = read_checkpoint(out / "checkpoint.npz")  # intact, and saved where Ctrl-C came: the message says so
    assert saved.epoch >= 1
    if saved.position is not None:
        assert f"checkpoint.npz at step {saved.position['step']} of " in message
        assert f"in epoch {saved.epoch + 1}" in message
    else:
        assert f"checkpoint.npz (after epoch {saved.epoch})" in message
    # The lock died with the process: the same folder is usable at once.
    assert main([*argv[:5], str(saved.epoch + 1), *argv[6:], "--resume"]) == 0
    assert read_checkpoint(out / "checkpoint.npz").epoch == saved.epoch + 1


def test_overwrite_removes_the_old_run_and_resume_needs_a_checkpoint(run, tmp_path, capsys, monkeypatch):
    target = copy_run(run, tmp_path / "run")
    for name, content in (("my_samples.png", b"old"), ("eval-by-hand.json", b"{}"), ("my-notes.txt", b"mine")):
        (target / name).write_bytes(content)
    before = snapshot(target)
    assert main(["train", "ae", "--epochs", "1", "--out", str(target), *TINY]) == 2
    one_line_error(capsys.readouterr().err, "already holds a run", "--overwrite")
    assert snapshot(target) == before
    # --overwrite of a run that cannot start (no data here) removes nothing.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "ae", "--data", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--epochs", "1",
                 "--out", str(target), *TINY, "--overwrite"]) == 2
    one_line_error(capsys.readouterr().err, "not found", "--download")
    assert snapshot(target) == before
    assert main(["train", "ae", "--epochs", "1", "--out", str(target), *TINY, "--overwrite"]) == 0
    assert sorted(os.listdir(target)) == ["checkpoint.npz", "config.json", "eval-by-hand.json", "metrics.csv",
                                         "metrics.json", "minivae-run.json", "my-notes.txt", "my_samples.png"]
    assert all(snapshot(target)[name] == before[name] for name in ("eval-by-hand.json", "my-notes.txt",
                                                                    "my_samples.png"))

    missing = tmp_path / "mistyped"
    assert main(["train", "vae", "--epochs", "1", "--out", str(missing), *TINY, "--resume"]) == 2
    one_line_error(capsys.readouterr().err, "--resume: nothing to resume", "has no checkpoint.npz")
    assert not missing.exists()  # a refused run leaves no empty folder behind
    (target / "checkpoint.npz").unlink()
    before = snapshot(target)
    assert main(["train", "ae", "--epochs", "2", "--out", str(target), *TINY, "--resume"]) == 2
    one_line_error(capsys.readouterr().err, "nothing to resume")
    assert snapshot(target) == before


def test_an_exploding_loss_stops_every_model_and_says_what_was_kept(tmp_path, capsys):
    out = tmp_path / "ae"
    assert main(["train", "ae", "--lr", "1e6", "--epochs", "3", "--out", str(out), *TINY]) == 1
    err = capsys.readouterr().err
    assert "exploding" in err and "no checkpoint had been written yet" in err
    stopped = json.loads((out / "metrics.json").read_text())["stopped"]
    assert "exploding" in stopped["reason"] and stopped["checkpoint_epoch"] == 0


# =============================================================================
# settings that cannot work
# =============================================================================


def test_huge_settings_are_refused_with_a_memory_estimate(run, tmp_path, capsys):
    assert main(["train", "vae", "--latent", "1e9", "--epochs", "1", "--out", str(tmp_path / "x"), *TINY]) == 2
    one_line_error(capsys.readouterr().err, "--latent 1000000000", "GB of memory")
    assert main(["train", "iwae", "--k", "1e9", "--epochs", "1", "--out", str(tmp_path / "x"), *TINY]) == 2
    one_line_error(capsys.readouterr().err, "--k 1000000000", "GB of memory")
    before = snapshot(run)
    assert main(["eval", str(run), "--k", "1e12"]) == 2
    one_line_error(capsys.readouterr().err, "--k 1000000000000", "GB of memory")
    assert main(["sample", str(run), "--n", "1e12"]) == 2
    one_line_error(capsys.readouterr().err, "--n 1000000000000", "GB of memory")
    assert main(["estimators", "--dim", "1000000"]) == 2
    one_line_error(capsys.readouterr().err, "--dim 1000000", "normal draws")
    assert snapshot(run) == before and not (tmp_path / "x").exists()


def test_likelihood_only_where_the_model_has_it(tmp_path, capsys):
    for model, message in (("vae", "--likelihood mse: model vae supports bernoulli, gaussian"),
                           ("bvae", "--likelihood: model bvae has no choice of likelihood")):
        assert main(["train", model, "--likelihood", "mse", "--out", str(tmp_path / model), *TINY]) == 2
        one_line_error(capsys.readouterr().err, message)
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    shown = capsys.readouterr().out
    assert "(default: 100)" in shown and "mse: ae, dae" in shown


def _mnist_like(folder: Path, n_train: int = 40, n_test: int = 10, test_size: int = 6) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n, size in (("train", n_train, 6), ("t10k", n_test, test_size)):
        # black and white pixels: a Bernoulli likelihood, and so ln p(x), applies to them
        D.write_idx(folder / f"{stem}-images-idx3-ubyte", 255 * rng.integers(0, 2, (n, size, size), dtype=np.uint8))
        D.write_idx(folder / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))


def test_data_folders_image_sizes_and_no_network_without_download(tmp_path, capsys, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mixed = tmp_path / "mixed"
    _mnist_like(mixed, test_size=5)
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(mixed), "--out", str(tmp_path / "m"), *TINY]) == 2
    one_line_error(capsys.readouterr().err, "training images are 6x6 but the test images are 5x5")
    empty = tmp_path / "empty"
    _mnist_like(empty, n_train=0)
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(empty), "--out", str(tmp_path / "e"), *TINY]) == 2
    one_line_error(capsys.readouterr().err, "train-images-idx3-ubyte: the file holds 0 images")

    first, moved = tmp_path / "first", tmp_path / "moved"
    _mnist_like(first)
    out = tmp_path / "run"
    assert main(["train", "vae", "--data", "mnist", "--data-dir", str(first), "--epochs", "1", "--out", str(out),
                 *TINY]) == 0
    # Edit the saved settings to ask for a download: eval still must not go online without --download.
    for name in ("config.json",):
        config = json.loads((out / name).read_text())
        config["download"] = True
        (out / name).write_text(json.dumps(config))
    with np.load(out / "checkpoint.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    config = json.loads(str(arrays["config"][()]))
    config["download"] = True
    arrays["config"] = np.array(json.dumps(config))
    np.savez(out / "checkpoint.npz", **arrays)
    first.rename(moved)
    before = snapshot(out)
    assert main(["eval", str(out), "--k", "2"]) == 2
    one_line_error(capsys.readouterr().err, "not found", "--download", "--data-dir")
    assert snapshot(out) == before
    assert main(["eval", str(out), "--k", "2", "--data-dir", str(moved)]) == 0
    assert main(["sample", str(out), "--n", "4", "--data-dir", str(moved)]) == 0
    assert "ln p(x), k=2" in capsys.readouterr().err  # eval's progress bar says what it does


def test_idx_header_with_huge_dimensions_says_truncated(tmp_path):
    path = tmp_path / "huge-idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + (2**31).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(D.DataError) as info:
        D.read_idx(path)
    message = str(info.value)
    assert "truncated" in message and str(2**93) in message and "-" not in message.split("=")[1]


# =============================================================================
# diagnostics: once, bounded, and never in the way of the saved results
# =============================================================================


def test_diagnostics_run_once_and_a_failure_loses_nothing(tmp_path, capsys, monkeypatch):
    import minivae.training.diagnostics as diagnostics

    calls = []
    real = diagnostics.diagnostics_report

    def counted(model, x, **options):
        calls.append(len(x))
        return real(model, x, **options)

    monkeypatch.setattr(diagnostics, "diagnostics_report", counted)
    monkeypatch.setattr("minivae.training.trainer.DIAGNOSTIC_EXAMPLES", 100)
    assert main(["train", "vae", "--epochs", "1", "--out", str(tmp_path / "a"), *TINY]) == 0
    assert calls == [100]  # once, on a subsample of the 359 test digits
    printed = capsys.readouterr().out
    assert "diagnostics on 100 of 359 test examples" in printed
    final = json.loads((tmp_path / "a" / "metrics.json").read_text())["final"]
    assert final["diagnostics"]["examples"] == 100

    def broken(model, x, **options):
        raise ValueError("no variance to measure")

    monkeypatch.setattr(diagnostics, "diagnostics_report", broken)
    assert main(["train", "vae", "--epochs", "1", "--out", str(tmp_path / "b"), *TINY]) == 0
    assert "warning: the latent diagnostics could not be made" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "b" / "checkpoint.npz").epoch == 1
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["final"]["epoch"] == 1


def test_a_one_example_test_set_still_ends_with_checkpoint_and_metrics(tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["train", "vae", "--data", "ring", "--test-fraction", "0.0005", "--epochs", "1", "--out", str(out),
                 *TINY]) == 0
    assert json.loads((out / "metrics.json").read_text())["final"]["epoch"] == 1
    assert read_checkpoint(out / "checkpoint.npz").epoch == 1 and "Traceback" not in capsys.readouterr().err


def test_derive_without_installed_derivations_is_a_clear_error(monkeypatch, capsys):
    import minivae.cli.derive as derive

    monkeypatch.setattr(derive, "entry_points", lambda group: [])
    assert main(["derive", "all"]) == 2
    one_line_error(capsys.readouterr().err, "no derivations are installed", "minivae.derivations")
    source = Path(derive.__file__).read_text()
    assert "import derivations" not in source  # reached only through the entry-point group


def test_ctrl_c_in_any_command_is_a_short_message_and_exit_130(run, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("minivae.training.trainer.evaluate", interrupted)
    before = snapshot(run)
    assert main(["eval", str(run), "--k", "2"]) == 130
    one_line_error(capsys.readouterr().err, "minivae eval: interrupted")
    assert snapshot(run) == before


def test_collapse_warning_fires_when_a_large_learning_rate_leaves_no_active_unit(tmp_path, capsys):
    # lr 0.5: the encoder's means stop moving with x (0 of 2 active, I(z; x) = 0) while KL stays above 1 nat.
    assert main(["train", "vae", "--lr", "0.5", "--epochs", "3", "--out", str(tmp_path / "v"), "--quiet",
                 "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert "active units: 0 / 2" in printed
    assert "WARNING: posterior collapse: all 2 latent dimensions are inactive" in printed


def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(tmp_path, monkeypatch, capsys):
    from minivae.training.trainer import Trainer

    def interrupted(self, epoch, bar):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    out = tmp_path / "run"
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *TINY]) == 130
    line = one_line_error(capsys.readouterr().err, "interrupted at epoch 1", "no checkpoint had been written yet")
    assert line.endswith(f"start again with: minivae train vae --epochs 1 --out {out} {' '.join(TINY)} --overwrite")
    assert not (out / "checkpoint.npz").exists()
