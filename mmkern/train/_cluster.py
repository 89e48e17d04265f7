"""Per-model work (training, outputs, fine-tuning) as tasks on a Dask distributed cluster.

Each unfinished member is one task that trains the member and writes its checkpoint and record
atomically into the zoo directory, which every worker must see (a shared file system: checked up
front by a probe file that a worker writes and the driver reads). Dask's ``retries`` reschedule
the task of a worker that dies (killed, out of memory) on another worker, up to a limit; a task
whose member is already finished (its record exists: the worker died after writing it) returns
that record instead of training again, so finished members are never rewritten. A member whose
training diverges is reported, not retried (it would diverge again). The driver holds the zoo's
lock for the whole run.

``dask`` is imported only here, and only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Iterator, Optional

#: Seconds to wait for a scheduler before giving up with one clear line.
CONNECT_TIMEOUT = 10

#: Times a member's task is rescheduled after its worker died.
RETRIES = 2


from mmkern._dask import as_finished, check_client, interrupts_deferred, require_distributed  # noqa: E402


@contextlib.contextmanager
def cluster_client(client=None, workers: Optional[int] = None, scheduler: Optional[str] = None) -> Iterator:
    """A ``distributed.Client``: the one given, one connected to ``scheduler`` (an address), or
    one of a ``LocalCluster`` of ``workers`` single-threaded processes started for the block."""
    distributed = require_distributed()
    if client is not None:
        yield check_client(client)
        return
    if scheduler is not None:
        try:
            own = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:
            raise OSError(f"cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT} s "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        with own:
            yield own
        return
    import logging

    from mmkern._validate import check_positive_int

    workers = None if workers is None else check_positive_int(workers, "workers")  # no worker: a hang
    with environment_kept():  # Dask sets OMP_NUM_THREADS=1 and more in this process for its workers
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.ERROR)
        try:
            with distributed.Client(cluster) as own:
                from mmkern.train._worker_plugin import IgnoreInterrupts

                own.register_plugin(IgnoreInterrupts())  # Ctrl-C is the driver's to handle
                yield own
        finally:
            cluster.close()


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """Restore ``os.environ`` after the block: starting (and restarting) worker processes, Dask's
    nanny writes OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_ and others into the driver's own
    environment, which every later subprocess of the driver would inherit."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def _write_probe(path: str, token: str) -> str:
    from mmkern._io import atomic_write_text

    atomic_write_text(path, token)
    return os.uname().nodename


def check_shared(client, out_dir: str) -> None:
    """``OSError`` unless a worker can write into ``out_dir`` where the driver reads it."""
    token = uuid.uuid4().hex
    path = os.path.join(os.path.abspath(out_dir), f".probe-{token}")
    try:
        host = client.submit(_write_probe, path, token, pure=False).result()
        with open(path, encoding="utf-8") as f:
            seen = f.read()
    except FileNotFoundError:
        raise OSError(f"{out_dir!r} is not shared with the workers: a file a worker wrote there is not "
                      "visible to this process (the zoo directory must be on a file system every "
                      "worker and the driver see)") from None
    finally:
        if os.path.exists(path):
            os.unlink(path)
    if seen != token:
        raise OSError(f"{out_dir!r}: the probe file a worker on {host} wrote differs from what this "
                      "process reads")


#: glibc's trim and mmap thresholds in the worker processes. Dask's nanny starts its workers with
#: MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's adaptive mmap threshold: freed memory
#: goes back to the system at once and every activation-sized tensor is a fresh mmap whose pages
#: fault in again, which makes training these small models twice as slow (benchmarks/NOTES.md).
_MALLOPT = {-1: 64 << 20, -3: 32 << 20}  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD


def _relax_malloc_trim() -> None:
    """Set this process's glibc thresholds (Linux with glibc; elsewhere nothing to do)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        for option, value in _MALLOPT.items():
            libc.mallopt(option, value)
    except (OSError, AttributeError):
        pass


def _task(function, *args):
    """One task on a worker: the allocator set up, then ``function(*args)``."""
    _relax_malloc_trim()
    return function(*args)


def _slots(client) -> int:
    """The cluster's worker threads now: how many tasks run at once."""
    workers = client.scheduler_info().get("workers", {}).values()
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers))


def run_tasks(client, function, jobs: dict, label: str, bar=None, on_done=None, scatter: tuple = ()
              ) -> tuple[dict, dict]:
    """Run ``function(*args)`` for every ``{id: args}`` of ``jobs`` as a task (``RETRIES``
    retries after a worker died); returns ({id: result}, {id: error message}) and calls
    ``on_done(id, result, error)`` as each ends. Values in ``scatter`` (objects among the
    arguments, e.g. a dataset) are sent to every worker once. Ctrl-C cancels what is left.

    No more tasks are in flight than the cluster has worker threads, the next submitted as one
    ends: Dask would otherwise queue several members on one worker, and when a member kills its
    worker, count the death against every member waiting there too (after ``RETRIES`` deaths, a
    healthy member would be reported failed with the one that kills its workers)."""
    require_distributed()
    run = uuid.uuid4().hex[:8]
    unique = {id(v): v for v in scatter if v is not None}  # an object given twice is sent once
    shared = {key: client.scatter(v, broadcast=True) for key, v in unique.items()}
    waiting, futures, running = list(jobs.items()), {}, []

    def submit_next() -> None:
        job, args = waiting.pop(0)
        args = [shared.get(id(a), a) for a in args]
        safe = "".join(c if c.isalnum() or c in "._=-" else "_" for c in str(job))
        future = client.submit(_task, function, *args, key=f"mmkern-{label}-{safe}-{run}", retries=RETRIES,
                               pure=False)
        futures[future] = job
        running.append(future)

    results, failures = {}, {}
    try:
        with interrupts_deferred() as interrupted:
            while waiting and len(running) < _slots(client):
                submit_next()
            for future in as_finished(running, interrupted):
                job = futures[future]
                if future.status == "error":
                    error = future.exception()
                    failures[job] = f"{type(error).__name__}: {error}"
                else:
                    results[job] = future.result()
                while waiting and len(running) < _slots(client):
                    submit_next()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{len(running)} running, {len(waiting)} waiting, {len(failures)} failed")
                if on_done is not None:
                    on_done(job, results.get(job), failures.get(job))
    except BaseException:  # Ctrl-C or a callback's exception: nothing more is started
        client.cancel(running)
        raise
    return results, failures
