"""`mmkern reproduce lubana2023 --quick`: the study end to end, its numbers consistent with the
saved models, resumable without rerunning anything finished, bad options one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")

from _train_helpers import assert_refused_in_one_line, tree_fingerprint  # noqa: E402

from mmkern.studies.lubana2023 import METHODS, run_study, study_settings  # noqa: E402

SHORT = ("NC", "C", "RC", "RI")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("lubana2023")
    results = run_study(out, quick=True, progress=False)
    return out, results


def test_the_study_writes_its_table_barriers_curves_and_findings(study):
    out, results = study
    assert json.loads((out / "results.json").read_text())["findings"] == json.loads(json.dumps(results["findings"]))
    digits = results["datasets"]["digits"]
    assert json.loads((out / "digits" / "results.json").read_text())["table"] == json.loads(json.dumps(digits["table"]))
    for method in ("original", *METHODS):
        cell = digits["table"][method]["1"]
        assert set(cell) == set(SHORT) and all(cell[k]["n"] == 2 for k in SHORT)
        assert all(0.0 <= cell[k]["mean"] <= 1.0 for k in SHORT)
    for method in METHODS:
        assert set(digits["barriers"][method]["1"]) == {"test", *SHORT}
    pair = digits["pairs"]["1"]
    assert {"raw", "aligned", "quadratic"} <= set(pair) and set(pair["raw"]) == {"fit", "test", *SHORT}
    control = digits["control"]
    assert control["barriers"]["raw"]["fit"] == control["pair"]["raw"]["fit"]["loss_barrier"]
    assert results["findings"][2]["control"] == {k: control["barriers"][k]["fit"] for k in ("raw", "aligned", "quadratic")}
    assert [f["claim"] for f in results["findings"]] == ["a", "b", "c"]
    assert all(isinstance(f["holds"], bool) and f["dataset"] == "digits" for f in results["findings"])
    report = (out / "report.md").read_text()
    assert "Table 1" in report and "Findings" in report
    for figure in ("digits-curves.png", "digits-cue-vs-clean.png", "digits-sweep.png"):
        assert (out / "figures" / figure).stat().st_size > 1000 and f"figures/{figure}" in report


def test_every_run_takes_the_papers_preset_then_the_datasets_deviations(study):
    from mmkern.studies.lubana2023 import DATASETS, PAPER_SCALE, _finetune_runs
    from mmkern.train.finetune import PRESETS

    def preset(name, **change):
        return {**{k: v for k, v in PRESETS[name].items() if k != "method"}, **change}

    runs = _finetune_runs(study_settings(), DATASETS["mnist5k"])
    assert list(runs) == ["ftm", "fts", "llr", "lpft", "cbft", "ftl", "naive-lr=0.3"]
    assert runs["cbft"] == ("cbft", preset("cbft", batch_size=64))
    assert runs["llr"] == ("llr", preset("llr", batch_size=64, lr=0.1))
    assert runs["lpft"] == ("lpft", preset("lpft", batch_size=64, probe_lr=0.1))
    assert runs["naive-lr=0.3"] == ("naive", preset("ftm", batch_size=64, lr=0.3))
    paper = _finetune_runs(study_settings(datasets=["cifar10"]), PAPER_SCALE["cifar10"])
    assert paper["llr"] == ("llr", preset("llr")) and paper["cbft"] == ("cbft", preset("cbft"))
    # the quick run's settings as saved with its models
    out, _ = study
    for name, (method, values) in _finetune_runs(study_settings(True), DATASETS["digits"]).items():
        saved = json.loads((out / "digits" / "cue" / "finetune" / name / "settings.json").read_text())
        assert saved["method"] == method and values["epochs"] == 10
        assert {k: saved[k] for k in values} == values


def test_the_cue_vs_clean_curves_on_a_cluster_are_the_serial_ones(study, tmp_path):
    import shutil

    from mmkern.studies.lubana2023 import _cue_vs_clean, pair_record
    from mmkern.train import list_members, load_record
    from mmkern.train._cluster import cluster_client
    from mmkern.train._inputs import torch_threads

    out, _ = study
    root = tmp_path / "digits"
    for zoo in ("cue", "clean"):
        shutil.copytree(out / "digits" / zoo / "members", root / zoo / "members")
        shutil.copy(out / "digits" / zoo / "zoo.json", root / zoo / "zoo.json")
    records = {zoo: [load_record(root / zoo, m) for m in list_members(root / zoo)] for zoo in ("cue", "clean")}
    settings = study_settings(True)
    with torch_threads(1):  # as on a worker
        serial = pair_record(str(root), "cue", records["cue"][0], records["clean"][1], settings, None,
                             str(tmp_path / "serial.json"))
    with cluster_client(workers=2) as client:
        pairs, control = _cue_vs_clean(str(root), records["cue"], records["clean"], settings, None,
                                       {"client": client}, False)
    assert list(pairs) == [1.0] and pairs[1.0] == serial
    assert serial["from"] == {"zoo": "cue", "member": "dataset_options.spurious=1.0,init_seed=0"}
    assert serial["to"] == {"zoo": "clean", "member": "init_seed=1"}  # another initialisation
    assert json.loads((root / "connectivity" / "p=1.json").read_text()) == serial
    # the control: the two initialisations' clean models, on the clean data (no counterfactual sets)
    assert control["from"] == {"zoo": "clean", "member": "base"} and control["to"] == serial["to"]
    assert set(control["raw"]) == {"fit", "test"} and control["p"] is None
    assert json.loads((root / "connectivity" / "clean-vs-clean.json").read_text()) == control


def test_a_table_cell_is_recomputed_from_the_saved_models(study):
    from mmkern.train import evaluate, load_record
    from mmkern.train.checkpoint import load_model
    from mmkern.train.config import TrainConfig
    from mmkern.train.recipes import member_dirname
    from mmkern.train.trainer import load_config_dataset

    out, results = study
    zoo = out / "digits" / "cue"
    values = []
    for seed in (0, 1):
        member = f"dataset_options.spurious=1.0,init_seed={seed}"
        data = load_config_dataset(TrainConfig.from_dict(load_record(zoo, member)["config"]), None)
        model = load_model(zoo / "finetune" / "fts" / member_dirname(member) / "model.safetensors")
        values.append(evaluate(model, data.ood["image-random"])["accuracy"])
    cell = results["datasets"]["digits"]["table"]["fts"]["1"]["RI"]
    assert cell["mean"] == pytest.approx(np.mean(values), abs=1e-12)
    assert cell["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)


def test_the_findings_follow_from_the_table(study):
    _, results = study
    digits = results["datasets"]["digits"]
    thresholds = results["settings"]["thresholds"]
    reliant = digits["table"]["original"]["1"]["RI"]["mean"] >= thresholds["cue_reliant_ri"] * 0.1
    a, b, c = digits["findings"]
    assert a["testable"] == b["testable"] == reliant
    if reliant:
        (row,) = a["evidence"]
        assert row["RI"] == digits["table"]["fts"]["1"]["RI"]["mean"]
        assert row["barrier"] == digits["barriers"]["fts"]["1"]["test"]["mean"]
        assert a["holds"] == (row["RI"] >= thresholds["keeps_cue_ri"] * 0.1
                              and row["barrier"] <= thresholds["connected_barrier"])
    (row,) = c["evidence"]
    assert row["raw"] == digits["connectivity"]["1"]["raw"]["fit"] and row["judged"] == reliant
    assert c["aligned_above_control"] == (reliant and row["aligned"] > c["control"]["aligned"])


def test_a_rerun_or_a_killed_run_reruns_nothing_finished(study):
    out, _ = study
    before = tree_fingerprint(str(out / "digits"))
    run_study(out, quick=True, progress=False)
    after = tree_fingerprint(str(out / "digits"))
    assert {k: v for k, v in after.items() if not k.endswith("results.json")} == \
           {k: v for k, v in before.items() if not k.endswith("results.json")}
    # as if killed before one fine-tuned model and one curve file were written
    lost = [k for k in before if k.endswith("record.json") and "finetune/cbft" in k and "init_seed=1" in k]
    assert len(lost) == 1
    os.unlink(out / "digits" / lost[0])
    os.unlink(out / "digits" / "connectivity" / "p=1.json")
    run_study(out, quick=True, progress=False)
    again = tree_fingerprint(str(out / "digits"))
    redone = {k for k in before if again.get(k) != before[k] and not k.endswith("results.json")}
    assert redone <= {lost[0], os.path.join(os.path.dirname(lost[0]), "model.safetensors"),
                      os.path.join("connectivity", "p=1.json")}
    assert lost[0] in again and os.path.join("connectivity", "p=1.json") in again


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "dataset must be one of digits, mnist5k, cifar10, got 'imagenet'"),
    (["--dataset", "digits", "--dataset", "digits"], "datasets given twice"),
    (["--workers", "0"], "Invalid value for '--workers'"),
])
def test_bad_options_are_one_line(tmp_path, args, message):
    assert_refused_in_one_line(tmp_path, "lubana2023", args, message)


def test_settings_are_checked():
    with pytest.raises(TypeError, match="quick must be a bool"):
        study_settings("yes")
    assert study_settings(True)["p_values"] == [1.0]
    assert list(study_settings()["datasets"]) == ["digits", "mnist5k"]


def test_the_paper_scale_preset_is_a_valid_pair_of_recipes():
    from mmkern.studies.lubana2023 import _recipes
    from mmkern.train import load_recipe

    settings = study_settings(datasets=["cifar10"])
    cue, clean = (load_recipe(r) for r in _recipes("cifar10", settings["datasets"]["cifar10"], settings))
    assert len(cue.members) == 15 and len(clean.members) == 3
    assert cue.members[0].config.model == "vgg13" and cue.members[0].config.dataset_options["spurious"] == 0.6
