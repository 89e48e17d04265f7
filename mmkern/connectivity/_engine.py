"""The evaluation engine behind :mod:`mmkern.connectivity`: many weight sets per pass over the data.

:class:`CurveEngine` evaluates chunks of weight sets (rows of flat vectors, see
:mod:`mmkern.connectivity._weight_layout`) of one architecture. For a chunk of ``k`` rows it

1. loads each row into one of ``k`` private working copies of the template model;
2. re-estimates the BatchNorm statistics of all ``k`` copies in **one** pass over ``bn_data``
   (reset, cumulative average, BatchNorm layers alone in training mode, the batches exactly as
   given, so the estimate is the reference's);
3. folds each convolution -> BatchNorm pair of every copy (:mod:`mmkern.connectivity._inference_graph`);
4. evaluates all ``k`` copies in **one** pass over each evaluation set, each batch moved to the
   device (and to channels-last layout) once and split into cache-sized micro-batches of
   ``eval_batch_size`` samples (in evaluation mode a sample's output does not depend on its
   batch, so the split changes nothing but float rounding).

4-D inputs run in the channels-last memory format when the model has 2-D convolutions, which
oneDNN convolves several times faster on CPU (benchmarks/NOTES.md). A model whose forward
cannot take such a tensor (e.g. it calls ``.view`` on a convolution output) is detected with a
one-sample probe before any pass and evaluated in the default format.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Optional

import numpy as np
import torch
from torch import nn

from mmkern.connectivity._checks import LossFn, set_name
from mmkern.connectivity._data import batch_metrics, batches, running_on
from mmkern.connectivity._models import batchnorm_estimation, device_of, tracking_batchnorms
from mmkern.connectivity._batchnorm_pass import batchnorm_pass_module
from mmkern.connectivity._inference_graph import FoldedBatchNorm, make_relus_inplace
from mmkern.connectivity._weight_layout import WeightLayout


@contextlib.contextmanager
def float32_precision(allow_tf32: bool) -> Iterator[None]:
    """Within the block, float32 matrix products and convolutions on CUDA use TF32 tensor cores
    only when ``allow_tf32`` (torch's own default allows them for cuDNN convolutions, which
    rounds inputs to 10 mantissa bits: curves of float32 models then differ from the CPU's by
    ~1e-3 relative). Restores torch's settings afterwards; no effect on the CPU."""
    backends = torch.backends
    new_api = hasattr(getattr(backends.cudnn, "conv", None), "fp32_precision")
    if new_api:  # torch >= 2.9: per-backend precision strings
        targets = [backends.cuda.matmul, backends.cudnn.conv]
        saved = [t.fp32_precision for t in targets]
        value = "tf32" if allow_tf32 else "ieee"
        for t in targets:
            t.fp32_precision = value
    else:
        saved = [backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32]
        backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = bool(allow_tf32)
    try:
        yield
    finally:
        if new_api:
            for t, v in zip(targets, saved):
                t.fp32_precision = v
        else:
            backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = saved


def _first_batch(source, batch_size: int, name: str) -> Optional[torch.Tensor]:
    for x, _, _ in batches(source, batch_size, name, labels=False):
        if x.shape[0]:
            return x
    return None


class CurveEngine:
    """Evaluates chunks of flat weight rows of ``template``'s architecture.

    Parameters
    ----------
    template : torch.nn.Module
        A model of the architecture; its structure, forward code and integer buffers are those
        of every evaluated weight set. It is never modified (only deep-copied).
    layout : WeightLayout
        The flat layout of ``template``'s floating weights.
    sets : dict
        Evaluation sets by key (see :func:`mmkern.connectivity._checks.check_sets`).
    bn_data : DataLoader or (x, y) pair or None
        BatchNorm re-estimation data (``None`` when the model has no tracking BatchNorm).
    loss_fn : callable or None
        Per-sample loss, or ``None`` for float64 cross-entropy.
    batch_size : int
        Batch size of ``(x, y)`` pairs (the BatchNorm batches, hence the estimate, depend on it).
    eval_batch_size : int
        Micro-batch size of the evaluation passes.
    """

    def __init__(self, template, layout: WeightLayout, sets: dict, bn_data, loss_fn: Optional[LossFn],
                 batch_size: int, eval_batch_size: int):
        self.template = template
        self.layout = layout
        self.sets = sets
        self.bn_data = bn_data
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.device = device_of(template)
        self.has_batchnorm = bool(tracking_batchnorms(template)) and bn_data is not None
        self.channels_last = self._decide_channels_last()
        self._pool: list[nn.Module] = []
        self._folded: list[FoldedBatchNorm] = []
        self._bn_pass: list[nn.Module] = []

    # ---------------------------------------------------------------------------- set-up

    def _decide_channels_last(self) -> bool:
        """Channels-last when the model has 2-D convolutions and its forward takes such input.

        The probe is one sample of the first batch of the first source (``bn_data``, else the
        first evaluation set; a DataLoader is iterated for it, once).
        """
        if not any(isinstance(m, nn.Conv2d) for m in self.template.modules()):
            return False
        source, name = ((self.bn_data, "bn_data") if self.has_batchnorm
                        else next((s, set_name(k)) for k, s in self.sets.items()))
        x = _first_batch(source, self.batch_size, name)
        if x is None or x.ndim != 4:
            return False
        probe = copy.deepcopy(self.template).eval().to(memory_format=torch.channels_last)
        try:
            with torch.no_grad():
                probe(x[:1].to(self.device).contiguous(memory_format=torch.channels_last))
        except RuntimeError:  # e.g. ``.view`` of a convolution output
            return False
        return True

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _models(self, k: int) -> list[nn.Module]:
        while len(self._pool) < k:
            model = copy.deepcopy(self.template).eval()
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
            make_relus_inplace(model)  # a private copy, run without autograd
            self._pool.append(model)
            self._bn_pass.append(batchnorm_pass_module(model) if self.has_batchnorm else model)
            self._folded.append(FoldedBatchNorm(model))
        return self._pool[:k]

    # ---------------------------------------------------------------------------- passes

    def _estimate_batchnorm(self, models: list[nn.Module]) -> None:
        """One pass over ``bn_data`` re-estimating every model's BatchNorm statistics."""
        n_samples = 0
        with batchnorm_estimation(models), torch.no_grad():
            for x, _, _ in batches(self.bn_data, self.batch_size, "bn_data", labels=False):
                if x.shape[0] == 0:
                    continue
                x = self._to_device(x)
                with running_on("bn_data", x):
                    for bn_pass in self._bn_pass[:len(models)]:
                        bn_pass(x)
                n_samples += x.shape[0]
        if n_samples == 0:
            raise ValueError("bn_data is empty (0 samples)")

    def _evaluate(self, models: list[nn.Module], key) -> tuple[np.ndarray, np.ndarray]:
        """(per-sample mean loss, accuracy) of each model on one set, in one pass. The sums stay
        on the models' device and are read back once, at the end of the pass."""
        name = set_name(key)
        k = len(models)
        loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        n_correct = torch.zeros(k, dtype=torch.int64, device=self.device)
        n_samples = 0
        step = self.eval_batch_size
        with torch.no_grad():
            for x, y, top in batches(self.sets[key], self.batch_size, name):
                if x.shape[0] == 0:
                    continue
                x = self._to_device(x)
                y = y.to(device=self.device, dtype=torch.long)
                for start in range(0, x.shape[0], step):
                    xs, ys = x[start:start + step], y[start:start + step]
                    for j, model in enumerate(models):
                        with running_on(name, xs):
                            logits = model(xs)
                        batch_loss, batch_correct = batch_metrics(logits, ys, self.loss_fn, top, name)
                        loss_sum[j] += batch_loss
                        n_correct[j] += batch_correct
                n_samples += y.shape[0]
        if n_samples == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        return loss_sum.cpu().numpy() / n_samples, n_correct.cpu().numpy() / n_samples

    def run(self, rows: list[torch.Tensor]) -> tuple[dict, dict]:
        """Loss and accuracy of the ``k`` weight sets in ``rows``, on every evaluation set.

        Parameters
        ----------
        rows : list of torch.Tensor
            One ``(k, size)`` tensor per layout group; row ``j`` of each is weight set ``j``.

        Returns
        -------
        (dict, dict)
            Per set key, float64 arrays of shape ``(k,)``: the per-sample mean losses and the
            accuracies.
        """
        k = rows[0].shape[0] if rows else 1
        models = self._models(k)
        for j, model in enumerate(models):
            self.layout.load(model, [r[j] for r in rows])
        if self.has_batchnorm:
            self._estimate_batchnorm(models)
        models = [folded.refresh() for folded in self._folded[:k]]
        loss, accuracy = {}, {}
        for key in self.sets:
            loss[key], accuracy[key] = self._evaluate(models, key)
        return loss, accuracy
