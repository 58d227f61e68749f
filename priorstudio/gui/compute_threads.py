"""Give the cores to the worker thread, not the GUI thread.

PyTorch on the CPU runs its parallel loops on OpenMP, and GNU OpenMP keeps one team of threads per thread
that starts parallel work. As soon as the GUI thread has a team of its own, OpenMP sees more threads than
cores and stops spinning between parallel regions: every one of the hundreds of regions in a denoiser
call then waits for a thread to be woken, and a run in the worker thread is ~15% slower than the same run
on an otherwise idle GUI thread.

So the application, at start-up and before any tensor work, calls :func:`reserve_for_workers`: the GUI
thread's own tensor work (loading a model, the preview) runs on one thread and never forms a team, and
each worker thread calls :func:`enter_worker` first and gets torch's full count. Library use, tests and
the CLI never call either and keep torch's defaults.
"""

from __future__ import annotations

import torch

_worker_threads: int | None = None


def reserve_for_workers(threads: int | None = None) -> int:
    """In the GUI thread, before any tensor work: use one thread here, ``threads`` (default: torch's) in workers."""
    global _worker_threads
    count = int(threads) if threads else torch.get_num_threads()
    _worker_threads = max(1, count)
    torch.set_num_threads(1)
    # fix this thread's count now: a thread takes torch's global count when it first runs parallel work,
    # and enter_worker() sets that global back to the workers' count
    torch.ones(1 << 16).add_(1)
    return _worker_threads


def enter_worker() -> None:
    """First thing in a worker thread: use the workers' thread count (nothing unless reserved)."""
    if _worker_threads is not None and torch.get_num_threads() != _worker_threads:
        torch.set_num_threads(_worker_threads)


def worker_threads() -> int | None:
    """The workers' thread count once reserved, else None."""
    return _worker_threads


def release() -> None:
    """Back to torch's defaults in this thread (tests, and a benchmark's headless runs in the GUI thread)."""
    global _worker_threads
    if _worker_threads is not None:
        torch.set_num_threads(_worker_threads)
    _worker_threads = None
