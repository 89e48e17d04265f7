"""train_zoo: layout, records, resume after interruption (in process and by SIGKILL), loading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from mmkern.train import (  # noqa: E402
    Recipe,
    list_members,
    load_member,
    load_model,
    load_record,
    load_zoo,
    member_dir,
    save_model,
    train_model,
    train_zoo,
)
from _train_helpers import (  # noqa: E402
    SHAPE_2D,
    state_equal,
    tiny_recipe,
    toy_dataset,
    tree_fingerprint,
)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
MEMBERS = ["base", "init_seed=1", "order_seed=1", "order_seed=2"]


@pytest.fixture(scope="module")
def data():
    return toy_dataset()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """An uninterrupted run of the tiny recipe."""
    out = tmp_path_factory.mktemp("reference")
    records = train_zoo(tiny_recipe(), out, dataset=data, progress=False)
    return out, records


def test_layout_records_and_zoo_file(reference, data):
    out, records = reference
    assert [r["id"] for r in records] == MEMBERS
    assert list_members(out) == MEMBERS
    zoo = load_zoo(out)
    assert zoo["recipe"] == Recipe.from_dict(tiny_recipe()).to_dict()
    assert [m["id"] for m in zoo["members"]] == MEMBERS
    assert zoo["groups"][1] == {"name": "order_seed", "factor": "order_seed",
                                "members": ["base", "order_seed=1", "order_seed=2"],
                                "fixed": {}}
    for record in records:
        directory = member_dir(out, record["id"])
        assert sorted(os.listdir(directory)) == ["model.safetensors", "record.json"]
        assert load_record(out, record["id"]) == json.loads(json.dumps(record))
    record = load_record(out, "order_seed=2")
    assert record["varies"] == {"order_seed": 2} and record["factors"] == ["order_seed"]
    assert record["zoo"] == "toy-zoo" and record["config"]["order_seed"] == 2
    assert record["seeds"]["order_seed"] == 2
    assert set(record["metrics"]) == {"train", "test", "ood"}
    assert "noisy" in record["metrics"]["ood"] and record["mmkern_version"]
    assert load_record(out, "base")["factors"] == ["init_seed", "order_seed"]


def test_members_equal_individually_trained_models(reference, data):
    out, _ = reference
    recipe = Recipe.from_dict(tiny_recipe())
    for member_id in ("base", "order_seed=2"):
        model, record = load_member(out, member_id)
        direct, _ = train_model(recipe.member(member_id).config, data)
        assert state_equal(model, direct)
        assert not model.training


def test_rerun_skips_finished_members_and_touches_nothing(reference, data):
    out, records = reference
    before = tree_fingerprint(out)
    events = []
    again = train_zoo(tiny_recipe(), out, dataset=lambda config: pytest.fail("loaded data"),
                      progress=False, callback=events.append)
    assert tree_fingerprint(out) == before
    assert [e["event"] for e in events] == ["skipped"] * 4
    assert [r["checkpoint"] for r in again] == [r["checkpoint"] for r in records]


def test_interrupted_zoo_resumes_to_the_same_result(reference, data, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "zoo"

    def interrupt(event):
        if event["event"] == "epoch" and event["member"] == "init_seed=1":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_zoo(tiny_recipe(), out, dataset=data, progress=False, callback=interrupt)
    assert list_members(out) == ["base"]
    assert list_members(out, finished=False) == MEMBERS
    assert os.listdir(member_dir(out, "init_seed=1")) == []  # nothing half-written
    with pytest.raises(ValueError, match="'init_seed=1' of zoo .* is not finished"):
        load_member(out, "init_seed=1")
    # leftovers of a member killed while saving: a stray temporary and a checkpoint, no record
    stray = os.path.join(member_dir(out, "init_seed=1"), ".model.safetensors.abc.tmp")
    open(stray, "wb").close()
    save_model(os.path.join(member_dir(out, "init_seed=1"), "model.safetensors"),
               load_member(out, "base")[0])
    finished = tree_fingerprint(member_dir(out, "base"))

    events = []
    train_zoo(tiny_recipe(), out, dataset=data, progress=False, callback=events.append)
    assert tree_fingerprint(member_dir(out, "base")) == finished
    assert [e["member"] for e in events if e["event"] != "epoch"] == MEMBERS
    assert [e["event"] for e in events if e["event"] != "epoch"] == ["skipped"] + ["finished"] * 3
    assert not os.path.exists(stray)
    for member_id in MEMBERS:
        assert state_equal(load_member(out, member_id)[0], load_member(ref_out, member_id)[0])


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from _train_helpers import tiny_recipe, toy_dataset
    from mmkern.train import train_zoo

    def report(event):
        print(event["event"], event["member"], flush=True)
        if event["event"] == "epoch":
            time.sleep(0.2)  # leave the parent time to kill us mid-member

    train_zoo(tiny_recipe(), sys.argv[1], dataset=toy_dataset(), progress=False,
              callback=report)
    print("done", flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_zoo_resumes(reference, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "zoo"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    # cwd outside the checkout: `python -c` puts the working directory on sys.path, where the
    # unbuilt source tree would shadow the installed package.
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if line.strip() == "epoch init_seed=1":  # base finished, second member running
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, (lines, child.stderr.read())
    assert "finished base" in lines and "done" not in lines
    assert list_members(out) == ["base"]
    finished = tree_fingerprint(member_dir(out, "base"))

    train_zoo(tiny_recipe(), out, dataset=toy_dataset(), progress=False)
    assert list_members(out) == MEMBERS
    assert tree_fingerprint(member_dir(out, "base")) == finished
    for member_id in MEMBERS:
        assert state_equal(load_member(out, member_id)[0], load_member(ref_out, member_id)[0])


def test_recipe_changes(reference, data, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "zoo"
    small = tiny_recipe(factors=[{"field": "init_seed", "values": [0, 1]}])
    train_zoo(small, out, dataset=data, progress=False)
    before = tree_fingerprint(os.path.join(out, "members"))
    trained = []
    train_zoo(tiny_recipe(), out, dataset=data, progress=False,
              callback=lambda e: e["event"] == "finished" and trained.append(e["member"]))
    assert trained == ["order_seed=1", "order_seed=2"]  # only the new members
    after = tree_fingerprint(os.path.join(out, "members"))
    assert {k: v for k, v in after.items() if k in before} == before
    assert list_members(out) == MEMBERS
    changed = tiny_recipe()
    changed["base"] = {**changed["base"], "lr": 0.01}
    with pytest.raises(ValueError, match="'base' is already finished .* with a different config"):
        train_zoo(changed, out, dataset=data, progress=False)
    with pytest.raises(ValueError, match="holds the zoo 'toy-zoo', not 'other'"):
        train_zoo(tiny_recipe(name="other"), out, dataset=data, progress=False)


def test_load_errors(reference, tmp_path):
    out, _ = reference
    with pytest.raises(ValueError, match="has no member 'lr=1'; members: base, init_seed=1"):
        load_member(out, "lr=1")
    with pytest.raises(FileNotFoundError, match="not a zoo directory: no zoo.json"):
        list_members(tmp_path)
    (tmp_path / "zoo.json").write_text("{not json")
    with pytest.raises(ValueError, match="zoo.json: invalid JSON"):
        load_zoo(tmp_path)
    bad_out = tmp_path / "copy"
    train_zoo(tiny_recipe(factors=[]), bad_out, dataset=toy_dataset(), progress=False)
    with open(os.path.join(member_dir(bad_out, "base"), "model.safetensors"), "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\0\0\1")
    with pytest.raises(ValueError, match="does not match the SHA-256 in its record"):
        load_member(bad_out, "base")
    with pytest.raises(ValueError, match="member 'base': unknown dataset 'toy'; valid datasets: "
                                         "mnist1d, digits"):
        train_zoo(tiny_recipe(), tmp_path / "new", progress=False)
    assert not os.path.exists(tmp_path / "new")
    with pytest.raises(ValueError, match="is not a directory"):
        train_zoo(tiny_recipe(), tmp_path / "zoo.json", dataset=toy_dataset(), progress=False)


@pytest.mark.parametrize("name,shape", [("mlp", SHAPE_2D), ("vgg", SHAPE_2D),
                                        ("resnet18", SHAPE_2D), ("cnn1d", (1, 12))])
def test_safetensors_round_trip(tmp_path, name, shape):
    images = toy_dataset(shape, n_train=32, n_test=8)
    model, _ = train_model({"dataset": "toy", "model": name, "width": 0.125, "epochs": 1,
                            "batch_size": 16}, images)
    path = tmp_path / "model.safetensors"
    save_model(path, model)
    save_model(tmp_path / "again.safetensors", load_model(path))
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()  # reproducible
    state = torch.get_rng_state()
    loaded = load_model(path)
    assert torch.equal(torch.get_rng_state(), state)
    assert state_equal(model, loaded) and type(loaded) is type(model)
    assert loaded.spec == model.spec and not loaded.training
    x = torch.from_numpy(images.test.x)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not an mmkern model checkpoint"):
        load_model(foreign)
    with pytest.raises(TypeError, match="built by mmkern.train.build_model"):
        save_model(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))


def test_bundled_tiny_recipe_trains_on_real_data(tmp_path):
    records = train_zoo("tiny", tmp_path, progress=True, threads=1)
    assert [r["id"] for r in records] == ["base", "init_seed=1", "order_seed=1"]
    for record in records:
        assert record["dataset"]["name"] == "mnist1d" and record["dataset"]["source"] == \
            "load_dataset"
        assert record["metrics"]["test"]["accuracy"] > 0.2  # chance is 0.1
        assert set(record["metrics"]["ood"]) == {"noise-3", "shear-3", "translation-3",
                                                 "scale-3"}
