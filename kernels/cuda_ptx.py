"""Compile every CUDA kernel of this package for one GPU architecture, without a GPU.

The simulator runs the kernels as Python, so it never sees what only the real
compiler sees: typing errors, float64 arithmetic creeping into a float32 kernel,
registers spilling to local memory. This module compiles every variant (each flag
combination of each kernel factory, float32 and float64) with numba-cuda to PTX for
compute capability ``cc`` (default 9.0, Hopper), then assembles the PTX to machine
code with nvJitLink (or ``ptxas`` when that is on the PATH) to read what the
assembler reports, and returns one row per variant:

* ``f64_instructions``: PTX instructions that compute or convert in float64 (must be
  0 for float32 variants: see ``formulas.cast``);
* ``local_bytes``: the ``.local`` memory the PTX itself declares (arrays that did not
  become registers);
* ``registers``, ``spill_stores``, ``spill_loads``, ``shared_bytes``, ``stack_bytes``:
  from the assembler (None when neither nvJitLink nor ptxas is available).

Needs numba-cuda with NVVM and libdevice, i.e. the toolkit wheels of
``pip install "numba-cuda[cu12]"`` or ``[cu13]`` (both in minivae's extras), and no
GPU: numba-cuda asks the current device for the compute capability of device
functions, so while compiling, this module answers for a device of capability ``cc``.
Run it as ``python -m minivae.kernels.cuda_ptx [--cc 8.6] [--json FILE]`` for a table
(``NUMBA_ENABLE_CUDASIM`` must not be set); tests/kernels/test_cuda_compile.py runs it
in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types as pytypes
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Variant:
    """One compiled specialisation: a kernel, its flags and its argument types."""

    kernel: str
    flags: str
    dtype: str
    dispatcher: Any = field(repr=False)
    argtypes: tuple = field(repr=False)


@dataclass
class Report:
    kernel: str
    flags: str
    dtype: str
    ptx_lines: int
    f64_instructions: int
    local_bytes: int
    registers: int | None = None
    spill_stores: int | None = None
    spill_loads: int | None = None
    shared_bytes: int | None = None
    stack_bytes: int | None = None
    compile_s: float = 0.0


def variants() -> list[Variant]:
    """Every kernel variant that the launch functions can make, in both dtypes, for
    C-contiguous arrays (the layout of the provider's arrays): the rows of each CUDA
    module's public ``ptx_variants`` registry."""
    from . import cuda_elementwise, cuda_matmul, cuda_reduce
    from .cuda_launch import kernel_name

    out: list[Variant] = []
    for dtype in DTYPES:
        for module in (cuda_matmul, cuda_elementwise, cuda_reduce):
            for kernel, flags, argtypes in module.ptx_variants(dtype):
                out.append(Variant(kernel_name(kernel), flags, dtype.name, kernel, tuple(argtypes)))
    return out


@contextlib.contextmanager
def pretend_device(cc: tuple[int, int]) -> Iterator[None]:
    """Let numba-cuda compile device functions with no GPU present: it asks the
    current device for its compute capability, and here the answer is ``cc``."""
    from numba.cuda import dispatcher

    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = original


_INSTRUCTION = re.compile(r"^\s*(?:@!?%\w+\s+)?([a-z][\w.]*)")


def f64_instruction_count(ptx: str) -> int:
    """PTX instructions whose opcode mentions .f64 (arithmetic, conversions, moves)."""
    count = 0
    for line in ptx.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("//", ".", "{", "}")) or stripped.endswith(":"):
            continue
        match = _INSTRUCTION.match(stripped)
        if match and ".f64" in match.group(1):
            count += 1
    return count


def local_bytes(ptx: str) -> int:
    """Bytes of .local memory the PTX declares (e.g. a local array left in memory)."""
    return sum(int(n) for n in re.findall(r"\.local\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\]", ptx))


_ASSEMBLER_FIELDS = {
    "registers": r"[Uu]sed (\d+) registers",
    "spill_stores": r"(\d+) bytes spill stores",
    "spill_loads": r"(\d+) bytes spill loads",
    "stack_bytes": r"(\d+) bytes stack frame",
    "shared_bytes": r"(\d+) bytes smem",
}


def assembler_info(ptx: str, cc: tuple[int, int]) -> dict[str, int]:
    """Registers, spills, stack and shared memory of the kernel in ``ptx``, from the
    assembler's verbose log; {} when no assembler is available."""
    log = _nvjitlink_log(ptx, cc)
    if log is None:
        log = _ptxas_log(ptx, cc)
    if log is None:
        return {}
    info = {}
    for key, pattern in _ASSEMBLER_FIELDS.items():
        found = re.findall(pattern, log)
        if found:
            info[key] = int(found[0])
    if "shared_bytes" not in info:
        shared = re.findall(r"(\d+) bytes smem", log)
        info["shared_bytes"] = int(shared[0]) if shared else 0
    return info


def _nvjitlink_log(ptx: str, cc: tuple[int, int]) -> str | None:
    try:
        from cuda.bindings import nvjitlink
    except ImportError:
        return None
    options = [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"]
    try:
        handle = nvjitlink.create(len(options), options)
    except Exception:  # noqa: BLE001 - the library itself is missing
        return None
    try:
        data = ptx.encode()
        nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "kernel.ptx")
        nvjitlink.complete(handle)
        log = bytearray(nvjitlink.get_info_log_size(handle))
        nvjitlink.get_info_log(handle, log)
        return log.decode(errors="replace")
    finally:
        nvjitlink.destroy(handle)


def _ptxas_log(ptx: str, cc: tuple[int, int]) -> str | None:
    ptxas = shutil.which("ptxas")
    if ptxas is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        done = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", str(source), "-o", str(source) + ".cubin"],
                              capture_output=True, text=True)
    return done.stdout + done.stderr


def compile_all(cc: tuple[int, int] = (9, 0), workers: int = 1) -> list[Report]:
    """Compile every variant to PTX for ``cc`` (and assemble it); one Report each, in
    the order of :func:`variants`. ``workers > 1`` shares the variants among that many
    processes (compilation is single-threaded Python + NVVM: about 0.5 s a variant)."""
    if workers <= 1:
        return _compile_share(cc, 0, 1)
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        shares = pool.starmap(_compile_share, [(cc, index, workers) for index in range(workers)])
    merged: list[Report] = [None] * sum(len(share) for share in shares)  # type: ignore[list-item]
    for index, share in enumerate(shares):
        merged[index::workers] = share
    return merged


def _compile_share(cc: tuple[int, int], index: int, count: int) -> list[Report]:
    """Compile variants index, index + count, index + 2 count, ..."""
    from numba import cuda

    reports = []
    with pretend_device(cc):
        for variant in variants()[index::count]:
            start = time.perf_counter()
            ptx, _ = cuda.compile_ptx(variant.dispatcher.py_func, variant.argtypes, cc=cc)
            info = assembler_info(ptx, cc)
            reports.append(Report(variant.kernel, variant.flags, variant.dtype, len(ptx.splitlines()),
                                  f64_instruction_count(ptx), local_bytes(ptx), **info,
                                  compile_s=round(time.perf_counter() - start, 3)))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cc", default="9.0", help="compute capability, e.g. 9.0 (H100/H200) or 8.6")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--workers", type=int, default=1, help="compile in this many processes")
    args = parser.parse_args(argv)
    from numba import config

    if config.ENABLE_CUDASIM:
        print("kernels.cuda_ptx needs numba's real CUDA compiler: unset NUMBA_ENABLE_CUDASIM", file=sys.stderr)
        return 2
    major, minor = (int(part) for part in args.cc.split("."))
    reports = compile_all((major, minor), args.workers)
    header = f"{'kernel':<26}{'flags':<28}{'dtype':<9}{'f64':>5}{'local':>7}{'regs':>6}{'spill':>7}{'smem':>7}"
    print(header)
    for r in reports:
        spill = None if r.spill_stores is None else r.spill_stores + (r.spill_loads or 0)
        print(f"{r.kernel:<26}{r.flags:<28}{r.dtype:<9}{r.f64_instructions:>5}{r.local_bytes:>7}"
              f"{r.registers if r.registers is not None else '-':>6}{spill if spill is not None else '-':>7}"
              f"{r.shared_bytes if r.shared_bytes is not None else '-':>7}")
    if args.json:
        from importlib import metadata

        versions = {}
        for package in ("numba", "numba-cuda", "cuda-bindings", "nvidia-nvvm", "nvidia-cuda-nvcc-cu12"):
            try:
                versions[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                pass
        Path(args.json).write_text(json.dumps({"cc": args.cc, "versions": versions,
                                               "variants": [asdict(r) for r in reports]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
