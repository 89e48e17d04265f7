"""Atomic file writes (write to a temporary name in the same folder, then rename) and the lock
that keeps two processes from writing one output directory."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import math
import os
import socket
import tempfile
import zipfile
import zlib
from typing import IO, Any, Callable, Iterator

import numpy as np


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

    Raises
    ------
    OSError
        The write failed (e.g. a full disk or quota, a folder that cannot be written): the same
        kind of ``OSError``, naming ``path``; the temporary file is removed and ``path`` is left
        as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:  # a full disk, a quota, no permission
            raise type(e)(e.errno, f"cannot write {path!r}: {e.strerror}") from e
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
    path = os.path.abspath(os.fspath(path))
    if path in _HELD:  # re-entry in this process (analyze collects outputs under its lock)
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
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
        _HELD[path] = 1
        try:
            yield
        finally:
            del _HELD[path]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_HELD: dict[str, int] = {}  # lock files this process holds, with their re-entry depth


def remove_stale_temporaries(directory: str | os.PathLike) -> None:
    """Remove the temporary files interrupted :func:`atomic_write` calls left in ``directory``
    (only safe while holding the directory's :func:`exclusive_lock`)."""
    for path in glob.glob(os.path.join(glob.escape(os.fspath(directory)), ".*.tmp")):
        os.unlink(path)


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


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Fail early, before a long job, when ``path`` cannot be written: ``FileNotFoundError`` or
    ``PermissionError`` naming ``what`` and the folder (probed by creating and removing a
    temporary file there, as :func:`atomic_write` will)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path!r} is a folder; give a file name")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what} {path!r}: the folder {directory!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise PermissionError(f"{what} {path!r}: cannot write in {directory!r} ({e.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def read_npz(path: str, what: str) -> dict:
    """Every array of an ``.npz`` file (no pickles), by name; ``ValueError`` naming the file and
    ``what`` it should be when it is empty, truncated, damaged or a single ``.npy`` array."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, EOFError, ValueError, KeyError, NotImplementedError, zipfile.BadZipFile, zlib.error) as e:
        # (zipfile's errors for damaged archives; NotImplementedError: a damaged method field)
        raise ValueError(f"{path}: not a readable .npz {what}: {type(e).__name__}: {e}") from None
