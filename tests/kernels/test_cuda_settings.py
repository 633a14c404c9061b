"""The interop settings reach the numba configuration that the launch path reads.

numba-cuda keeps its CUDA settings in its own module (``numba.cuda.core.config``) and
reads the environment when it loads; ``import minivae.kernels`` puts the settings in the
environment first and re-reads a configuration that was loaded before it. Each case
runs in a fresh interpreter (what is imported first is the point), on numba's real
CUDA target (no simulator; importing it needs no GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minivae.kernels import cuda_settings

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys
if sys.argv[1] == "numba-first":
    import numba.cuda  # a script that loaded numba's CUDA target before minivae's kernels
import minivae.kernels
from numba.cuda import api
configs = [api.config]
try:
    from numba.cuda.cudadrv import devicearray  # where numba-cuda reads the sync flag per argument
    configs.append(devicearray.config)
except ImportError:
    pass
print(json.dumps({
    "sync": [int(c.CUDA_ARRAY_INTERFACE_SYNC) for c in configs],
    "occupancy_warnings": [int(c.CUDA_LOW_OCCUPANCY_WARNINGS) for c in configs],
    "cupy_env": os.environ.get("CUPY_CUDA_ARRAY_INTERFACE_SYNC"),
}))
"""


def _probe(order: str, **env_overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k != "NUMBA_ENABLE_CUDASIM" and k not in cuda_settings.INTEROP_ENVIRONMENT}
    env.update(env_overrides)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", PROBE, order], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    if done.returncode != 0 and "CudaSupportError" in done.stderr:
        pytest.skip(f"numba's CUDA target does not load here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", ["kernels-first", "numba-first"])
def test_interop_settings_hold_in_numbas_cuda_config(order):
    seen = _probe(order)
    assert seen["sync"] and set(seen["sync"]) == {0}, seen
    assert set(seen["occupancy_warnings"]) == {0}, seen
    assert seen["cupy_env"] == "0"  # in the environment before CuPy is imported


def test_a_value_the_user_set_is_kept():
    seen = _probe("kernels-first", NUMBA_CUDA_ARRAY_INTERFACE_SYNC="1", CUPY_CUDA_ARRAY_INTERFACE_SYNC="1")
    assert set(seen["sync"]) == {1} and seen["cupy_env"] == "1"


def test_minivae_backend_applies_the_same_settings():
    from minivae.providers import backend

    assert backend.GPU_ENVIRONMENT == cuda_settings.INTEROP_ENVIRONMENT
