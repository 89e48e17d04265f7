"""Plain NumPy reference implementations: the ground truth of the tests and benchmarks.

Each function has the same name and signature as its fast counterpart in :mod:`mmkern` and is
written literally from the definitions in ``DESIGN.md``, for clarity rather than speed.

The connectivity references (:mod:`mmkern.reference.connectivity`) need PyTorch. They are
re-exported lazily: ``import mmkern.reference`` never imports torch, and the first access to one
of their names (e.g. ``mmkern.reference.interpolation_curve``) imports the module. Their names
are listed in ``__all__`` only when torch is installed.
"""

import importlib as _importlib
import importlib.util as _importlib_util

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
    "InterpolationCurve",
    "PairwiseBarriers",
    "interpolate",
    "interpolation_curve",
    "pairwise_barriers",
)

if _importlib_util.find_spec("torch") is not None:
    __all__ += list(_CONNECTIVITY_NAMES)


def __getattr__(name):
    if name in _CONNECTIVITY_NAMES:
        module = _importlib.import_module("mmkern.reference.connectivity")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_CONNECTIVITY_NAMES))
