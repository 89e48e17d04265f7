"""``mmkern.show_config()``: what this installation was built with."""

from __future__ import annotations

import sys


def config() -> dict:
    """Build facts as a dict: version, OpenMP threads, BLAS route, CUDA module and devices."""
    from mmkern import _C, _cuda

    info = dict(_C.build_info())
    module = _cuda.cuda_module()
    info["cuda_module"] = module is not None
    if module is not None:
        info["cuda"] = dict(module.build_info())
        if info["cuda"].get("device_count", 0) > 0:
            _cuda.probe_visible_devices()
    info["cuda_status"] = _cuda.status()
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:  # pragma: no cover - scipy is a hard dependency
        info["scipy"] = None
    return info


def show_config(file=None) -> None:
    """Print what was built: version, OpenMP and its threads, BLAS/LAPACK route, CUDA support."""
    info = config()
    out = file or sys.stdout
    print(f"mmkern {info['version']}", file=out)
    omp = f"yes, {info['openmp_threads']} threads" if info["openmp"] else "no (single-threaded)"
    print(f"  OpenMP:       {omp}", file=out)
    print(f"  BLAS/LAPACK:  {info['blas']} (SciPy {info['scipy']})", file=out)
    print(f"  C++ compiler: {info['compiler']}", file=out)
    if info["cuda_module"]:
        cuda = info["cuda"]
        version = int(cuda.get("cuda_version", 0))  # CUDART_VERSION: 1000 * major + 10 * minor
        archs = cuda.get("architectures")
        print(f"  CUDA module:  built (CUDA runtime {version // 1000}.{version % 1000 // 10}"
              + (f", architectures {archs}" if archs else "") + f"); devices visible: "
              f"{cuda.get('device_count', 0)}", file=out)
        for index, reason in sorted(info["cuda_status"]["probed"].items()):
            state = "kernels run" if not reason else f"kernels cannot run ({reason}); torch fallback"
            print(f"  cuda:{index}:       {state}", file=out)
    else:
        print("  CUDA module:  not built (MMKERN_CUDA=OFF, or no CUDA compiler at build time)", file=out)
