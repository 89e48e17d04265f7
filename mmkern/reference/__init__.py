"""Plain NumPy reference implementations: the ground truth of the tests and benchmarks.

Each function has the same name and signature as its fast counterpart in :mod:`mmkern` and is
written literally from the definitions in ``docs/definitions.md``, for clarity rather than speed.

The connectivity references (:mod:`mmkern.reference.connectivity`) need PyTorch. They are
re-exported lazily: ``import mmkern.reference`` never imports torch, and the first access to one
of their names (e.g. ``mmkern.reference.interpolation_curve``) imports the module. Their names
are listed in ``__all__`` only when torch is installed.
"""

from mmkern._lazy import lazy_exports, torch_available
from mmkern.reference.multiplicity import (
    SOFT_METRICS,
    PredictiveMultiplicity,
    disagreement_matrix,
    predictive_multiplicity,
    rashomon_capacity,
    soft_disagreement_matrix,
)
from mmkern.reference.similarity import (
    KEEP_SLACK,
    RANK_RTOL,
    CCAResult,
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
    # similarity
    "KEEP_SLACK",
    "RANK_RTOL",
    "CCAResult",
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
    # predictive multiplicity
    "SOFT_METRICS",
    "PredictiveMultiplicity",
    "disagreement_matrix",
    "predictive_multiplicity",
    "rashomon_capacity",
    "soft_disagreement_matrix",
]

#: Names of :mod:`mmkern.reference.connectivity` re-exported lazily (they need torch).
_CONNECTIVITY_NAMES = (
    "BN_BATCH_SIZE",
    "InterpolationCurve",
    "PairwiseBarriers",
    "interpolate",
    "interpolation_curve",
    "pairwise_barriers",
    "loss_plane",
    "reset_and_estimate_batchnorm",
)

if torch_available():
    __all__ += list(_CONNECTIVITY_NAMES)

__getattr__, __dir__ = lazy_exports(
    globals(), dict.fromkeys(_CONNECTIVITY_NAMES, "mmkern.reference.connectivity"))
