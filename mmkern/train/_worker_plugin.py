"""The Dask worker plugin of the LocalClusters mmkern starts (imported only with a cluster).

A Ctrl-C in a terminal reaches every process of the foreground job: the driver and the worker
processes it spawned. The driver handles it (the run's tasks cancelled, the cluster closed, one
line); the workers ignore it, instead of each dying with a traceback of its own.
"""

from __future__ import annotations

import signal

from distributed.diagnostics.plugin import WorkerPlugin


class IgnoreInterrupts(WorkerPlugin):
    """SIGINT ignored in the worker's process (set up on every worker, restarted ones too)."""

    name = "mmkern-ignore-interrupts"

    def setup(self, worker) -> None:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: a worker inside another process's event loop
            pass
