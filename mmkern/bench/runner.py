"""Benchmark cases and the comparison table: reference vs mmkern, same data, same run.

A :class:`Case` names a workload, builds its inputs once, and holds the two callables that
compute the same result: the plain reference (``mmkern.reference``) and the fast function.
:func:`run_cases` checks that both agree before timing anything, times each (best of ``repeat``
runs, so one-off noise on a shared 2-core machine does not count), and returns rows for
:func:`format_table`. ``benchmarks/bench_*.py`` time the same cases with pytest-benchmark,
through :func:`compare_with_baseline`. A case that cannot run here (a CUDA row without a GPU)
carries a ``skip`` reason and is reported as skipped, not timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class ResultMismatch(RuntimeError):
    """mmkern and the baseline of a case disagree beyond the case's tolerance (or in shape)."""


@dataclass
class Case:
    """One benchmark workload.

    Attributes
    ----------
    name : str
        Row label, e.g. ``"pairwise_svcca M=16 n=5000 d=256 float32"``.
    make_inputs : callable () -> tuple
        Builds the positional arguments shared by both implementations.
    reference, fast : callable (*inputs) -> result
        Same result: the baseline (the plain reference, or a peer implementation a user would
        otherwise write, named in ``name``) and mmkern.
    target : float or None
        The speed-up goal (reference time / mmkern time), if there is one.
    rtol : float
        Agreement required between the two results before timing.
    notes : str or callable () -> str
        Extra text for the table (e.g. memory figures); a callable runs after the timings.
    floor : float
        Smallest magnitude the differences are taken relative to (1.0 makes them absolute for
        results that are differences near zero, such as barriers).
    reference_repeat : int
        Runs of the reference whose best time counts (the checking run is the first): more than
        one for a reference whose time varies from run to run, so the speed-up is not flattered.
    skip : str or None
        Why the case cannot run on this machine (e.g. no CUDA device), or None.
    """

    name: str
    make_inputs: Callable[[], tuple]
    reference: Callable[..., Any] | None
    fast: Callable[..., Any]
    target: float | None = None
    rtol: float = 1e-9
    notes: str | Callable[[], str] = ""
    floor: float = 1e-300
    reference_repeat: int = 1
    skip: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Row:
    name: str
    reference_s: float | None
    mmkern_s: float | None
    target: float | None
    max_rel_diff: float | None
    notes: str = ""
    skipped: str | None = None

    @property
    def speedup(self) -> float | None:
        if self.reference_s is None or self.mmkern_s is None:
            return None
        return self.reference_s / self.mmkern_s

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None or self.speedup is None else self.speedup >= self.target


def _best_time(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def max_relative_difference(a: Any, b: Any, floor: float = 1e-300) -> float:
    """max |a - b| / max(|b|, floor) over all entries (scalars, arrays or CCA results)."""
    a = np.asarray(getattr(a, "correlations", a), dtype=np.float64)
    b = np.asarray(getattr(b, "correlations", b), dtype=np.float64)
    if a.shape != b.shape:
        raise ResultMismatch(f"shape mismatch: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor))) if a.size else 0.0


def run_case(case: Case, repeat: int = 3, reference_repeat: int | None = None, progress=None) -> Row:
    """Check ``case.fast`` against ``case.reference`` on the same inputs, then time both.

    ``mmkern`` takes the best of ``repeat`` runs, the reference the best of ``reference_repeat``
    (default: the case's own ``reference_repeat``).
    """
    if case.skip:
        return Row(case.name, None, None, case.target, None, skipped=case.skip)
    inputs = case.make_inputs()
    say = progress or (lambda msg: None)
    say(f"{case.name}: checking")
    fast_result = case.fast(*inputs)
    diff = None
    ref_time = None
    if case.reference is not None:
        t0 = time.perf_counter()
        ref_result = case.reference(*inputs)
        first_ref = time.perf_counter() - t0
        diff = max_relative_difference(fast_result, ref_result, case.floor)
        if not diff <= case.rtol:
            raise ResultMismatch(f"{case.name}: mmkern differs from the reference by {diff:.2e} (> {case.rtol:.0e})")
        # The checking run counts as the first timed one (best of reference_repeat runs in all).
        runs = case.reference_repeat if reference_repeat is None else reference_repeat
        ref_time = min(first_ref, _best_time(lambda: case.reference(*inputs), runs - 1))
    say(f"{case.name}: timing mmkern")
    fast_time = _best_time(lambda: case.fast(*inputs), repeat)
    notes = case.notes() if callable(case.notes) else case.notes
    return Row(case.name, ref_time, fast_time, case.target, diff, notes)


def format_table(rows: list[Row]) -> str:
    """A plain-text table: case, reference time, mmkern time, speed-up, target, agreement."""
    header = ("case", "reference", "mmkern", "speed-up", "target", "max rel diff")
    lines = []
    for r in rows:
        ref = "-" if r.reference_s is None else f"{r.reference_s:.3f} s"
        sp = "-" if r.speedup is None else f"{r.speedup:.1f}x"
        tgt = "-" if r.target is None else f">= {r.target:g}x " + ("ok" if r.meets_target else "MISSED")
        diff = "-" if r.max_rel_diff is None else f"{r.max_rel_diff:.1e}"
        if r.skipped:
            lines.append((r.name, "-", "skipped", "-", "-", "-"))
            continue
        lines.append((r.name, ref, f"{r.mmkern_s:.3f} s", sp, tgt, diff))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    notes = [f"  {r.name}: {r.notes}" for r in rows if r.notes]
    notes += [f"  {r.name}: skipped ({r.skipped})" for r in rows if r.skipped]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def compare_with_baseline(benchmark, case: Case, impl: str) -> None:
    """pytest-benchmark: time one side (``impl``: "baseline" or "mmkern") of ``case`` in a group
    with the other side; mmkern is checked against the baseline first. pytest-benchmark prints
    each row's time relative to the group's fastest."""
    import pytest

    if case.skip:
        pytest.skip(case.skip)
    if case.reference is None and impl == "baseline":
        pytest.skip("a timing row: no baseline")
    inputs = case.make_inputs()
    if impl == "mmkern" and case.reference is not None:
        diff = max_relative_difference(case.fast(*inputs), case.reference(*inputs), case.floor)
        if not diff <= case.rtol:
            raise ResultMismatch(f"{case.name}: differs from the baseline by {diff:.2e}")
    fn = case.reference if impl == "baseline" else case.fast
    benchmark.group = case.name
    benchmark.extra_info["target_speedup"] = case.target
    # Baselines take seconds: one round each; mmkern gets a few rounds.
    benchmark.pedantic(fn, args=inputs, rounds=1 if impl == "baseline" else 3, iterations=1)


def cuda_skip() -> str | None:
    """Why CUDA rows cannot run here, or None when torch sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "torch.cuda is not available"


def on_cuda(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` timed to completion on the GPU: its result is brought back to NumPy (which waits for
    the device), so a CUDA row's time includes the work, not just the launches."""

    def run(*args):
        out = fn(*args)
        return out.cpu().numpy() if hasattr(out, "cpu") else out

    return run


def to_cuda(value: Any) -> Any:
    """Arrays and torch tensors/models (also inside lists and tuples) moved to the GPU."""
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value).cuda()
    if isinstance(value, (torch.Tensor, torch.nn.Module)):
        return value.cuda()
    if isinstance(value, (list, tuple)):
        return type(value)(to_cuda(v) for v in value)
    return value
