"""What the studies share: running on an optional cluster, progress lines, how a finding is worded."""

from __future__ import annotations

import os
from typing import Callable, Optional

from mmkern._dask import cluster_options


def run_in(out_dir, run: Callable[[str, dict], dict], client=None, workers: Optional[int] = None) -> dict:
    """``run(out_dir, cluster)`` in a created ``out_dir``; ``cluster`` is ``{}`` or
    ``{"client": client}``, the given client or one of a ``LocalCluster`` of ``workers``
    processes (closed afterwards)."""
    from mmkern.train._cluster import cluster_client

    cluster = cluster_options(client, workers)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if cluster is None:
        return run(out_dir, {})
    with cluster_client(**cluster) as own:
        return run(out_dir, {"client": own})


def say(study: str, progress: bool, message: str) -> None:
    """One progress line of a study, flushed at once."""
    if progress:
        print(f"{study}: {message}", flush=True)


def verdict(finding: dict) -> str:
    """"holds", "not testable here" or "does NOT hold": how a finding is reported."""
    if finding["holds"]:
        return "holds"
    return "not testable here" if not finding.get("testable", True) else "does NOT hold"
