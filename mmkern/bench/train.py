"""Benchmark cases for training populations (``mmkern bench train``).

Target (on a 2-core machine): the demo zoo (``mmkern demo``'s recipe, 10 models) on a LocalCluster
of 2 worker processes at least 1.6x faster than on a LocalCluster of 1 (``mmkern demo --workers 2``
against ``--workers 1``, training only), with bitwise the same models. A second row compares it
with the serial run in this process (``threads=1``, no cluster). Every timed run trains a fresh
zoo in a new temporary folder; the compared result is every member's final training loss and
test accuracy, which must be equal.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np

from mmkern.bench.runner import Case


def _skip() -> str | None:
    try:
        import distributed  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return "needs torch and Dask distributed (pip install 'mmkern[train,distributed]')"
    return None


def _train(recipe: str, **cluster) -> np.ndarray:
    """Train ``recipe`` into a fresh folder (removed afterwards); (members, 2) float64 of each
    member's final training loss and test accuracy."""
    from mmkern.train import train_zoo

    folder = tempfile.mkdtemp(prefix="mmkern-bench-zoo-")
    try:
        records = train_zoo(recipe, f"{folder}/zoo", threads=1, progress=False, **cluster)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return np.array([[r["history"][-1]["loss"], r["metrics"]["test"]["accuracy"]] for r in records])


def _zoo_case(recipe: str, baseline: str, target: float | None) -> Case:
    base = {"one worker": {"workers": 1}, "serial": {}}[baseline]
    label = {"one worker": "LocalCluster of 1 worker (mmkern demo --workers 1)",
             "serial": "serial, threads=1, in this process"}[baseline]
    return Case(
        name=f"train_zoo {recipe!r} recipe on a LocalCluster of 2 workers (mmkern demo --workers 2; "
             f"baseline: {label})",
        make_inputs=lambda: (),
        reference=lambda: _train(recipe, **base),
        fast=lambda: _train(recipe, workers=2),
        target=target, rtol=0.0, floor=1.0, skip=_skip())


def cases(quick: bool = False) -> list[Case]:
    """The training cases; ``quick`` trains the 3-model ``tiny`` recipe instead of ``demo``."""
    recipe = "tiny" if quick else "demo"
    return [_zoo_case(recipe, "one worker", None if quick else 1.6), _zoo_case(recipe, "serial", None)]
