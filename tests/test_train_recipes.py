"""Zoo recipes: designs, member ids and groups, errors naming the file and key, bundled recipes."""

from __future__ import annotations

import pytest

from mmkern.train import (
    Recipe,
    TrainConfig,
    bundled_recipe_path,
    list_recipes,
    load_recipe,
    member_dirname,
)


def write(tmp_path, text: str, name: str = "r.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


ONE_AT_A_TIME = """
name = "demo-like"
description = "two factors"
[base]
dataset = "mnist1d"
model = "mlp"
epochs = 3
init_seed = 0
[base.dataset_options]
num_samples = 1000
[[factors]]
field = "init_seed"
values = [0, 1, 2]
[[factors]]
field = "lr"
values = [0.01, 0.05]
"""


def test_one_at_a_time_members_and_groups(tmp_path):
    recipe = load_recipe(write(tmp_path, ONE_AT_A_TIME))
    ids = [m.id for m in recipe.members]
    # lr=0.05 is the base lr: that member is the base, shared by both groups
    assert ids == ["base", "init_seed=1", "init_seed=2", "lr=0.01"]
    base = recipe.member("base")
    assert base.config == recipe.base and base.varies == {}
    assert base.factors == ("init_seed", "lr")
    assert recipe.member("lr=0.01").config == recipe.base.replace(lr=0.01)
    assert recipe.member("lr=0.01").varies == {"lr": 0.01}
    assert recipe.member("init_seed=2").factors == ("init_seed",)
    groups = {g.name: g for g in recipe.groups()}
    assert groups["init_seed"].members == ("base", "init_seed=1", "init_seed=2")
    assert groups["lr"].members == ("lr=0.01", "base")
    assert recipe.base.dataset_options == {"num_samples": 1000}
    assert recipe.source.endswith("r.toml") and recipe.description == "two factors"


def test_grid_members_and_groups():
    recipe = Recipe.from_dict({
        "name": "g", "design": "grid", "base": {"model": "mlp"},
        "factors": [{"field": "init_seed", "values": [0, 1]},
                    {"field": "dataset_options.spurious", "values": [0.5, 1.0]}],
    })
    assert [m.id for m in recipe.members] == [
        "init_seed=0,dataset_options.spurious=0.5", "init_seed=0,dataset_options.spurious=1.0",
        "init_seed=1,dataset_options.spurious=0.5", "init_seed=1,dataset_options.spurious=1.0"]
    member = recipe.members[3]
    assert member.config.init_seed == 1 and member.config.dataset_options == {"spurious": 1.0}
    assert member.varies == {"init_seed": 1, "dataset_options.spurious": 1.0}
    assert member.factors == ("init_seed", "dataset_options.spurious")
    groups = recipe.groups()
    assert len(groups) == 4  # 2 factors x 2 values of the other factor
    first = groups[0]
    assert first.factor == "init_seed"
    assert first.fixed == {"dataset_options.spurious": "dataset_options.spurious=0.5"}
    assert first.members == ("init_seed=0,dataset_options.spurious=0.5",
                             "init_seed=1,dataset_options.spurious=0.5")
    assert first.name == "init_seed | dataset_options.spurious=0.5"


def test_table_factor_with_labels_sets_several_fields():
    recipe = Recipe.from_dict({
        "name": "opt", "base": {"lr": 0.1},
        "factors": [{"name": "optimizer",
                     "values": [{"optimizer": "sgd", "lr": 0.1},
                                {"optimizer": "adam", "lr": 0.003}],
                     "labels": ["sgd", "adam"]}],
    })
    assert [m.id for m in recipe.members] == ["base", "optimizer=adam"]
    adam = recipe.member("optimizer=adam")
    assert adam.config.optimizer == "adam" and adam.config.lr == 0.003
    assert adam.varies == {"optimizer": "adam", "lr": 0.003}
    without_labels = Recipe.from_dict({
        "name": "opt", "factors": [{"name": "opt", "values": [{"optimizer": "adam",
                                                                  "lr": 0.003}]}]})
    assert [m.id for m in without_labels.members] == ["optimizer=adam,lr=0.003"]


def test_no_factors_is_one_base_member_and_round_trip():
    recipe = Recipe.from_dict({"name": "single"})
    assert [m.id for m in recipe.members] == ["base"] and recipe.groups() == []
    full = load_recipe("demo")
    again = Recipe.from_dict(full.to_dict())
    assert again == full
    assert [m.config for m in again.members] == [m.config for m in full.members]


def test_member_dirnames_are_file_system_safe():
    assert member_dirname("augmentation=shift:2+noise") == "augmentation=shift_2+noise"
    assert member_dirname("model_options.x=a/b") == "model_options.x=a_b"
    assert member_dirname(".hidden") == "_.hidden"
    recipe = Recipe.from_dict({"name": "aug", "factors": [
        {"field": "augmentation", "values": ["none", "shift:2", "noise:0.5"]}]})
    assert [m.dirname for m in recipe.members] == ["base", "augmentation=shift_2",
                                                   "augmentation=noise_0.5"]


@pytest.mark.parametrize("text,match", [
    ("name = 'x'\nbogus = 1\n", r"unknown key 'bogus'; valid keys: name, description"),
    ("description = 'no name'\n", r"'name' must be a string"),
    ("name = 'a b'\n", r"'name' must be a string"),
    ("name = 'x'\ndesign = 'random'\n", r"'design' must be one of 'one-at-a-time', 'grid'"),
    ("name = 'x'\n[base]\nlrr = 0.1\n", r"\[base\]: unknown TrainConfig key 'lrr' \(did you "
                                        r"mean 'lr'\?\)"),
    ("name = 'x'\n[base]\nlr = -1.0\n", r"\[base\]: TrainConfig.lr must be in"),
    ("name = 'x'\n[base]\nmodel = 'cnn3d'\n", r"\[base\]: TrainConfig.model: unknown model"),
    ("name = 'x'\nfactors = 3\n", r"'factors' must be an array of tables"),
    ("name = 'x'\n[[factors]]\nfield = 'lrate'\nvalues = [1]\n",
     r"factors\[0\]: 'field': unknown TrainConfig field 'lrate'"),
    ("name = 'x'\n[[factors]]\nfield = 'lr'\nvalues = []\n",
     r"factors\[0\]: 'values' must be a non-empty array"),
    ("name = 'x'\n[[factors]]\nfield = 'lr'\nvalues = [0.1, -0.1]\n",
     r"factors\[0\] \('lr'\): value -0.1 is invalid: TrainConfig.lr must be in"),
    ("name = 'x'\n[[factors]]\nfield = 'optimizer'\nvalues = ['sgd', 'lion']\n",
     r"value 'lion' is invalid: TrainConfig.optimizer must be one of"),
    ("name = 'x'\n[[factors]]\nfield = 'lr'\nvalues = [0.1, 0.1]\n",
     r"value 1 repeats label 'lr=0.1'"),
    ("name = 'x'\n[[factors]]\nfield = 'lr'\nvalue = [0.1]\n",
     r"factors\[0\]: unknown key 'value'; valid keys: field, name, values, labels"),
    ("name = 'x'\n[[factors]]\nvalues = [0.1]\n", r"give exactly one of 'field'"),
    ("name = 'x'\n[[factors]]\nfield = 'lr'\nvalues = [[0.1]]\n", r"values must be scalars"),
    ("name = 'x'\n[[factors]]\nname = 'o'\nvalues = [1]\n",
     r"each value must be a non-empty table"),
    ("name = 'x'\n[[factors]]\nname = 'o'\nvalues = [{lrr = 1}]\n",
     r"unknown TrainConfig field 'lrr'"),
    ("name = 'x'\n[[factors]]\nname = 'o'\nvalues = [{lr = 1}, {lr = 2}]\nlabels = ['a']\n",
     r"'labels' must be an array of 2 strings"),
    ("name = 'x'\n[[factors]]\nfield = 'lr'\nvalues = [1.0]\n[[factors]]\nfield = 'lr'\n"
     "values = [2.0]\n", r"factors\[1\]: factor 'lr' is given twice"),
    ("name = 'x'\n[[factors]]\nfield = 'dataset_options.p'\nvalues = ['a/b', 'a_b']\n",
     r"same id or directory name 'dataset_options.p=a_b'"),
    ("name = = 'x'\n", r"invalid TOML"),
])
def test_bad_recipe_files_name_the_file_and_the_problem(tmp_path, text, match):
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ValueError, match=match) as info:
        load_recipe(path)
    assert str(info.value).startswith(path)


def test_binary_junk_is_invalid_toml(tmp_path):
    path = tmp_path / "junk.toml"
    path.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(ValueError, match=r"junk.toml: invalid TOML"):
        load_recipe(path)


def test_load_recipe_by_name_path_and_errors(tmp_path):
    assert load_recipe("tiny").name == "tiny"
    assert load_recipe(bundled_recipe_path("tiny")) == load_recipe("tiny")
    with pytest.raises(ValueError, match="neither a recipe file nor a bundled recipe; bundled "
                                         "recipes: .*demo"):
        load_recipe("no-such-recipe")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="no bundled recipe named 'x'"):
        bundled_recipe_path("x")
    with pytest.raises(TypeError, match="recipe must be"):
        load_recipe(3)
    with pytest.raises(ValueError, match="has no member 'lr=9'"):
        load_recipe("tiny").member("lr=9")


#: The issue asks the bundled MNIST-1D population to vary each of these factors.
ISSUE_FACTORS = {"init_seed", "order_seed", "augmentation", "width", "lr", "optimizer",
                 "batch_size", "label_smoothing", "weight_decay"}


def test_bundled_recipes():
    names = list_recipes()
    assert {"demo", "tiny", "mnist1d-factors", "digits-factors", "digits-spurious"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.description
        assert all(isinstance(m.config, TrainConfig) for m in recipe.members)
        assert len({m.id for m in recipe.members}) == len(recipe.members)
        for group in recipe.groups():  # every group's members exist and differ in its factor
            assert {m.id for m in recipe.members} >= set(group.members)
            assert len(group.members) >= 2
    varied = {f.name for f in load_recipe("mnist1d-factors").factors}
    assert ISSUE_FACTORS <= varied
    spurious = load_recipe("digits-spurious")
    assert all(m.config.dataset_options.get("spurious") for m in spurious.members)
    demo = load_recipe("demo")
    assert 8 <= len(demo.members) <= 12 and 2 <= len(demo.factors) <= 3
    assert len(load_recipe("tiny").members) <= 4


def test_dataset_names_of_bundled_recipes_exist():
    data = pytest.importorskip("mmkern.data")
    for name in list_recipes():
        for member in load_recipe(name).members:
            assert member.config.dataset in data.dataset_names()


def test_recipes_and_zoo_listing_do_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys, mmkern.train as t; t.load_recipe('demo'); t.list_recipes(); "
            "t.list_members; t.load_zoo; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    assert out.stdout.strip() == "False"
