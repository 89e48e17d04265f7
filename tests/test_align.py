"""Permutation alignment: specs derived from the forward, weight and activation matching, and
barriers after alignment. Properties only a correct implementation has: a hidden permutation of a
model is recovered exactly, an aligned model computes the same function as the one it permutes,
and independently trained networks are much closer after alignment (Ainsworth et al. 2023).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import mmkern  # noqa: E402
from mmkern import reference  # noqa: E402
from mmkern.connectivity import PermutationSpec, align, permutation_spec  # noqa: E402
from mmkern.connectivity._permutation import permute  # noqa: E402
from mmkern.train import build_model  # noqa: E402

ARCHITECTURES = [
    ("mlp", (1, 40)), ("cnn1d", (1, 40)), ("cnn2d", (1, 8, 8)), ("vgg", (1, 32)), ("vgg", (3, 8, 8)),
    ("resnet18", (1, 16)), ("resnet18", (3, 8, 8)),
]
IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, shape in ARCHITECTURES]


def _model(name, shape, seed, alive=False):
    """A bundled architecture with random weights and BatchNorm statistics; with ``alive`` every
    ReLU unit is active on typical inputs (positive biases), so that activations identify it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(name, shape, 5, width=0.25)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(0.5, 1.0) if alive else module.bias.data.normal_()
            elif alive and isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and module.bias is not None:
                module.bias.data.uniform_(0.5, 1.0)
    return model.eval()


def _hidden_permutation(model, seed):
    spec = permutation_spec(model)
    g = torch.Generator().manual_seed(seed)
    perms = {group: torch.randperm(n, generator=g) for group, n in spec.groups.items()}
    return spec, perms, permute(model, spec, perms)


def _inputs(shape, n=64, seed=0):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def _varying_units(model, spec, x) -> dict:
    """Per group, the units whose activation (at the group's probes) varies over the inputs."""
    from torch import fx

    from mmkern.connectivity._align import _Recorder, _samples

    keep = {node for nodes in spec.probes.values() for node in nodes}
    recorder = _Recorder(fx.symbolic_trace(copy.deepcopy(model).eval()), keep)
    with torch.no_grad():
        recorder.run(x)
    return {group: np.all([_samples(recorder.values[node]).std(0).numpy() > 1e-9 for node in nodes], axis=0)
            for group, nodes in spec.probes.items()}


def _same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name, shape", ARCHITECTURES, ids=IDS)
def test_specs_of_the_bundled_architectures(name, shape):
    model = _model(name, shape, 0)
    spec = permutation_spec(model)
    expected = {"mlp": 2, "cnn1d": 4, "cnn2d": 3, "vgg": 6, "resnet18": 12}[name]  # ResNet: 4 streams + 8
    assert len(spec.groups) == expected
    assert all(entries[0] is None for name_, entries in spec.axes.items() if name_.startswith("logits."))
    assert "logits.bias" not in spec.axes  # the output space is fixed
    state = model.state_dict()
    for entry, axes in spec.axes.items():
        for axis, item in enumerate(axes):
            if item is not None:
                assert state[entry].shape[axis] == spec.groups[item[0]] * item[1]


@pytest.mark.parametrize("name, shape", ARCHITECTURES, ids=IDS)
def test_a_permuted_model_computes_the_same_function(name, shape):
    model = _model(name, shape, 0)
    _, _, permuted = _hidden_permutation(model, 1)
    x = _inputs(shape)
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), model(x), rtol=1e-5, atol=1e-5)
        model.train(), permuted.train()  # batch statistics: the same function too
        torch.testing.assert_close(permuted(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("name, shape", ARCHITECTURES, ids=IDS)
def test_a_hidden_permutation_is_recovered_exactly(name, shape, method):
    model_a = _model(name, shape, 0, alive=True)
    spec, perms, model_b = _hidden_permutation(model_a, 2)
    before = copy.deepcopy(model_b.state_dict())
    data = (_inputs(shape, 256), torch.zeros(256, dtype=torch.long)) if method == "activations" else None
    result = align(model_a, model_b, method, data)
    if method == "weights":
        assert _same_state(result.model, model_a)
        identifiable = {group: np.ones(n, bool) for group, n in spec.groups.items()}
    else:  # units whose activation never varies on the data (dead ReLUs) are interchangeable there
        identifiable = _varying_units(model_a, spec, data[0])
        with torch.no_grad():
            torch.testing.assert_close(result.model(data[0]), model_a(data[0]), rtol=1e-5, atol=1e-5)
    for group, perm in perms.items():  # b's unit perms[g][i] came from a's unit i
        found = perm.numpy()[result.perms[group]]
        np.testing.assert_array_equal(found[identifiable[group]], np.arange(spec.groups[group])[identifiable[group]])
    assert all(torch.equal(before[k], v) for k, v in model_b.state_dict().items())  # input untouched
    if method == "activations":
        return
    curve = mmkern.interpolation_curve(model_a, result.model, (_inputs(shape, 32, 5), torch.zeros(32, dtype=torch.long)),
                                       alphas=5, bn_data=(_inputs(shape, 64, 6), torch.zeros(64, dtype=torch.long)))
    assert curve.loss_barrier == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("name, shape", ARCHITECTURES[:5], ids=IDS[:5])
def test_aligning_an_unrelated_model_keeps_its_function(name, shape, method):
    model_a, model_b = _model(name, shape, 0), _model(name, shape, 1)
    x = _inputs(shape)
    data = (_inputs(shape, 128, 3), torch.zeros(128, dtype=torch.long)) if method == "activations" else None
    aligned = align(model_a, model_b, method, data).model
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), model_b(x), rtol=1e-5, atol=1e-5)
    assert not _same_state(aligned, model_b)  # it did permute something


def test_weight_matching_objective_never_decreases():
    a, b = _model("resnet18", (3, 8, 8), 0), _model("resnet18", (3, 8, 8), 1)
    for seed in range(4):
        objective = align(a, b, seed=seed).objective
        assert len(objective) >= 2 and np.all(np.diff(objective) >= -1e-9 * abs(objective[0]))


def test_alignment_is_deterministic_given_the_seed():
    a, b = _model("vgg", (3, 8, 8), 0), _model("vgg", (3, 8, 8), 1)
    first, second = align(a, b, seed=3), align(a, b, seed=3)
    assert all(np.array_equal(first.perms[g], second.perms[g]) for g in first.perms)


@pytest.fixture(scope="module")
def trained_pair():
    """Two BatchNorm-free MLPs (4 hidden layers) trained on MNIST-1D from different seeds, and the
    data (a BatchNorm sample of 2000 training images)."""
    from mmkern.data import load_dataset
    from mmkern.train import TrainConfig, train_model

    data = load_dataset("mnist1d", num_samples=4000, ood=None)
    models = []
    for seed in (0, 1):
        config = TrainConfig(dataset="mnist1d", model="mlp", width=0.5, epochs=20, lr=0.05, batch_size=64,
                             init_seed=seed, order_seed=seed, model_options={"depth": 4})
        models.append(train_model(config, data, threads=2)[0])
    as_pair = lambda split, n=None: (torch.from_numpy(split.x[:n]), torch.from_numpy(split.y[:n]))  # noqa: E731
    return models, as_pair(data.test), as_pair(data.train, 2000)


def test_alignment_lowers_the_barrier_of_independently_trained_networks(trained_pair):
    models, test, train = trained_pair
    raw = mmkern.pairwise_barriers(models, test, alphas=11)
    weights = mmkern.pairwise_barriers(models, test, alphas=11, align="weights")
    activations = mmkern.pairwise_barriers(models, test, alphas=11, bn_data=train, align="activations")
    assert raw.loss_barrier[0, 1] > 0.2
    assert weights.loss_barrier[0, 1] < raw.loss_barrier[0, 1] / 3
    assert activations.loss_barrier[0, 1] < raw.loss_barrier[0, 1] / 3
    # the same as the curve to the aligned model, on the fast path and in the reference
    aligned = align(models[0], models[1]).model
    curve = mmkern.interpolation_curve(models[0], aligned, test, alphas=11)
    # (the pairwise path takes the endpoints from each model's own evaluation: float rounding)
    assert weights.loss_barrier[0, 1] == pytest.approx(curve.loss_barrier, rel=1e-6)
    ref = reference.pairwise_barriers(models, test, alphas=11, align="weights")
    np.testing.assert_allclose(ref.loss_barrier, weights.loss_barrier, rtol=1e-6, atol=1e-9)


def test_repair_lowers_the_barrier_further(trained_pair):
    """Jordan et al. 2023 on a BatchNorm-free MLP: REPAIR lowers the raw barrier and, after weight
    matching, the aligned one."""
    models, test, train = trained_pair
    raw = mmkern.interpolation_curve(*models, test, 11, bn_data=train)
    raw_repaired = mmkern.interpolation_curve(*models, test, 11, bn_data=train, repair=True)
    both = mmkern.pairwise_barriers(models, test, 11, bn_data=train, align="weights", repair=True)
    aligned = mmkern.pairwise_barriers(models, test, 11, bn_data=train, align="weights")
    assert raw_repaired.loss_barrier < raw.loss_barrier / 1.5
    assert both.loss_barrier[0, 1] < aligned.loss_barrier[0, 1] / 1.5
    assert both.error_barrier[0, 1] < aligned.error_barrier[0, 1]
    ref = reference.interpolation_curve(*models, test, 5, bn_data=train, repair=True)
    fast = mmkern.interpolation_curve(*models, test, 5, bn_data=train, repair=True)
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-5)


def test_repair_restores_the_interpolated_channel_statistics():
    """Halfway between two random MLPs, each hidden channel's standard deviation and mean on the
    data are the averages of the endpoints' (and they are not without REPAIR)."""
    from mmkern.connectivity._repair import repaired
    from mmkern.reference.connectivity import reset_and_estimate_batchnorm

    a, b = build_model("mlp", (1, 40), 5, width=0.25), build_model("mlp", (1, 40), 5, width=0.25)
    x = torch.randn(2000, 1, 40, generator=torch.Generator().manual_seed(0))
    data = (x, torch.zeros(2000, dtype=torch.long))

    def hidden(model):  # the first hidden layer's output: fc1's Linear
        with torch.no_grad():
            return model.fc1[1](model.fc1[0](x))

    middle = reset_and_estimate_batchnorm(mmkern.interpolate(repaired(a, data, 256), repaired(b, data, 256), 0.5),
                                          data, 256)
    with torch.no_grad():
        linear = middle.get_submodule("fc1.1")  # the GraphModule keeps the module paths
        corrected = middle.repair_0(linear(middle.get_submodule("fc1.0")(x)))
    goal_std = (hidden(a).std(0) + hidden(b).std(0)) / 2
    goal_mean = (hidden(a).mean(0) + hidden(b).mean(0)) / 2
    torch.testing.assert_close(corrected.std(0), goal_std, rtol=0.05, atol=1e-3)
    torch.testing.assert_close(corrected.mean(0), goal_mean, rtol=0.05, atol=1e-2)
    collapsed = hidden(mmkern.interpolate(a, b, 0.5)).std(0)
    assert float((collapsed / goal_std).mean()) < 0.9  # the variance collapse REPAIR undoes


def test_repair_needs_bn_data():
    with pytest.raises(ValueError, match="repair=True measures and corrects"):
        mmkern.interpolation_curve(build_model("mlp", (1, 40), 5, width=0.25),
                                   build_model("mlp", (1, 40), 5, width=0.25),
                                   (torch.zeros(4, 1, 40), torch.zeros(4, dtype=torch.long)), repair=True)
    with pytest.raises(TypeError, match="repair must be a bool"):
        mmkern.pairwise_barriers([build_model("mlp", (1, 40), 5, width=0.25)] * 2,
                                 (torch.zeros(4, 1, 40), torch.zeros(4, dtype=torch.long)), repair="yes")


def test_user_models_without_input_shape_are_traced_from_the_data():
    a = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    spec, perms, b = _hidden_permutation_of_sequential(a)
    x = torch.randn(40, 6)
    result = align(a, b, "activations", (x, torch.zeros(40, dtype=torch.long)))
    assert _same_state(result.model, a)
    assert spec.groups == {"0": 12}


def _hidden_permutation_of_sequential(model):
    spec = permutation_spec(model, torch.zeros(2, 6))
    perms = {"0": torch.randperm(12, generator=torch.Generator().manual_seed(0))}
    return spec, perms, permute(model, spec, perms)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.attn(x, x, x)[0].mean(1))


class _Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 5), nn.Linear(4, 5), nn.Linear(10, 3)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


UNSUPPORTED = {
    "attention": (lambda: _Attention(), torch.zeros(2, 3, 8), r"module 'attn' \(MultiheadAttention\)"),
    "concatenation": (lambda: _Concat(), torch.zeros(2, 4), r"operation 'cat'"),
    "grouped conv": (lambda: nn.Sequential(nn.Conv1d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 4, 2)),
                     torch.zeros(2, 4, 6), r"module '0' \(Conv1d\): grouped convolutions"),
    "group norm": (lambda: nn.Sequential(nn.Linear(4, 8), nn.GroupNorm(2, 8), nn.Linear(8, 2)),
                   torch.zeros(2, 4), r"module '1' \(GroupNorm\): GroupNorm with 2 groups"),
    "softmax over units": (lambda: nn.Sequential(nn.Linear(4, 8), nn.Softmax(dim=1), nn.Linear(8, 2)),
                           torch.zeros(2, 4), r"module '1' \(Softmax\): not a layer"),
    "broken forward": (lambda: nn.Sequential(nn.Linear(4, 8), nn.Bilinear(8, 8, 2)), torch.zeros(2, 4),
                       r"cannot run on the example input"),
}


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_unsupported_layers_are_named(case):
    build, example, message = UNSUPPORTED[case]
    with pytest.raises(ValueError, match=message):
        permutation_spec(build(), example)


ARGUMENTS = [
    ("different architectures", lambda a, b: align(a, build_model("mlp", (1, 40), 5, width=0.5)), ValueError,
     "has shape"),
    ("method unknown", lambda a, b: align(a, b, "random"), ValueError, "^method must be one of 'weights'"),
    ("method a list", lambda a, b: align(a, b, ["weights"]), TypeError, "^method must be a str"),
    ("activations without data", lambda a, b: align(a, b, "activations"), ValueError, "needs data"),
    ("data for weights", lambda a, b: align(a, b, "weights", (torch.zeros(4, 1, 40), torch.zeros(4, dtype=torch.long))),
     ValueError, "data is only used by method='activations'"),
    ("data of the wrong kind", lambda a, b: align(a, b, "activations", torch.zeros(4, 1, 40)), TypeError,
     "^data must be a torch DataLoader or an"),
    ("seed a float", lambda a, b: align(a, b, seed=1.5), TypeError, "^seed must be an int"),
    ("max_sweeps 0", lambda a, b: align(a, b, max_sweeps=0), ValueError, "^max_sweeps must be >= 1"),
    ("spec of another kind", lambda a, b: align(a, b, spec={"fc1.1": 64}), TypeError, "^spec must be a PermutationSpec"),
    ("spec of a missing entry", lambda a, b: align(a, b, spec=PermutationSpec({"g": 3}, {"nope.weight": ((("g", 1)),)})),
     ValueError, "^spec: the model has no entry 'nope.weight'"),
    ("spec of a wrong size", lambda a, b: align(a, b, spec=PermutationSpec({"g": 3}, {"fc1.1.weight": (("g", 1), None)})),
     ValueError, r"^spec: 'fc1.1.weight' axis 0 has 64 entries, not 3 units x 1"),
    ("pairwise align unknown", lambda a, b: mmkern.pairwise_barriers([a, b], (torch.zeros(4, 1, 40),
                                                                          torch.zeros(4, dtype=torch.long)),
                                                                     align="re-basin"),
     ValueError, "^align must be one of"),
    ("non-finite data", lambda a, b: align(a, b, "activations", (torch.full((4, 1, 40), float("nan")),
                                                                 torch.zeros(4, dtype=torch.long))),
     ValueError, "^data: x contains NaN or infinity"),
]


@pytest.mark.parametrize("case", ARGUMENTS, ids=[c[0] for c in ARGUMENTS])
def test_argument_errors(case):
    _, call, error, message = case
    a, b = build_model("mlp", (1, 40), 5, width=0.25), build_model("mlp", (1, 40), 5, width=0.25)
    with pytest.raises(error, match=message):
        call(a, b)
