"""Independent textbook formulations of the similarity metrics, used to check the reference.

These deliberately take a different route from :mod:`mmkern.reference` (covariance matrices,
centering matrices, Song et al.'s closed form, feature-space sums) so that an error in the
reference would show up as a disagreement. They assume well-conditioned, full-rank data.
"""

from __future__ import annotations

import numpy as np


def classic_cca_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Canonical correlations from the covariance formula (descending).

    rho_i^2 are the eigenvalues of ``Sxx^-1 Sxy Syy^-1 Syx``; the ``min(d1, d2)`` largest are
    returned. Valid for full-rank, well-conditioned data with ``n > d1, d2``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    sxx = x.T @ x / (n - 1)
    syy = y.T @ y / (n - 1)
    sxy = x.T @ y / (n - 1)
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    eig = np.sort(np.real(np.linalg.eigvals(m)))[::-1]
    k = min(x.shape[1], y.shape[1])
    return np.sqrt(np.clip(eig[:k], 0.0, 1.0))


def _centering_matrix(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Biased linear CKA as ``tr(K H L H) / sqrt(tr(K H K H) tr(L H L H))`` on raw data."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    h = _centering_matrix(x.shape[0])
    k = x @ x.T
    g = y @ y.T
    kh = k @ h
    gh = g @ h
    return float(np.trace(kh @ gh) / np.sqrt(np.trace(kh @ kh) * np.trace(gh @ gh)))


def song_hsic_unbiased(k: np.ndarray, g: np.ndarray) -> float:
    """Unbiased HSIC in the closed form of Song et al. (2012), from ``(n, n)`` Gram matrices.

    ``1/(n(n-3)) [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1]`` with ``K~``, ``L~``
    the Gram matrices with zeroed diagonals.
    """
    n = k.shape[0]
    k = k - np.diag(np.diag(k))
    g = g - np.diag(np.diag(g))
    one = np.ones(n)
    term1 = np.trace(k @ g)
    term2 = (one @ k @ one) * (one @ g @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ k @ g @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def song_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA from :func:`song_hsic_unbiased` on uncentered data."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    k = x @ x.T
    g = y @ y.T
    return song_hsic_unbiased(k, g) / np.sqrt(song_hsic_unbiased(k, k) * song_hsic_unbiased(g, g))


def _feature_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """``n (n - 3) HSIC_u`` from centered features, without forming ``n x n`` matrices."""
    n = x.shape[0]
    cross = np.sum((x.T @ y) ** 2)
    norms = np.sum(np.sum(x**2, axis=1) * np.sum(y**2, axis=1))
    return float(cross - n / (n - 2) * norms + np.sum(x**2) * np.sum(y**2) / ((n - 1) * (n - 2)))


def feature_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA from feature-space sums on centered data (cheap for large n).

    ``||X'Y||^2 - n/(n-2) sum_s |x_s|^2 |y_s|^2 + ||X||^2 ||Y||^2 / ((n-1)(n-2))``, then the CKA
    ratio; 0.0 when a self-term is not positive, clipped to [-1, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    xy, xx, yy = _feature_hsic(x, y), _feature_hsic(x, x), _feature_hsic(y, y)
    if xx <= 0.0 or yy <= 0.0:
        return 0.0
    return float(np.clip(xy / np.sqrt(xx * yy), -1.0, 1.0))


def classic_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """PWCCA from the covariance formula: canonical directions of ``x`` are the eigenvectors
    ``w_i`` of ``Sxx^-1 Sxy Syy^-1 Syx``; ``h_i = X w_i / ||X w_i||``; weights
    ``sum_j |<h_i, x_j>|`` over the centered columns of ``x``. Needs distinct correlations.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y
    m = np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)
    eig, vec = np.linalg.eig(m)
    order = np.argsort(np.real(eig))[::-1]
    k = min(x.shape[1], y.shape[1])
    rho = np.sqrt(np.clip(np.real(eig[order[:k]]), 0.0, 1.0))
    h = x @ np.real(vec[:, order[:k]])
    h /= np.linalg.norm(h, axis=0)
    alpha = np.sum(np.abs(h.T @ x), axis=1)
    return float(np.sum(alpha * rho) / np.sum(alpha))
