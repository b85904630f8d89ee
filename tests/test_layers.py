"""The import graph of src/emit_iad: no cycle, not even through imports inside functions, and
no arrow from a lower layer to a higher one (docs/DESIGN.md, "Layers"). The library below the
Kedro layer never imports Kedro."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "emit_iad"

# package (or top-level module) -> layer; an import must go to a lower layer or stay inside
# its own package. train and evaluate share a layer: neither imports the other.
LAYER = {
    "atomic": 0, "params": 0, "param_rules": 1, "sources": 1, "llm_api": 2, "mmad": 2,
    "describe": 3, "vlm": 3, "train": 4, "evaluate": 4, "experiments": 5,
    # the Kedro layer
    "kedro_io": 6, "tracking": 6, "config_args": 6, "config_loader": 6, "stage_params": 6,
    "dvc_params": 7, "config_help": 7, "hooks": 7, "pipelines": 7, "settings": 8, "pipeline_registry": 8,
    "__main__": 9, "": 9,
}  # fmt: skip
KEDRO_LAYER = 6


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """emit_iad modules imported anywhere in the file (TYPE_CHECKING blocks excepted), and the
    other top-level packages imported."""
    ours, others = set(), set()

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    (ours if alias.name.startswith("emit_iad") else others).add(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("emit_iad"):
                    ours.add(node.module)
                    ours.update(f"{node.module}.{a.name}" for a in node.names
                                if f"{node.module}.{a.name}" in MODULES)  # fmt: skip
                else:
                    others.add(node.module)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(ast.parse(path.read_text()).body)
    return {m for m in ours if m in MODULES}, {m.split(".")[0] for m in others}


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = {}
for _name, _path in MODULES.items():
    _ours, _ = imports_of(_path)
    # a module's own parent packages are imported with it: not an arrow
    GRAPH[_name] = {m for m in _ours if m != _name and not _name.startswith(m + ".")}


def cycles() -> list[list[str]]:
    order, low, stack, on, found = {}, {}, [], set(), []

    def strong(v: str) -> None:
        order[v] = low[v] = len(order)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in order:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in order:
            strong(v)
    return found


def test_every_package_has_a_layer():
    assert {package(m) for m in MODULES} <= set(LAYER)


def test_the_import_graph_has_no_cycle():
    assert cycles() == []


def test_no_arrow_goes_up_or_sideways():
    wrong = [(a, b) for a, targets in GRAPH.items() for b in targets
             if package(a) != package(b) and LAYER[package(a)] <= LAYER[package(b)]]  # fmt: skip
    assert wrong == []


def test_the_library_never_imports_kedro():
    library = [m for m, p in MODULES.items() if LAYER[package(m)] < KEDRO_LAYER]
    assert [m for m in library if "kedro" in imports_of(MODULES[m])[1]] == []


def test_the_checks_see_a_lazy_import_and_a_cycle(tmp_path):
    """The graph reader finds what it looks for: an import inside a function, and a cycle."""
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    if True:\n        from emit_iad.train.sft import SFTConfig\n")
    assert imports_of(lazy)[0] >= {"emit_iad.train.sft"}
    GRAPH["emit_iad.vlm.chat"].add("emit_iad.train.sft")
    try:
        assert any({"emit_iad.train.sft", "emit_iad.vlm.chat"} <= set(c) for c in cycles())
    finally:
        GRAPH["emit_iad.vlm.chat"].discard("emit_iad.train.sft")
    assert cycles() == []
