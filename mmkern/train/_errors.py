"""The training module's own failures (no torch needed to import or catch them)."""

from __future__ import annotations


class TrainingDiverged(RuntimeError):
    """Training made the loss or the weights non-finite (usually: the learning rate is too high).
    Nothing of such a run is returned or saved."""


class MembersFailed(RuntimeError):
    """Some members of a zoo run failed; the others were trained and saved.

    Attributes
    ----------
    failures : dict
        ``{member id: the reason}``, in recipe order.
    records : list of dict
        The records of the members that are finished.
    """

    def __init__(self, what: str, failures: dict[str, str], records: list):
        self.failures = dict(failures)
        self.records = list(records)
        lines = "; ".join(f"{member}: {reason}" for member, reason in self.failures.items())
        super().__init__(f"{len(self.failures)} member(s) of {what} failed ({lines}); the others are "
                         "saved, and a rerun retries only the failed ones")
