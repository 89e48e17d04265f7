"""Synthetic activation populations for benchmarks: realistic spectra, seeded, reproducible.

Layers of trained networks have activations whose variance is concentrated in a few dozen
directions shared (up to a rotation) across models trained alike, plus model-specific
directions and a noise floor. :class:`SyntheticPopulation` draws exactly that: a common latent
signal with a power-law spectrum, a smaller model-specific latent signal, per-feature offsets (so
centering matters) and isotropic noise. The models (mixing maps) are fixed by ``seed``; samples
can be drawn in batches, so streaming benchmarks see the same models throughout.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class SyntheticPopulation:
    """M synthetic "models" that map shared and private latents to (n, d_i) activations.

    Parameters
    ----------
    widths : sequence of int
        Feature count d_i of each model.
    shared_dim, private_dim : int
        Rank of the latent signal common to all models and of each model's own signal.
    noise : float
        Standard deviation of the isotropic noise, relative to a unit-variance leading latent.
    seed : int
        Fixes the models.
    """

    def __init__(self, widths: Sequence[int], *, shared_dim: int = 48, private_dim: int = 16,
                 noise: float = 0.05, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.widths = [int(d) for d in widths]
        self.spectrum = np.arange(1, shared_dim + 1) ** -0.75  # power-law decay of latent scales
        self.private_dim, self.noise = private_dim, noise
        self.maps = [
            (rng.standard_normal((shared_dim, d)), rng.standard_normal((private_dim, d)), rng.normal(0.0, 1.0, (1, d)))
            for d in self.widths
        ]

    def sample(self, n: int, *, seed: int = 0, dtype=np.float32) -> list[np.ndarray]:
        """Activations of every model on ``n`` fresh samples: C-ordered (n, d_i) arrays."""
        rng = np.random.default_rng([seed, 1])
        shared = rng.standard_normal((n, len(self.spectrum))) * self.spectrum
        out = []
        for mix_s, mix_p, offset in self.maps:
            private = rng.standard_normal((n, self.private_dim)) * self.spectrum[: self.private_dim] * 0.5
            a = shared @ mix_s + private @ mix_p + self.noise * rng.standard_normal((n, mix_s.shape[1])) + offset
            out.append(a.astype(dtype))
        return out


def activation_population(n: int, widths: Sequence[int], *, dtype=np.float32, seed: int = 0, **kwargs) -> list[np.ndarray]:
    """``SyntheticPopulation(widths, seed=seed, **kwargs).sample(n, dtype=dtype)``."""
    return SyntheticPopulation(widths, seed=seed, **kwargs).sample(n, seed=seed, dtype=dtype)


def prediction_population(n_models: int, n: int, n_classes: int, *, spread: float = 0.6,
                          seed: int = 0, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of M models on n samples that mostly agree, and the true labels.

    Each sample has a true class and a shared logit vector favouring it (so models are accurate
    and agree on most samples); each model adds its own logit noise of scale ``spread`` and its
    own temperature, as models trained from different seeds do.

    Returns
    -------
    probs : numpy.ndarray, shape (M, n, C), ``dtype``
        Rows sum to 1.
    labels : numpy.ndarray, shape (n,), int64
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    shared = rng.standard_normal((n, n_classes))
    shared[np.arange(n), labels] += 2.5
    logits = shared[None] + spread * rng.standard_normal((n_models, n, n_classes))
    logits /= rng.uniform(0.7, 1.5, size=(n_models, 1, 1))  # per-model temperature
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs.astype(dtype), labels
