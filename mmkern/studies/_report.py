"""What the studies' reports share: how a finding is worded."""

from __future__ import annotations


def verdict(finding: dict) -> str:
    """"holds", "not testable here" or "does NOT hold": how a finding is reported."""
    if finding["holds"]:
        return "holds"
    return "not testable here" if not finding.get("testable", True) else "does NOT hold"
