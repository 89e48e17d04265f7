"""train_model: determinism, one seed per factor, records, augmentation, evaluation."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from mmkern.train import TrainConfig, evaluate, init_model, train_model  # noqa: E402
from mmkern.train.augment import Augmenter  # noqa: E402
from mmkern.train.trainer import batch_bounds  # noqa: E402
from _train_helpers import SHAPE_2D, TINY, state_equal, toy_dataset  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return toy_dataset()


@pytest.fixture(scope="module")
def images():
    return toy_dataset(SHAPE_2D, name="toy-images")


def config(**changes) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, **changes})


def test_same_config_gives_bit_identical_weights_and_leaves_global_rng_alone(data):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, record_a = train_model(config(augmentation="shift+noise"), data)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # the global RNG does not matter
    b, record_b = train_model(config(augmentation="shift+noise"), data)
    assert state_equal(a, b)
    assert record_a["metrics"] == record_b["metrics"]
    assert [h["loss"] for h in record_a["history"]] == [h["loss"] for h in record_b["history"]]


def test_each_seed_moves_only_its_own_factor(data):
    base = config(augmentation="shift")
    init = init_model(base, data.input_shape, data.num_classes)
    assert state_equal(init, init_model(base.replace(order_seed=5, aug_seed=5, lr=0.2),
                                        data.input_shape, data.num_classes))
    assert not state_equal(init, init_model(base.replace(init_seed=1), data.input_shape,
                                            data.num_classes))
    trained, _ = train_model(base, data)
    for field in ("init_seed", "order_seed", "aug_seed"):
        other, _ = train_model(base.replace(**{field: 7}), data)
        assert not state_equal(trained, other), field
    # without augmentation the augmentation seed has nothing to draw
    plain, _ = train_model(config(), data)
    assert state_equal(plain, train_model(config(aug_seed=7), data)[0])


def test_zero_epochs_returns_the_initialisation(data):
    model, record = train_model(config(epochs=0), data)
    assert state_equal(model, init_model(config(), data.input_shape, data.num_classes))
    assert record["history"] == []


def test_record_contents(data):
    model, record = train_model(config(train_size=50, label_smoothing=0.1), data)
    json.dumps(record, allow_nan=False)
    assert record["config"] == config(train_size=50, label_smoothing=0.1).to_dict()
    assert record["seeds"] == {"data_seed": 0, "init_seed": 0, "order_seed": 0, "aug_seed": 0}
    assert record["model"]["layers"] == ["conv1", "conv2", "conv3", "fc1", "logits"]
    assert record["model"]["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert record["dataset"]["n_train"] == 50 and record["dataset"]["ood"] == ["noisy"]
    assert set(record["metrics"]) == {"train", "test", "ood"}
    assert record["metrics"]["ood"]["noisy"] == evaluate(model, data.ood["noisy"])
    assert record["metrics"]["test"]["n"] == len(data.test)
    assert len(record["history"]) == 2 and record["history"][-1]["lr"] == 0.0  # cosine to 0
    assert record["mmkern_version"] and record["device"] == "cpu" and "diverged" not in record
    assert not model.training


def test_training_learns(data):
    _, record = train_model(config(epochs=15, width=0.5), data)
    assert record["metrics"]["train"]["accuracy"] > 0.8
    assert record["metrics"]["test"]["accuracy"] > 0.6


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers_and_images(images, optimizer):
    lr = 0.05 if optimizer == "sgd" else 0.005
    for model in ("mlp", "cnn2d", "vgg"):
        trained, record = train_model(config(model=model, optimizer=optimizer, lr=lr,
                                             weight_decay=1e-3, augmentation="shift+flip",
                                             lr_schedule="none"), images)
        assert record["history"][-1]["lr"] == lr
        assert math.isfinite(record["metrics"]["test"]["loss"])


def test_divergence_raises_and_returns_nothing(data):
    from mmkern.train.trainer import TrainingDiverged

    seen = []
    with pytest.raises(TrainingDiverged, match=r"training diverged in epoch 1 of 3: .*lr=1000000000000.0"):
        train_model(config(lr=1e12, momentum=0.0, epochs=3), data, callback=seen.append)
    assert [e["loss"] for e in seen] == [None]  # the epoch that diverged was still reported


def test_callback_sees_every_epoch_and_can_interrupt(data):
    seen = []
    train_model(config(epochs=3), data, callback=seen.append)
    assert [e["epoch"] for e in seen] == [1, 2, 3] and seen[0]["epochs"] == 3

    def stop(info):
        raise KeyboardInterrupt

    was = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(KeyboardInterrupt):
        train_model(config(), data, callback=stop)
    assert torch.are_deterministic_algorithms_enabled() == was  # restored


def test_train_model_errors(data, images):
    with pytest.raises(ValueError, match="train_size=1000 exceeds the 96 training samples"):
        train_model(config(train_size=1000), data)
    with pytest.raises(ValueError, match="'flip' needs image inputs"):
        train_model(config(augmentation="flip"), data)
    with pytest.raises(ValueError, match="'cnn1d' takes input_shape"):
        train_model(config(), images)
    with pytest.raises(TypeError, match="must be an mmkern.data.Dataset"):
        train_model(config(), (data.train.x, data.train.y))
    with pytest.raises(ValueError, match="unknown TrainConfig key"):
        train_model({"epoch": 3}, data)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch.cuda.is_available"):
            train_model(config(), data, device="cuda")


def test_evaluate_matches_direct_computation(data):
    model = init_model(config(), data.input_shape, data.num_classes)
    result = evaluate(model, data.test, batch_size=7)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(data.test.x)).double()
    y = torch.from_numpy(data.test.y)
    assert result["accuracy"] == (logits.argmax(1) == y).double().mean().item()
    assert result["loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert evaluate(model, (data.test.x[:0], data.test.y[:0])) == {"accuracy": None,
                                                                   "loss": None, "n": 0}


def test_batches_cover_every_sample_once():
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4) == [(0, 4), (4, 9)]  # no single-sample batch
    assert batch_bounds(1, 4) == [(0, 1)]


def test_shift_augmentation_moves_samples_as_documented():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 10, dtype=torch.float32).reshape(2, 1, 10)
    out = Augmenter("shift:3", (1, 10))(x, gen)
    for i in range(2):  # circular shift by one of -3..3
        assert any(torch.equal(out[i], x[i].roll(s, -1)) for s in range(-3, 4))

    images = torch.rand(16, 2, 5, 6)
    aug = Augmenter("shift:2", (2, 5, 6))
    shifted = aug(images, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(16):  # a 5x6 crop of the zero-padded image
        crops = [padded[i, :, r:r + 5, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(shifted[i], crop) for crop in crops)
    assert Augmenter("shift", (1, 40)).shift == 5 and Augmenter("shift", (3, 32, 32)).shift == 4


def test_flip_and_noise_augmentation():
    images = torch.rand(64, 1, 3, 4)
    flipped = Augmenter("flip", (1, 3, 4))(images, torch.Generator().manual_seed(0))
    same = [torch.equal(flipped[i], images[i]) for i in range(64)]
    mirrored = [torch.equal(flipped[i], images[i].flip(-1)) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54
    x = torch.zeros(200, 1, 50)
    noisy = Augmenter("noise:0.5", (1, 50), input_std=2.0)(x, torch.Generator().manual_seed(0))
    assert noisy.std().item() == pytest.approx(1.0, rel=0.05)
    assert torch.equal(x, torch.zeros(200, 1, 50))  # input untouched
    assert Augmenter("none", (1, 50))(x, torch.Generator()) is x


def test_threads_option_is_used_and_restored(data):
    before = torch.get_num_threads()
    _, record = train_model(config(epochs=1), data, threads=1)
    assert record["torch_threads"] == 1 and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1"):
        train_model(config(), data, threads=0)
