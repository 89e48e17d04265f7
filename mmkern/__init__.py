"""mmkern: fast, tested kernels for model multiplicity.

Representational similarity (SVCCA, CCA, PWCCA, linear CKA; single, batched, pairwise, cross and
streaming), predictive multiplicity (disagreement matrices, ambiguity, discrepancy, variance,
Rashomon capacity) and linear mode connectivity (interpolation curves and barriers, with
PyTorch), with plain reference implementations in :mod:`mmkern.reference`.

``import mmkern`` does not import PyTorch: the connectivity names are loaded on first use.
"""

import os as _os

# How long an idle OpenMP thread spins before it sleeps. mmkern alternates OpenMP loops with
# multi-threaded BLAS calls, where spinning threads take the cores BLAS needs; torch (on the same
# OpenMP runtime) runs many short parallel operations back to back, where each sleep costs a
# wake-up. A short spin serves both (the measurements: benchmarks/NOTES.md). Only when the user
# set neither knob, and only if the runtime loads after this line (``import torch`` first loads
# it with its own defaults).
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "30000"

from mmkern._version import __version__  # noqa: E402
from mmkern._config import show_config  # noqa: E402
from mmkern._lazy import lazy_exports, torch_available  # noqa: E402
from mmkern.multiplicity import (  # noqa: E402
    PredictiveMultiplicity,
    disagreement_matrix,
    predictive_multiplicity,
    rashomon_capacity,
    soft_disagreement_matrix,
)
from mmkern.similarity import (  # noqa: E402
    CCAResult,
    SimilarityAccumulator,
    cca,
    cka,
    cross_cca,
    cross_cka,
    cross_pwcca,
    cross_svcca,
    pairwise_cca,
    pairwise_cka,
    pairwise_pwcca,
    pairwise_svcca,
    pwcca,
    svcca,
)

__all__ = [
    "__version__",
    "show_config",
    "CCAResult",
    "PredictiveMultiplicity",
    "disagreement_matrix",
    "predictive_multiplicity",
    "rashomon_capacity",
    "soft_disagreement_matrix",
    "SimilarityAccumulator",
    "cca",
    "cka",
    "cross_cca",
    "cross_cka",
    "cross_pwcca",
    "cross_svcca",
    "pairwise_cca",
    "pairwise_cka",
    "pairwise_pwcca",
    "pairwise_svcca",
    "pwcca",
    "svcca",
]

#: Names of :mod:`mmkern.connectivity`, re-exported lazily (they need torch).
_CONNECTIVITY_NAMES = (
    "Alignment",
    "InterpolationCurve",
    "LossPlane",
    "PairwiseBarriers",
    "Path",
    "PermutationSpec",
    "align",
    "fit_curve",
    "loss_plane",
    "permutation_spec",
    "interpolate",
    "interpolation_curve",
    "pairwise_barriers",
)

if torch_available():
    __all__ += list(_CONNECTIVITY_NAMES)

__getattr__, __dir__ = lazy_exports(
    globals(), dict.fromkeys(_CONNECTIVITY_NAMES, "mmkern.connectivity"))
