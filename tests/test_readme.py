"""The README's Python examples run exactly as written (```python blocks; ```py blocks need what
no test machine has, such as a Slurm cluster, and are shown only)."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 3


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write files into the working directory
    namespace: dict = {}
    for block in _python_blocks():  # blocks build on each other, as a reader runs them
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "similarity_state.npz").exists()
    acc = namespace["acc"]
    restored = type(acc).load(tmp_path / "similarity_state.npz")
    assert restored.n_samples == acc.n_samples == 2000
    assert restored.svcca() == pytest.approx(acc.svcca(), rel=1e-12)
