"""mmkern: fast, tested kernels for model multiplicity.

Representational similarity (SVCCA, CCA, PWCCA, linear CKA; single, batched, pairwise, cross and
streaming) with plain-NumPy reference implementations in :mod:`mmkern.reference`.
"""

from mmkern._version import __version__
from mmkern._config import show_config
from mmkern.similarity import (
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
