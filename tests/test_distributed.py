"""Zoos on a Dask distributed cluster: a real LocalCluster of worker processes.

The results must be bitwise those of the serial run (one torch thread per model), a worker killed
while it trains a member must not cost the zoo anything, and cluster mistakes are one clear line.
"""

from __future__ import annotations

import glob
import hashlib
import os
import signal
import threading
import time

import pytest

pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")

from _train_helpers import tiny_recipe, toy_dataset, tree_fingerprint  # noqa: E402

from mmkern.train import list_members, train_zoo  # noqa: E402

SLOW = dict(tiny_recipe(), base={**tiny_recipe()["base"], "epochs": 60})  # ~1 s per member


def _checkpoints(zoo) -> dict:
    return {os.path.relpath(p, zoo): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in glob.glob(os.path.join(zoo, "members", "*", "model.safetensors"))}


@pytest.fixture(scope="module")
def cluster():
    from mmkern.train._cluster import cluster_client

    with cluster_client(workers=2) as client:  # the library's own LocalCluster
        yield client


def test_dask_settings_for_its_workers_do_not_stay_in_the_driver():
    from mmkern.train._cluster import cluster_client

    before = dict(os.environ)
    with cluster_client(workers=1):
        pass
    assert dict(os.environ) == before  # no OMP_NUM_THREADS=1 for the driver's later subprocesses


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    train_zoo(SLOW, out, dataset=toy_dataset(), progress=False, threads=1)
    return out


def test_a_zoo_on_a_cluster_is_the_serial_zoo(cluster, serial, tmp_path):
    events = []
    records = train_zoo(SLOW, tmp_path, dataset=toy_dataset(), progress=False, client=cluster,
                        callback=events.append)
    assert [r["id"] for r in records] == list_members(tmp_path) == list_members(serial)
    assert _checkpoints(tmp_path) == _checkpoints(serial)  # bitwise, with one thread per model
    assert sorted(e["member"] for e in events if e["event"] == "finished") == sorted(list_members(serial))
    before = tree_fingerprint(str(tmp_path))
    again = train_zoo(SLOW, tmp_path, dataset=toy_dataset(), progress=False, client=cluster)
    assert tree_fingerprint(str(tmp_path)) == before and len(again) == 4  # nothing rerun


def test_a_killed_worker_costs_the_zoo_nothing(cluster, serial, tmp_path):
    pids = cluster.run(os.getpid)
    result: dict = {}

    def drive():
        try:
            result["records"] = train_zoo(SLOW, tmp_path, dataset=toy_dataset(), progress=False, client=cluster)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    driver = threading.Thread(target=drive)
    driver.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline:
        for address, keys in cluster.processing().items():
            if any(str(k).startswith("mmkern-train-") for k in keys) and address in pids:
                os.kill(pids[address], signal.SIGKILL)  # mid-member: the nanny starts a new worker
                killed = address
                break
        time.sleep(0.05)
    driver.join(timeout=600)
    assert killed is not None, "no member was seen running"
    assert "error" not in result, result.get("error")
    assert list_members(tmp_path) == list_members(serial)
    assert _checkpoints(tmp_path) == _checkpoints(serial)
    assert not glob.glob(os.path.join(tmp_path, "**", ".*.tmp"), recursive=True)


def test_a_workers_argument_starts_and_closes_a_local_cluster(serial, tmp_path):
    train_zoo(SLOW, tmp_path, dataset=toy_dataset(), progress=False, workers=2)
    assert _checkpoints(tmp_path) == _checkpoints(serial)


def test_a_directory_the_workers_do_not_see_is_refused(tmp_path, monkeypatch):
    from mmkern.train import _cluster

    monkeypatch.setattr(_cluster, "_write_probe", lambda path, token: os.uname().nodename)  # writes nothing
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        with pytest.raises(OSError, match="is not shared with the workers"):
            train_zoo(SLOW, tmp_path, dataset=toy_dataset(), progress=False, client=client)
    assert list_members(tmp_path) == []


def test_an_unreachable_scheduler_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mmkern.cli import main
    from mmkern.train import _cluster

    monkeypatch.setattr(_cluster, "CONNECT_TIMEOUT", 2)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["train", "digits-spurious", "--out", str(tmp_path / "z"), "--scheduler",
                                       "tcp://127.0.0.1:1"], catch_exceptions=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1' within 2 s" in result.output
    assert time.monotonic() - started < 30
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give --workers or --scheduler, not both"),
    (["--workers", "0"], "Invalid value for '--workers'"),
])
def test_cluster_options_are_checked(tmp_path, args, message):
    from click.testing import CliRunner

    from mmkern.cli import main

    result = CliRunner().invoke(main, ["train", "digits-spurious", "--out", str(tmp_path / "z"), *args],
                                catch_exceptions=False)
    assert result.exit_code == 2 and message in result.output


def test_outputs_on_a_cluster_are_the_serial_outputs(cluster, serial, tmp_path):
    import shutil

    import numpy as np

    from mmkern.analysis import collect_outputs
    from mmkern.analysis.outputs import load_outputs
    from mmkern.train._inputs import torch_threads

    on_cluster, here = tmp_path / "cluster", tmp_path / "here"
    shutil.copytree(serial, on_cluster)
    shutil.copytree(serial, here)
    assert sorted(collect_outputs(on_cluster, n_samples=30, dataset=toy_dataset(), progress=False,
                                  client=cluster)) == sorted(list_members(serial))
    with torch_threads(1):  # Dask's workers run one thread each
        collect_outputs(here, n_samples=30, dataset=toy_dataset(), progress=False)
    members = list_members(serial)
    for got, want in zip(load_outputs(on_cluster, members), load_outputs(here, members)):
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))
    assert collect_outputs(on_cluster, n_samples=30, dataset=toy_dataset(), progress=False, client=cluster) == []


def _shard(seed: int, rows: slice):
    """A worker's accumulator over its shard of the rows (each worker sees only its rows)."""
    import numpy as np

    import mmkern

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(600, 4))
    acts = [z @ rng.normal(size=(4, d)) + 0.1 * rng.normal(size=(600, d)) for d in (6, 5, 7)]
    return mmkern.SimilarityAccumulator(3).update([a[rows] for a in acts])


def test_accumulators_reduce_as_a_tree_on_the_cluster(cluster):
    import numpy as np

    from mmkern import SimilarityAccumulator

    cuts = [0, 100, 250, 430, 600]
    shards = [cluster.submit(_shard, 7, slice(lo, hi), pure=False) for lo, hi in zip(cuts, cuts[1:])]
    while len(shards) > 1:  # pairwise merges where the shards are
        shards = [cluster.submit(SimilarityAccumulator.merge, a, b) for a, b in zip(shards[::2], shards[1::2])]
    merged = shards[0].result()
    full = _shard(7, slice(0, 600))
    assert merged.n_samples == 600
    np.testing.assert_allclose(merged.svcca(), full.svcca(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(merged.cka(debiased=True), full.cka(debiased=True), rtol=1e-10, atol=1e-12)


def test_fine_tuning_on_a_cluster_is_the_serial_fine_tuning(cluster, tmp_path):
    from mmkern.train import finetune_zoo

    recipe = {"name": "cue", "base": {"dataset": "digits", "model": "mlp", "width": 0.25, "epochs": 1,
                                      "dataset_options": {"spurious": 1.0, "ood": []}},
              "factors": [{"field": "init_seed", "values": [0, 1]}]}
    train_zoo(recipe, tmp_path, progress=False, threads=1)
    settings = dict(clean_samples=40, epochs=1, batch_size=32, alphas=3, threads=1, progress=False)
    import shutil

    here = tmp_path.parent / f"{tmp_path.name}-here"
    shutil.copytree(tmp_path, here)
    on_cluster = finetune_zoo(tmp_path, "naive", client=cluster, **settings)
    serial = finetune_zoo(here, "naive", **settings)
    assert [r["member"] for r in on_cluster] == [r["member"] for r in serial] == ["base", "init_seed=1"]
    assert [r["checkpoint"]["sha256"] for r in on_cluster] == [r["checkpoint"]["sha256"] for r in serial]


TILED = ["pairwise_svcca", "pairwise_cca", "pairwise_pwcca", "pairwise_cka"]


@pytest.mark.parametrize("tile", [1, 3, 16])
@pytest.mark.parametrize("name", TILED)
def test_tiled_matrices_equal_the_in_memory_ones(cluster, tmp_path, name, tile):
    import numpy as np

    import mmkern
    from mmkern import distributed as mmd

    rng = np.random.default_rng(5)
    z = rng.normal(size=(300, 6))
    acts = [(z @ rng.normal(size=(6, d)) + 0.3 * rng.normal(size=(300, d))).astype(dtype)
            for d, dtype in zip((8, 5, 9, 7, 6, 8, 4), [np.float32, np.float64] * 4)]
    paths = []
    for i, a in enumerate(acts):
        np.save(tmp_path / f"m{i}.npy", a)
        paths.append(tmp_path / f"m{i}.npy")
    expected = getattr(mmkern, name)(acts)
    for sources in (acts, paths):
        got = getattr(mmd, name)(sources, cluster, tile=tile)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, opts", [("pairwise_cka", {"debiased": True}), ("pairwise_cca", {"statistic": "r2"}),
                                         ("pairwise_svcca", {"keep": 3})])
def test_tiled_options_are_the_in_memory_options(cluster, name, opts):
    import numpy as np

    import mmkern
    from mmkern import distributed as mmd

    rng = np.random.default_rng(8)
    acts = [rng.normal(size=(120, d)) @ rng.normal(size=(d, d)) for d in (5, 7, 6, 4, 8)]
    np.testing.assert_allclose(getattr(mmd, name)(acts, cluster, tile=2, **opts),
                               getattr(mmkern, name)(acts, **opts), rtol=1e-12, atol=1e-12)


def test_each_model_is_factored_once_and_its_factor_released(cluster, tmp_path):
    import numpy as np

    import mmkern
    from mmkern import distributed as mmd

    rng = np.random.default_rng(9)
    acts = [rng.normal(size=(80, 3 + i % 4)) for i in range(9)]
    with distributed.get_task_stream(cluster) as stream:
        got = mmd.pairwise_svcca(acts, cluster, tile=2)
    names = [t["key"].split("-")[0] for t in stream.data]
    assert names.count("_factor") == 9  # not once per block the model is in (5 blocks of 2)
    assert names.count("_block") == 5 * 6 // 2
    np.testing.assert_allclose(got, mmkern.pairwise_svcca(acts), rtol=1e-12, atol=1e-12)
    deadline = time.monotonic() + 10
    while any(k.startswith("_factor") for k in cluster.who_has()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [k for k in cluster.who_has() if k.startswith("_factor")]  # nothing left on the workers


def test_a_bad_model_is_named_by_its_factor_task(cluster):
    import numpy as np

    from mmkern import distributed as mmd

    rng = np.random.default_rng(0)
    acts = [rng.normal(size=(30, 3)) for _ in range(4)]
    acts[2] = acts[2].copy()
    acts[2][5, 1] = np.inf
    with pytest.raises(ValueError, match=r"acts\[2\] contains NaN or infinity"):
        mmd.pairwise_cka(acts, cluster, tile=2)
    acts[2] = np.ones((30, 3))
    with pytest.raises(ValueError, match=r"acts\[2\]"):
        mmd.pairwise_svcca(acts, cluster, tile=2)


@pytest.mark.parametrize("sources, error, message", [
    ("acts.npy", TypeError, "must be a list of arrays or .npy paths"),
    ([], ValueError, "holds no models"),
    (["{tmp}/missing.npy"], ValueError, r"acts\[0\]: .* is not a readable .npy file"),
    ([[1.0, 2.0]], ValueError, r"acts\[0\] must be 2-D"),
])
def test_tiled_bad_sources(cluster, tmp_path, sources, error, message):
    from mmkern import distributed as mmd

    if isinstance(sources, list):
        sources = [s.format(tmp=tmp_path) if isinstance(s, str) else s for s in sources]
    with pytest.raises(error, match=message):
        mmd.pairwise_svcca(sources, cluster)


def test_tiled_checks_options_and_shapes_up_front(cluster):
    import numpy as np

    from mmkern import distributed as mmd

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"acts\[1\] has 9 samples but acts\[0\] has 10"):
        mmd.pairwise_cka([rng.normal(size=(10, 3)), rng.normal(size=(9, 3))], cluster)
    with pytest.raises(ValueError, match=r"acts\[1\] has n_samples=10 <= n_features=12"):
        mmd.pairwise_svcca([rng.normal(size=(10, 3)), rng.normal(size=(10, 12))], cluster)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        mmd.pairwise_cka([rng.normal(size=(10, 3))] * 2, "tcp://localhost:8786")


def test_analysis_on_a_cluster_is_the_serial_analysis(cluster, tmp_path):
    import json
    import shutil

    import numpy as np

    from mmkern.analysis import analyze_zoo

    recipe = {"name": "digits3", "base": {"dataset": "digits", "model": "mlp", "width": 0.25, "epochs": 1,
                                          "dataset_options": {"ood": []}},
              "factors": [{"field": "init_seed", "values": [0, 1, 2]}]}
    here, there = tmp_path / "here", tmp_path / "there"
    train_zoo(recipe, here, progress=False, threads=1)
    shutil.copytree(here, there)
    analyze_zoo(here, alphas=3, n_samples=100, progress=False, align="weights")
    analyze_zoo(there, alphas=3, n_samples=100, progress=False, align="weights", client=cluster)
    a, b = (json.loads((d / "analysis" / "results.json").read_text()) for d in (here, there))
    for ga, gb in zip(a["groups"], b["groups"]):
        for key in ("loss_barrier", "error_barrier"):
            np.testing.assert_allclose(gb["connectivity"][key], ga["connectivity"][key], rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(gb["connectivity"]["aligned"][key], ga["connectivity"]["aligned"][key],
                                       rtol=1e-6, atol=1e-7)
        for layer in ga["representational"]:
            np.testing.assert_allclose(gb["representational"][layer]["svcca"], ga["representational"][layer]["svcca"],
                                       rtol=1e-6, atol=1e-9)


def tiny_recipe_members() -> list:
    from mmkern.train import load_recipe

    return [m.id for m in load_recipe(tiny_recipe()).members]


def _dies_on_init_seed_1(config):
    """A dataset loader that kills its worker process for one member, every time."""
    if config.init_seed == 1:
        os._exit(1)
    return toy_dataset()


def test_a_member_that_always_kills_its_worker_is_reported_failed(tmp_path):
    from mmkern.train import MembersFailed
    from mmkern.train._cluster import cluster_client

    with cluster_client(workers=2) as client, pytest.raises(MembersFailed) as failed:  # its own cluster
        train_zoo(tiny_recipe(), tmp_path, dataset=_dies_on_init_seed_1, progress=False, client=client)
    failures = failed.value.failures
    assert list(failures) == ["init_seed=1"] and "KilledWorker" in failures["init_seed=1"]
    # one member per worker at a time (a worker resource): no other member is blamed for the deaths
    finished = list_members(tmp_path)
    assert set(finished) == set(tiny_recipe_members()) - {"init_seed=1"}
    before = tree_fingerprint(str(tmp_path / "members"))
    train_zoo(tiny_recipe(), tmp_path, dataset=toy_dataset(), progress=False, workers=2)  # retries them
    assert set(list_members(tmp_path)) == set(tiny_recipe_members())
    after = tree_fingerprint(str(tmp_path / "members"))
    assert all(after[p] == v for p, v in before.items() if not os.path.basename(p).startswith("."))


def test_the_serial_path_never_imports_dask(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from _train_helpers import tiny_recipe, toy_dataset; from mmkern.train import train_zoo; "
            f"train_zoo(tiny_recipe(), {str(tmp_path / 'z')!r}, dataset=toy_dataset(), progress=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


INTERRUPTED_RECIPE = """\
name = "interrupted"
design = "one-at-a-time"
[base]
dataset = "mnist1d"
model = "cnn1d"
width = 0.5
lr = 0.05
batch_size = 32
epochs = 40
[base.dataset_options]
num_samples = 1000
ood_severities = [3]
[[factors]]
field = "init_seed"
values = [0, 1, 2, 3, 4, 5]
"""


def _finished(zoo) -> list:
    """Members with a record (list_members needs zoo.json, written after the first member)."""
    return sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(zoo, "members", "*", "record.json")))


def test_ctrl_c_cancels_a_cluster_run_and_a_second_driver_is_refused(tmp_path):
    import subprocess
    import sys

    recipe, zoo = tmp_path / "recipe.toml", tmp_path / "zoo"
    recipe.write_text(INTERRUPTED_RECIPE)
    command = [sys.executable, "-m", "mmkern", "train", str(recipe), "--out", str(zoo), "--workers", "2"]
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # its own process group, as a terminal's job
    deadline = time.monotonic() + 240
    while not _finished(zoo) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert _finished(zoo), "no member finished"
        with pytest.raises(BlockingIOError, match=rf"zoo directory .* is in use by process {driver.pid} on "):
            train_zoo(recipe, zoo, progress=False, workers=1)  # a second driver, while the first trains
        finished = set(_finished(zoo))
        before = tree_fingerprint(str(zoo / "members"))
        interrupted = time.monotonic()
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: the driver and its worker processes
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert time.monotonic() - interrupted < 30
    assert driver.returncode != 0 and "Traceback" not in err, err
    assert "Aborted" in err
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # every worker process goes with the driver
        try:
            os.killpg(driver.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("worker processes outlived the interrupted driver")
    assert set(_finished(zoo)) >= finished and len(_finished(zoo)) < 6
    assert not glob.glob(os.path.join(zoo, "**", ".*.tmp"), recursive=True)
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(_finished(zoo)) == 6
    after = tree_fingerprint(str(zoo / "members"))
    assert all(after[p] == v for p, v in before.items())  # finished members untouched


@pytest.mark.parametrize("entry", ["train_zoo", "collect_outputs", "finetune_zoo", "analyze_zoo", "run_study",
                                   "cluster_client"])
@pytest.mark.parametrize("options, error, message", [
    ({"workers": 0}, ValueError, "workers must be"), ({"workers": 1.5}, TypeError, "workers must be"),
    ({"workers": 2, "client": object()}, ValueError, "give client or workers, not both"),
])
def test_cluster_arguments_are_checked_before_any_work(tmp_path, entry, options, error, message):
    """A cluster of no workers would wait forever: every entry point refuses it up front."""
    from mmkern.analysis import analyze_zoo, collect_outputs
    from mmkern.studies.lubana2023 import run_study
    from mmkern.train import finetune_zoo
    from mmkern.train._cluster import cluster_client

    if entry == "cluster_client":
        if "client" in options:
            pytest.skip("cluster_client uses a given client as it is")
        with pytest.raises(error, match=message):
            with cluster_client(**options):
                pass
        return
    zoo = tmp_path / "zoo"
    if entry != "train_zoo" and entry != "run_study":
        train_zoo(tiny_recipe(factors=[]), zoo, dataset=toy_dataset(), progress=False)
    before = tree_fingerprint(str(tmp_path))
    call = {"train_zoo": lambda: train_zoo(tiny_recipe(), zoo, dataset=toy_dataset(), progress=False, **options),
            "collect_outputs": lambda: collect_outputs(zoo, dataset=toy_dataset(), progress=False, **options),
            "finetune_zoo": lambda: finetune_zoo(zoo, "naive", progress=False, **options),
            "analyze_zoo": lambda: analyze_zoo(zoo, progress=False, **options),
            "run_study": lambda: run_study(tmp_path / "study", quick=True, progress=False, **options)}[entry]
    with pytest.raises(error, match=message):
        call()
    assert tree_fingerprint(str(tmp_path)) == before  # nothing written
