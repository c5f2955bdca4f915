"""Stopping cleanly on SIGTERM as on Ctrl-C.

``docker stop``, a batch system's time limit and ``kill`` send SIGTERM, whose default action
ends the process on the spot: temporary files stay in the output directory and the temporary
work directory (gigabytes under /tmp) stays on the node; as a container's PID 1 the process
ignores it altogether until Docker's SIGKILL. Raised as an exception instead, SIGTERM unwinds
like Ctrl-C's KeyboardInterrupt, and the same ``finally`` and ``except BaseException`` blocks
clean up.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any


#: Seconds a stopped worker process has to unwind before it is killed (docker stop allows 10).
WORKER_GRACE_S = 3.0


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated``; the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _init_worker(initializer: Callable[..., None], *initargs: Any) -> None:
    signal.signal(signal.SIGTERM, _raise_terminated)
    initializer(*initargs)


def _call_or_exit(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except KeyboardInterrupt:
        # The task has unwound (its temporary files are gone); end the worker here, or the
        # executor would report the interruption and hand it the next task.
        os._exit(128 + signal.SIGTERM)


@contextmanager
def process_pool(workers: int, initializer: Callable[..., None],
                 initargs: tuple = ()) -> Iterator[Callable[..., Iterator]]:
    """Worker processes, as a ``map(fn, items)`` function. On Ctrl-C or SIGTERM in this
    process the tasks in progress are stopped (each worker gets SIGTERM, unwinds and exits),
    where ``ProcessPoolExecutor``'s own shutdown would wait for them to finish."""
    pool = ProcessPoolExecutor(workers, initializer=partial(_init_worker, initializer),
                               initargs=initargs)
    try:
        yield lambda fn, items: pool.map(partial(_call_or_exit, fn), items)
    except KeyboardInterrupt:
        processes = list(pool._processes.values())  # no public way in Python < 3.14
        for process in processes:
            process.terminate()
        # A worker inside ANTs or torch sees SIGTERM only when that call returns (seconds):
        # it has no temporary file open then, and can be killed.
        deadline = time.monotonic() + WORKER_GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
