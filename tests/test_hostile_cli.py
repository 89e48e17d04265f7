"""The command line under hostile input: every failure is one line naming the file or option,
exit code 1 (2 for usage errors), never a traceback; nothing is written before the input checks
out; a zoo with a diverging member finishes the others and fails naming it.
"""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from mmkern.cli import main  # noqa: E402
from mmkern.train import list_members  # noqa: E402

BASE = ('name = "cli"\n[base]\ndataset = "digits"\nmodel = "mlp"\nwidth = 0.25\nepochs = 1\n'
        "[base.dataset_options]\nood = []\n")
CUE = BASE.replace("ood = []", "ood = []\nspurious = 1.0") + \
    '[[factors]]\nfield = "init_seed"\nvalues = [0, 1]\n'


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_line_error(result, *fragments, code: int = 1) -> str:
    """The one ``Error:`` line of a failed command (progress lines may come around it)."""
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def cue_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    recipe = root / "cue.toml"
    recipe.write_text(CUE)
    out = root / "zoo"
    result = run("train", recipe, "--out", out, "--threads", 1)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def zoo(cue_zoo, tmp_path):
    target = tmp_path / "zoo"
    shutil.copytree(cue_zoo, target)
    return target


RECIPE_ERRORS = {
    "lr 1e300": ("lr = 1e300\n", ["TrainConfig.lr must be in"]),
    "width 1e7": ("width = 1e7", ["member 'base'", "cannot be built"]),
    "spurious 5": ('[[factors]]\nfield = "dataset_options.spurious"\nvalues = [0.5, 5.0]\n',
                   ["member 'dataset_options.spurious=5.0'", "p must be in (0, 1]"]),
    "unknown dataset": ('[[factors]]\nfield = "dataset"\nvalues = ["digits", "imagenet"]\n',
                        ["member 'dataset=imagenet'", "unknown dataset 'imagenet'"]),
    "nested TOML": ("x = " + "[" * 3000 + "]" * 3000 + "\n", ["nested too deeply"]),
    "unknown key": ("learning_rate = 0.1\n", ["unknown TrainConfig key 'learning_rate'"]),
    "epochs a float": ("epochs = 1.5", ["TrainConfig.epochs must be an integer"]),
}


@pytest.mark.parametrize("case", RECIPE_ERRORS)
def test_bad_recipes_are_one_line_and_write_nothing(tmp_path, case):
    body, fragments = RECIPE_ERRORS[case]
    recipe = tmp_path / "r.toml"
    if body.startswith("x ="):  # a top-level key, before the tables
        text = body + BASE
    elif body.startswith("[["):
        text = BASE + body
    elif not body.endswith("\n"):  # replaces the base's own line for that key
        key = body.split(" = ")[0]
        text = "\n".join(body if line.startswith(f"{key} = ") else line for line in BASE.splitlines()) + "\n"
    else:
        text = BASE.replace("[base.dataset_options]", body + "[base.dataset_options]")
    recipe.write_text(text)
    out = tmp_path / "zoo"
    _one_line_error(run("train", recipe, "--out", out), *fragments)
    assert not out.exists()


def test_a_diverging_member_fails_alone(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(BASE + '[[factors]]\nfield = "lr"\nvalues = [0.05, 1e12]\n')
    out = tmp_path / "zoo"
    result = run("train", recipe, "--out", out, "--threads", 1)
    _one_line_error(result, "1 member(s) of zoo 'cli'", "lr=1000000000000.0: training diverged in epoch 1")
    assert list_members(out) == ["base"]
    assert not (out / "members" / "lr=1000000000000.0" / "model.safetensors").exists()


ZOO_DAMAGE = {
    "record a list": ("members/base/record.json", "[1, 2]", "expected a JSON object, got list"),
    "checkpoint null": ("members/base/record.json", None, "not a member record"),
    "zoo.json without members": ("zoo.json", "members", "'members' is missing"),
    "zoo.json invalid": ("zoo.json", "{", "invalid JSON"),
}


@pytest.mark.parametrize("command", ["analyze", "activations", "finetune", "train-again"])
@pytest.mark.parametrize("case", ZOO_DAMAGE)
def test_damaged_zoo_files_are_one_line_errors(zoo, tmp_path, case, command):
    relative, content, message = ZOO_DAMAGE[case]
    path = zoo / relative
    if content is None:
        record = json.loads(path.read_text())
        record["checkpoint"] = None
        path.write_text(json.dumps(record))
    elif content == "members":
        data = json.loads(path.read_text())
        del data["members"]
        path.write_text(json.dumps(data))
    else:
        path.write_text(content)
    if command == "train-again":
        recipe = tmp_path / "cue.toml"
        recipe.write_text(CUE)
        args = ["train", recipe, "--out", zoo]
    elif command == "finetune":
        args = ["finetune", zoo, "--method", "naive", "--epochs", 1, "--clean-samples", 40]
    else:
        args = [command, zoo, "--samples", 100] + (["--no-barriers"] if command == "analyze" else [])
    _one_line_error(run(*args), str(path), message)


@pytest.mark.parametrize("option, value, fragment", [
    ("--lr", "nan", "lr must be > 0 (finite), got nan"),
    ("--lr", "inf", "lr must be > 0 (finite), got inf"),
    ("--clean-samples", 99999, "clean_samples must lie in [2, "),
    ("--epochs", 0, "Invalid value for '--epochs'"),
    ("--batch-size", "two", "Invalid value for '--batch-size'"),
])
def test_finetune_checks_every_option_before_writing(zoo, option, value, fragment):
    result = run("finetune", zoo, "--method", "naive", option, value)
    usage = fragment.startswith("Invalid value")
    _one_line_error(result, fragment, code=2 if usage else 1)
    assert not (zoo / "finetune" / "naive" / "settings.json").exists()
    # a valid rerun is not refused as "other settings"
    ok = run("finetune", zoo, "--method", "naive", "--clean-samples", 40, "--epochs", 1, "--threads", 1)
    assert ok.exit_code == 0, ok.output
    settings = json.loads((zoo / "finetune" / "naive" / "settings.json").read_text())
    assert settings["clean_samples"] == 40


@pytest.mark.parametrize("target, fragment, code", [
    ("missing/dir/out.json", "the folder", 1),
    ("", "is a directory", 2),
])
def test_bench_json_path_is_checked_before_the_benchmark(tmp_path, target, fragment, code):
    path = tmp_path / target if target else tmp_path
    result = CliRunner().invoke(main, ["bench", "similarity", "--quick", "--json", str(path)],
                                catch_exceptions=False)
    _one_line_error(result, "--json", fragment, code=code)
    assert ".." not in result.output  # no case ran


@pytest.mark.parametrize("args, fragment, code", [
    (["activations", "{tmp}"], "is not a zoo directory", 1),
    (["analyze", "{tmp}/missing"], "does not exist", 2),
    (["train", "no-such-recipe", "--out", "{tmp}/z"], "neither a recipe file nor a bundled recipe", 1),
    (["train", "digits-spurious", "--out", "{file}"], "is a file", 2),
    (["train", "digits-spurious", "--out", "{tmp}/z", "--threads", 0], "Invalid value for '--threads'", 2),
    (["train", "digits-spurious", "--out", "{tmp}/z", "--device", "tpu"], "device", 1),
])
def test_command_line_mistakes_are_one_line(tmp_path, args, fragment, code):
    (tmp_path / "a-file").write_text("x")
    args = [str(a).format(tmp=tmp_path, file=tmp_path / "a-file") for a in args]
    _one_line_error(run(*args), fragment, code=code)


def test_analyze_errors_name_the_layer_and_the_members(zoo):
    """50 samples of 64-unit layers: SVCCA is undefined, and the message says where."""
    result = run("analyze", zoo, "--samples", 50, "--no-barriers")
    _one_line_error(result, "SVCCA of layer 'fc1' of members base, init_seed=1: member 'base' has "
                            "n_samples=50 <= n_features=64")
