"""The 40-pass MNIST queue (benchmarks/mnist_iwae_queue.py) on tiny synthetic IDX files:
the schedule, the append/skip/rerun bookkeeping, a killed runner, and the report on a
partial results file. No MNIST and no PyTorch needed (the runs here are minivae's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import iwae_experiment as exp  # noqa: E402
import mnist_iwae_queue as q  # noqa: E402

from minivae.training.data import write_idx  # noqa: E402

TINY = ["--stages", "2", "--train-images", "40", "--eval-images", "10", "--curve-images", "5", "--k-eval", "4",
        "--frameworks", "minivae", "--cells", "iwae:1", "--poll", "0.1"]


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> Path:
    """Four MNIST-shaped IDX files: 40 training and 20 test images of 28x28 random grey levels."""
    folder = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for stem, n in (("train", 40), ("t10k", 20)):
        write_idx(folder / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{stem}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


def paths(tmp_path: Path, idx: Path) -> list[str]:
    return ["--data-dir", str(idx), "--results", str(tmp_path / "r.json"), "--work", str(tmp_path / "work")]


def test_schedule_is_the_papers_stages_0_to_3_on_all_the_data():
    s = q.PAPER_40
    assert [st["passes"] for st in s.schedule()] == [1, 3, 9, 27] and len(s.epochs()) == 40
    assert [st["lr"] for st in s.schedule()] == pytest.approx([1e-3 * 10 ** (-i / 7) for i in range(4)], rel=1e-12)
    assert s.stage_ends() == [1, 4, 13, 40]
    assert (s.train_images, s.eval_images, s.curve_images, s.k_eval) == (60000, 10000, 200, 5000)
    runs = q.plan()
    assert len(runs) == 10 and len({r.id for r in runs}) == 10
    assert [(r.model, r.k) for r in runs if r.k == 1] == [("iwae", 1)] * 2  # k = 1 once per framework
    extra = q.plan(extra_seeds=True)[10:]
    assert {(r.framework, r.k, r.seed) for r in extra} == {("minivae", 50, 10), ("minivae", 50, 20)}
    assert len(extra) == 4
    # the cost model: 40 passes of 3000 steps, then L_5000 on 10000 + 3 x 200 test images
    r = q.Run("minivae", "iwae", 50, 0)
    assert q.estimate_s(r, s) == pytest.approx(120000 * 0.026 + 10600 * 0.0465 + 4 * q.STAGE_EXTRA_S)
    assert 6 * 3600 < sum(q.estimate_s(r, s) for r in runs) < 8.5 * 3600  # the "about 7 CPU-hours"
    assert q.makespan_s([3.0, 2.0, 2.0], 2) == 4.0 and q.makespan_s([], 2) == 0.0


def test_curve_points_only_at_stage_ends(tmp_path, idx):
    import mnist_iwae

    args = ["--runs", "vae:5", "--stages", "3", "--train-images", "40", "--eval-images", "10",
            "--curve-images", "5", "--k-eval", "4", "--curve-at", "stage", "--quiet", "--data-dir", str(idx)]
    assert mnist_iwae.main(args + ["--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "minivae-vae-k5.json").read_text())
    assert rec["passes"] == 13 and rec["settings"]["curve_at"] == "stage"
    assert [row["epoch"] for row in rec["curve"] if "curve_nll" in row] == [1, 4, 13]
    assert rec["curve"][-1]["curve_nll"] == pytest.approx(np.mean(rec["test_nll_per_image"][:5]), abs=1e-3)


def test_queue_appends_skips_done_runs_and_reruns_a_cut_off_one(tmp_path, idx, capsys):
    results, work = tmp_path / "r.json", tmp_path / "work"
    # a run cut off earlier (the runner was killed mid-run): its scratch folder and progress file
    stale = work / "minivae-iwae-k1-seed0"
    stale.mkdir(parents=True)
    (stale / ".minivae-iwae-k1.claim").write_text("99999999")
    (stale / ".minivae-iwae-k1.partial.json").write_text('{"curve": [')
    assert q.main(TINY + paths(tmp_path, idx)) == 0
    out = capsys.readouterr().out
    assert "discarding the partial run minivae-iwae-k1-seed0" in out
    data = json.loads(results.read_text())
    assert [r["run_id"] for r in data["runs"]] == ["minivae-iwae-k1-seed0"]
    run = data["runs"][0]
    assert run["passes"] == 4 and not run["truncated"] and len(run["test_nll_per_image"]) == 10
    assert "mnist_iwae.py --runs iwae:1 --seed 0" in run["command"] and run["machine"]["cpu"]
    assert run["versions"]["numpy"] == np.__version__ and run["runner"]["wall_s"] > 0
    assert data["settings"]["stages"] == 2 and data["settings"]["curve_at"] == "stage"
    assert not stale.exists()  # scratch removed once the run is in the file

    # re-invoked: nothing to do, the file is not rewritten
    before = results.read_bytes()
    assert q.main(TINY + paths(tmp_path, idx)) == 0
    assert "0 runs to go" in capsys.readouterr().out and results.read_bytes() == before

    # more cells: only the new one remains, then it is appended next to the first
    more = TINY + ["--cells", "iwae:1", "vae:5"] + paths(tmp_path, idx)
    assert q.main(more + ["--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "minivae-vae-k5-seed0" in dry and "minivae-iwae-k1-seed0" not in dry and "(1 of 2 runs done)" in dry
    assert q.main(more) == 0
    assert [r["run_id"] for r in json.loads(results.read_text())["runs"]] == ["minivae-iwae-k1-seed0",
                                                                             "minivae-vae-k5-seed0"]
    # the same run is never added twice, and another schedule never enters this file
    with pytest.raises(q.QueueError, match="already holds run minivae-iwae-k1-seed0"):
        q.append_run(results, q.parse_args(TINY).settings, {"run_id": "minivae-iwae-k1-seed0"})
    before = results.read_bytes()
    assert q.main(TINY + paths(tmp_path, idx) + ["--stages", "3"]) == 2
    assert "holds runs of other settings" in capsys.readouterr().err and results.read_bytes() == before


def test_a_broken_results_file_is_an_error_and_is_kept(tmp_path, idx, capsys):
    results = tmp_path / "r.json"
    results.write_text('{"settings": {}, "runs": [')
    for extra in ([], ["--dry-run"], ["--report"]):
        assert q.main(TINY + paths(tmp_path, idx) + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not readable JSON" in err and str(results) in err
    assert results.read_text() == '{"settings": {}, "runs": ['


def test_a_read_only_work_folder_is_one_line_and_exit_2(tmp_path, idx, capsys):
    if os.geteuid() == 0:  # root writes anyway: make the folder's place a file instead
        (tmp_path / "work").write_text("not a folder")
    else:
        (tmp_path / "work").mkdir(mode=0o500)
    assert q.main(TINY + paths(tmp_path, idx)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mnist_iwae_queue:" in err and "work" in err
    assert not (tmp_path / "r.json").exists()


def test_deadline_starts_no_run_that_would_end_after_it(tmp_path, idx, capsys):
    soon = time.gmtime(time.time() + 120)  # 1-2 minutes away; the run's estimate is about 45 minutes
    args = TINY + ["--k-eval", "20000000"] + paths(tmp_path, idx)
    assert q.estimate_s(q.Run("minivae", "iwae", 1, 0), q.parse_args(args).settings) > 1000
    assert q.main(args + ["--deadline", f"{soon.tm_hour:02d}:{soon.tm_min:02d}"]) == 0
    assert "would not end before --deadline; not started" in capsys.readouterr().out
    assert not (tmp_path / "r.json").exists() and not list((tmp_path / "work").glob("*-seed0"))
    with pytest.raises(SystemExit) as stop:
        q.main(args + ["--deadline", "24:00"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "--deadline: expected HH:MM" in err


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _start_runner(tmp_path: Path, idx: Path, k_eval: str, nohup: bool = False) -> tuple[subprocess.Popen, list[int]]:
    """A runner whose two children are slow (a huge L_k at the first curve point); returns it
    and its children's pids once both are training."""
    args = TINY + ["--k-eval", k_eval, "--cells", "iwae:1", "vae:5"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH.parent), os.environ.get("PYTHONPATH", "")])}
    runner = subprocess.Popen([sys.executable, str(BENCH / "mnist_iwae_queue.py"), *args, *paths(tmp_path, idx)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              preexec_fn=(lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None)
    claims = [tmp_path / "work" / f"minivae-{c}-seed0" / f".minivae-{c}.claim" for c in ("iwae-k1", "vae-k5")]
    for _ in range(600):  # the children write their pid when they take the run (wait for both)
        if all(c.exists() and c.read_text() for c in claims):
            break
        assert runner.poll() is None, runner.stdout.read()
        time.sleep(0.1)
    return runner, [int(c.read_text()) for c in claims]


def test_sigterm_stops_the_children_and_discards_their_partial_runs(tmp_path, idx):
    runner, pids = _start_runner(tmp_path, idx, k_eval="3000000", nohup=True)
    # started under nohup (SIGHUP ignored): a closed terminal does not stop the queue
    runner.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert runner.poll() is None and all(_alive(pid) for pid in pids)
    # a second runner on the same queue refuses (one line, exit 2) instead of doubling the work
    second = subprocess.run([sys.executable, str(BENCH / "mnist_iwae_queue.py"), *TINY, *paths(tmp_path, idx)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(BENCH.parent)})
    assert second.returncode == 2 and "another runner holds" in second.stderr
    runner.send_signal(signal.SIGTERM)
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 130, out
    assert out.count("discarded the partial run") == 2
    assert not any(_alive(pid) for pid in pids)
    assert not (tmp_path / "r.json").exists()  # nothing half-counted
    assert not list((tmp_path / "work").glob("*-seed0"))


def test_a_runner_killed_outright_takes_its_children_along_and_the_next_one_reruns(tmp_path, idx, capsys):
    runner, pids = _start_runner(tmp_path, idx, k_eval="3000000")
    runner.kill()  # SIGKILL: no handler runs; the children get SIGTERM from the kernel (parent death)
    runner.communicate(timeout=30)
    for _ in range(300):
        if not any(_alive(pid) for pid in pids):
            break
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
    assert (tmp_path / "work" / "minivae-iwae-k1-seed0").exists()  # left behind, as after a session's end
    assert q.main(TINY + ["--cells", "iwae:1", "vae:5"] + paths(tmp_path, idx)) == 0
    assert capsys.readouterr().out.count("discarding the partial run") == 2
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert sorted(r["run_id"] for r in runs) == ["minivae-iwae-k1-seed0", "minivae-vae-k5-seed0"]
    assert all(r["passes"] == 4 and r["settings"]["k_eval"] == 4 for r in runs)


def _fake_run(framework: str, model: str, k: int, seed: int, nll: list[float]) -> dict:
    """A results entry of the shape the runner appends (synthetic numbers, for the report's logic)."""
    curve = [{"epoch": e, "curve_nll": float(np.mean(nll)) + 40 - e} for e in (1, 4)]
    return {"run_id": q.Run(framework, model, k, seed).id, "framework": framework, "model": model, "k": k,
            "settings": {"seed": seed}, "curve": curve, "test_nll": float(np.mean(nll)), "test_nll_sem": 0.1,
            "test_nll_per_image": nll, "test_neg_elbo": float(np.mean(nll)) + 3, "active_units": 20 + k % 7,
            "machine": {"cpu": "test CPU", "cores": 2}, "runner": {"wall_s": 600.0 * k}}


def test_report_on_a_partial_file_names_the_missing_runs(tmp_path, capsys):
    args = q.parse_args(["--stages", "2", "--results", str(tmp_path / "r.json"), "--extra-seeds"])
    entries = (_fake_run("minivae", "iwae", 1, 0, [100.0, 102.0]), _fake_run("torch", "iwae", 1, 0, [101.0, 102.5]),
               _fake_run("minivae", "iwae", 50, 0, [95.0, 96.0]), _fake_run("minivae", "iwae", 50, 10, [97.0, 97.0]))
    for entry in entries:
        q.append_run(args.results, args.settings, entry)
    assert q.report(args) == 0
    out = capsys.readouterr().out
    lines = {line.split("|")[1].strip() + " " + line.split("|")[2].strip(): line for line in out.splitlines()
             if line.startswith("| ") and "---" not in line}
    # k = 1 ran once and fills both rows; the paired gap is the mean per-image difference
    for model in ("VAE", "IWAE"):
        assert "| 101.75 | 101.00 | -0.75 | +14.99 / +14.24 |" in lines[f"{model} 1"]
    assert "missing | 95.50 (seeds 0,10: 95.50–97.00) | – | missing / +10.72 |" in lines["IWAE 50"]
    assert lines["VAE 5"].count("missing") >= 4
    missing = [line for line in out.splitlines() if line.startswith("still missing")]
    assert len(missing) == 1
    assert "(10 runs)" in missing[0] and "minivae-vae-k50-seed20" in missing[0]
    assert "minivae-iwae-k1-seed0" not in missing[0] and "minivae-iwae-k50-seed10" not in missing[0]
    assert "paired gap (target |gap| <= 0.3 nats): IWAE k=1 -0.75 OUTSIDE" in out
    assert (tmp_path / "r.png").stat().st_size > 0
    # no file yet: said in one line, exit 2
    assert q.main(["--report", "--results", str(tmp_path / "none.json")]) == 2
    assert "no results file" in capsys.readouterr().err
