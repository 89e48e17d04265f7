"""The one place that imports Dask distributed (only when a cluster is asked for)."""

from __future__ import annotations


def require_distributed():
    """The ``distributed`` module, or an ``ImportError`` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ImportError("running on a cluster needs Dask distributed: pip install 'mmkern[distributed]'") from None
    return distributed


def check_client(client):
    """``client`` if it is a ``distributed.Client``, else a ``TypeError``."""
    if not isinstance(client, require_distributed().Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    return client
