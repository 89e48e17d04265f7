"""No import cycles among mmkern's modules, counting imports inside functions too.

A cycle that "works" only because one of its imports sits in a function body is still a cycle:
the two modules cannot be understood (or loaded) one without the other. The graph is read from
the source files (``ast``), so optional dependencies need not be installed. An edge A -> B means
module A imports module B by name (``import mmkern.x``, ``from mmkern.x import name`` when
``name`` is not a submodule, ``from mmkern import x`` when ``x`` is one); a package's
``__init__`` running before its submodules does not count, since that is how packages load.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mmkern

ROOT = Path(mmkern.__file__).parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    base = package[: len(package) - node.level + (1 if _is_package(module) else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_package(module: str) -> bool:
    return (ROOT.parent / module.replace(".", "/") / "__init__.py").exists()


def _edges(module: str, path: Path, known: set[str]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
    out.discard(module)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def _graph() -> dict[str, set[str]]:
    modules = _module_names()
    known = set(modules) | {"mmkern._C", "mmkern._C_cuda"}
    return {name: _edges(name, path, known) for name, path in modules.items()}


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles among mmkern's modules: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("domain", ["similarity", "multiplicity"])
def test_device_routes_import_their_checks_never_their_package(domain):
    edges = _graph()[f"mmkern.{domain}._device"]
    assert f"mmkern.{domain}._checks" in edges
    assert f"mmkern.{domain}" not in edges and f"mmkern.{domain}._host" not in edges


def test_the_walk_finds_a_cycle():
    """The detector itself: a two-module cycle and a self-contained chain."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_lazy_names_are_not_shadowed_by_submodules():
    """Importing a submodule sets a package attribute of its name: a lazily exported function of
    the same name would then resolve to the module (as mmkern.train.finetune_zoo once did)."""
    import importlib
    import pkgutil
    import types

    pytest.importorskip("torch")
    import mmkern

    for package in ("mmkern", "mmkern.train", "mmkern.reference", "mmkern.connectivity"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if not info.name.endswith("__main__"):  # that one runs the command line
                importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            assert not isinstance(getattr(module, name), types.ModuleType), f"{package}.{name}"
    assert callable(mmkern.train.finetune_zoo)
