"""Benchmark cases for the connectivity evaluation (``mmkern bench connectivity``).

Target (on a 2-core machine): the interpolation curve of a small convolutional network
with BatchNorm, K=21 alphas, 5000 evaluation and 2000 BatchNorm samples of 3x32x32 images, at
least 3x faster than the reference per-alpha loop, with the same numbers. The data come as
DataLoaders (batches of 256), the usual way: the reference iterates them twice per alpha, mmkern
twice per chunk of alphas. A second row gives the same curve from in-memory tensor pairs, where
loading costs nothing and the gain is the evaluation itself (channels-last layout, folded and
in-place BatchNorm). The reference's time varies from run to run with how many page faults its
fresh activation tensors take (glibc hands freed activations back to the system and faults them
in again; mmkern normalises in place), so the target row takes its best of two runs. A third row
times the pairwise barrier matrix of four models. Timing depends on the architecture and the data sizes, not on
the weights' values, so the models are freshly initialised from fixed seeds. A CUDA row times
the tensor curve on the GPU against mmkern on the CPU (TF32 off, the default; skipped without a
GPU).

Alignment rows: weight matching of two bundled CIFAR ResNet-18s with random weights (target: under
10 s on 2 cores; no baseline here, git-re-basin's own code is JAX), activation matching of two
small CNNs over 5000 images (the time is reported), and the pairwise barriers after weight
matching against the reference's per-alpha loop on the same alignments. The loss-plane row: a 9x9
grid through three of the small CNNs (plus the three models' own points), BatchNorm re-estimated
at every point, against the reference's one model per point (target: at least 1.5x).
"""

from __future__ import annotations

import numpy as np

from mmkern.bench.runner import Case, cuda_skip, to_cuda


def small_bn_cnn(seed: int, channels: int = 16):
    """Three 3x3 conv -> BatchNorm -> ReLU stages (stride 1, 2, 2), global pooling, a linear head.

    Parameters
    ----------
    seed : int
        Initialisation seed (the global torch RNG is left untouched).
    channels : int
        Width of the first stage; the next two have 2x and 4x as many channels.
    """
    import torch
    from torch import nn

    c = channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.BatchNorm2d(4 * c), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, 10),
        )


def image_set(n: int, seed: int):
    """``(x, y)``: float32 images ``(n, 3, 32, 32)`` and int64 labels in ``[0, 10)``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return (torch.randn((n, 3, 32, 32), generator=generator),
            torch.randint(0, 10, (n,), generator=generator))


def loaders(*sets, batch_size: int = 256):
    """Each ``(x, y)`` pair as a DataLoader over a TensorDataset, in order."""
    from torch.utils.data import DataLoader, TensorDataset

    return [DataLoader(TensorDataset(*pair), batch_size=batch_size) for pair in sets]


def _curve_values(curves) -> np.ndarray:
    """Losses then accuracies of one curve or a dict of curves, for the agreement check."""
    curves = curves.values() if isinstance(curves, dict) else [curves]
    return np.concatenate([np.concatenate([c.loss, c.accuracy]) for c in curves])


def _barrier_values(result) -> np.ndarray:
    return np.stack([result.loss_barrier, result.loss_barrier_mean, result.error_barrier,
                     result.error_barrier_mean])


def cases(quick: bool = False) -> list[Case]:
    """The connectivity benchmark cases; ``quick`` shrinks them to a seconds-long smoke run."""
    import mmkern
    from mmkern import reference

    k, n_eval, n_bn, width = (5, 500, 200, 8) if quick else (21, 5000, 2000, 16)
    m, k_pairs = (3, 3) if quick else (4, 5)

    def curve_inputs():
        return small_bn_cnn(1, width), small_bn_cnn(2, width), image_set(n_eval, 3), \
            image_set(n_bn, 4)

    def loader_inputs():
        a, b, data, bn = curve_inputs()
        return (a, b, *loaders(data, bn))

    def curve(impl):
        return lambda a, b, data, bn: _curve_values(impl.interpolation_curve(a, b, data, k,
                                                                             bn_data=bn))

    def pairwise_inputs():
        return [small_bn_cnn(s, width) for s in range(m)], image_set(n_eval, 3), image_set(n_bn, 4)

    def cuda_inputs():
        return curve_inputs(), to_cuda(curve_inputs())

    size = f"n_eval={n_eval} n_bn={n_bn} conv {width}-{2 * width}-{4 * width} BN, 3x32x32"
    resnet_width = 0.25 if quick else 1.0

    def resnets():
        import torch

        from mmkern.train import build_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_model("resnet18", (3, 32, 32), 10, width=resnet_width), \
                build_model("resnet18", (3, 32, 32), 10, width=resnet_width)

    def weight_matching(a, b):
        return mmkern.align(a, b).objective[-1]

    def activation_inputs():
        return small_bn_cnn(1, width), small_bn_cnn(2, width), image_set(n_eval, 3)

    def activation_matching(a, b, data):
        return mmkern.align(a, b, "activations", data, example_input=data[0][:2]).objective[-1]

    plane_n = 3 if quick else 9

    def plane_inputs():
        return [small_bn_cnn(s, width) for s in (1, 2, 3)], image_set(n_eval, 3), image_set(n_bn, 4)

    def plane(impl):
        return lambda models, data, bn: impl.loss_plane(models, data, grid=plane_n, bn_data=bn).loss

    def aligned_barriers(impl):
        return lambda models, data, bn: _barrier_values(
            impl.pairwise_barriers(models, data, k_pairs, bn_data=bn, align="weights"))

    return [
        Case(f"align weights ResNet-18 width={resnet_width} 3x32x32 (random), target under 10 s", resnets,
             None, weight_matching),
        Case(f"align activations conv {width}-{2 * width}-{4 * width} BN, n={n_eval} 3x32x32",
             activation_inputs, None, activation_matching),
        Case(f"loss_plane {plane_n}x{plane_n} through 3 models {size}", plane_inputs, plane(reference),
             plane(mmkern), target=None if quick else 1.5, rtol=1e-5, floor=1.0),
        Case(f"pairwise_barriers align=weights M={m} K={k_pairs} {size}", pairwise_inputs,
             aligned_barriers(reference), aligned_barriers(mmkern), rtol=1e-5, floor=1.0),
        Case(f"interpolation_curve K={k} {size}, DataLoaders", loader_inputs,
             curve(reference), curve(mmkern), target=None if quick else 3, rtol=1e-5, floor=1.0,
             reference_repeat=1 if quick else 2),
        Case(f"interpolation_curve K={k} {size}, tensors", curve_inputs,
             curve(reference), curve(mmkern), rtol=1e-5, floor=1.0),
        Case(f"pairwise_barriers M={m} K={k_pairs} {size}", pairwise_inputs,
             lambda models, data, bn: _barrier_values(
                 reference.pairwise_barriers(models, data, k_pairs, bn_data=bn)),
             lambda models, data, bn: _barrier_values(
                 mmkern.pairwise_barriers(models, data, k_pairs, bn_data=bn)),
             target=None, rtol=1e-5, floor=1.0),
        Case(f"align weights ResNet-18 width={resnet_width}, CUDA (baseline: mmkern CPU)",
             lambda: (resnets(), to_cuda(resnets())), lambda host, device: weight_matching(*host),
             lambda host, device: weight_matching(*device), rtol=1e-6, skip=cuda_skip()),
        Case(f"loss_plane {plane_n}x{plane_n} {size}, CUDA (baseline: mmkern CPU)",
             lambda: (plane_inputs(), to_cuda(plane_inputs())), lambda host, device: plane(mmkern)(*host),
             lambda host, device: plane(mmkern)(*device), rtol=1e-4, floor=1.0, skip=cuda_skip()),
        Case(f"interpolation_curve K={k} {size}, tensors, CUDA (baseline: mmkern CPU)", cuda_inputs,
             lambda host, device: curve(mmkern)(*host), lambda host, device: curve(mmkern)(*device),
             rtol=1e-4, floor=1.0, skip=cuda_skip()),
    ]
