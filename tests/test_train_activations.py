"""capture_activations, save/load_activations and predict."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mmkern  # noqa: E402
from mmkern.train import (  # noqa: E402
    build_model,
    capture_activations,
    load_activations,
    predict,
    save_activations,
)
from _train_helpers import SHAPE_2D, toy_dataset  # noqa: E402


def seeded(name, shape, seed=0, **options):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, shape, 3, width=0.25, **options)


@pytest.fixture(scope="module")
def images():
    return toy_dataset(SHAPE_2D, n_train=16, n_test=37)


def test_flatten_and_mean_shapes(images):
    model = seeded("vgg", SHAPE_2D)  # 6x6 -> conv2: (c=8, 3, 3), conv4: (16, 1, 1)
    flat = capture_activations(model, images.test, batch_size=10)
    mean = capture_activations(model, images.test, reduce="mean", batch_size=10)
    assert list(flat) == list(model.layer_names)
    assert flat["conv1"].shape == (37, 8 * 6 * 6) and mean["conv1"].shape == (37, 8)
    assert flat["conv2"].shape == (37, 8 * 3 * 3) and mean["conv2"].shape == (37, 8)
    assert flat["pool"].shape == mean["pool"].shape == (37, 32)
    assert flat["logits"].shape == (37, 3)
    for name in flat:
        assert flat[name].dtype == np.float32 and flat[name].flags.c_contiguous
    # mean is the spatial average of the flattened (channel-major) units
    np.testing.assert_allclose(flat["conv2"].reshape(37, 8, 9).mean(2), mean["conv2"],
                               rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(images.test.x)).numpy()
    np.testing.assert_allclose(flat["logits"], logits, rtol=1e-5, atol=1e-6)


def test_selected_layers_and_sources(images):
    model = seeded("resnet18", SHAPE_2D)
    acts = capture_activations(model, images.test.x, ["layer2.1", "stem"], reduce="mean")
    assert list(acts) == ["layer2.1", "stem"]
    assert acts["layer2.1"].shape == (37, 32) and acts["stem"].shape == (37, 16)
    same = capture_activations(model, torch.from_numpy(images.test.x), "stem", reduce="mean")
    np.testing.assert_array_equal(same["stem"], acts["stem"])
    pair = capture_activations(model, (images.test.x, images.test.y), ["stem"], reduce="mean")
    np.testing.assert_array_equal(pair["stem"], acts["stem"])
    # any submodule path works, not only the listed measurable layers
    inner = capture_activations(model, images.test, ["layer1.0.bn1"])
    assert inner["layer1.0.bn1"].shape == (37, 16 * 36)


def test_modes_restored_inputs_untouched_batch_size_irrelevant(images):
    model = seeded("vgg", SHAPE_2D)
    model.train()
    model.conv3.eval()  # a mixed state must survive
    x = images.test.x.copy()
    bn = model.conv1[1]
    stats = bn.running_mean.clone()
    a = capture_activations(model, x, batch_size=5)
    b = capture_activations(model, x, batch_size=64)
    assert model.training and not model.conv3.training and model.conv4.training
    assert torch.equal(bn.running_mean, stats)  # eval mode: BatchNorm statistics untouched
    np.testing.assert_array_equal(x, images.test.x)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5)
    assert not any(module._forward_hooks for module in model.modules())


def test_capture_errors(images):
    model = seeded("cnn2d", SHAPE_2D)
    with pytest.raises(ValueError, match="no layer 'conv9'; measurable layers: conv1, conv2"):
        capture_activations(model, images.test, ["conv9"])
    with pytest.raises(ValueError, match="reduce must be one of 'flatten', 'mean'"):
        capture_activations(model, images.test, reduce="max")
    with pytest.raises(ValueError, match="layers is empty"):
        capture_activations(model, images.test, [])
    with pytest.raises(TypeError, match="inputs must be floating point"):
        capture_activations(model, images.test.y)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        capture_activations("cnn2d", images.test)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        capture_activations(model, images.test, batch_size=0)
    assert not any(module._forward_hooks for module in model.modules())


def test_predict_rows_are_probabilities(images):
    model = seeded("cnn2d", SHAPE_2D)
    probs = predict(model, images.test, batch_size=8)
    assert probs.shape == (37, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=0, atol=1e-6)
    with torch.no_grad():
        expected = torch.softmax(model.eval()(torch.from_numpy(images.test.x)), 1).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_feeds_the_metrics(tmp_path, images):
    models = [seeded("cnn2d", SHAPE_2D, seed=s) for s in range(3)]
    paths = []
    for i, model in enumerate(models):
        path = tmp_path / f"acts{i}.npz"
        acts = capture_activations(model, images.train, ["conv2", "fc1"], reduce="mean")
        save_activations(path, acts)
        loaded = load_activations(path)
        assert list(loaded) == ["conv2", "fc1"]
        for name in acts:
            np.testing.assert_array_equal(loaded[name], acts[name])
            np.testing.assert_array_equal(np.load(path)[name], acts[name])
        paths.append(path)
    layer = [load_activations(p)["conv2"] for p in paths]  # (16, 16) each
    sim = mmkern.pairwise_cka(layer)
    assert sim.shape == (3, 3)
    np.testing.assert_allclose(np.diag(sim), 1.0, rtol=1e-5)
    probs = np.stack([predict(m, images.test) for m in models])
    result = mmkern.predictive_multiplicity(probs, labels=images.test.y)
    assert result is not None


def test_save_activation_names_and_dotted_layers(tmp_path):
    path = tmp_path / "a.npz"
    save_activations(path, {"layer1.0": np.ones((4, 2), np.float32), "file": np.zeros((4, 1))})
    loaded = load_activations(path)
    assert list(loaded) == ["layer1.0", "file"] and loaded["file"].dtype == np.float64
    with pytest.raises(ValueError, match="must be \\(n, d\\)"):
        save_activations(path, {"x": np.ones(3)})
    with pytest.raises(ValueError, match="without '/'"):
        save_activations(path, {"a/b": np.ones((3, 1))})
    with pytest.raises(ValueError, match="non-empty dict"):
        save_activations(path, {})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_activations(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_activations(tmp_path / "bad.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "bad.npz"]  # no temp files
