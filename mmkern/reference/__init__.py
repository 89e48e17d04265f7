"""Plain NumPy reference implementations: the ground truth of the tests and benchmarks.

Each function has the same name and signature as its fast counterpart in :mod:`mmkern` and is
written literally from the definitions in ``DESIGN.md``, for clarity rather than speed.
"""

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
