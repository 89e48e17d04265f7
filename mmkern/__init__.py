"""mmkern: fast, tested kernels for model multiplicity.

Representational similarity (SVCCA, CCA, PWCCA, linear CKA; single, batched, pairwise, cross and
streaming), predictive multiplicity (disagreement matrices, ambiguity, discrepancy, variance,
Rashomon capacity) and linear mode connectivity (interpolation curves and barriers, with
PyTorch), with plain reference implementations in :mod:`mmkern.reference`.

``import mmkern`` does not import PyTorch: the connectivity names are loaded on first use.
"""

import os as _os

# mmkern alternates OpenMP loops with multi-threaded BLAS calls. OpenMP threads that spin while
# waiting for work steal the cores BLAS needs (measured: a single svcca 6x slower on 2 cores),
# so unless the user chose otherwise, idle OpenMP threads sleep. Must be set before the OpenMP
# runtime loads with mmkern._C.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
    "InterpolationCurve",
    "PairwiseBarriers",
    "interpolate",
    "interpolation_curve",
    "pairwise_barriers",
)

if torch_available():
    __all__ += list(_CONNECTIVITY_NAMES)

__getattr__, __dir__ = lazy_exports(globals(), "mmkern.connectivity", _CONNECTIVITY_NAMES)
