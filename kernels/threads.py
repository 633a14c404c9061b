"""Run the CPU loops of a training step on every core: cut the rows into pieces, share them out.

Only BLAS used the second core before: the compiled loops of ``kernels.cpu`` and NumPy's
exp / log1p ran on the calling thread. Both release the GIL while they work (the loops are
compiled ``nogil``; NumPy drops it inside a ufunc), so plain Python threads run them side
by side. A few long-lived worker threads wait on a queue (asleep, not spinning) and the
calling thread works too; it waits for the rest before it returns. The matrix products and
the loops therefore take turns: nothing of ours runs while a BLAS call does.

How many threads: the user's setting for BLAS, read at every call (``OMP_NUM_THREADS`` /
``OPENBLAS_NUM_THREADS`` at start-up, ``threadpoolctl.threadpool_limits`` at run time), no
more than ``NUMBA_NUM_THREADS`` / ``numba.set_num_threads`` and the CPUs this process may use.
One setting then governs the whole step, and "1 thread" means one thread.

Where the cut falls depends on the array's size alone, never on the thread count: a piece
boundary changes the order of a sum (a bias gradient adds its rows piece by piece), and a
result must not change with the machine's cores. Arrays under 2 x ``MIN_PIECE`` elements
stay one piece: handing work to a thread and waiting for it costs microseconds (~5 us
measured in a tight loop on the 2-core development VM; more when the other core has gone
to sleep), the time of a simple loop over some 10^4 float32 elements.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable

import numba
from numba.np.ufunc import parallel as _numba_parallel  # (asked whether numba's own pool was started)

#: Elements per piece, at least; an array of fewer than twice as many is one piece, done by
#: the calling thread as before. Measured, not guessed (``benchmarks/threads_threshold.py``,
#: results/threads_threshold-2026-12-06.json, 2-vCPU Intel Xeon VM, quiet): from 4096 to
#: 2,097,152 float32 elements no loop ran >= 10% faster on two threads (BCE 0.99-1.13x, ReLU
#: backward 1.02-1.34x at mid sizes only, the foreach optimizers 0.45-0.95x: slower). So the
#: split is off for every array this project's models make (2^21 elements per piece, arrays of
#: >= 4,194,304 elements); rerun the benchmark on a machine with more cores and set this to half
#: the size it prints.
MIN_PIECE = 1 << 21
#: At most this many pieces (a power of two, so 1, 2, 4 or 8 threads share them evenly).
MAX_PIECES = 8


def piece_bounds(rows: int, elements: int) -> list[tuple[int, int]]:
    """Row ranges [(start, stop), ...] covering ``rows``: 1, 2, 4 or 8 pieces, by size alone."""
    pieces = 1
    while pieces < MAX_PIECES and elements >= 2 * pieces * MIN_PIECE and rows >= 2 * pieces:
        pieces *= 2
    return [(rows * k // pieces, rows * (k + 1) // pieces) for k in range(pieces)]


# ------------------------------------------------------------------------ how many threads


def _blas_libraries() -> list:
    """threadpoolctl's handles on the loaded BLAS libraries (found once; reading one is ~0.3 us)."""
    try:
        import threadpoolctl
    except ImportError:  # a core dependency; without it the BLAS setting cannot be read
        return []
    return [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers if lib.user_api == "blas"]


_BLAS = _blas_libraries()
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_count() -> int:
    """Threads the loops may use now: min(BLAS's setting, numba's setting, usable CPUs)."""
    count = min(_CPUS, numba.config.NUMBA_NUM_THREADS)
    if getattr(_numba_parallel, "_is_initialized", False):  # set_num_threads starts numba's pool first
        count = min(count, numba.get_num_threads())
    for lib in _BLAS:
        blas = lib.get_num_threads()  # (None where a library cannot tell)
        if blas:
            count = min(count, blas)
    return max(1, count)


# ------------------------------------------------------------------------------- the workers


# Set while a thread runs pieces: a piece that itself calls run_pieces (a provider method
# whose piece calls a kernel that splits too) runs that inner work serially, in its own thread.
_inside = threading.local()


class _Workers:
    """Daemon threads that run ``fn(k)`` for the pieces k they are handed."""

    def __init__(self) -> None:
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.started = 0
        self.lock = threading.Lock()

    def ensure(self, count: int) -> None:
        with self.lock:
            while self.started < count:
                threading.Thread(target=self._serve, name=f"minivae-cpu-{self.started}", daemon=True).start()
                self.started += 1

    def _serve(self) -> None:
        _inside.active = True
        while True:
            fn, indices, done = self.tasks.get()
            try:
                for k in indices:
                    fn(k)
                done.put(None)
            except BaseException as error:  # handed back to the caller, raised there
                done.put(error)


_WORKERS = _Workers()


def _after_fork() -> None:
    """A forked child has none of the parent's threads: start afresh."""
    global _WORKERS
    _WORKERS = _Workers()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def run_pieces(fn: Callable[[int], object], count: int) -> None:
    """Call ``fn(k)`` for k = 0 .. count-1, shared among ``thread_count()`` threads.

    The calling thread takes pieces 0, T, 2T, ... (T threads); with one piece or one
    thread it does all of them in order, and no other thread is involved. ``fn`` must
    release the GIL for the bulk of its work (a nogil compiled loop, NumPy ufuncs on
    large arrays) and must not write where another piece reads.
    """
    threads = min(count, thread_count()) if count > 1 and not getattr(_inside, "active", False) else 1
    if threads == 1:
        for k in range(count):
            fn(k)
        return
    _WORKERS.ensure(threads - 1)
    done: queue.SimpleQueue = queue.SimpleQueue()
    for t in range(1, threads):
        _WORKERS.tasks.put((fn, range(t, count, threads), done))
    error = None
    _inside.active = True
    try:
        for k in range(0, count, threads):
            fn(k)
    except BaseException as own:
        error = own
    finally:
        _inside.active = False
    for _ in range(1, threads):  # always wait for every share: they write into the caller's arrays
        result = done.get()
        if error is None and result is not None:
            error = result
    if error is not None:
        raise error


def on_rows(loop: Callable[..., object], row_arrays: tuple, *others: object) -> None:
    """``loop(*row_arrays, *others)``, large arrays a row piece per call: ``loop(*(a[start:stop]
    for a in row_arrays), *others)`` for each piece. All ``row_arrays`` have the same rows; the
    first one's size decides the cut. For loops whose every row is computed on its own (the
    result cannot depend on the cut): with one thread they run whole. A small array costs
    one size test more than a plain call."""
    first = row_arrays[0]
    if first.size < 2 * MIN_PIECE or thread_count() == 1:  # small, or one thread: no pieces at all
        loop(*row_arrays, *others)  # (an elementwise loop gives the same numbers whole or in pieces)
        return
    bounds = piece_bounds(first.shape[0], first.size)
    run_pieces(lambda k: loop(*[a[bounds[k][0]:bounds[k][1]] for a in row_arrays], *others), len(bounds))
