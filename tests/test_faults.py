"""Faults beyond bad input: processes killed mid-write, a full quota, two writers on one zoo.

Every kill is a real SIGKILL of a separate Python process (``tests/_fault_driver.py``) at a chosen
write: halfway through the temporary file of an atomic write ("torn"), or just before a write
("before"). The rerun must complete, leave every file that was finished before it byte-identical
(same bytes, same mtime: not rewritten), produce the same models as an uninterrupted run, and
leave no temporary file behind.
"""

from __future__ import annotations

import glob
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from _fault_driver import RECIPE, run_step  # noqa: E402
from _train_helpers import tree_fingerprint  # noqa: E402

from mmkern.train import list_members  # noqa: E402
from mmkern.train._inputs import torch_threads  # noqa: E402

DRIVER = os.path.join(os.path.dirname(__file__), "_fault_driver.py")
MEMBERS = ["base", "init_seed=1", "init_seed=2"]
STEPS = ("train", "outputs", "finetune", "analyze")


def _steps(zoo_dir, upto: str) -> None:
    """The steps before ``upto``, in this process (one torch thread, as the driver)."""
    with torch_threads(1):
        for step in STEPS[:STEPS.index(upto)]:
            run_step(step, str(zoo_dir))


def _env() -> dict:
    """The child's environment: the tests folder importable, and never the source tree (the
    children run outside it, so the installed mmkern is the one imported)."""
    paths = [os.path.dirname(__file__), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _driver(step, zoo_dir, kill_point="none", nth=1, **kwargs):
    return subprocess.run([sys.executable, DRIVER, step, str(zoo_dir), kill_point, str(nth)],
                          capture_output=True, text=True, env=_env(), cwd=os.path.dirname(zoo_dir),
                          timeout=600, **kwargs)


def _checkpoints(zoo_dir) -> dict:
    out = {}
    for path in sorted(glob.glob(os.path.join(zoo_dir, "**", "*.safetensors"), recursive=True)):
        with open(path, "rb") as f:
            out[os.path.relpath(path, zoo_dir)] = f.read()
    return out


def _temporary_files(zoo_dir) -> list:
    return glob.glob(os.path.join(zoo_dir, "**", ".*.tmp"), recursive=True)


#: Files that count as finished only once the marker beside them exists (written last).
COVERED_BY = {"model.safetensors": "record.json", "activations.npz": "outputs.json",
              "predictions.npz": "outputs.json"}


def _finished_files(fingerprint: dict) -> dict:
    """The finished files of a tree fingerprint: markers, files their marker covers, and the
    rest but temporary and lock files."""
    out = {}
    for path, value in fingerprint.items():
        name = os.path.basename(path)
        marker = COVERED_BY.get(name)
        if not name.startswith(".") and (
                marker is None or os.path.join(os.path.dirname(path), marker) in fingerprint):
            out[path] = value
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted zoo: trained, outputs collected, fine-tuned, analysed."""
    out = tmp_path_factory.mktemp("reference")
    _steps(out, "analyze")
    with torch_threads(1):
        run_step("analyze", str(out))
    return out


# (step, kill point, n-th matching write): during / after the checkpoint write and before the
# record, during the record, during the activations, before the outputs' marker, during the
# fine-tuned checkpoint, during the analysis results.
KILLS = [
    ("train", "torn:model.safetensors", 2),
    ("train", "before:record.json", 2),
    ("train", "torn:record.json", 3),
    ("outputs", "torn:activations.npz", 2),
    ("outputs", "before:outputs.json", 2),
    ("finetune", "torn:model.safetensors", 2),
    ("finetune", "before:record.json", 1),
    ("analyze", "torn:results.json", 1),
]


@pytest.mark.parametrize("step, kill_point, nth", KILLS, ids=[f"{s}-{k}-{n}" for s, k, n in KILLS])
def test_sigkill_then_rerun_completes_without_touching_finished_files(reference, tmp_path, step,
                                                                      kill_point, nth):
    zoo = tmp_path / "zoo"
    _steps(zoo, step)
    killed = _driver(step, zoo, kill_point, nth)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if kill_point.startswith("torn"):  # the kill leaves the torn temporary file of its write
        assert _temporary_files(zoo)
    finished = _finished_files(tree_fingerprint(str(zoo)))
    with torch_threads(1):
        run_step(step, str(zoo))  # the rerun; it also takes over the dead process's lock
    after = tree_fingerprint(str(zoo))
    assert {p: after.get(p) for p in finished} == finished  # nothing finished was rewritten
    assert not _temporary_files(zoo)
    assert list_members(zoo) == MEMBERS
    assert _checkpoints(zoo) == {k: v for k, v in _checkpoints(reference).items()
                                 if k.startswith("members") or step in ("finetune", "analyze")}
    if step == "analyze":
        with open(zoo / "analysis" / "results.json", encoding="utf-8") as f:
            assert len(json.load(f)["groups"]) == 1


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then writes fail with EFBIG
    return apply


def test_full_quota_is_one_clear_error_and_nothing_half_written(tmp_path):
    recipe = tmp_path / "fault.toml"
    recipe.write_text(
        'name = "fault-zoo"\n[base]\ndataset = "digits"\nmodel = "mlp"\nepochs = 1\n'
        "[base.dataset_options]\nood = []\n")
    out = tmp_path / "zoo"
    # 128 KiB: zoo.json and records fit, a 340 KB checkpoint does not (EFBIG, as a full quota)
    result = subprocess.run([sys.executable, "-m", "mmkern", "train", str(recipe), "--out", str(out),
                             "--threads", "1"], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path, preexec_fn=_limit_file_size(128 * 1024))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"Error: cannot write {str(out / 'members' / 'base' / 'model.safetensors')!r}: File too large")
    assert "Traceback" not in result.stderr
    assert not _temporary_files(out)
    assert not os.path.exists(out / "members" / "base" / "record.json")
    assert list_members(out) == []
    # with room again, the same command finishes the zoo
    again = subprocess.run([sys.executable, "-m", "mmkern", "train", str(recipe), "--out", str(out),
                            "--threads", "1"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert list_members(out) == ["base"]


def _toml(recipe: dict) -> str:
    """The TOML of :data:`RECIPE` (flat tables of scalars and lists only)."""
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    base = {k: v for k, v in recipe["base"].items() if not isinstance(v, dict)}
    lines = [f"name = {value(recipe['name'])}", "[base]", *(f"{k} = {value(v)}" for k, v in base.items()),
             "[base.dataset_options]",
             *(f"{k} = {value(v)}" for k, v in recipe["base"]["dataset_options"].items())]
    for factor in recipe["factors"]:
        lines += ["[[factors]]", f"field = {value(factor['field'])}", f"values = {value(factor['values'])}"]
    return "\n".join(lines) + "\n"


def test_a_second_trainer_of_one_zoo_is_refused(tmp_path):
    zoo = tmp_path / "zoo"
    release = tmp_path / "release"
    holder = subprocess.Popen([sys.executable, DRIVER, "hold", str(zoo), "none", "0", str(release)],
                              env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        lock = zoo / ".lock"
        deadline = time.monotonic() + 120
        # the holder takes the lock, then writes zoo.json (atomically) and blocks in its first
        # epoch's callback: from then on it writes nothing until released
        while not (lock.exists() and f"process {holder.pid}" in lock.read_text() and (zoo / "zoo.json").exists()):
            assert holder.poll() is None and time.monotonic() < deadline, holder.stderr.read()
            time.sleep(0.05)
        recipe = tmp_path / "fault.toml"
        recipe.write_text(_toml(RECIPE))
        before = tree_fingerprint(str(zoo))
        second = subprocess.run([sys.executable, "-m", "mmkern", "train", str(recipe), "--out",
                                 str(zoo)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert second.returncode == 1
        assert f"is in use by process {holder.pid} on " in second.stderr
        assert f"lock file {str(lock)}" in second.stderr and "Traceback" not in second.stderr
        assert tree_fingerprint(str(zoo)) == before  # the second one wrote nothing
        release.touch()
        assert holder.wait(timeout=600) == 0, holder.stderr.read()
    finally:
        if holder.poll() is None:
            holder.kill()
    assert list_members(zoo) == MEMBERS
    assert RECIPE["name"] == json.loads((zoo / "zoo.json").read_text())["recipe"]["name"]
