"""Atomic file writes (write to a temporary name in the same folder, then rename) and the lock
that keeps two processes from writing one output directory."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import math
import os
import socket
import tempfile
from typing import IO, Any, Callable, Iterator


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any worker threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Create or replace ``path`` so that readers see the old file or the new one, never a torn one.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    write : callable (binary file) -> None
        Writes the content into the open temporary file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block, or raise.

    The lock is an ``flock`` on the file, so the kernel releases it when the holder exits in any
    way (a SIGKILL included): a lock file left behind by a dead process is stale and simply taken
    over. The file names its holder (process id, host, start time) for the message another
    process gets.

    Raises
    ------
    BlockingIOError
        Another live process holds the lock; the message names ``what``, the holder and the file.
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            raise BlockingIOError(f"{what} is in use by {holder} (lock file {path}); wait for it to "
                               "finish: two processes must not write it at once") from None
        holder = (f"process {os.getpid()} on {socket.gethostname()} since "
                  f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode("utf-8"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def finite_json(value: Any) -> Any:
    """``value`` (nested dicts, lists, tuples, numbers) with every non-finite float replaced by
    ``None``: JSON has no NaN or infinity, and a file with them is not JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value
