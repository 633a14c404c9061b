"""Every CUDA kernel variant compiled for Hopper (sm_90) by numba-cuda's real compiler, no GPU.

The simulator runs kernels as Python, so it cannot see typing errors of the CUDA
target, float64 arithmetic in float32 kernels, or registers spilling to local memory.
``kernels.cuda_ptx`` compiles each variant (both dtypes) to PTX with NVVM and
assembles it with nvJitLink; this test runs it once, in a subprocess without
NUMBA_ENABLE_CUDASIM (tests/conftest.py sets that for everything else), and checks:

* every variant compiles;
* float32 variants have no float64 instruction (the float64 GEMM must have some:
  the counter itself works);
* no variant spills registers or keeps an array in local memory, and no variant's
  register count grew past the recorded one (benchmarks/results/cuda_ptx_sm90.json,
  made with ``python -m minivae.kernels.cuda_ptx --json``) by more than a quarter.

Needs numba-cuda with its CUDA compiler wheels (the test extra brings
``numba-cuda[cu13]``); skipped, saying why, when they are missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "benchmarks" / "results" / "cuda_ptx_sm90.json"


def _real_compiler_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _missing_toolkit() -> str | None:
    """Why the compiler cannot run here, or None."""
    if importlib.util.find_spec("numba_cuda") is None:
        return "numba-cuda is not installed (the test extra brings numba-cuda[cu13] with NVVM and libdevice)"
    probe = subprocess.run([sys.executable, "-c", "from numba.cuda.cudadrv import nvvm; nvvm.NVVM()"],
                           capture_output=True, text=True, env=_real_compiler_env(), timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"numba-cuda cannot load NVVM ({last}); install numba-cuda[cu12] or [cu13]"
    return None


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    reason = _missing_toolkit()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("ptx") / "ptx.json"
    done = subprocess.run([sys.executable, "-m", "minivae.kernels.cuda_ptx", "--cc", "9.0", "--workers", "2", "--json", str(out)],
                          capture_output=True, text=True, env=_real_compiler_env(), cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    print(done.stdout)  # the table, for the log (pytest -s)
    return json.loads(out.read_text())["variants"]


def _key(row) -> tuple[str, str, str]:
    return row["kernel"], row["flags"], row["dtype"]


def test_every_kernel_variant_compiles_for_sm90_in_both_dtypes(compiled):
    import numpy as np

    from minivae.kernels import cuda_ptx

    expected = [(v.kernel, v.flags, v.dtype) for v in cuda_ptx.variants()]
    assert [_key(row) for row in compiled] == expected
    assert len(expected) == 2 * len({(k, f) for k, f, _ in expected}) >= 60  # every kernel, float32 and float64
    assert {d for _, _, d in expected} == {np.dtype(np.float32).name, np.dtype(np.float64).name}


def test_float32_kernels_compute_in_float32(compiled):
    f32 = {_key(row): row["f64_instructions"] for row in compiled if row["dtype"] == "float32"}
    assert f32 and all(count == 0 for count in f32.values()), {k: c for k, c in f32.items() if c}
    # the counter does count: the float64 kernels are full of f64 instructions
    assert all(row["f64_instructions"] > 0 for row in compiled if row["dtype"] == "float64")


def test_no_spills_no_local_memory_and_no_register_growth(compiled):
    assert all(row["local_bytes"] == 0 for row in compiled), [_key(r) for r in compiled if r["local_bytes"]]
    assembled = [row for row in compiled if row["registers"] is not None]
    if not assembled:
        pytest.skip("no assembler (nvJitLink or ptxas) here: only the PTX-level checks ran")
    spilled = [_key(r) for r in assembled if r["spill_stores"] or r["spill_loads"] or r["stack_bytes"]]
    assert not spilled, f"register spills / stack frames: {spilled}"
    recorded = {_key(row): row for row in json.loads(RECORDED.read_text())["variants"]}
    grown = {}
    for row in assembled:
        before = recorded.get(_key(row), {}).get("registers")
        if before is not None and row["registers"] > 1.25 * before + 8:
            grown[_key(row)] = (before, row["registers"])
    assert not grown, f"registers per thread grew past the recorded {RECORDED.name} (recorded, now): {grown}"
    gemm = [row for row in assembled if row["kernel"] == "gemm" and row["dtype"] == "float32"]
    assert all(row["shared_bytes"] > 0 for row in gemm)  # the tiles are in shared memory
