"""A process-wide pool of worker threads for CPU work that torch does not parallelise itself.

torch releases the GIL inside its kernels, so Python threads that each run torch operations on
their own slice of a tensor run in parallel. Used for the Gaussian fills of the sampler and for
the cache-sized chunks of the Bessel functions, whose operations are too small for torch's own
intra-op threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

_pool: ThreadPoolExecutor | None = None
_pool_pid = -1
_pool_size = 0
_pool_lock = threading.Lock()


def thread_pool() -> ThreadPoolExecutor:
    """The pool, sized to ``torch.get_num_threads()`` (rebuilt when that changes or after a fork,
    whose child starts without the parent's threads)."""
    global _pool, _pool_pid, _pool_size
    with _pool_lock:
        threads = torch.get_num_threads()
        if _pool is None or _pool_pid != os.getpid() or _pool_size != threads:
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=False)  # its idle threads exit; queued work still runs
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="spherical_dists")
            _pool_pid, _pool_size = os.getpid(), threads
        return _pool
