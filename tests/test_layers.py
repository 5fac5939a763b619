"""The package's layers (README, "The package"): no import cycles, lazy imports included, and no module importing
from a layer above its own. A module's layer is its wing (``course/``, ``classroom/``, ``commands/``) or, at the top
level, the foundations or the lessons."""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "roberta_from_scratch"
FOUNDATIONS = {"files", "config", "hub", "device_audit", "settings", "data"}
# bottom to top: a module may import from its own layer and the layers below it
ORDER = ["foundations", "lessons", "course", "classroom", "commands"]


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    if top in ("course", "classroom", "commands"):
        return top
    if top == "__main__":
        return "commands"
    return "foundations" if top in FOUNDATIONS else "lessons"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules that ``source`` imports, at the top or inside functions (lazy imports), resolved to
    names relative to the package; imports for type checkers alone (``if TYPE_CHECKING:``) do not run."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                base = [p for p in base if p != "__init__"]
            elif node.module and node.module.split(".")[0] == "roberta_from_scratch":
                base = []
                node = ast.ImportFrom(module=node.module.partition(".")[2] or None, names=node.names, level=1)
            else:
                continue
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            candidates = [f"{target}.{alias.name}" if target else alias.name for alias in node.names]
            hits = [c for c in candidates if c in known]
            if hits:
                found |= set(hits)
            elif target in known:
                found.add(target)
            elif not target and any(alias.name != "__version__" for alias in node.names):
                found.add("__init__")  # a name of the facade (its version alone is no dependency)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("roberta_from_scratch."):
                    name = alias.name.partition(".")[2]
                    found.add(name if name in known else name.rsplit(".", 1)[0])
    found.discard(module)
    return found & (known | {"__init__"})


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    known = set(files)
    return {name: imports_of(path.read_text(), name, path.name == "__init__.py", known)
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a higher layer (the package's ``__init__``, the public facade, may import anything; nothing but
    ``__version__`` may come from it)."""
    bad = []
    for module, targets in graph.items():
        if module == "__init__":
            continue
        for target in sorted(targets):
            if target == "__init__" or ORDER.index(layer_of(target)) > ORDER.index(layer_of(module)):
                bad.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target) if target != '__init__' else 'the facade'})")
    return bad


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 30 and "model" in graph["training"]  # the graph is read at all
    assert cycles(graph) == []


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_edges(import_graph()) == []


def test_the_checks_catch_cycles_lazy_imports_and_upward_edges(tmp_path):
    """The two checks on a made-up package: a cycle through a lazy import, an upward edge, type-checking imports
    ignored, and the facade's names."""
    package = tmp_path / "roberta_from_scratch"
    (package / "course").mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '0'\n")
    (package / "course" / "__init__.py").write_text("")
    (package / "model.py").write_text("def f():\n    from .training import g\n")  # lazy
    (package / "training.py").write_text("from .model import f\nfrom . import __version__\n")
    (package / "viz.py").write_text("from . import load_corpus\n")
    (package / "files.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .model import f\n"
                                      "from .course.artifacts import x\n")
    (package / "course" / "artifacts.py").write_text("from ..files import y\nfrom roberta_from_scratch import model\n")
    graph = import_graph(package)
    assert graph["model"] == {"training"} and graph["training"] == {"model"} and graph["viz"] == {"__init__"}
    assert graph["files"] == {"course.artifacts"} and graph["course.artifacts"] == {"files", "model"}
    assert sorted(cycles(graph)) == [["course.artifacts", "files"], ["model", "training"]]
    assert sorted(upward_edges(graph)) == ["files (foundations) imports course.artifacts (course)",
                                           "viz (lessons) imports __init__ (the facade)"]
