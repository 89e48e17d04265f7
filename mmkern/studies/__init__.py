"""The research studies mmkern exists for, each reproducible with one command (``mmkern reproduce``).

- :mod:`mmkern.studies.heljakka2023`: Heljakka et al., "Disentangling Model Multiplicity in Deep
  Learning": representational vs predictive multiplicity over factors of training.
- :mod:`mmkern.studies.lubana2023`: Lubana et al., "Mechanistic Mode Connectivity" (ICML 2023):
  cue models, their fine-tuning by FTM, FTS, LLR, LPFT and CBFT, and the connectivity claims.

Each study writes into one directory, resumably (every trained or fine-tuned model is a zoo
member, every curve a file written atomically), and ends with ``results.json`` and ``report.md``.
"""

STUDIES = ("heljakka2023", "lubana2023")

__all__ = ["STUDIES"]
