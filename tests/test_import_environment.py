"""What ``import mmkern`` does to the process environment: the OpenMP spin default only."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("given, expected", [
    ({}, "30000"),                                  # nothing chosen: a short spin
    ({"OMP_WAIT_POLICY": "PASSIVE"}, None),         # the user's policy stands alone
    ({"GOMP_SPINCOUNT": "5"}, "5"),                 # the user's spin count is kept
])
def test_import_sets_a_short_openmp_spin_unless_the_user_chose(tmp_path, given, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(given)
    code = "import os, mmkern; print(os.environ.get('GOMP_SPINCOUNT'))"
    # cwd outside the checkout, so the installed package is imported, not the source tree.
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == str(expected)
