"""TrainConfig validation and round trips; augmentation strings (no torch needed)."""

from __future__ import annotations

import json

import pytest

from mmkern.train.config import TrainConfig, parse_augmentation


def test_defaults_round_trip_through_json():
    config = TrainConfig(dataset_options={"spurious": 0.9}, model_options={"depth": 3},
                         model="mlp", lr=1, train_size=100)
    data = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.from_dict(data) == config
    assert isinstance(config.lr, float) and config.lr == 1.0


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ValueError, match=r"unknown TrainConfig key 'lrr' \(did you mean 'lr'\?\)"):
        TrainConfig.from_dict({"lrr": 0.1})
    with pytest.raises(ValueError, match="unknown TrainConfig key 'zzz'; valid keys: dataset,"):
        TrainConfig.from_dict({"zzz": 1})


@pytest.mark.parametrize("field,value,error,match", [
    ("lr", 0, ValueError, r"TrainConfig.lr must be in \(0.0, 3.4028234663852886e\+38\)"),
    ("lr", "0.1", TypeError, "TrainConfig.lr must be a number"),
    ("momentum", 1.0, ValueError, "TrainConfig.momentum must be in"),
    ("label_smoothing", -0.1, ValueError, "label_smoothing"),
    ("weight_decay", float("nan"), ValueError, "weight_decay"),
    ("batch_size", 0, ValueError, "batch_size must be >= 1"),
    ("batch_size", 8.0, TypeError, "batch_size must be an integer"),
    ("epochs", True, TypeError, "epochs must be an integer"),
    ("init_seed", -1, ValueError, "init_seed must be in"),
    ("data_seed", 2**32, ValueError, "data_seed must be in"),
    ("optimizer", "rmsprop", ValueError, "optimizer must be one of sgd, adam, adamw"),
    ("lr_schedule", "step", ValueError, "lr_schedule must be one of"),
    ("model", "transformer", ValueError, "unknown model 'transformer'"),
    ("augmentation", "rotate", ValueError, "unknown component 'rotate'"),
    ("augmentation", None, TypeError, "augmentation must be a string"),
    ("device", "gpu", ValueError, "device must be"),
    ("dataset", "", ValueError, "dataset must be a non-empty"),
    ("dataset_options", [1], TypeError, "dataset_options must be a table"),
    ("model_options", {"width": 2}, ValueError, "use the TrainConfig.width field"),
    ("train_size", 0, ValueError, "train_size must be >= 1"),
])
def test_bad_values_name_the_field(field, value, error, match):
    with pytest.raises(error, match=match):
        TrainConfig.from_dict({field: value})


def test_paths_and_with_values():
    config = TrainConfig(dataset_options={"spurious": 0.9})
    assert config.get("dataset_options.spurious") == 0.9
    assert config.get("model_options.depth") is None
    changed = config.with_values({"dataset_options.spurious": 1.0, "lr": 0.1})
    assert changed.dataset_options == {"spurious": 1.0} and changed.lr == 0.1
    assert config.dataset_options == {"spurious": 0.9}  # frozen original untouched
    with pytest.raises(ValueError, match="unknown TrainConfig field 'lrr'"):
        config.get("lrr")
    with pytest.raises(ValueError, match="only dataset_options.<key> and model_options.<key>"):
        config.get("lr.x")
    assert config.replace(device="cuda").key() == config.key()  # device is not part of the run
    assert config.replace(lr=0.1).key() != config.key()


def test_parse_augmentation():
    assert parse_augmentation("none") == {}
    assert parse_augmentation("noise+shift") == {"shift": None, "noise": None}
    assert list(parse_augmentation("noise:0.2+flip+shift:3")) == ["shift", "flip", "noise"]
    assert parse_augmentation("shift:3+noise:0.2") == {"shift": 3, "noise": 0.2}
    for bad, match in [("shift+shift", "given twice"), ("flip:2", "takes no parameter"),
                       ("shift:1.5", "positive integer"), ("noise:-1", "must be positive"),
                       ("", "unknown component ''")]:
        with pytest.raises(ValueError, match=match):
            parse_augmentation(bad)
