"""Hostile files: tampered CIFAR pickles, IDX headers that lie, SVHN files of the wrong kind, and
zoo files (records, zoo.json, outputs, recipes) of the wrong shape. Each case asserts the exact
outcome: the value read, or the exception type and the file its message names.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from _datafiles import cifar_batch, idx_bytes, python2_pickle_bytes, write_bytes

import mmkern
from mmkern.data.local import read_cifar_batch, read_idx

# ---------------------------------------------------------------------------------------------
# CIFAR: the restricted unpickler
# ---------------------------------------------------------------------------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _evil(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


#: Hand-written pickles (protocol 2 opcodes). None may run code, allocate memory the file does not
#: hold, or yield anything but a refusal naming the file.
EVIL = {
    "os.system": _evil(_global("os", "system") + b"X\x04\x00\x00\x00echo\x85R"),
    "builtins.eval": _evil(_global("builtins", "eval") + b"X\x01\x00\x00\x001\x85R"),
    "subprocess.Popen": _evil(_global("subprocess", "Popen") + b"X\x04\x00\x00\x00true\x85R"),
    "numpy.ndarray(shape)": _evil(  # 61 MB of uninitialised memory from 40 bytes, before the fix
        _global("numpy", "ndarray") + b"J\x00\x00\x00\x04\x85" + _global("numpy", "dtype")
        + b"X\x02\x00\x00\x00u1\x85R\x86R"),
    "numpy.ones": _evil(_global("numpy", "ones") + b"J\x00\x00\x00\x04\x85R"),
    "numpy.frombuffer": _evil(_global("numpy", "frombuffer") + b"C\x04abcd\x85R"),
    "_reconstruct of another type": _evil(
        _global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "matrix")
        + b"K\x00\x85C\x01b\x87R"),
    "_reconstruct of a shape": _evil(
        _global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
        + b"J\x00\x00\x00\x04\x85C\x01b\x87R"),
    "object dtype": _evil(_global("numpy", "dtype") + b"X\x02\x00\x00\x00O8\x85R"),
    "float dtype": _evil(_global("numpy", "dtype") + b"X\x02\x00\x00\x00f8\x85R"),
    "void dtype": _evil(_global("numpy", "dtype") + b"X\x04\x00\x00\x00V100\x85R"),
    "dtype of a list": _evil(_global("numpy", "dtype") + b"]\x85R"),
    "_frombuffer too short": _evil(
        _global("numpy._core.numeric", "_frombuffer") + b"C\x03abc" + _global("numpy", "dtype")
        + b"X\x02\x00\x00\x00u1\x85R" + b"J\x00\x00\x00\x04\x85X\x01\x00\x00\x00C\x94tR"),
    "scalar of wrong size": _evil(
        _global("numpy.core.multiarray", "scalar") + _global("numpy", "dtype")
        + b"X\x02\x00\x00\x00i8\x85RC\x03abc\x86R"),
    "not a pickle": b"this is not a pickle at all",
    "empty": b"",
    "truncated": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, 2)[:60],
    "a list": pickle.dumps([1, 2, 3], 2),
    "an int": pickle.dumps(7, 2),
}


@pytest.mark.parametrize("name", EVIL)
def test_tampered_cifar_batches_are_refused(tmp_path, name):
    path = tmp_path / "data_batch_1"
    path.write_bytes(EVIL[name])
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^'{path}'"):
        read_cifar_batch(path)
    assert time.perf_counter() - started < 1.0


BATCH_FIELDS = {
    "no data": (lambda b: b.pop(b"data"), "needs keys 'data' and 'labels'"),
    "no labels": (lambda b: b.pop(b"labels"), "needs keys 'data' and 'labels'"),
    "data 2-D of 3071": (lambda b: b.update({b"data": np.zeros((4, 3071), np.uint8)}), r"'data' must be a uint8 array \(n, 3072\)"),
    "data int64": (lambda b: b.update({b"data": np.zeros((4, 3072), np.int64)}), r"'data' must be a uint8 array"),
    "data a list": (lambda b: b.update({b"data": [0] * 3072}), r"'data' must be a uint8 array \(n, 3072\), got list"),
    "label 10": (lambda b: b.update({b"labels": [0, 1, 2, 10]}), "'labels' holds the label 10, outside 0..9"),
    "label -1": (lambda b: b.update({b"labels": [0, 1, -1, 2]}), "'labels' holds the label -1, outside 0..9"),
    "label 248": (lambda b: b.update({b"labels": [248, 1, 2, 3]}), "'labels' holds the label 248"),
    "three labels": (lambda b: b.update({b"labels": [0, 1, 2]}), "must hold 4 integer labels"),
    "float labels": (lambda b: b.update({b"labels": [0.5, 1.0, 2.0, 3.0]}), "must hold 4 integer labels"),
    "string labels": (lambda b: b.update({b"labels": [b"a", b"b", b"c", b"d"]}), "must hold 4 integer labels"),
    "nested labels": (lambda b: b.update({b"labels": [[0], [1], [2], [3]]}), "must hold 4 integer labels"),
}


@pytest.mark.parametrize("protocol", [2, 5, "py2"])
@pytest.mark.parametrize("name", BATCH_FIELDS)
def test_cifar_batches_of_the_wrong_shape_are_refused(tmp_path, name, protocol):
    batch, _, _ = cifar_batch(np.random.default_rng(0), 4, {"labels": 10})
    change, message = BATCH_FIELDS[name]
    change(batch)
    path = tmp_path / "data_batch_1"
    path.write_bytes(python2_pickle_bytes(batch) if protocol == "py2" else pickle.dumps(batch, protocol))
    with pytest.raises(ValueError, match=rf"^'{path}'.*{message}"):
        read_cifar_batch(path)


@pytest.mark.parametrize("key, classes", [("labels", 10), ("fine_labels", 100), ("coarse_labels", 20)])
def test_cifar_labels_are_checked_against_their_key(tmp_path, key, classes):
    batch, data, labels = cifar_batch(np.random.default_rng(1), 5, {key: classes})
    path = write_bytes(tmp_path / "b", python2_pickle_bytes(batch))
    images, read = read_cifar_batch(path, key)
    np.testing.assert_array_equal(read, labels[key])
    np.testing.assert_array_equal(images.reshape(5, 3072), data)
    batch[key.encode()][0] = classes
    write_bytes(path, python2_pickle_bytes(batch))
    with pytest.raises(ValueError, match=rf"holds the label {classes}, outside 0..{classes - 1}"):
        read_cifar_batch(path, key)


def test_cifar_label_key_is_one_of_the_known(tmp_path):
    path = write_bytes(tmp_path / "b", python2_pickle_bytes(cifar_batch(np.random.default_rng(1), 2,
                                                                       {"labels": 10})[0]))
    with pytest.raises(ValueError, match="^label_key must be one of"):
        read_cifar_batch(path, "label")


# ---------------------------------------------------------------------------------------------
# IDX: headers that lie
# ---------------------------------------------------------------------------------------------


def _header(code: int, dims) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


IDX_CASES = {
    "claims 200 MiB in a 200 KiB gzip": (
        lambda: gzip.compress(_header(0x08, [200, 1024, 1024]) + bytes(200 * 1024)),
        "describe 209715200 bytes, more than a"),
    "dimensions overflow 64 bits": (lambda: _header(0x0E, [2**32 - 1] * 5), "truncated IDX data"),
    "dimensions overflow 64 bits gzip": (lambda: gzip.compress(_header(0x0E, [2**32 - 1] * 5)),
                                         "more than a .*-byte gzip file can hold"),
    "empty": (lambda: b"", r"not an IDX file \(only 0 bytes"),
    "three bytes": (lambda: b"\x00\x00\x08", r"not an IDX file \(only 3 bytes"),
    "bad magic": (lambda: b"\x01\x00\x08\x01" + bytes(8), "bad IDX magic number 0x01000801"),
    "bad type code": (lambda: b"\x00\x00\x07\x01" + bytes(8), "bad IDX magic number"),
    "zero dimensions": (lambda: b"\x00\x00\x08\x00", "header for 0 dimensions"),
    "header cut": (lambda: _header(0x08, [10, 28, 28])[:9], "header for 3 dimensions is truncated"),
    "data cut": (lambda: idx_bytes(np.zeros((5, 4, 4), np.uint8))[:-3], "truncated IDX data: dimensions"),
    "data cut gzip": (lambda: gzip.compress(idx_bytes(np.zeros((5, 4, 4), np.uint8))[:-3]),
                      r"truncated IDX data: dimensions \(5, 4, 4\) need 80 bytes, found 77"),
    "trailing bytes": (lambda: idx_bytes(np.zeros((5, 4), np.uint8)) + b"xyz", "has 3 bytes beyond the 20"),
    "trailing bytes gzip": (lambda: gzip.compress(idx_bytes(np.zeros((5, 4), np.uint8)) + b"xyz"),
                            "has 3 bytes beyond the 20"),
    "corrupt gzip": (lambda: gzip.compress(idx_bytes(np.zeros((50, 4), np.uint8)))[:-8] + b"garbage!",
                     "corrupt gzip data"),
    "gzip of garbage": (lambda: b"\x1f\x8b" + bytes(30), "corrupt gzip data"),
}


@pytest.mark.parametrize("name", IDX_CASES)
def test_lying_idx_files_are_refused_without_reading_what_they_claim(tmp_path, name):
    make, message = IDX_CASES[name]
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(make())
    started = time.perf_counter()
    with pytest.raises(ValueError, match=rf"^'{path}': .*{message}"):
        read_idx(path)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_every_idx_type_round_trips(tmp_path, dtype, gz):
    array = (np.arange(60) % 7).astype(dtype).reshape(3, 4, 5)
    path = write_bytes(tmp_path / "x-idx", idx_bytes(array), gz=gz)
    got = read_idx(path)
    np.testing.assert_array_equal(got, array)
    assert got.dtype.isnative


# ---------------------------------------------------------------------------------------------
# SVHN .mat files of the wrong kind
# ---------------------------------------------------------------------------------------------

SVHN_CASES = {
    "complex y": (lambda n: {"y": (np.arange(n) % 10 + 1).reshape(n, 1) + 1j}, "'y' must be a real numeric"),
    "cell y": (lambda n: {"y": np.array([[i % 10 + 1] for i in range(n)], dtype=object)},
               "'y' must be a real numeric"),
    "char y": (lambda n: {"y": np.array(["1"] * n)}, "'y' must be a real numeric"),
    "y of n - 1": (lambda n: {"y": np.ones((n - 1, 1))}, "'y' must hold"),
    "y of 0": (lambda n: {"y": np.zeros((n, 1))}, r"labels must be 1\.\.10"),
    "y of 11": (lambda n: {"y": np.full((n, 1), 11.0)}, r"labels must be 1\.\.10"),
    "y of 1.5": (lambda n: {"y": np.full((n, 1), 1.5)}, r"labels must be 1\.\.10"),
    "float X": (lambda n: {"X": np.zeros((32, 32, 3, n))}, r"'X' must be uint8 \(32, 32, 3, n\)"),
    "X of 28 x 28": (lambda n: {"X": np.zeros((28, 28, 3, n), np.uint8)}, r"'X' must be uint8 \(32, 32, 3, n\)"),
    "no X": (lambda n: {"X": None}, "needs variables 'X' and 'y'"),
}


@pytest.mark.parametrize("name", SVHN_CASES)
def test_svhn_files_of_the_wrong_kind_are_refused(tmp_path, name):
    from scipy.io import savemat

    from mmkern.data import load_svhn

    n = 6
    variables = {"X": np.zeros((32, 32, 3, n), np.uint8), "y": (np.arange(n) % 10 + 1.0).reshape(n, 1)}
    variables.update(SVHN_CASES[name][0](n))
    variables = {k: v for k, v in variables.items() if v is not None}
    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", variables if split == "train" else
                {"X": np.zeros((32, 32, 3, n), np.uint8), "y": np.ones((n, 1))})
    with pytest.raises(ValueError, match=rf"^svhn: '{tmp_path / 'train_32x32.mat'}'.*{SVHN_CASES[name][1]}"):
        load_svhn(tmp_path, ood=None)


def test_svhn_file_that_is_not_a_mat_file(tmp_path):
    from mmkern.data import load_svhn

    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    (tmp_path / "test_32x32.mat").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^svhn: '.*train_32x32.mat' is not a readable MATLAB v5 file"):
        load_svhn(tmp_path, ood=None)


# ---------------------------------------------------------------------------------------------
# zoo files of the wrong shape: each read names the file
# ---------------------------------------------------------------------------------------------

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from _train_helpers import tiny_recipe, toy_dataset

    from mmkern.train import train_zoo

    out = tmp_path_factory.mktemp("zoo")
    train_zoo(tiny_recipe(), out, dataset=toy_dataset(), progress=False, threads=1)
    return out


@pytest.fixture
def copy(zoo, tmp_path):
    import shutil

    target = tmp_path / "zoo"
    shutil.copytree(zoo, target)
    return target


RECORDS = {
    "a list": ("[1, 2]", "expected a JSON object, got list"),
    "a string": ('"record"', "expected a JSON object, got str"),
    "null": ("null", "expected a JSON object, got NoneType"),
    "checkpoint null": (None, "not a member record"),
    "checkpoint without sha256": ({"file": "model.safetensors"}, "not a member record"),
    "checkpoint sha256 a number": ({"sha256": 5}, "not a member record"),
    "invalid JSON": ("{", "invalid JSON"),
    "bad UTF-8": (b"\xff\xfe{}", "invalid JSON"),
    "deeply nested": ("[" * 100000 + "]" * 100000, "invalid JSON"),
    "NaN literal": ('{"checkpoint": NaN}', "not a member record"),
}


@pytest.mark.parametrize("case", RECORDS)
def test_damaged_records_are_named(copy, case):
    from mmkern.train import load_member, load_record

    content, message = RECORDS[case]
    path = copy / "members" / "base" / "record.json"
    if content is None or isinstance(content, dict):
        record = json.loads(path.read_text())
        record["checkpoint"] = content
        path.write_text(json.dumps(record))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    for read in (lambda: load_record(copy, "base"), lambda: load_member(copy, "base")):
        with pytest.raises(ValueError, match=rf"^{path}: .*{message}"):
            read()


ZOO_FILES = {
    "no members": (lambda z: z.pop("members"), "'members' is missing or not a JSON array"),
    "members a dict": (lambda z: z.update(members={}), "'members' is missing or not a JSON array"),
    "member without id": (lambda z: z["members"][1].pop("id"), r"members\[1\] is not a member"),
    "member id a number": (lambda z: z["members"][0].update(id=3), r"members\[0\] is not a member"),
    "member config a list": (lambda z: z["members"][2].update(config=[]), r"members\[2\] is not a member"),
    "no recipe": (lambda z: z.pop("recipe"), "'recipe' is missing or not a JSON object"),
    "groups null": (lambda z: z.update(groups=None), "'groups' is missing or not a JSON array"),
    "other format": (lambda z: z.update(format="mmkern-zoo/0"), "not an mmkern zoo file"),
    "a list": (lambda z: z.clear() or None, None),
}


@pytest.mark.parametrize("case", ZOO_FILES)
def test_damaged_zoo_files_are_named(copy, case):
    from mmkern.train import list_members, load_zoo

    path = copy / "zoo.json"
    zoo = json.loads(path.read_text())
    change, message = ZOO_FILES[case]
    change(zoo)
    path.write_text(json.dumps(zoo if case != "a list" else [zoo]))
    message = message or "expected a JSON object, got list"
    for read in (lambda: load_zoo(copy), lambda: list_members(copy)):
        with pytest.raises(ValueError, match=rf"^{path}: .*{message}"):
            read()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "deleted", "emptied"])
def test_damaged_checkpoints_are_retrained_on_resume(copy, damage):
    from _train_helpers import tiny_recipe, toy_dataset

    from mmkern.train import load_member, train_zoo

    path = copy / "members" / "init_seed=1" / "model.safetensors"
    original = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(original[:-100])
    elif damage == "flipped":
        path.write_bytes(original[:500] + bytes([original[500] ^ 1]) + original[501:])
    elif damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"^member 'init_seed=1': .*model.safetensors (does not match the "
                                         r"SHA-256|is missing)"):
        load_member(copy, "init_seed=1")
    with pytest.warns(RuntimeWarning, match=r"^member 'init_seed=1': .*; retraining it"):
        train_zoo(tiny_recipe(), copy, dataset=toy_dataset(), progress=False, threads=1)
    assert path.read_bytes() == original  # the same training, the same bytes
    load_member(copy, "init_seed=1")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 broken", b"\x93NUMPY not an npz"])
def test_damaged_outputs_are_recomputed(copy, content):
    from _train_helpers import toy_dataset

    from mmkern.analysis import collect_outputs
    from mmkern.analysis.outputs import load_outputs

    collect_outputs(copy, n_samples=30, dataset=toy_dataset(), progress=False)
    path = copy / "members" / "base" / "activations.npz"
    good = path.read_bytes()
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{path}: not a readable .npz activation file"):
        load_outputs(copy, ["base", "init_seed=1"])
    assert collect_outputs(copy, n_samples=30, dataset=toy_dataset(), progress=False) == ["base"]
    assert path.read_bytes() == good


@pytest.mark.parametrize("problem", ["nan", "layers", "samples"])
def test_inconsistent_outputs_name_member_and_file(copy, problem):
    from _train_helpers import toy_dataset

    from mmkern.analysis import collect_outputs
    from mmkern.analysis.outputs import load_outputs
    from mmkern.train.activations import load_activations, save_activations

    collect_outputs(copy, n_samples=30, dataset=toy_dataset(), progress=False)
    path = copy / "members" / "init_seed=1" / "activations.npz"
    acts = load_activations(path)
    layer = list(acts)[0]
    if problem == "nan":
        acts[layer][3, 0] = np.nan
        message = rf"layer '{layer}' contains NaN or infinity \(1 entries\)"
    elif problem == "layers":
        acts.pop(layer)
        message = "holds the layers"
    else:
        acts[layer] = acts[layer][:20]
        message = rf"layer '{layer}' has shape \(20, "
    save_activations(path, acts)
    with pytest.raises(ValueError, match=rf"^member 'init_seed=1': {path}:? {message}"):
        load_outputs(copy, ["base", "init_seed=1"])


def test_outputs_of_members_of_different_widths_load(copy):
    """A width factor gives layers of different widths: they load (SVCCA compares them); the
    number of samples must still agree."""
    from _train_helpers import toy_dataset

    from mmkern.analysis import collect_outputs
    from mmkern.analysis.outputs import load_outputs
    from mmkern.train.activations import load_activations, save_activations

    collect_outputs(copy, n_samples=30, dataset=toy_dataset(), progress=False)
    path = copy / "members" / "init_seed=1" / "activations.npz"
    acts = load_activations(path)
    layer = list(acts)[0]
    acts[layer] = np.concatenate([acts[layer], acts[layer][:, :1] * 2], axis=1)
    save_activations(path, acts)
    loaded, _ = load_outputs(copy, ["base", "init_seed=1"])
    assert loaded[layer][1].shape[1] == loaded[layer][0].shape[1] + 1
    assert mmkern.pairwise_svcca(loaded[layer]).shape == (2, 2)


def test_outputs_marker_of_the_wrong_shape_is_recomputed(copy):
    from _train_helpers import toy_dataset

    from mmkern.analysis import collect_outputs

    collect_outputs(copy, n_samples=30, dataset=toy_dataset(), progress=False)
    (copy / "members" / "base" / "outputs.json").write_text("[1, 2, 3]")
    assert collect_outputs(copy, n_samples=30, dataset=toy_dataset(), progress=False) == ["base"]


# ---------------------------------------------------------------------------------------------
# recipes: every member checked before the first trains; nothing written for a bad recipe
# ---------------------------------------------------------------------------------------------

RECIPES = {
    "factor value out of range": ('[[factors]]\nfield = "dataset_options.spurious"\nvalues = [0.5, 5.0]\n',
                                  ValueError, r"member 'dataset_options.spurious=5.0': dataset 'digits'.*"
                                              r"p must be in \(0, 1\]"),
    "unknown dataset option": ('[[factors]]\nfield = "dataset_options.sizes"\nvalues = [1, 2]\n', TypeError,
                               r"member 'dataset_options.sizes=1': dataset 'digits'.*takes no option"),
    "unknown model option": ('[[factors]]\nfield = "model_options.depth"\nvalues = [2, 0]\n', ValueError,
                             r"member 'model_options.depth=0': model 'mlp'.*depth must be >= 1"),
    "absurd width": ('[[factors]]\nfield = "width"\nvalues = [1.0, 1e7]\n', ValueError,
                     r"member 'width=10000000.0': model 'mlp' with width=10000000.0 cannot be built"),
    "too many parameters": ('[[factors]]\nfield = "width"\nvalues = [1.0, 300.0]\n', ValueError,
                            r"member 'width=300.0': .* has 5.9e\+09 parameters, more than MAX_PARAMETERS"),
    "lr beyond float32": ('[[factors]]\nfield = "lr"\nvalues = [0.1, 1e300]\n', ValueError,
                          r"TrainConfig.lr must be in"),
    "nested arrays": ("x = " + "[" * 3000 + "]" * 3000 + "\n", ValueError,
                      "invalid TOML: arrays or tables nested too deeply"),
    "invalid TOML": ("[[factors\n", ValueError, "invalid TOML"),
}


@pytest.mark.parametrize("case", RECIPES)
def test_bad_recipes_fail_before_anything_is_written(tmp_path, case):
    from mmkern.train import train_zoo

    body, error, message = RECIPES[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n[base]\ndataset = "digits"\nmodel = "mlp"\nepochs = 1\n'
                      "[base.dataset_options]\nood = []\n" + body)
    out = tmp_path / "zoo"
    with pytest.raises(error, match=message):
        train_zoo(recipe, out, progress=False)
    assert not os.path.exists(out)


def test_bad_member_of_a_resumed_zoo_fails_before_training(copy):
    """In an existing zoo, a new member with a bad option fails before any other new member."""
    from _train_helpers import tiny_recipe, toy_dataset

    from mmkern.train import train_zoo

    recipe = tiny_recipe(factors=[{"field": "init_seed", "values": [0, 1, 5]},
                                  {"field": "order_seed", "values": [0, 1, 2]},
                                  {"field": "width", "values": [1e7]}])
    before = sorted(p.name for p in (copy / "members").iterdir())
    with pytest.raises(ValueError, match=r"^member 'width=10000000.0': model 'cnn1d' with width=10000000.0 has 1.43e\+18 "):
        train_zoo(recipe, copy, dataset=toy_dataset(), progress=False)
    assert sorted(p.name for p in (copy / "members").iterdir()) == before
    assert not Path(copy / "members" / "init_seed=5").exists()


CHECKPOINT_HEADERS = {
    "spec a list": ({"format": "mmkern-model/1", "spec": [1]}, "architecture spec is not a table"),
    "spec without name": ({"format": "mmkern-model/1", "spec": {"input_shape": [1, 12], "options": {}}},
                          "architecture spec is not a table"),
    "unknown architecture": ({"format": "mmkern-model/1", "spec": {"name": "transformer", "input_shape": [1, 12],
                                                                 "num_classes": 3, "options": {}}},
                             "architecture spec does not build"),
    "bad option": ({"format": "mmkern-model/1", "spec": {"name": "mlp", "input_shape": [1, 12],
                                                       "num_classes": 3, "options": {"width": -1}}},
                   "architecture spec does not build"),
    "other format": ({"format": "mmkern-model/9", "spec": {}}, "not an mmkern model checkpoint"),
    "header a list": ([1, 2], "not an mmkern model checkpoint"),
}


@pytest.mark.parametrize("case", CHECKPOINT_HEADERS)
def test_checkpoints_with_a_damaged_header_are_named(tmp_path, case):
    import torch
    from safetensors.torch import save_file

    from mmkern.train import load_model

    header, message = CHECKPOINT_HEADERS[case]
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"mmkern": json.dumps(header)})
    with pytest.raises(ValueError, match=rf"^{path}: .*{message}"):
        load_model(path)
