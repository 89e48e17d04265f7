"""mmkern._C_cuda itself and how the device route decides to use it (tests that run without a GPU).

The module is built whenever nvcc was found; its functions check their arguments before
launching anything, so those checks run here. ``mmkern._cuda.kernels_for`` runs the module's
probe kernel on a device once and falls back to the torch expressions when it fails (a driver
older than the runtime, a GPU architecture the module was not compiled for); ``show_config``
says so.
"""

from __future__ import annotations

import contextlib
import io

import pytest

import mmkern
from mmkern import _cuda


def _module():
    return pytest.importorskip("mmkern._C_cuda", reason="mmkern._C_cuda was not built")


def test_build_info_and_show_config():
    torch = pytest.importorskip("torch")
    module = _module()
    info = module.build_info()
    assert isinstance(info["cuda_version"], int) and info["cuda_version"] >= 12000
    assert isinstance(info["device_count"], int) and info["device_count"] >= 0
    assert info["version"] in (mmkern.__version__, "")
    if torch.cuda.is_available():
        assert info["device_count"] == torch.cuda.device_count()
    config = mmkern._config.config()
    assert config["cuda_module"] is True and config["cuda"]["cuda_version"] == info["cuda_version"]
    out = io.StringIO()
    mmkern.show_config(file=out)
    assert "CUDA module:  built" in out.getvalue()


def test_a_failed_probe_falls_back_and_is_reported(monkeypatch):
    """A module that imports but whose kernels cannot run on a device: kernels_for returns None
    for that device (the torch expressions take over), once probed, and show_config says why."""
    torch = pytest.importorskip("torch")
    probes = []

    class Broken:
        @staticmethod
        def probe():
            probes.append(1)
            return "no kernel image is available for execution on the device"

        @staticmethod
        def build_info():
            return {"version": mmkern.__version__, "cuda_version": 13000, "architectures": "90",
                    "device_count": 0}

    monkeypatch.setattr(_cuda, "_MODULE", Broken)
    monkeypatch.setattr(_cuda, "_IMPORTED", True)
    monkeypatch.setattr(_cuda, "_PROBED", {})
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    device = torch.device("cuda", 3)
    assert _cuda.kernels_for(device) is None
    assert _cuda.kernels_for(device) is None and probes == [1]  # probed once
    assert _cuda.kernels_for(torch.device("cpu")) is None and probes == [1]
    out = io.StringIO()
    mmkern.show_config(file=out)
    assert "cuda:3:       kernels cannot run (no kernel image is available for execution on the device); " \
           "torch fallback" in out.getvalue()
    assert _cuda.status()["probed"] == {3: "no kernel image is available for execution on the device"}


def test_a_working_probe_serves_the_kernels(monkeypatch):
    torch = pytest.importorskip("torch")

    class Working:
        @staticmethod
        def probe():
            return ""

    monkeypatch.setattr(_cuda, "_MODULE", Working)
    monkeypatch.setattr(_cuda, "_IMPORTED", True)
    monkeypatch.setattr(_cuda, "_PROBED", {})
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    assert _cuda.kernels_for(torch.device("cuda", 0)) is Working


def test_similarity_kernels_check_their_arguments():
    module = _module()
    with pytest.raises(ValueError, match="ld"):
        module.pack_rows([(0, 10, 3, 3, 1, 1)], 0, 10, 0, 0, 5)
    with pytest.raises(ValueError, match="dtype"):
        module.pack_rows([(0, 10, 3, 3, 1, 7)], 0, 10, 0, 0, 10)
    with pytest.raises(ValueError, match="rows"):
        module.pack_rows([(0, 10, 3, 3, 1, 0)], 5, 10, 0, 0, 10)
    with pytest.raises(ValueError, match="weights"):
        module.pair_summaries(4, 2, 0, 0, weighted=16)
    with pytest.raises(ValueError, match="norm_products"):
        module.cka_from_norms(4, 2, 10.0, 0, 0, 0, 0, cka_debiased=16)
    # nothing to do: returns without touching the device
    module.pack_rows([(16, 10, 3, 3, 1, 1)], 0, 0, 0, 0, 0)
    module.pair_summaries(0, 3, 0, 0, mean=16)
    module.cka_from_norms(0, 2, 10.0, 0, 0, 0, 0, cka=16)


def test_multiplicity_and_lerp_kernels_check_their_arguments():
    module = _module()
    assert module.rashomon_workspace_per_sample(3, 4) == 3 * 4 + 3 * 3 + 4
    bad = [
        ("bits", lambda: module.disagreement_counts(16, 12, 3, 10, 16)),
        ("null codes", lambda: module.disagreement_counts(0, 32, 3, 10, 16)),
        ("models", lambda: module.disagreement_counts(16, 8, -1, 10, 16)),
        ("negative M or n", lambda: module.disagreement_counts(16, 8, 3, -10, 16)),
        ("null counts", lambda: module.disagreement_counts(16, 8, 3, 10, 0)),
        ("dtype", lambda: module.soft_disagreement(16, 2, 3, 10, 4, 0, 16)),
        ("metric", lambda: module.soft_disagreement(16, 0, 3, 10, 4, 4, 16)),
        ("C must be >= 1", lambda: module.soft_disagreement(16, 1, 3, 10, 0, 0, 16)),
        ("null out", lambda: module.soft_disagreement(16, 1, 3, 10, 4, 0, 0)),
        ("classes", lambda: module.rashomon_capacity(16, 1, 3, 10, 2**31, 1e-6, 100, 16)),
        ("tol", lambda: module.rashomon_capacity(16, 1, 3, 10, 4, 0.0, 100, 16, 0, 16, 1000)),
        ("max_iter", lambda: module.rashomon_capacity(16, 1, 3, 10, 4, 1e-6, 0, 16, 0, 16, 1000)),
        ("null probs, out or workspace", lambda: module.rashomon_capacity(16, 1, 3, 10, 4, 1e-6, 100, 16)),
        ("workspace_size must be at least 25", lambda: module.rashomon_capacity(16, 1, 3, 10, 4, 1e-6, 100, 16, 0, 16, 24)),
        ("dtype", lambda: module.lerp_many(16, 16, 5, 4, 16, 2, 16)),
        ("non-negative", lambda: module.lerp_many(16, 16, 0, -1, 16, 2, 16)),
    ]
    for message, call in bad:
        with pytest.raises(ValueError, match=message):
            call()
    # nothing to do: returns without touching the device
    module.disagreement_counts(0, 8, 0, 10, 0)
    module.soft_disagreement(0, 0, 0, 10, 3, 1, 0)
    module.rashomon_capacity(0, 0, 3, 0, 4, 1e-6, 100, 0)
    module.lerp_many(0, 0, 0, 0, 0, 0, 0)
