"""Fine-tuning a trained classifier: naive fine-tuning, last-layer retraining (LLR), LLR then
fine-tuning (LPFT), and connectivity-based fine-tuning (CBFT).

Lubana et al. (ICML 2023, "Mechanistic Mode Connectivity") show that fine-tuning a model that
relies on a spurious cue on a little clean data (``"naive"``) leaves it linearly connected to the
original, and still reading the cue. *Connectivity-based fine-tuning* (``"cbft"``) moves the
model out of that basin on purpose. Each step of CBFT takes two updates of the weights
``theta`` being tuned, with ``theta_0`` the original model's:

1. **Barrier.** With ``t = 0.5 + 0.5 * clip(z, -0.5, 0.5)``, ``z ~ N(0, 1)``, the model at
   ``theta_t = t * theta_0 + (1 - t) * theta`` (a point in the middle half of the line) is run
   on a batch of the *cue* data (the original training distribution), and
   ``|margin - CE(theta_t)|`` is minimised over ``theta``: the loss at the line's interior is
   pushed up to ``margin``, raising a barrier between the two models. The gradient reaches
   ``theta`` through the interpolation, scaled by ``1 - t``.
2. **Clean data + invariance.** On a batch of the clean data,
   ``CE(theta) + invariance_weight * L_inv``, where ``L_inv`` is the mean over classes of the
   squared distance between the unit-normalised class means of the penultimate features (the
   input of the model's last ``nn.Linear``) on the clean batch and on the cue batch (classes
   missing from either batch count as 0). It asks the features of a class not to move with the
   cue.

**Last-layer retraining** (``"llr"``, Kirichenko et al. 2023's deep feature reweighting as
Lubana et al. use it): the model's last ``nn.Linear`` (the classifier) is replaced by a freshly
initialised one (PyTorch's ``nn.Linear`` initialisation, U(-1/sqrt(d), 1/sqrt(d)) for weights and
biases, drawn from ``seed``) and trained alone on the features of the clean data, which the rest
of the model computes once in eval mode: the feature extractor, its BatchNorm statistics
included, is left bitwise unchanged. This needs the model's output to be its classifier's output
(checked). **LPFT** (Kumar et al. 2022): LLR with the ``probe_*`` settings, then naive
fine-tuning of the whole model from there.

During the barrier update BatchNorm layers use the batch's statistics (training mode) and the
tuned model's running statistics are left untouched. Both methods use SGD with momentum and a
cosine learning-rate schedule; the order of the batches, the cue batches and the ``t`` draws
come from ``seed``, so a run is repeatable (bit for bit with the same number of threads).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Optional

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from mmkern._validate import (
    check_batch_size,
    check_choice,
    check_float,
    check_int,
    check_positive,
    check_positive_int,
)
from mmkern.train._errors import TrainingDiverged
from mmkern.train._inputs import (
    as_labelled,
    device_of,
    deterministic,
    finite_or_none,
    torch_threads,
)
from mmkern.train.trainer import batch_bounds, cosine_lr

METHODS = ("naive", "llr", "lpft", "cbft")

#: Lubana et al.'s fine-tuning settings: SGD with momentum 0.9, weight decay 1e-4, batches of
#: 256, a cosine schedule over 20 epochs.
PAPER_SETTINGS = {"epochs": 20, "batch_size": 256, "momentum": 0.9, "weight_decay": 1e-4}
#: Their last-layer retraining: momentum 0.9, no weight decay, 200 epochs at learning rate 30
#: (the probe stage of LPFT too).
PROBE_SETTINGS = {"epochs": 200, "batch_size": 256, "lr": 30.0, "momentum": 0.9, "weight_decay": 0.0}

PRESETS: dict[str, dict] = {
    "ftm": {"method": "naive", **PAPER_SETTINGS, "lr": 0.01},
    "fts": {"method": "naive", **PAPER_SETTINGS, "lr": 0.001},
    "ftl": {"method": "naive", **PAPER_SETTINGS, "lr": 0.1},
    "llr": {"method": "llr", **PROBE_SETTINGS},
    "lpft": {"method": "lpft", **PAPER_SETTINGS, "lr": 0.01, "probe_lr": PROBE_SETTINGS["lr"],
             "probe_epochs": PROBE_SETTINGS["epochs"]},
    "cbft": {"method": "cbft", **PAPER_SETTINGS, "lr": 0.01, "margin": 1.0, "invariance_weight": 1.0},
}
"""Named settings of the paper's methods: FTM / FTS / FTL (naive fine-tuning at a medium, small
and large learning rate), LLR, LPFT and CBFT; ``fine_tune(model, data, **preset)`` (with the
``"method"`` key) runs one."""


def _classifier(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (in registration order), whose input are the features."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"model: CBFT needs a classifier ending in an nn.Linear (its input are "
                         f"the features of the invariance loss); {type(model).__name__} has none")
    return linears[-1]


def interpolation_point(generator: torch.Generator) -> float:
    """``t = 0.5 + 0.5 * clip(z, -0.5, 0.5)`` with ``z ~ N(0, 1)``: a point in ``[0.25, 0.75]``."""
    z = torch.randn((), generator=generator).clamp(-0.5, 0.5)
    return float(0.5 + 0.5 * z)


def barrier_loss(model: nn.Module, original: dict, t: float, x: torch.Tensor, y: torch.Tensor,
                 margin: float) -> tuple[torch.Tensor, float]:
    """``|margin - CE|`` of the model at ``t * original + (1 - t) * model`` on ``(x, y)``.

    Differentiable in ``model``'s parameters. ``original`` maps parameter names to the original
    model's tensors; BatchNorm statistics come from the batch and update copies of the buffers.
    Returns the loss and the cross-entropy ``CE`` itself.
    """
    params = {name: t * original[name] + (1.0 - t) * p for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    cross_entropy = F.cross_entropy(functional_call(model, (params, buffers), (x,)), y)
    return (margin - cross_entropy).abs(), cross_entropy.item()


def invariance_loss(features_clean: torch.Tensor, y_clean: torch.Tensor,
                    features_cue: torch.Tensor, y_cue: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """Mean over ``num_classes`` of ``||m_clean(c)/|m_clean(c)| - m_cue(c)/|m_cue(c)|||^2``.

    ``m(c)`` is the mean feature vector of class ``c`` in a batch (features ``(b, d)``); a class
    absent from either batch adds 0.
    """
    total = features_clean.new_zeros(())
    for c in range(num_classes):
        in_clean, in_cue = y_clean == c, y_cue == c
        if not bool(in_clean.any()) or not bool(in_cue.any()):
            continue
        mean_clean = F.normalize(features_clean[in_clean].mean(0), dim=0)
        mean_cue = F.normalize(features_cue[in_cue].mean(0), dim=0)
        total = total + (mean_clean - mean_cue).pow(2).sum()
    return total / num_classes


class _Features:
    """Captures the input of a module (the classifier) on every forward call."""

    def __init__(self, module: nn.Module):
        self.value: Optional[torch.Tensor] = None
        self._handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.value = args[0].flatten(1)

    def remove(self) -> None:
        self._handle.remove()


def fine_tune(
    model: nn.Module,
    data,
    *,
    method: str = "naive",
    cue_data=None,
    epochs: int = 10,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    margin: float = 1.0,
    invariance_weight: float = 1.0,
    probe_lr: float = 0.1,
    probe_epochs: int = 200,
    seed: int = 0,
    threads: Optional[int] = None,
) -> tuple[nn.Module, dict]:
    """Fine-tune a copy of a trained classifier on clean data (naively, LLR, LPFT or CBFT).

    Parameters
    ----------
    model : torch.nn.Module
        The trained classifier (e.g. a cue-reliant model). Not modified; the copy is tuned on
        the device of its parameters. For CBFT its last ``nn.Linear`` must be the classifier.
    data : ArraySplit or (x, y)
        The clean fine-tuning data: ``x`` float ``(n, *input_shape)``, ``y`` int labels ``(n,)``.
    method : {"naive", "llr", "lpft", "cbft"}
        Cross-entropy on ``data`` for the whole model, for a new classifier on frozen features,
        the two in turn, or connectivity-based fine-tuning (module docstring). :data:`PRESETS`
        holds the paper's settings of each.
    cue_data : ArraySplit or (x, y), optional
        CBFT only (required): data with the cue, e.g. the original training set.
    epochs : int, default 10
        Passes over ``data``; CBFT draws one cue batch per clean batch, cycling ``cue_data``.
    lr, momentum, weight_decay : float
        SGD settings; the learning rate follows a cosine schedule from ``lr`` to 0.
    batch_size : int, default 128
        Clean (and cue) batch size. A last batch of a single sample is merged into the one
        before (BatchNorm cannot train on one sample).
    margin : float, default 1.0
        CBFT: the cross-entropy the barrier update drives the interpolated model's loss to.
    invariance_weight : float, default 1.0
        CBFT: the weight of the invariance loss.
    probe_lr, probe_epochs : float, int, default 0.1, 200
        LPFT: the learning rate and epochs of its LLR stage (momentum 0.9, no weight decay, the
        batch size of ``batch_size``); the other settings are those of its fine-tuning stage.
        (The paper's learning rate of 30, ``PRESETS["lpft"]``, suits its VGG and ResNet
        features; it overshoots on the features of the small bundled models.)
    seed : int, default 0
        Seeds the batch orders, the interpolation points and a new classifier's weights.
    threads : int, optional
        Torch intra-op threads for the run (restored afterwards).

    Returns
    -------
    model : torch.nn.Module
        The fine-tuned copy, in eval mode.
    record : dict
        JSON-ready: ``method``, the settings, ``history`` (per epoch: mean clean cross-entropy
        and accuracy over the batches; for CBFT also the mean barrier loss, the mean
        interpolated-model cross-entropy on the cue batches and the mean invariance loss; for
        LLR those of the new classifier), for LPFT also ``probe_history`` (its LLR stage),
        ``seconds``.

    Raises
    ------
    ValueError
        An unknown method, CBFT without ``cue_data``, empty data, labels outside the model's
        outputs, a model without a final ``nn.Linear`` (CBFT, LLR, LPFT) or whose output is not
        that layer's (LLR, LPFT), bad settings.
    TypeError
        Data that is not an ``(x, y)`` pair or an ArraySplit.
    """
    batch_size = check_settings(method, epochs, lr, momentum, weight_decay, batch_size, margin,
                                invariance_weight, seed, probe_lr, probe_epochs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x, y = as_labelled(data, "data")
    if x.shape[0] == 0:
        raise ValueError("data is empty (0 samples)")
    if method == "cbft":
        if cue_data is None:
            raise ValueError("method='cbft' needs cue_data: data with the cue (e.g. the original "
                             "training set)")
        x_cue, y_cue = as_labelled(cue_data, "cue_data")
        if x_cue.shape[0] == 0:
            raise ValueError("cue_data is empty (0 samples)")
        if tuple(x_cue.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"cue_data inputs {tuple(x_cue.shape[1:])} differ from data's "
                             f"{tuple(x.shape[1:])}")
    elif cue_data is not None:
        raise ValueError("cue_data is only used by method='cbft'")
    if method != "naive":  # CBFT's features and LLR's retrained layer
        _classifier(model)

    settings = {"method": method, "epochs": epochs, "lr": lr, "momentum": momentum,
                "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed,
                "n": int(x.shape[0])}
    if method == "cbft":
        settings.update(margin=margin, invariance_weight=invariance_weight,
                        n_cue=int(x_cue.shape[0]))
    if method == "lpft":
        settings.update(probe_lr=probe_lr, probe_epochs=probe_epochs)
    extra = {}
    with torch_threads(threads):
        tuned = copy.deepcopy(model)
        device = device_of(tuned)
        cue = (x_cue, y_cue) if method == "cbft" else None
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        with deterministic(device):
            if method in ("llr", "lpft"):
                probe = settings if method == "llr" else {
                    **settings, "lr": probe_lr, "epochs": probe_epochs, **_PROBE_FIXED}
                probe_history = retrain_classifier(tuned, (x, y), probe, generator, device)
                if method == "llr":
                    history = probe_history
                else:
                    extra["probe_history"] = probe_history
            if method != "llr":
                history = _run(tuned, model, (x, y), cue, settings, device, generator)
    tuned.eval()
    return tuned, {**settings, **extra, "history": history, "seconds": time.perf_counter() - started}


def check_settings(method, epochs, lr, momentum, weight_decay, batch_size, margin, invariance_weight,
                   seed, probe_lr=0.1, probe_epochs=200) -> int:
    """Validate :func:`fine_tune`'s settings (``TypeError``/``ValueError`` naming the first bad
    one); returns the batch size."""
    check_choice(method, "method", METHODS)
    check_positive_int(epochs, "epochs")
    check_positive_int(probe_epochs, "probe_epochs")
    for value, name in ((lr, "lr"), (margin, "margin"), (probe_lr, "probe_lr")):
        check_positive(value, name)
    check_float(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    for value, name in ((weight_decay, "weight_decay"), (invariance_weight, "invariance_weight")):
        check_float(value, name, low=0.0)
    check_int(seed, "seed")
    return check_batch_size(batch_size)


def _batches(bounds: list[tuple[int, int]], generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches of one random pass over the samples that ``bounds`` cover."""
    perm = torch.randperm(bounds[-1][1], generator=generator)
    return [perm[start:stop] for start, stop in bounds]


#: LPFT's probe stage: the momentum and weight decay of Lubana et al.'s LLR.
_PROBE_FIXED = {"momentum": PROBE_SETTINGS["momentum"], "weight_decay": PROBE_SETTINGS["weight_decay"]}


@torch.no_grad()
def _features(model: nn.Module, head: nn.Linear, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The classifier's inputs on ``x`` (float, (n, d)), the model in eval mode; ``ValueError``
    unless the model's output is the classifier's output on them (LLR trains that layer alone)."""
    was_training = model.training
    model.eval()
    capture = _Features(head)
    try:
        chunks = []
        for start in range(0, x.shape[0], batch_size):
            out = model(x[start:start + batch_size])
            chunks.append(capture.value)
            if start == 0 and not torch.equal(head(capture.value), out):
                raise ValueError(f"model: LLR and LPFT retrain the last nn.Linear on its inputs, but "
                                 f"{type(model).__name__}'s output is not that layer's output")
    finally:
        capture.remove()
        model.train(was_training)
    return torch.cat(chunks)


def _reset(head: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's own initialisation of an ``nn.Linear`` (U(-1/sqrt(d), 1/sqrt(d)) for the weight
    and the bias), drawn from ``generator``."""
    bound = 1.0 / math.sqrt(head.in_features) if head.in_features > 0 else 0.0
    with torch.no_grad():
        for p in (head.weight, head.bias):
            if p is not None:
                p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=generator))


def retrain_classifier(model: nn.Module, clean, settings: dict, generator: torch.Generator,
                       device: torch.device) -> list[dict]:
    """LLR in place: ``model``'s last ``nn.Linear`` re-initialised and trained alone (SGD, cosine
    schedule, ``settings``' lr, epochs, momentum, weight decay and batch size) on the features of
    ``clean`` computed once; every other parameter and buffer is left as it is. Returns the
    per-epoch history (mean cross-entropy and accuracy over the batches)."""
    x, y = (t.to(device) for t in clean)
    _check_labels(model, x, y, "data")
    head = _classifier(model)
    features = _features(model, head, x, settings["batch_size"])
    _reset(head, generator)
    optimizer = torch.optim.SGD(head.parameters(), lr=settings["lr"], momentum=settings["momentum"],
                                weight_decay=settings["weight_decay"])
    bounds = batch_bounds(x.shape[0], settings["batch_size"])
    total, step, history = settings["epochs"] * len(bounds), 0, []
    for epoch in range(settings["epochs"]):
        loss_sum = accuracy_sum = 0.0
        batches = _batches(bounds, generator)
        for idx in batches:
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(settings["lr"], step, total)
            logits = head(features[idx])
            loss = F.cross_entropy(logits, y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item()
            accuracy_sum += (logits.detach().argmax(1) == y[idx]).double().mean().item()
        history.append({"epoch": epoch + 1, "loss": finite_or_none(loss_sum / len(batches)),
                        "accuracy": accuracy_sum / len(batches)})
        if history[-1]["loss"] is None:
            raise TrainingDiverged(f"last-layer retraining diverged in epoch {epoch + 1} of {settings['epochs']}: "
                                   f"the loss became non-finite (lr={settings['lr']}); lower the learning rate")
    return history


def _run(tuned: nn.Module, original_model: nn.Module, clean, cue, settings: dict,
         device: torch.device, generator: torch.Generator) -> list[dict]:
    x, y = (t.to(device) for t in clean)
    num_classes = _check_labels(original_model, x, y, "data")
    optimizer = torch.optim.SGD(tuned.parameters(), lr=settings["lr"],
                                momentum=settings["momentum"],
                                weight_decay=settings["weight_decay"])
    bounds = batch_bounds(x.shape[0], settings["batch_size"])
    total = settings["epochs"] * len(bounds)
    features = original = None
    if cue is not None:
        x_cue, y_cue = (t.to(device) for t in cue)
        _check_labels(original_model, x_cue, y_cue, "cue_data")
        original = {n: p.detach().clone() for n, p in original_model.named_parameters()}
        features = _Features(_classifier(tuned))
        cue_bounds = batch_bounds(x_cue.shape[0], settings["batch_size"])
        cue_batches: list[torch.Tensor] = []
    history = []
    step = 0
    try:
        for epoch in range(settings["epochs"]):
            sums = {"loss": 0.0, "accuracy": 0.0, "barrier_loss": 0.0, "interpolated_loss": 0.0,
                    "invariance_loss": 0.0}
            batches = _batches(bounds, generator)
            tuned.train()
            for idx in batches:
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(settings["lr"], step, total)
                if cue is not None:
                    if not cue_batches:
                        cue_batches = _batches(cue_bounds, generator)
                    cue_idx = cue_batches.pop(0)
                    xc, yc = x_cue[cue_idx], y_cue[cue_idx]
                    t = interpolation_point(generator)
                    loss, interpolated = barrier_loss(tuned, original, t, xc, yc,
                                                      settings["margin"])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    sums["barrier_loss"] += loss.item()
                    sums["interpolated_loss"] += interpolated
                xb, yb = x[idx], y[idx]
                logits = tuned(xb)
                loss = F.cross_entropy(logits, yb)
                total_loss = loss
                if cue is not None:
                    clean_features = features.value
                    tuned(xc)
                    inv = invariance_loss(clean_features, yb, features.value, yc, num_classes)
                    total_loss = loss + settings["invariance_weight"] * inv
                    sums["invariance_loss"] += inv.item()
                optimizer.zero_grad(set_to_none=True)
                total_loss.backward()
                optimizer.step()
                step += 1
                sums["loss"] += loss.item()
                sums["accuracy"] += (logits.detach().argmax(1) == yb).double().mean().item()
            entry = {"epoch": epoch + 1}
            keys = ("loss", "accuracy") + (
                ("barrier_loss", "interpolated_loss", "invariance_loss") if cue else ())
            entry.update({k: finite_or_none(sums[k] / len(batches)) for k in keys})
            history.append(entry)
            if entry["loss"] is None or (cue is not None and entry["barrier_loss"] is None):
                raise TrainingDiverged(f"fine-tuning diverged in epoch {epoch + 1} of {settings['epochs']}: "
                                       f"the loss became non-finite (lr={settings['lr']}); lower the "
                                       "learning rate")
    finally:
        if features is not None:
            features.remove()
    return history


def _check_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str) -> int:
    """The model's number of outputs; labels must index them."""
    with torch.no_grad():
        was_training = model.training
        model.eval()
        try:
            num_classes = int(model(x[:2]).shape[1])
        finally:
            model.train(was_training)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}) (the model's outputs), "
                         f"got [{int(y.min())}, {int(y.max())}]")
    return num_classes
