"""Architectures of mmkern.train.models: output shapes, stable layer names, options, errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mmkern.train import config as config_module  # noqa: E402
from mmkern.train.models import (  # noqa: E402
    MODELS,
    build_model,
    list_models,
    measurable_layers,
)

SHAPES = {
    "mlp": [(1, 40), (1, 8, 8), (3, 32, 32), (7,)],
    "cnn1d": [(1, 40), (2, 13), (1, 1)],
    "cnn2d": [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 1, 1)],
    "vgg": [(1, 40), (1, 8, 8), (3, 32, 32), (2, 5, 3)],
    "vgg13": [(3, 32, 32), (1, 8, 8), (1, 40)],
    "resnet18": [(1, 40), (1, 8, 8), (3, 32, 32)],
}

#: The layer names are an API: analyses and saved activations refer to them.
LAYERS = {
    "mlp": ["fc1", "fc2", "logits"],
    "cnn1d": ["conv1", "conv2", "conv3", "fc1", "logits"],
    "cnn2d": ["conv1", "conv2", "fc1", "logits"],
    "vgg": ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "pool", "logits"],
    "vgg13": [f"conv{i}" for i in range(1, 11)] + ["pool", "logits"],
    "resnet18": ["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
                 "layer3.1", "layer4.0", "layer4.1", "pool", "logits"],
}

CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]


def test_registry_matches_config_names():
    assert list_models() == sorted(MODELS) == sorted(config_module.MODEL_NAMES)


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{'x'.join(map(str, s))}"
                                                   for n, s in CASES])
def test_logits_shape_and_layer_names(name, shape):
    width = 0.25 if name == "resnet18" else 0.5
    model = build_model(name, shape, 5, width=width)
    x = torch.randn(3, *shape)
    assert model(x).shape == (3, 5)
    assert measurable_layers(model) == LAYERS[name]
    outputs = {}
    hooks = [model.get_submodule(layer).register_forward_hook(
        lambda m, a, out, layer=layer: outputs.__setitem__(layer, out))
        for layer in LAYERS[name]]
    model(x)
    for h in hooks:
        h.remove()
    assert list(outputs) == LAYERS[name]  # every layer runs, in forward order
    assert all(out.shape[0] == 3 for out in outputs.values())
    assert outputs["logits"].shape == (3, 5)
    assert model.spec == {"name": name, "input_shape": list(shape), "num_classes": 5,
                          "options": {"width": width}}


def test_width_scales_hidden_sizes():
    small = build_model("cnn1d", (1, 40), 10, width=0.5)
    large = build_model("cnn1d", (1, 40), 10, width=2.0)
    assert small.conv1[0].out_channels == 16 and large.conv1[0].out_channels == 64
    assert build_model("mlp", (1, 40), 10, width=0.5).fc1[1].out_features == 128
    assert build_model("mlp", (1, 40), 10, depth=3).layer_names == ("fc1", "fc2", "fc3",
                                                                     "logits")
    assert build_model("resnet18", (3, 8, 8), 10, width=0.125).stem[0].out_channels == 8
    assert build_model("mlp", (4,), 2, width=1e-6).fc1[1].out_features == 1  # at least 1


def test_conv_blocks_end_with_relu_and_bn_models_have_batchnorm():
    model = build_model("vgg", (3, 8, 8), 10, width=0.25)
    assert isinstance(model.conv1[-1], torch.nn.ReLU)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d)
               for m in build_model("resnet18", (1, 40), 10, width=0.125).modules())


def test_wrong_input_shape_is_a_clear_error():
    model = build_model("cnn2d", (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(n, 1, 8, 8\)"):
        model(torch.randn(2, 1, 9, 8))


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model 'cnn'.*valid models: cnn1d, cnn2d"):
        build_model("cnn", (1, 40), 10)
    with pytest.raises(ValueError, match=r"'cnn1d' takes input_shape \(channels, length\)"):
        build_model("cnn1d", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="'cnn2d' takes input_shape"):
        build_model("cnn2d", (1, 40), 10)
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints"):
        build_model("mlp", "1,40", 10)
    with pytest.raises(TypeError, match=r"does not take option\(s\) 'depth'"):
        build_model("cnn1d", (1, 40), 10, depth=3)
    with pytest.raises(ValueError, match="width must be > 0 \\(finite\\)"):
        build_model("mlp", (1, 40), 10, width=0)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        build_model("mlp", (1, 40), 0)


def test_measurable_layers_errors():
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        measurable_layers("mlp")
    with pytest.raises(TypeError, match="declares no layer_names"):
        measurable_layers(torch.nn.Linear(2, 2))


def test_vgg13_is_configuration_b_with_batchnorm():
    from torch import nn

    model = build_model("vgg13", (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 10
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert model.logits.in_features == 512 and model.logits.out_features == 10
    widths = [3, 64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    expected = sum(9 * a * b + 2 * b for a, b in zip(widths, widths[1:])) + 512 * 10 + 10  # convs, BNs, classifier
    assert sum(p.numel() for p in model.parameters()) == expected == 9_413_066


@pytest.mark.parametrize("name", ["cnn2d", "vgg", "vgg13", "resnet18"])
def test_models_of_images_hold_channels_last_weights_with_the_usual_values(name, tmp_path):
    from mmkern.train.checkpoint import load_model, save_model

    torch.manual_seed(0)
    model = build_model(name, (3, 16, 16), 4, width=0.25)
    convs = [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                         for p in convs)
    plain = build_model(name, (3, 16, 16), 4, width=0.25)
    with torch.no_grad():  # the same values in the usual (contiguous) layout
        for p, q in zip(plain.parameters(), model.parameters()):
            p.data = q.detach().contiguous().clone()
    x = torch.randn(5, 3, 16, 16, dtype=torch.float32)
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-5)
    save_model(tmp_path / "m.safetensors", model)  # written contiguous, read back channels-last
    loaded = load_model(tmp_path / "m.safetensors")
    for (n, p), q in zip(loaded.state_dict().items(), model.state_dict().values()):
        assert torch.equal(p, q), n
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in loaded.parameters() if p.ndim == 4)


def test_models_of_sequences_and_vectors_keep_the_usual_layout():
    for name, shape in (("cnn1d", (1, 40)), ("vgg", (1, 40)), ("mlp", (1, 8, 8))):
        assert all(p.is_contiguous() for p in build_model(name, shape, 3).parameters())
