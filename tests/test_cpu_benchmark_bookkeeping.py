"""benchmarks/cpu_step.py's bookkeeping: ratios per round, medians over rounds, target verdicts.

No timing here (timings live in the benchmark); these tests feed the summary made-up
per-round medians and check the arithmetic and the HOLDS / MISSED lines.
"""

import importlib.util
import pathlib

import pytest

PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_step.py"


@pytest.fixture(scope="module")
def cpu_step():
    spec = importlib.util.spec_from_file_location("cpu_step", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(rnd, family, batch, threads, ms):
    rows = {name: {"ms_median": value, "ms_min": value * 0.9, "cpu_ms_median": value, "page_faults_per_step": 0}
            for name, value in ms.items()}
    return {"round": rnd, "family": family, "batch": batch, "threads": threads, "rows": rows}


def test_ratios_are_medians_of_per_round_ratios(cpu_step):
    children = []
    for rnd, (mv_ms, limit_ms, torch_ms) in enumerate([(10.0, 8.0, 20.0), (30.0, 20.0, 40.0), (12.0, 10.0, 10.0)]):
        children.append(_child(rnd, "numpy", 128, 2, {"minivae-user-adam": mv_ms, "matmul-limit": limit_ms}))
        children.append(_child(rnd, "torch", 128, 2, {"torch-user-adam": torch_ms}))
    names = ["minivae-user-adam", "matmul-limit", "torch-user-adam"]
    rows = {r["variant"]: r for r in cpu_step.summarise(children, names, [128], [2])}
    row = rows["minivae-user-adam"]
    assert row["ms_median"] == 12.0  # median of 10, 30, 12
    assert row["vs_torch_rounds"] == [0.5, 0.75, 1.2] and row["vs_torch"] == 0.75
    assert row["vs_limit_rounds"] == [1.25, 1.5, 1.2] and row["vs_limit"] == 1.25
    assert rows["matmul-limit"]["vs_limit"] is None  # not compared with itself
    lines = cpu_step.check_targets(list(rows.values()), [])
    assert any(line.startswith("HOLDS ") and "vs torch-user-adam" in line and "0.75x" in line for line in lines)
    assert any(line.startswith("HOLDS ") and "five big products" in line and "1.25x" in line for line in lines)


def test_missed_targets_and_memory_verdicts(cpu_step):
    children = [_child(0, "numpy", 1024, 2, {"minivae-user-sgd": 40.0, "matmul-limit": 20.0}),
                _child(0, "torch", 1024, 2, {"torch-user-sgd": 45.0})]
    rows = cpu_step.summarise(children, ["minivae-user-sgd", "matmul-limit", "torch-user-sgd"], [1024], [2])
    memory = [{"variant": "minivae-user-sgd", "batch": 1024, "train_peak_mb": 90.0},
              {"variant": "torch-user-sgd", "batch": 1024, "train_peak_mb": 80.0}]
    lines = cpu_step.check_targets(rows, memory)
    assert "MISSED minivae-user-sgd vs torch-user-sgd, batch 1024, 2 thread(s): 0.89x (target <= 0.85x)" in lines
    assert any(line.startswith("MISSED") and "five big products" in line and "2.00x" in line for line in lines)
    assert "MISSED memory minivae-user-sgd vs torch-user-sgd, batch 1024: 90 vs 80 MB train peak (target <= 0.5x)" \
        in lines
    memory[0]["train_peak_mb"] = 40.0
    assert "HOLDS  memory minivae-user-sgd vs torch-user-sgd, batch 1024: 40 vs 80 MB train peak (target <= 0.5x)" \
        in cpu_step.check_targets(rows, memory)


def test_one_thread_targets_are_the_previous_rounds_ratios(cpu_step):
    """With one thread the issue asks for no regression against PyTorch (per optimizer and
    batch, the previous round's ratio), and sets no matrix-product target."""
    children = [_child(0, "numpy", 128, 1, {"minivae-user-adam": 6.6, "minivae-user-sgd": 6.0, "matmul-limit": 4.0}),
                _child(0, "torch", 128, 1, {"torch-user-adam": 10.0, "torch-user-sgd": 7.0})]
    names = ["minivae-user-adam", "minivae-user-sgd", "matmul-limit", "torch-user-adam", "torch-user-sgd"]
    lines = cpu_step.check_targets(cpu_step.summarise(children, names, [128], [1]), [])
    assert "MISSED minivae-user-adam vs torch-user-adam, batch 128, 1 thread(s): 0.66x (target <= 0.64x)" in lines
    assert "MISSED minivae-user-sgd vs torch-user-sgd, batch 128, 1 thread(s): 0.86x (target <= 0.82x)" in lines
    assert not any("five big products" in line for line in lines)


def test_every_variant_builds_a_step_and_the_limit_runs(cpu_step):
    """The NumPy-side builders make a callable step at a tiny batch (no timing)."""
    for name in ("minivae-user-sgd", "minivae-seq-adam", "minivae-sliced-adam", "matmul-limit", "numpy-floor"):
        step = cpu_step.VARIANTS[name].build(4, 0)
        assert isinstance(step(), float)


def test_the_demo_floor_replays_exactly_the_products_the_trainer_makes():
    """torch_demo.py's `products` engine: the trainer's matrix products over one epoch, traced
    (the demo: 45 steps of 20 products, 7 in the forward and 13 in the backward, plus 7 for the
    epoch's test evaluation), replayed for the epochs asked."""
    spec = importlib.util.spec_from_file_location("torch_demo", PATH.parent / "torch_demo.py")
    torch_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_demo)
    settings = torch_demo.demo_settings(1)
    calls = torch_demo.trace_products(settings)
    steps = -(-1437 // settings["batch_size"])
    assert len(calls) == 20 * steps + 7
    assert ((32, 64), (64, 256), False, False, "<f4") in calls  # the first layer's forward product
    assert all(not t_a or not t_b for _, _, t_a, t_b, _ in calls)
    result = torch_demo.run_products(2)
    assert result["products_per_epoch"] == len(calls) and result["epochs"] == 2 and result["train_seconds"] > 0
