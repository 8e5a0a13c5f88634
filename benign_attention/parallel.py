"""Running cells elsewhere: the one mechanism every grid uses to hand work to an executor (:ref:`sec-encoder-cluster`).

The three grids (:func:`benign_attention.sweeps.run_grid`, :func:`benign_attention.encoder.grid.run_encoder_grid`,
:func:`benign_attention.realdata.grid.run_realdata_grid`) accept any ``concurrent.futures``-style executor (an object with
``submit`` returning futures: a ``ProcessPoolExecutor``, a ``ThreadPoolExecutor``, a ``dask.distributed``
Client or its ``get_executor()``). They all go through :func:`run_jobs`, whose rules are:

* every job is submitted on its own and its result is read from *its* future, so a result can only ever
  land in the cell it was computed for (no executor ``map`` whose order or length could be wrong);
* the number of results is checked against the number of jobs, and the caller checks each result's shape;
* an executor that cannot take work (shut down, broken, a ``multiprocessing.Pool``, an object without
  ``submit``) is refused up front by :func:`~benign_attention.validation.check_executor`, with a message
  that says what to pass instead;
* a process pool that would *fork* this process after torch has started its OpenMP threads is refused up
  front: the forked workers deadlock inside libgomp at their first parallel torch operation. Whether
  that would happen is tested, not guessed (:func:`fork_is_safe` forks a probe that runs one small
  parallel torch operation and waits for it).

The package's own process pools (:func:`process_pool`) never fork: they start their workers with the
``forkserver`` method (``spawn`` where there is none), which is safe whatever this process has done.
"""
from __future__ import annotations

import multiprocessing
import os
import threading

__all__ = ["process_pool", "start_method", "fork_is_safe", "forks", "run_jobs", "ExecutorError"]

#: Seconds :func:`fork_is_safe` waits for its probe (a healthy one takes well under a second).
PROBE_TIMEOUT = 5.0

_UNSAFE = False   # once a fork probe hung, it always will in this process (libgomp's threads stay)


class ExecutorError(RuntimeError):
    """The executor did not deliver a job's result (a worker died, the pool broke, or it returned
    something that is not the job's result). Cells finished before it are kept (cached where the grid
    caches); run the call again with a working executor to compute the rest."""


def start_method() -> str:
    """The start method of the package's own process pools: ``"forkserver"`` where the platform has
    it, else ``"spawn"``; never ``"fork"``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def process_pool(workers=None):
    """A ``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes (default: the CPU
    count) that never forks this process: its workers start with :func:`start_method`, so they are
    safe after torch has used threads here. Pass it as ``executor=`` to any grid; use it in a ``with``
    block (or call its ``shutdown``). Its workers import the calling script's main module, as with any
    non-fork pool: in a script, create it under ``if __name__ == "__main__":`` (notebooks need nothing).
    Raises ValueError for ``workers`` not an integer >= 1."""
    from concurrent.futures import ProcessPoolExecutor

    from .validation import check_int

    workers = None if workers is None else check_int("workers", workers, 1)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method()))


def _native_threads():
    """Threads of this process that Python did not start (OpenMP, BLAS, ...); None where unknown."""
    try:
        return len(os.listdir("/proc/self/task")) - threading.active_count()
    except OSError:
        return None


def _probe(threads):
    import torch

    torch.set_num_threads(threads)
    a = torch.ones(1 << 20)
    a.add_(1.0)
    torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    float(a.sum())


def fork_is_safe(timeout=PROBE_TIMEOUT) -> bool:
    """Whether a process forked from this one can run parallel torch operations.

    False once torch has run a parallel (OpenMP) region here: libgomp's thread pool does not survive
    ``fork``, and the child hangs at its first parallel region. Tested, not guessed: if this process
    runs threads that Python did not start, a forked probe runs one small parallel torch operation
    on at least two threads and is given ``timeout`` seconds (killed if it hangs). A False is
    remembered (those threads never go away)."""
    global _UNSAFE
    if _UNSAFE:
        return False
    if "fork" not in multiprocessing.get_all_start_methods():
        return True
    native = _native_threads()
    if native is not None and native <= 0:
        return True   # no thread of any native library: nothing a fork could break
    import torch

    proc = multiprocessing.get_context("fork").Process(target=_probe, args=(max(2, torch.get_num_threads()),),
                                                       daemon=True)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        _UNSAFE = True
        return False
    return True


def forks(executor) -> bool:
    """True if ``executor`` is a process pool that will still fork this process to start workers
    (a ``ProcessPoolExecutor`` with the ``fork`` start method whose workers are not all running)."""
    ctx = getattr(executor, "_mp_context", None)
    if ctx is None or not callable(getattr(ctx, "get_start_method", None)):
        return False
    if ctx.get_start_method() != "fork":
        return False
    running = getattr(executor, "_processes", None) or {}
    want = getattr(executor, "_max_workers", None)
    return want is None or len(running) < want


def run_jobs(fn, jobs, executor, name="executor"):
    """Yield ``fn(*job)`` for each job of ``jobs`` (a list of argument tuples), in job order,
    computed by ``executor`` (checked by :func:`~benign_attention.validation.check_executor`).

    Each job is submitted on its own and its result read from its own future, so results are matched
    to jobs by identity, never by position in a returned sequence. Raises ValueError if the executor
    refuses work (shut down), :class:`ExecutorError` if it delivers no result for a job (a worker
    died, a broken pool, a future that is not a future); an exception raised by ``fn`` itself is
    raised again unchanged."""
    jobs = list(jobs)
    futures = []
    try:
        for job in jobs:
            futures.append(executor.submit(fn, *job))
    except RuntimeError as err:
        for f in futures:
            _cancel(f)
        from concurrent.futures.process import BrokenProcessPool

        if isinstance(err, BrokenProcessPool):
            raise ExecutorError(f"{name} is broken (a worker process died: {err}); pass a new executor") from None
        raise ValueError(f"{name} cannot take work ({err}); pass an executor that is running") from None
    if len(futures) != len(jobs):   # pragma: no cover - a list built above, one per job
        raise ExecutorError(f"{name} took {len(futures)} of {len(jobs)} jobs")
    for i, fut in enumerate(futures):
        if not callable(getattr(fut, "result", None)):
            for f in futures[i:]:
                _cancel(f)
            raise ExecutorError(f"{name}.submit must return a future (with a result method), got "
                                f"{type(fut).__name__}")
        try:
            yield fut.result()
        except BaseException as err:   # also GeneratorExit: the caller stopped reading
            for f in futures[i + 1:]:
                _cancel(f)
            from concurrent.futures import CancelledError
            from concurrent.futures.process import BrokenProcessPool

            if isinstance(err, (BrokenProcessPool, CancelledError)):
                raise ExecutorError(f"{name} delivered no result for job {i + 1} of {len(jobs)} "
                                    f"({type(err).__name__}: {err}); the cells finished before it are kept, "
                                    f"run again with a working executor for the rest") from err
            raise


def _cancel(fut):
    cancel = getattr(fut, "cancel", None)
    if callable(cancel):
        try:
            cancel()
        except Exception:   # noqa: BLE001 - best effort
            pass
