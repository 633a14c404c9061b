"""Nothing a user has is lost (issue 26): what --overwrite may delete, temporary files of killed
writes, save-on-signal with bit-identical resume, time-based checkpoints, figures written
atomically and one writer per run folder.

Real subprocesses where the process matters (signals, locks, kills); files are compared byte for
byte before and after.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import one_line, snapshot

from minivae.cli import main
from minivae.training.checkpoint import read_checkpoint
from minivae.training.runfolder import MANIFEST

TINY = ["--hidden", "8", "--batch-size", "256", "--quiet", "--no-figures"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minivae.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minivae.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def params(path: Path) -> dict[str, np.ndarray]:
    return read_checkpoint(path).params


def same_params(a: Path, b: Path) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        assert np.array_equal(pa[name], pb[name]), name  # bit for bit


# =============================================================================
# --overwrite removes only what the run wrote; foreign folders are refused
# =============================================================================


def _users_folder(folder: Path) -> dict[str, bytes]:
    folder.mkdir()
    files = {"my_samples.png": b"\x89PNG mine", "samples-from-paper.png": b"\x89PNG paper",
             "codebook_design_sketch.png": b"\x89PNG sketch", "eval.json": b'{"mine": 1}',
             "config.json": b'{"my": "config"}', "checkpoint.npz": b"PK\x03\x04 not minivae"}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return snapshot(folder)


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--resume"]])
def test_a_folder_that_is_not_a_minivae_run_is_never_touched(tmp_path, flags):
    folder = tmp_path / "project"
    before = _users_folder(folder)
    done = cli("train", "vae", "--epochs", "1", "--out", folder, *TINY, *flags)
    assert done.returncode == 2
    if flags == ["--resume"]:  # its checkpoint.npz is not one: read and refused, nothing written
        one_line(done.stderr, "checkpoint")
    else:
        one_line(done.stderr, f"--out {folder} is not empty and is not a minivae run folder", MANIFEST,
                 "choose a new --out folder")
    assert snapshot(folder) == before


def test_overwrite_of_a_run_removes_exactly_the_files_its_manifest_lists(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vqvae", "--epochs", "1", "--out", str(out), "--hidden", "8", "--quiet"]) == 0
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert {"config.json", "metrics.json", "metrics.csv", "checkpoint.npz", "codebook.json", "samples.png"} \
        <= set(listed)
    assert sorted(listed) == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)  # what is there, no more
    mine = {"vqvae_samples.png": b"mine", "my_samples.png": b"mine too", "notes.txt": b"notes",
            ".notes.abcdefgh.tmp": b"my own temp-looking file"}
    for name, content in mine.items():
        (out / name).write_bytes(content)
    # Without --overwrite: refused, and nothing changes.
    before = snapshot(out)
    done = cli("train", "vqvae", "--epochs", "1", "--out", out, *TINY)
    assert done.returncode == 2
    one_line(done.stderr, "already holds a run", "--overwrite", MANIFEST)
    assert snapshot(out) == before
    # With it: only the listed files go; the user's stay byte for byte.
    assert cli("train", "ae", "--epochs", "1", "--out", out, *TINY, "--overwrite").returncode == 0
    after = snapshot(out)
    assert {name: after[name] for name in mine} == mine
    assert "codebook.json" not in after and "samples.png" not in after  # the vqvae's, not written by the ae
    assert sorted(json.loads(after[MANIFEST])["files"]) == ["checkpoint.npz", "config.json", "metrics.csv",
                                                             "metrics.json"]


def test_a_users_file_with_a_run_files_name_is_never_replaced(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "ae", "--epochs", "1", "--out", str(out), *TINY]) == 0
    (out / "samples.png").write_bytes(b"the user's own figure")  # not in the manifest
    before = snapshot(out)
    done = cli("train", "vae", "--epochs", "1", "--out", out, "--hidden", "8", "--quiet", "--overwrite")
    assert done.returncode == 2
    one_line(done.stderr, "samples.png would be replaced by this run", "does not list it")
    assert snapshot(out) == before
    # eval.json the user put there is not replaced by eval's default output either.
    (out / "eval.json").write_bytes(b"their notes")
    done = cli("eval", out, "--k", "2")
    assert done.returncode == 2 and (out / "eval.json").read_bytes() == b"their notes"
    one_line(done.stderr, "eval.json: the file exists")


def test_root_and_a_data_folder_are_refused(tmp_path):
    for folder in ("/", str(Path(__file__).parent)):
        done = cli("train", "vae", "--epochs", "1", "--out", folder, *TINY, "--overwrite")
        assert done.returncode == 2
        one_line(done.stderr, "is not a minivae run folder")


# =============================================================================
# temporary files of killed writes
# =============================================================================


def test_stale_temp_files_of_the_run_are_removed_on_resume_and_on_overwrite(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *TINY]) == 0
    stale = [".checkpoint.npz.k2j3h4g5.tmp", ".metrics.json.aaaaaaaa.tmp", f".{MANIFEST}.bbbbbbbb.tmp",
             ".minivae-probe.cccccccc"]
    users = {".notes.txt.dddddddd.tmp": b"not a run file's", "x.tmp": b"mine"}
    for name in stale:
        (out / name).write_bytes(b"half a write")
    for name, content in users.items():
        (out / name).write_bytes(content)
    assert main(["train", "vae", "--epochs", "2", "--out", str(out), *TINY, "--resume"]) == 0
    assert not any((out / name).exists() for name in stale)
    assert {name: (out / name).read_bytes() for name in users} == users
    (out / stale[0]).write_bytes(b"again")
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *TINY, "--overwrite"]) == 0
    assert not (out / stale[0]).exists() and temp_files(out) == sorted(users)


# =============================================================================
# save on a signal, at the next step boundary; bit-identical resume
# =============================================================================


# A long epoch (batch size 4: 360 steps), so that a signal almost always lands inside it.
# Long epochs (batch size 4: 360 steps) and a run that never ends first, so that the signal lands
# inside training; the reference is the uninterrupted run to the epoch the resumed one completes.
LONG_RUN = ["train", "vae", "--data", "digits", "--hidden", "32", "--batch-size", "4", "--quiet", "--no-figures"]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])  # SIGINT: test_cli_reliability
def test_a_signal_saves_at_the_next_step_and_resume_is_bit_identical(tmp_path, sig, code):
    out = tmp_path / "run"
    process = start(*LONG_RUN, "--epochs", "100000", "--out", out)
    wait_for(out / "config.json", process)
    time.sleep(0.2)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    message = one_line(err, f"({signal.Signals(sig).name})", "checkpoint.npz", "resume with:", "--resume")
    saved = read_checkpoint(out / "checkpoint.npz")  # the message says exactly what is on disk
    if saved.position is not None:
        assert f"saved {out / 'checkpoint.npz'} at step {saved.position['step']} of 360 in epoch {saved.epoch + 1}" \
            in message
    else:  # the signal came while an epoch's end was being evaluated or saved
        assert f"checkpoint.npz (after epoch {saved.epoch})" in message
    epochs = str(saved.epoch + 1)  # finish the interrupted epoch (--epochs may change on --resume)
    assert cli(*LONG_RUN, "--epochs", epochs, "--out", out, "--resume").returncode == 0
    reference = tmp_path / "reference"
    assert main([*LONG_RUN, "--epochs", epochs, "--out", str(reference)]) == 0
    same_params(out / "checkpoint.npz", reference / "checkpoint.npz")
    assert json.loads((out / "metrics.json").read_text())["epochs"][-1]["train"] == \
        json.loads((reference / "metrics.json").read_text())["epochs"][-1]["train"]
    assert temp_files(out) == []


@pytest.mark.parametrize("model, extra", [
    ("vae", ["--binarize", "dynamic", "--warmup", "1"]), ("iwae", ["--k", "3"]), ("bvae", []),
    ("vqvae", ["--ema", "--restart-dead"]), ("madevae", []), ("dae", ["--noise", "mask"]), ("cvae", []),
])
def test_a_stop_at_any_step_resumes_bit_identically_for_every_model(tmp_path, monkeypatch, model, extra):
    from minivae.training import trainer as T
    from minivae.training.config import TrainConfig

    def config() -> TrainConfig:
        options = {"binarize": "dynamic", "warmup": 1} if "--binarize" in extra else {}
        options.update({"k": 3} if model == "iwae" else {})
        options.update({"ema": True, "restart_dead": True} if model == "vqvae" else {})
        options.update({"noise": "mask"} if model == "dae" else {})
        return TrainConfig(model=model, data="digits", latent=2, hidden=[8], epochs=2, batch_size=128, lr=1e-2,
                           **options)

    with T.Trainer(config(), tmp_path / "reference", progress=False) as reference:
        reference.fit()
    steps = reference.steps_per_epoch
    stop_at = random.Random(model).randrange(1, 2 * steps)  # any step of the two epochs
    real_step, calls = T.training_step, []

    def step_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at:
            trainer.request_stop(signal.SIGTERM)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(T, "training_step", step_then_stop)
    trainer = T.Trainer(config(), tmp_path / "run", progress=False)
    with trainer, pytest.raises(T.TrainingStopped):
        trainer.fit()
    monkeypatch.setattr(T, "training_step", real_step)
    saved = read_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert saved.epoch * steps + (saved.position or {}).get("step", 0) == stop_at
    with T.Trainer(config(), tmp_path / "run", resume=True, progress=False) as resumed:
        resumed.fit()
    same_params(tmp_path / "run" / "checkpoint.npz", tmp_path / "reference" / "checkpoint.npz")
    assert resumed.history == [{**row, "seconds": mine["seconds"]} for row, mine in zip(reference.history,
                                                                                          resumed.history)]


def test_checkpoints_come_by_training_time_too_inside_an_epoch(tmp_path, monkeypatch):
    from minivae.training import trainer as T
    from minivae.training.config import TrainConfig

    clock = [0.0]  # a fake clock: each step takes 100 "seconds"
    monkeypatch.setattr(T.time, "monotonic", lambda: clock[0])
    real_step = T.training_step

    def slow_step(*args, **kwargs):
        clock[0] += 100.0
        return real_step(*args, **kwargs)

    monkeypatch.setattr(T, "training_step", slow_step)
    saves = []
    config = TrainConfig(model="vae", data="digits", hidden=[8], epochs=1, batch_size=256)
    with T.Trainer(config, tmp_path / "run", progress=False, checkpoint_seconds=250) as trainer:
        real_save = trainer.save
        trainer.save = lambda position=None: (saves.append(position and position["step"]), real_save(position))
        trainer.fit()
    assert saves == [3, None]  # after 300 s of training (step 3 of 6), then at the epoch's end
    # --epochs 1e30 is accepted: its epoch saves are rare, the clock still saves.
    assert T.Trainer.__init__.__kwdefaults__["checkpoint_seconds"] == T.CHECKPOINT_SECONDS <= 300


# =============================================================================
# random kills during training and writes, then resume: bit-identical, no debris
# =============================================================================


def test_random_kills_during_training_and_writes_then_resume_is_bit_identical(tmp_path):
    # A checkpoint after every step (--checkpoint-minutes tiny), so kills often land inside a write.
    argv = ["train", "vae", "--data", "ring", "--hidden", "16", "--batch-size", "32", "--quiet", "--no-figures",
            "--epochs", "3", "--checkpoint-minutes", "1e-9"]
    reference = tmp_path / "reference"
    assert main([*argv, "--out", str(reference)]) == 0
    out, chance = tmp_path / "run", random.Random(26)
    first = True
    for attempt in range(5):
        config_before = (out / "config.json").stat().st_ino if not first else None
        process = start(*argv, "--out", out, *([] if first else ["--resume"]))
        wait_for(out / "checkpoint.npz", process)
        while (out / "config.json").stat().st_ino == config_before:  # this process has started training
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
        first = False
        time.sleep(chance.uniform(0.0, 0.6))
        sig = chance.choice([signal.SIGKILL, signal.SIGTERM])
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        assert process.returncode in (0, -signal.SIGKILL, 143), err
        assert "Traceback" not in err
        read_checkpoint(out / "checkpoint.npz")  # always a whole checkpoint
        if process.returncode == 0:
            break
    done = cli(*argv, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    same_params(out / "checkpoint.npz", reference / "checkpoint.npz")
    assert temp_files(out) == []


# =============================================================================
# figures and eval.json: atomic, and one writer at a time
# =============================================================================


def test_a_derive_plot_killed_while_drawing_leaves_the_old_figures_whole(tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    plots = tmp_path / "plots"
    assert main(["derive", "01", "--plot", str(plots)]) == 0
    before = snapshot(plots)
    assert before and all(content[:4] == b"\x89PNG" for content in before.values())

    def half_written(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PN")  # what a kill in the middle of savefig leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", half_written)
    assert main(["derive", "01", "--plot", str(plots)]) == 130
    assert snapshot(plots) == before
    assert [p.name for p in plots.iterdir() if p.name.startswith(".")] == []


KILLED_WHILE_DRAWING = """
import sys, time
from pathlib import Path
from matplotlib.figure import Figure
from minivae.cli import main

def stuck(self, path, *args, **kwargs):
    Path(path).write_bytes(b"\\x89PN")  # half a PNG in the stage folder, then wait for the kill
    print("drawing", flush=True)
    time.sleep(60)

Figure.savefig = stuck
sys.exit(main(["derive", "01", "--plot", sys.argv[1]]))
"""


def test_a_derive_plot_killed_with_sigkill_leaves_a_stage_the_next_plot_removes(tmp_path):
    """SIGKILL runs no finally: its stage folder stays; the next --plot into that folder removes it
    (its process is gone), while a stage whose process still runs is left alone."""
    plots = tmp_path / "plots"
    assert main(["derive", "01", "--plot", str(plots)]) == 0
    before = snapshot(plots)
    killed = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_DRAWING, str(plots)], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "drawing"
    running = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_DRAWING, str(plots)], stdout=subprocess.PIPE, text=True)
    try:
        assert running.stdout.readline().strip() == "drawing"
        killed.kill()
        killed.wait(timeout=30)
        stages = sorted(p.name for p in plots.glob(".minivae-stage.*.tmp"))
        visible = {name: data for name, data in snapshot(plots).items() if not name.startswith(".")}
        assert len(stages) == 2 and visible == before  # the figures are whole meanwhile
        foreign = plots / f".minivae-stage.another-machine.{killed.pid}.abc.tmp"  # a dead pid, but not ours to judge
        foreign.mkdir()
        assert main(["derive", "01", "--plot", str(plots)]) == 0
        left = sorted(p.name for p in plots.glob(".minivae-stage.*.tmp"))
        assert left == sorted([foreign.name] + [f for f in stages if f".{running.pid}." in f])  # the live one stays
        visible = {name: data for name, data in snapshot(plots).items() if not name.startswith(".")}
        assert visible == before  # the same figures, written again whole
    finally:
        running.kill()
        running.wait(timeout=30)
        killed.stdout.close()
        running.stdout.close()


def test_two_evals_of_one_run_at_once_the_second_is_refused(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "vae", "--epochs", "1", "--out", str(out), *TINY]) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom minivae.training.runfolder import "
                               f"RunFolder\nf = RunFolder({str(out)!r})\nprint('locked', flush=True)\ntime.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # another eval, holding the folder
        before = snapshot(out)
        done = cli("eval", out, "--k", "2")
        assert done.returncode == 2
        one_line(done.stderr, "the folder's lock")
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    assert cli("eval", out, "--k", "2").returncode == 0
    assert "eval.json" in json.loads((out / MANIFEST).read_text())["files"]


# =============================================================================
# full and read-only disks: one line, the last checkpoint untouched
# =============================================================================

# Where mount works (root, as in CI) a real small tmpfs fills up or is remounted read-only; elsewhere
# the same commands run in a child whose file writes fail with the same errno (never a skip).
FAULTY_CHILD = """
import errno, os, resource, signal, sys, tempfile
if os.environ["MINIVAE_TEST_ERRNO"] == "EFBIG":  # files beyond a size fail, as on a nearly full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    size = int(os.environ["MINIVAE_TEST_BYTES"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
else:
    code = getattr(errno, os.environ["MINIVAE_TEST_ERRNO"])
    real = tempfile.mkstemp
    def failing(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(os.environ["MINIVAE_TEST_UNDER"]):
            raise OSError(code, os.strerror(code), dir)
        return real(*args, dir=dir, **kwargs)
    tempfile.mkstemp = failing
from minivae.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Disk:
    """A small disk at ``path``: a tmpfs when mount works, else a folder whose writes fail on demand."""

    def __init__(self, path: Path, size_kb: int) -> None:
        self.path, self.errno = path, None
        path.mkdir()
        try:
            self.real = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                                       capture_output=True).returncode == 0
        except OSError:  # no mount program: the fallback
            self.real = False

    def fill(self, leave_kb: int = 0) -> str:
        """No room left but ``leave_kb``; returns the cause the commands will report."""
        if not self.real:
            self.errno, self.bytes = ("EFBIG", 1024 * leave_kb) if leave_kb else ("ENOSPC", 0)
            return "too large" if leave_kb else "no space left on the device"
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(filler, max(0, filler.stat().st_size - 1024 * leave_kb))
        return "no space left on the device"

    def read_only(self) -> None:
        if not self.real or subprocess.run(["mount", "-o", "remount,ro", str(self.path)], capture_output=True).returncode:
            self.errno = "EROFS"

    def start(self, *args: str) -> subprocess.Popen:
        if self.errno is None:
            return start(*args)
        env = {**os.environ, "MINIVAE_TEST_ERRNO": self.errno, "MINIVAE_TEST_UNDER": str(self.path),
               "MINIVAE_TEST_BYTES": str(getattr(self, "bytes", 0))}
        return subprocess.Popen([sys.executable, "-c", FAULTY_CHILD, *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        process = self.start(*args)
        out, err = process.communicate(timeout=120)
        return subprocess.CompletedProcess(args, process.returncode, out, err)

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def disk(tmp_path):
    made = []

    def make(size_kb: int) -> Disk:
        made.append(Disk(tmp_path / f"disk{len(made)}", size_kb))
        return made[-1]

    yield make
    for d in made:
        d.close()


def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_says_so_in_one_line(disk):
    d = disk(2048)
    out = d.path / "run"
    argv = ["train", "vae", "--hidden", "256", "--batch-size", "256", "--quiet", "--no-figures", "--out", out]
    assert d.run(*argv, "--epochs", "1").returncode == 0
    good = snapshot(out)
    cause = d.fill(leave_kb=64)  # room for the write probe and metrics, not for a checkpoint (~400 kB)
    done = d.run(*argv, "--epochs", "3", "--resume")
    assert done.returncode == 1, done.stderr  # training had started
    one_line(done.stderr, "checkpoint.npz", cause, "training stopped", "checkpoint.npz (after epoch 1)")
    assert snapshot(out)["checkpoint.npz"] == good["checkpoint.npz"]
    assert temp_files(out) == []
    # eval fails before computing anything when nothing fits.
    cause = d.fill(leave_kb=0)
    before = snapshot(out)
    for command in (["eval", out, "--k", "2"], ["sample", out, "--n", "4"], [*argv, "--epochs", "4", "--resume"],
                    ["derive", "01", "--plot", d.path / "plots"]):
        done = d.run(*command)
        assert done.returncode == 2, done.stderr
        one_line(done.stderr, cause)
        assert snapshot(out) == before


def test_a_read_only_remount_mid_run_is_one_line_and_exit_1(disk, tmp_path):
    d = disk(4096)
    out = d.path / "run"
    process = d.start("train", "vae", "--data", "ring", "--hidden", "8", "--batch-size", "8", "--quiet",
                      "--no-figures", "--epochs", "100000", "--checkpoint-minutes", "0.001", "--out", out)
    try:
        wait_for(out / "checkpoint.npz", process)
        d.read_only()
        if d.errno is not None:  # no real remount here: the child cannot see the change, start it again faulty
            process.kill()
            process.communicate()
            process = d.start("train", "vae", "--data", "ring", "--hidden", "8", "--batch-size", "8", "--quiet",
                              "--no-figures", "--epochs", "100000", "--checkpoint-minutes", "0.001", "--out", out,
                              "--resume")
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode in (1, 2), err
    one_line(err, "read-only file system")
    read_checkpoint(out / "checkpoint.npz")  # the last one, whole
