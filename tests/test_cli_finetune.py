"""`mmkern finetune`: every member of a spurious-cue zoo fine-tuned, measured, resumable."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from mmkern.cli import main  # noqa: E402
from mmkern.train import evaluate, finetune_zoo, load_member, load_record, train_zoo  # noqa: E402

CUE_RECIPE = {
    "name": "micro-cue",
    "description": "two small CNNs on digits with a class cue on every cued image",
    "base": {"dataset": "digits", "model": "cnn2d", "width": 0.5, "lr": 0.05, "batch_size": 64,
             "epochs": 3, "dataset_options": {"spurious": 1.0}},
    "factors": [{"field": "init_seed", "values": [0, 1]}],
}
FAST = ["--clean-samples", "60", "--epochs", "2", "--batch-size", "32", "--threads", "1"]


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("cue-zoo")
    train_zoo(CUE_RECIPE, out, progress=False, threads=1)
    return out


@pytest.mark.parametrize("method, runs", [("naive", "naive"), ("cbft", "cbft"), ("llr", "llr"), ("lpft", "lpft"),
                                          ("fts", "naive")])
def test_finetune_writes_models_metrics_and_barriers(zoo, method, runs):
    result = run("finetune", str(zoo), "--method", method, *FAST)
    assert result.exit_code == 0, result.output
    assert f"{method} base: cue-none accuracy" in result.output and "loss barrier" in result.output
    out = zoo / "finetune" / method
    assert f"2 fine-tuned models in {out}" in result.output
    settings = json.loads((out / "settings.json").read_text())
    assert settings["method"] == runs and settings.get("preset", runs) == method
    for member in ("base", "init_seed=1"):
        record = json.loads((out / member / "record.json").read_text())
        assert record["finetune"]["method"] == runs and record["finetune"]["n"] == 60
        assert record["finetune"].get("preset", runs) == method
        assert set(record["metrics"]["tuned"]) >= {"test", "cue-none", "cue", "cue-random",
                                                   "image-random"}  # and digits' corruptions
        curve = record["barriers"]["test"]
        assert curve["alphas"][0] == 0 and curve["alphas"][-1] == 1 and len(curve["alphas"]) == 11
        # the stored metrics are the saved model's
        from mmkern.data import load_dataset
        from mmkern.train.checkpoint import load_model

        tuned = load_model(out / member / "model.safetensors")
        cued = load_dataset("digits", spurious=1.0)
        assert record["metrics"]["tuned"]["cue-random"] == evaluate(tuned, cued.ood["cue-random"])
        # the original's are its training record's (not evaluated again), and the saved model's
        original, _ = load_member(zoo, member)
        trained = load_record(zoo, member)["metrics"]
        assert record["metrics"]["original"] == {"test": trained["test"], **trained["ood"]}
        assert record["metrics"]["original"]["image-random"] == pytest.approx(
            evaluate(original, cued.ood["image-random"]), rel=1e-9)


def test_analyze_reports_the_fine_tuned_models(zoo):
    for method in ("naive", "cbft"):
        assert run("finetune", str(zoo), "--method", method, *FAST).exit_code == 0
    result = run("analyze", str(zoo), "--alphas", "3", "--samples", "100")
    assert result.exit_code == 0, result.output
    results = json.loads((zoo / "analysis" / "results.json").read_text())
    summary = results["finetune"]["cbft"][1]
    record = json.loads((zoo / "finetune" / "cbft" / "init_seed=1" / "record.json").read_text())
    assert summary["member"] == "init_seed=1" and summary["n_clean"] == 60
    assert summary["accuracy"]["cue-random"] == {
        "original": record["metrics"]["original"]["cue-random"]["accuracy"],
        "tuned": record["metrics"]["tuned"]["cue-random"]["accuracy"]}
    assert summary["loss_barrier"]["test"] == record["barriers"]["test"]["loss_barrier"]
    report = (zoo / "analysis" / "report.md").read_text()
    assert "## Fine-tuning" in report
    rows = [line for line in report.splitlines() if line.startswith(("| naive |", "| cbft |"))]
    assert len(rows) == 4 and all(" -> " in row for row in rows)


def test_rerun_resumes_and_other_settings_are_refused(zoo):
    assert run("finetune", str(zoo), "--method", "naive", *FAST).exit_code == 0
    path = zoo / "finetune" / "naive" / "base" / "model.safetensors"
    before = os.path.getmtime(path)
    again = run("finetune", str(zoo), "--method", "naive", *FAST)
    assert again.exit_code == 0 and os.path.getmtime(path) == before
    assert "naive init_seed=1 (done before): cue-none accuracy" in again.output
    other = CliRunner().invoke(main, ["finetune", str(zoo), "--method", "naive", *FAST,
                                      "--epochs", "3"])
    assert other.exit_code != 0 and "other settings (epochs differ)" in other.output
    assert "Traceback" not in other.output


def test_a_zoo_without_a_cue_is_a_clear_error(tmp_path):
    recipe = {**CUE_RECIPE, "name": "no-cue",
              "base": {**CUE_RECIPE["base"], "epochs": 1, "dataset_options": {}},
              "factors": [{"field": "init_seed", "values": [0]}]}
    train_zoo(recipe, tmp_path, progress=False, threads=1)
    with pytest.raises(ValueError, match="not trained on a spurious-cue dataset"):
        finetune_zoo(tmp_path, "naive", progress=False)
    assert not (tmp_path / "finetune").exists()


def test_too_many_clean_samples_is_a_clear_error(tmp_path):
    recipe = {**CUE_RECIPE, "base": {**CUE_RECIPE["base"], "epochs": 1},
              "factors": [{"field": "init_seed", "values": [0]}]}
    train_zoo(recipe, tmp_path, progress=False, threads=1)
    with pytest.raises(ValueError, match=r"clean_samples must lie in \[2, "):
        finetune_zoo(tmp_path, "naive", clean_samples=10**6, epochs=1, progress=False)


def test_members_sharing_data_load_it_once(tmp_path, monkeypatch):
    from mmkern.train import trainer

    recipe = {**CUE_RECIPE, "base": {**CUE_RECIPE["base"], "epochs": 1}}
    train_zoo(recipe, tmp_path, progress=False, threads=1)
    loads = []
    original = trainer.load_config_dataset
    monkeypatch.setattr(trainer, "load_config_dataset",
                        lambda config, data_dir=None: loads.append(config.dataset_options)
                        or original(config, data_dir))
    finetune_zoo(tmp_path, "naive", clean_samples=40, epochs=1, progress=False, threads=1)
    # the clean digits (checked against clean_samples before anything is written), then the cued
    # ones, each loaded once for both members
    assert loads == [{}, {"spurious": 1.0}]


def test_a_named_directory_with_barriers_on_every_counterfactual_set(zoo):
    from mmkern.train import load_finetuned

    records = finetune_zoo(zoo, "naive", lr=0.02, name="sweep-lr=0.02", clean_samples=60, epochs=2,
                           batch_size=32, threads=1, progress=False)
    out = zoo / "finetune" / "sweep-lr=0.02"
    assert json.loads((out / "settings.json").read_text())["lr"] == 0.02
    assert set(records[0]["barriers"]) == {"test", "cue-none", "cue", "cue-random", "image-random"}
    assert [r["member"] for r in load_finetuned(zoo)["sweep-lr=0.02"]] == ["base", "init_seed=1"]
    for bad, error in (("", ValueError), (".hidden", ValueError), ("a/b", ValueError), (3, TypeError)):
        with pytest.raises(error, match="name must"):
            finetune_zoo(zoo, "naive", name=bad, progress=False)
