"""Tiny seeded datasets, configs and recipes for the training-module tests (seconds, not minutes).

The datasets are learnable on purpose (the class shifts the signal), so a few epochs move the
weights visibly, and small (a few hundred samples) so a whole zoo trains in about a second.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from mmkern.data import ArraySplit, Dataset

NUM_CLASSES = 3
SHAPE_1D = (1, 12)
SHAPE_2D = (1, 6, 6)


def _split(rng: np.random.Generator, n: int, shape: tuple, shift: float = 1.0) -> ArraySplit:
    y = rng.integers(0, NUM_CLASSES, n)
    x = rng.normal(size=(n,) + shape) + shift * y.reshape((n,) + (1,) * len(shape))
    return ArraySplit(x.astype(np.float32), y.astype(np.int64))


def toy_dataset(shape: tuple = SHAPE_1D, n_train: int = 96, n_test: int = 40, seed: int = 0,
                name: str = "toy") -> Dataset:
    """A 3-class dataset with one OOD set ("noisy"), inputs ``(n, *shape)`` float32."""
    rng = np.random.default_rng(seed)
    train, test = _split(rng, n_train, shape), _split(rng, n_test, shape)
    noisy = ArraySplit((test.x + rng.normal(scale=2.0, size=test.x.shape)).astype(np.float32),
                       test.y)
    return Dataset(name=name, train=train, test=test, num_classes=NUM_CLASSES,
                   input_shape=tuple(shape), ood={"noisy": noisy}, info={"seed": seed})


#: Fields of a config that trains in a few milliseconds on :func:`toy_dataset`.
TINY = {"dataset": "toy", "model": "cnn1d", "width": 0.25, "epochs": 2, "batch_size": 16,
        "lr": 0.05}


def tiny_recipe(**overrides) -> dict:
    """A one-at-a-time recipe dict of 4 members: base, init_seed=1, order_seed=1, order_seed=2."""
    recipe = {
        "name": "toy-zoo",
        "description": "test zoo",
        "base": dict(TINY),
        "factors": [{"field": "init_seed", "values": [0, 1]},
                    {"field": "order_seed", "values": [0, 1, 2]}],
    }
    recipe.update(overrides)
    return recipe


def state_equal(a, b) -> bool:
    """Bit-identical state dicts (same keys, same values, NaNs equal)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape
        and bool((sa[k] == sb[k]).logical_or(sa[k].isnan() & sb[k].isnan()).all()) for k in sa)


def tree_fingerprint(directory: str) -> dict[str, tuple[int, str]]:
    """``{relative path: (mtime_ns, sha256)}`` of every file under ``directory`` but the lock files
    (which every run rewrites with its holder)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if name == ".lock":
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, directory)] = (os.stat(path).st_mtime_ns, digest)
    return out


def assert_refused_in_one_line(tmp_path, study: str, args: list, message: str) -> None:
    """``mmkern reproduce STUDY --out tmp_path/s ARGS`` fails with ``message`` on stderr, no
    traceback, and creates nothing."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mmkern", "reproduce", study, "--out", str(tmp_path / "s"), *args],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "s").exists()
