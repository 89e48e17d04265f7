"""The one place that imports Dask distributed (only when a cluster is asked for), and how the
driver waits for its tasks."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator

POLL_S = 0.05
"""How often a waiting driver looks for finished tasks."""


def require_distributed():
    """The ``distributed`` module, or an ``ImportError`` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ImportError("running on a cluster needs Dask distributed: pip install 'mmkern[distributed]'") from None
    return distributed


def cluster_options(client, workers) -> dict | None:
    """The cluster arguments of a library call, checked before any work: None for the serial
    path (neither given), else ``{"client": ..., "workers": ...}``; ``ValueError`` for both or
    for ``workers`` < 1 (a cluster without workers would wait forever), ``TypeError`` for a
    ``workers`` that is not an int (the client itself is checked when it is used)."""
    if client is None and workers is None:
        return None
    if client is not None and workers is not None:
        raise ValueError("give client or workers, not both")
    from mmkern._validate import check_positive_int

    return {"client": client, "workers": None if workers is None else check_positive_int(workers, "workers")}


def check_client(client):
    """``client`` if it is a ``distributed.Client``, else a ``TypeError``."""
    if not isinstance(client, require_distributed().Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    return client


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[threading.Event]:
    """SIGINT sets the yielded event instead of raising at once: a KeyboardInterrupt raised in
    the middle of one of Dask's blocking calls leaves its event loop in a state it reports with a
    traceback. :func:`as_finished` raises it between calls. (Only in the main thread; elsewhere
    the event is never set and interrupts behave as usual.)"""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def as_finished(running: list, interrupted: threading.Event) -> Iterator:
    """Yield the futures of ``running`` as they finish, removing each from it (the caller may add
    more while iterating); ``KeyboardInterrupt`` once ``interrupted`` is set. Looks at the
    futures' local state only, so no blocking call into Dask's loop is ever interrupted."""
    while running:
        if interrupted.is_set():
            raise KeyboardInterrupt
        finished = [f for f in running if f.done()]
        if not finished:
            time.sleep(POLL_S)
            continue
        for future in finished:
            running.remove(future)
            yield future
