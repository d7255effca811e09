"""The package's shape, read from its own source: no import cycle (imports inside functions
included) and no module that imports another module's private name.

Every ``import`` and ``from ... import`` statement of every module of ``neurosim`` (the mapped
``neurosim.kernels`` and ``neurosim.hw_profiles`` too) is an edge to the neurosim module it
names, and so is a string that is exactly a neurosim module's name (an import by name, as a
registry of lazily loaded modules does); ``from package import name`` is an edge to the submodule when ``name`` is one, else to
the package. The implicit import of a module's parent package is not an edge (the root
``neurosim/__init__.py`` imports the public API from its submodules, as packages do).
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil

import pytest

import neurosim


#: Packages that setup.cfg maps from folders outside neurosim/ (pkgutil does not see them).
MAPPED = ("neurosim.kernels", "neurosim.hw_profiles")


def _module_names() -> list[str]:
    names = ["neurosim"]
    names += [info.name for info in pkgutil.walk_packages(neurosim.__path__, "neurosim.")]
    for package in MAPPED:
        module = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    return sorted(set(names))


MODULES = _module_names()
KNOWN = set(MODULES)


def _source(name: str) -> tuple[str, bool]:
    spec = importlib.util.find_spec(name)
    with open(spec.origin, encoding="utf-8") as fh:
        return fh.read(), spec.submodule_search_locations is not None


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _imports(name: str):
    """``(line, target module, imported names)`` of every neurosim import in module ``name``."""
    text, is_package = _source(name)
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(text)):
        # A module named by a string (importlib.import_module of a registry's entry).
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in KNOWN:
            out.append((node.lineno, node.value, []))
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "neurosim":
                    out.append((node.lineno, alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "neurosim":
                continue
            plain = []
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if sub in KNOWN:
                    out.append((node.lineno, sub, []))
                else:
                    plain.append(alias.name)
            if plain:
                out.append((node.lineno, module, plain))
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def test_the_walk_finds_the_package():
    for name in ("neurosim.simulation", "neurosim.kernels.propagate", "neurosim.backends.numba",
                 "neurosim.faults.crash", "neurosim.layers.dense", "neurosim.estimators.stratified",
                 "neurosim.experiments.error_decay", "neurosim.backends.lava", "neurosim.cli"):
        assert name in KNOWN, name
    assert sum(len(edges) for edges in GRAPH.values()) > 150


def test_no_module_imports_a_private_name():
    bad = []
    for name, edges in GRAPH.items():
        for line, target, names in edges:
            if target not in KNOWN:
                bad.append(f"{name}:{line} imports {target}, which is not a neurosim module")
                continue
            if any(_private(part) for part in target.split(".")):
                bad.append(f"{name}:{line} imports the private module {target}")
            bad += [f"{name}:{line} imports the private name {target}.{n}" for n in names
                    if _private(n)]
    assert not bad, "\n".join(bad)


def _find_cycle():
    edges = {name: sorted({t for _, t, _ in GRAPH[name] if t in KNOWN and t != name})
             for name in MODULES}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in edges[node]:
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for name in MODULES:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = _find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_planted_cycle(monkeypatch):
    """The check can fail: a back edge from the kernels' codes to the simulator is a cycle."""
    planted = dict(GRAPH)
    planted["neurosim.kernels.codes"] = GRAPH["neurosim.kernels.codes"] + [
        (1, "neurosim.simulation", [])]
    monkeypatch.setitem(globals(), "GRAPH", planted)
    cycle = _find_cycle()
    assert cycle is not None and "neurosim.kernels.codes" in cycle


@pytest.mark.parametrize("leaf", ["neurosim.errors", "neurosim.stats", "neurosim.metrics",
                                  "neurosim.provenance", "neurosim.kernels.codes",
                                  "neurosim.activations"])
def test_leaf_modules_import_little(leaf):
    """The leaf modules own one thing each and depend on (almost) nothing of neurosim."""
    targets = {t for _, t, _ in GRAPH[leaf]}
    assert targets <= {"neurosim.errors"}, targets
