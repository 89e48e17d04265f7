"""Fine-tuning: naive and connectivity-based (CBFT), their losses, and the paper's effect."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import mmkern
from _train_helpers import TINY, state_equal, toy_dataset
from mmkern.train import TrainConfig, evaluate, fine_tune, train_model
from mmkern.train.finetune import barrier_loss, interpolation_point, invariance_loss


@pytest.fixture(scope="module")
def trained():
    data = toy_dataset()
    model, _ = train_model(TrainConfig(**{**TINY, "epochs": 3}), data)
    return model, data


def test_naive_fine_tuning_learns_is_repeatable_and_leaves_the_model_alone(trained):
    model, data = trained
    before = copy.deepcopy(model)
    tuned, record = fine_tune(model, data.train, epochs=4, lr=0.05, batch_size=16, seed=3)
    again, _ = fine_tune(model, data.train, epochs=4, lr=0.05, batch_size=16, seed=3)
    other, _ = fine_tune(model, data.train, epochs=4, lr=0.05, batch_size=16, seed=4)
    assert state_equal(model, before)
    assert state_equal(tuned, again) and not state_equal(tuned, other)
    assert not tuned.training and tuned is not model
    history = record["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert record["method"] == "naive" and record["n"] == len(data.train)


def test_cbft_is_repeatable_and_records_its_three_losses(trained):
    model, data = trained
    cue = (data.test.x, data.test.y)  # any labelled set of the same inputs serves here
    runs = [fine_tune(model, data.train, method="cbft", cue_data=cue, epochs=2, batch_size=16,
                      seed=seed) for seed in (1, 1, 2)]
    assert state_equal(runs[0][0], runs[1][0]) and not state_equal(runs[0][0], runs[2][0])
    record = runs[0][1]
    assert record["method"] == "cbft" and record["n_cue"] == len(data.test)
    for entry in record["history"]:
        assert entry["barrier_loss"] >= 0 and entry["interpolated_loss"] > 0
        assert entry["invariance_loss"] >= 0 and entry["loss"] > 0


def test_barrier_gradient_reaches_the_tuned_weights_scaled_by_one_minus_t(trained):
    model, data = trained
    original = copy.deepcopy(model)
    with torch.no_grad():
        for p in original.parameters():
            p.add_(0.3 * torch.randn_like(p))
    tuned = copy.deepcopy(model).train()
    x, y = torch.from_numpy(data.train.x[:32]), torch.from_numpy(data.train.y[:32])
    t, margin = 0.4, 1.5
    loss, cross_entropy = barrier_loss(
        tuned, {n: p.detach() for n, p in original.named_parameters()}, t, x, y, margin)
    loss.backward()
    # the same loss on an explicitly interpolated model
    point = copy.deepcopy(model).train()
    with torch.no_grad():
        for p_point, p_orig, p_tuned in zip(point.parameters(), original.parameters(),
                                            tuned.parameters()):
            p_point.copy_(t * p_orig + (1 - t) * p_tuned)
    direct = F.cross_entropy(point(x), y)
    assert cross_entropy == pytest.approx(direct.item(), rel=1e-6)
    (margin - direct).abs().backward()
    for p_tuned, p_point in zip(tuned.parameters(), point.parameters()):
        torch.testing.assert_close(p_tuned.grad, (1 - t) * p_point.grad, rtol=1e-5, atol=1e-7)
    # BatchNorm running statistics of the tuned model are untouched by the barrier pass
    for name, buffer in tuned.named_buffers():
        assert torch.equal(buffer, dict(model.named_buffers())[name])


def test_invariance_loss_is_the_mean_distance_of_normalised_class_means():
    rng = np.random.default_rng(0)
    fa, fb = rng.normal(size=(9, 4)), rng.normal(size=(7, 4))
    ya, yb = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1]), np.array([0, 1, 1, 0, 1, 0, 1])  # no 2 in b
    want = 0.0
    for c in range(4):  # class 3 is in neither batch, class 2 in one: both add 0
        if (ya == c).any() and (yb == c).any():
            ma, mb = fa[ya == c].mean(0), fb[yb == c].mean(0)
            want += np.sum((ma / np.linalg.norm(ma) - mb / np.linalg.norm(mb)) ** 2)
    got = invariance_loss(*(torch.from_numpy(a) for a in (fa, ya, fb, yb)), num_classes=4)
    assert got.item() == pytest.approx(want / 4, rel=1e-12)


def test_interpolation_points_lie_in_the_middle_half_and_follow_the_seed():
    draws = [interpolation_point(torch.Generator().manual_seed(s)) for s in range(200)]
    assert min(draws) >= 0.25 and max(draws) <= 0.75
    assert draws.count(0.25) > 0 and draws.count(0.75) > 0  # the clipped tails
    assert interpolation_point(torch.Generator().manual_seed(7)) == draws[7]


def test_fine_tune_errors(trained):
    model, data = trained
    with pytest.raises(ValueError, match="method must be one of"):
        fine_tune(model, data.train, method="lora")
    with pytest.raises(ValueError, match="needs cue_data"):
        fine_tune(model, data.train, method="cbft")
    with pytest.raises(ValueError, match="only used by method='cbft'"):
        fine_tune(model, data.train, cue_data=data.train)
    with pytest.raises(ValueError, match="data is empty"):
        fine_tune(model, (data.train.x[:0], data.train.y[:0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        fine_tune(model, (data.train.x, data.train.y + 3))
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        fine_tune(model, data.train, epochs=0)
    with pytest.raises(TypeError, match="epochs must be an int, got float"):
        fine_tune(model, data.train, epochs=2.0)
    with pytest.raises(ValueError, match="lr must be > 0 \\(finite\\), got nan"):
        fine_tune(model, data.train, lr=float("nan"))
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\) \\(finite\\)"):
        fine_tune(model, data.train, momentum=-1)
    with pytest.raises(TypeError, match="data must be"):
        fine_tune(model, "clean.npz")
    with pytest.raises(ValueError, match="cue_data inputs"):
        fine_tune(model, data.train, method="cbft", cue_data=(data.train.x[:, :, :6],
                                                                   data.train.y))
    no_linear = nn.Sequential(nn.Conv1d(1, 3, 12), nn.Flatten())
    with pytest.raises(ValueError, match="ending in an nn.Linear"):
        fine_tune(no_linear, data.train, method="cbft", cue_data=data.train)


def test_cbft_breaks_linear_connectivity_where_naive_fine_tuning_does_not():
    """Lubana et al.: naive fine-tuning on clean data stays in the cue model's basin; CBFT
    leaves it (a loss barrier on the cued data) and keeps the clean accuracy."""
    from mmkern.data import load_dataset

    cued, clean = load_dataset("digits", spurious=1.0), load_dataset("digits")
    config = TrainConfig(dataset="digits", model="vgg", width=0.5, lr=0.05, lr_schedule="cosine",
                         batch_size=64, epochs=15, dataset_options={"spurious": 1.0})
    model, _ = train_model(config, cued, threads=1)
    pick = np.random.default_rng(0).choice(len(clean.train), 200, replace=False)
    clean_ft = (clean.train.x[pick], clean.train.y[pick])
    settings = dict(epochs=40, lr=0.05, batch_size=64, seed=0, threads=1)
    naive, _ = fine_tune(model, clean_ft, **settings)
    cbft, record = fine_tune(model, clean_ft, method="cbft", cue_data=cued.train, **settings)
    assert set(record["history"][-1]) >= {"barrier_loss", "interpolated_loss", "invariance_loss"}
    test = tuple(torch.from_numpy(a) for a in (cued.test.x, cued.test.y))
    bn_data = tuple(torch.from_numpy(a) for a in (cued.train.x, cued.train.y))
    barrier = {name: mmkern.interpolation_curve(model, tuned, test, 11, bn_data=bn_data)
               .loss_barrier for name, tuned in (("naive", naive), ("cbft", cbft))}
    assert barrier["naive"] < 0.1 and barrier["cbft"] > 0.4, barrier
    assert evaluate(cbft, cued.ood["cue-none"])["accuracy"] > 0.8
