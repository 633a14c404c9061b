"""Process-wide settings for CUDA interop, put in place before numba's CUDA target loads.

Why these three (see ``cuda_launch`` for the launch path they serve):

* ``NUMBA_CUDA_ARRAY_INTERFACE_SYNC=0``: numba would synchronise the stream of every
  CuPy array it is handed (once per array argument per launch). minivae launches
  everything on CuPy's current stream, so the order is already right.
* ``CUPY_CUDA_ARRAY_INTERFACE_SYNC=0``: the same, the other way round.
* ``NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0``: the small grids of a VAE layer would go
  through Python's warnings machinery on every launch.

When they are read: CuPy reads its variable once, when it is imported. numba-cuda
keeps its CUDA settings in its own module, ``numba.cuda.core.config`` (not
``numba.core.config``, which only the CUDA target built into older numba reads); it
reads the environment when it is imported and again only when a compilation notices
that a ``NUMBA_*`` variable changed. So the variables must be in the environment
before ``numba.cuda`` is imported: ``kernels/__init__.py`` calls :func:`apply` before
it imports anything of numba, and :func:`apply` re-reads the configuration of a numba
that was already imported (by a script that imported numba.cuda first).

A value the user set is kept (``os.environ.setdefault``). This module imports nothing
but the standard library.
"""

from __future__ import annotations

import os
import sys

#: variable -> value for the low-overhead interop path
INTEROP_ENVIRONMENT = {
    "NUMBA_CUDA_ARRAY_INTERFACE_SYNC": "0",
    "CUPY_CUDA_ARRAY_INTERFACE_SYNC": "0",
    "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS": "0",
}

# The modules that hold numba's CUDA settings: numba-cuda's own, and numba's (read by the
# CUDA target built into numba < 0.61, and by numba's CPU side).
_CONFIG_MODULES = ("numba.cuda.core.config", "numba.core.config")


def apply() -> None:
    """Put the interop settings in the environment (unless set) and into a loaded numba."""
    for key, value in INTEROP_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    for name in _CONFIG_MODULES:
        module = sys.modules.get(name)
        reload = getattr(module, "reload_config", None)
        if reload is not None:
            reload()
