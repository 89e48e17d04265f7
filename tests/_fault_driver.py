"""Runs one step of a zoo's life in this process and SIGKILLs it at a chosen write (fault tests).

    python _fault_driver.py STEP ZOO_DIR KILL_POINT N [RELEASE_FILE]

STEP is ``train``, ``outputs``, ``analyze`` or ``finetune`` (on :data:`RECIPE`, one torch thread).
The process kills itself (SIGKILL: no cleanup, no ``finally``) at the N-th write whose target ends
with the KILL_POINT's file name: ``torn:<name>`` halfway through writing the temporary file,
``before:<name>`` just before the write starts; ``none`` kills nowhere. With STEP ``hold`` the
process trains with a callback that waits for RELEASE_FILE to exist (the lock test).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time

import torch

import mmkern._io as io_module
from mmkern.train import activations, checkpoint

RECIPE = {
    "name": "fault-zoo",
    "description": "three small MLPs on digits with a class cue",
    "base": {"dataset": "digits", "model": "mlp", "width": 1.0, "lr": 0.05, "batch_size": 128,
             "epochs": 2, "dataset_options": {"spurious": 1.0, "ood": []}},
    "factors": [{"field": "init_seed", "values": [0, 1, 2]}],
}
FINETUNE = dict(clean_samples=60, epochs=1, batch_size=32, alphas=3, threads=1, progress=False)
ANALYZE = dict(alphas=3, n_samples=300, progress=False)


def run_step(step: str, zoo_dir: str, callback=None) -> None:
    """One step, as the tests run it in-process too (the same settings)."""
    from mmkern.analysis import analyze_zoo, collect_outputs
    from mmkern.train import finetune_zoo, train_zoo

    if step == "train":
        train_zoo(RECIPE, zoo_dir, threads=1, progress=False, callback=callback)
    elif step == "outputs":
        collect_outputs(zoo_dir, n_samples=ANALYZE["n_samples"], progress=False)
    elif step == "analyze":
        analyze_zoo(zoo_dir, **ANALYZE)
    elif step == "finetune":
        finetune_zoo(zoo_dir, "naive", **FINETUNE)
    else:
        raise ValueError(step)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(kill_point: str, nth: int) -> None:
    if kill_point == "none":
        return
    how, target = kill_point.split(":")
    real = io_module.atomic_write
    seen = [0]

    def atomic_write(path, write):
        if os.fspath(path).endswith(target):
            seen[0] += 1
            if seen[0] == nth:
                if how == "before":
                    _die()

                def torn(f):
                    buffer = io.BytesIO()
                    write(buffer)
                    data = buffer.getvalue()
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    _die()

                return real(path, torn)
        return real(path, write)

    # every atomic write of mmkern goes through one of these names
    io_module.atomic_write = atomic_write
    checkpoint.atomic_write = atomic_write
    activations.atomic_write = atomic_write


def main() -> None:
    step, zoo_dir, kill_point, nth = sys.argv[1:5]
    torch.set_num_threads(1)
    if step == "hold":
        release = sys.argv[5]

        def wait(event):
            while not os.path.exists(release):
                time.sleep(0.05)

        run_step("train", zoo_dir, callback=wait)
        return
    _install(kill_point, int(nth))
    run_step(step, zoo_dir)


if __name__ == "__main__":
    main()
