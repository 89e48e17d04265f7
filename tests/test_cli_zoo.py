"""The zoo commands end to end: `mmkern train`, `activations`, `analyze`, `recipes`, `demo --help`.

A micro recipe (three 1-D CNNs, 2 epochs on 600 MNIST-1D samples) keeps the whole run to seconds.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
from click.testing import CliRunner  # noqa: E402

import mmkern  # noqa: E402
from mmkern.cli import main  # noqa: E402

MICRO_RECIPE = """
name = "micro"
description = "three tiny 1-D CNNs"
design = "one-at-a-time"

[base]
dataset = "mnist1d"
model = "cnn1d"
width = 0.25
lr = 0.05
batch_size = 64
epochs = 2

[base.dataset_options]
num_samples = 600
ood_severities = [5]

[[factors]]
field = "init_seed"
values = [0, 1]

[[factors]]
field = "order_seed"
values = [0, 1, 2]
"""


def run(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    recipe = root / "micro.toml"
    recipe.write_text(MICRO_RECIPE)
    out = root / "out"
    result = run("train", str(recipe), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_train_then_analyze_writes_results_figures_and_report(zoo):
    result = run("analyze", str(zoo), "--alphas", "3", "--samples", "100")
    assert result.exit_code == 0, result.output
    report = zoo / "analysis" / "report.md"
    assert f"report: {report}" in result.output
    results = json.loads((zoo / "analysis" / "results.json").read_text())
    assert [g["name"] for g in results["groups"]] == ["init_seed", "order_seed"]
    order = results["groups"][1]
    assert order["members"] == ["base", "order_seed=1", "order_seed=2"]
    layers = order["representational"]
    assert list(layers) == ["conv1", "conv2", "conv3", "fc1", "logits"]
    svcca = np.array(layers["fc1"]["svcca"])
    assert svcca.shape == (3, 3) and np.allclose(np.diag(svcca), 1.0)
    # the stored matrices are the metric functions applied to the saved outputs
    from mmkern.analysis.outputs import load_outputs

    acts, preds = load_outputs(zoo, order["members"])
    assert acts["fc1"][0].shape[0] == 100
    np.testing.assert_allclose(svcca, mmkern.pairwise_svcca(acts["fc1"]), rtol=1e-12)
    assert set(order["predictive"]) == {"iid", "noise-5", "shear-5", "translation-5", "scale-5"}
    np.testing.assert_allclose(order["predictive"]["iid"]["disagreement"],
                               mmkern.disagreement_matrix(preds["iid"].argmax(-1)))
    connectivity = order["connectivity"]
    assert len(connectivity["curves"]) == 3 and connectivity["curves"][0]["alphas"] == [0, 0.5, 1]
    assert np.array(connectivity["loss_barrier"]).shape == (3, 3)
    # RM vs PM over the pairs of members within the groups
    from mmkern.analysis.pair_stats import pair_values
    from scipy import stats

    layer = results["rm_layer"]
    rm = np.concatenate([pair_values(1 - np.array(g["representational"][layer]["svcca"])) for g in results["groups"]])
    pm = np.concatenate([pair_values(g["predictive"]["iid"]["disagreement"]) for g in results["groups"]])
    iid = results["rm_vs_pm"]["iid"]
    assert (iid["n_pairs"], iid["n_groups"]) == (rm.size, 2) and rm.size >= 3
    assert iid["spearman"] == pytest.approx(stats.spearmanr(rm, pm).statistic)
    assert 0 < iid["p_value"] <= 1
    text = report.read_text()
    assert (f"Spearman correlation of RM with PM over the {rm.size} pairs of members within the 2 factor "
            "groups") in text
    for name in ("rm_vs_pm.png", "pm_by_set.png", "matrices_order_seed.png",
                 "curves_init_seed.png"):
        assert f"(figures/{name})" in text
        assert (zoo / "analysis" / "figures" / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_analyze_with_alignment_adds_the_aligned_barriers(zoo, method):
    result = run("analyze", str(zoo), "--alphas", "3", "--samples", "100", "--align", method)
    assert result.exit_code == 0, result.output
    results = json.loads((zoo / "analysis" / "results.json").read_text())
    for group in results["groups"]:
        raw, aligned = group["connectivity"], group["connectivity"]["aligned"]
        assert aligned["method"] == method and len(aligned["curves"]) == len(raw["curves"])
        matrix = np.array(aligned["loss_barrier"])
        assert matrix.shape == (len(group["members"]),) * 2 and np.allclose(matrix, matrix.T)
        # the aligned curves start and end at the raw curves' endpoints (the same functions)
        for a, r in zip(aligned["curves"], raw["curves"]):
            assert a["loss"][0] == pytest.approx(r["loss"][0], rel=1e-6)
            assert a["loss"][-1] == pytest.approx(r["loss"][-1], rel=1e-5)
    assert f"after {method} matching" in (zoo / "analysis" / "report.md").read_text()


def test_analyze_with_a_plane_adds_it_for_groups_of_three(zoo):
    result = run("analyze", str(zoo), "--alphas", "3", "--samples", "100", "--plane", "3")
    assert result.exit_code == 0, result.output
    results = json.loads((zoo / "analysis" / "results.json").read_text())
    init, order = results["groups"]
    assert "plane" not in init  # two members span no plane
    plane = order["plane"]
    assert plane["members"] == ["base", "order_seed=1", "order_seed=2"]
    assert np.array(plane["loss"]).shape == (3, 3) and set(plane["points"]) == {"models[0]", "models[1]", "models[2]"}
    # the members' own points have their own test losses (first 2000 test samples: all 400 here)
    curves = {tuple(c["pair"]): c for c in order["connectivity"]["curves"]}
    assert plane["point_loss"]["models[0]"] == pytest.approx(curves[(0, 1)]["loss"][0], rel=1e-5)
    assert plane["point_loss"]["models[2]"] == pytest.approx(curves[(0, 2)]["loss"][-1], rel=1e-5)
    assert (zoo / "analysis" / "figures" / "plane_order_seed.png").read_bytes()[:4] == b"\x89PNG"
    assert "(figures/plane_order_seed.png)" in (zoo / "analysis" / "report.md").read_text()


def test_analyze_align_needs_barriers(zoo):
    result = run("analyze", str(zoo), "--no-barriers", "--align", "weights")
    assert result.exit_code == 1 and "align compares barriers" in result.output


def test_activations_step_resumes(zoo):
    result = run("activations", str(zoo), "--samples", "100")
    assert result.exit_code == 0
    first = result.output
    again = run("activations", str(zoo), "--samples", "100")
    assert "outputs of 0 models" in again.output, (first, again.output)
    changed = run("activations", str(zoo), "--samples", "50")  # other settings: recomputed
    assert "outputs of 4 models" in changed.output


def test_rerunning_train_skips_finished_members(zoo, tmp_path):
    before = {p: os.path.getmtime(p) for p in zoo.glob("members/*/model.safetensors")}
    recipe = tmp_path / "micro.toml"
    recipe.write_text(MICRO_RECIPE)
    assert run("train", str(recipe), "--out", str(zoo)).exit_code == 0
    assert before == {p: os.path.getmtime(p) for p in zoo.glob("members/*/model.safetensors")}


def test_recipes_lists_the_bundled_ones():
    result = run("recipes")
    for name in ("demo", "tiny", "mnist1d-factors", "digits-factors", "mnist1d-spurious"):
        assert name in result.output


@pytest.mark.parametrize("args, message", [
    (["train", "no-such-recipe", "--out", "x"], "bundled recipes"),
    (["analyze", "."], "not a zoo directory"),
    (["activations", "."], "not a zoo directory"),
])
def test_errors_are_one_clear_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_bad_recipe_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MICRO_RECIPE.replace('field = "init_seed"', 'field = "no_such_field"'))
    result = CliRunner().invoke(main, ["train", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "no_such_field" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["train", "activations", "analyze", "finetune", "demo",
                                     "recipes", "bench"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    from mmkern._io import atomic_write_text

    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_text(tmp_path / "f.txt", "x")
    assert os.stat(tmp_path / "f.txt").st_mode & 0o777 == 0o666 & ~mask


def test_bad_device_is_a_clear_error(zoo):
    result = CliRunner().invoke(main, ["activations", str(zoo), "--device", "nonsense"])
    assert result.exit_code != 0 and "device" in result.output
    assert "Traceback" not in result.output


def test_collect_outputs_rejects_bad_arguments(zoo, tmp_path):
    from mmkern.analysis import collect_outputs

    with pytest.raises(ValueError, match="reduce"):
        collect_outputs(zoo, reduce="max")
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="n_samples"):
            collect_outputs(zoo, n_samples=bad)
    # A zoo whose first member was interrupted has nothing to measure yet.
    from mmkern.train import load_recipe, train_zoo

    recipe = tmp_path / "micro.toml"
    recipe.write_text(MICRO_RECIPE)

    def stop(event):
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        train_zoo(load_recipe(recipe), tmp_path / "empty", progress=False, callback=stop)
    with pytest.raises(ValueError, match="no finished member"):
        collect_outputs(tmp_path / "empty")


def test_a_width_factor_is_analysed_without_barriers_between_its_shapes(tmp_path):
    """Models of different widths have RM and PM but no weights to interpolate: the group gets no
    barriers (and says why), the other groups keep theirs."""
    recipe = tmp_path / "widths.toml"
    recipe.write_text(MICRO_RECIPE.replace('field = "order_seed"\nvalues = [0, 1, 2]',
                                           'field = "width"\nvalues = [0.25, 0.5]'))
    out = tmp_path / "out"
    assert run("train", str(recipe), "--out", str(out)).exit_code == 0
    result = run("analyze", str(out), "--alphas", "3")
    assert result.exit_code == 0, result.output
    groups = {g["factor"]: g for g in json.loads((out / "analysis" / "results.json").read_text())["groups"]}
    assert "connectivity" in groups["init_seed"] and "connectivity" not in groups["width"]
    assert groups["width"]["connectivity_skipped"].startswith("the members differ in architecture or width")
    svcca = np.array(groups["width"]["representational"]["fc1"]["svcca"])
    assert svcca.shape == (2, 2) and 0 < svcca[0, 1] < 1
    assert "No loss barriers or plane: the members differ" in (out / "analysis" / "report.md").read_text()
