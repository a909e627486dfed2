"""The layer contract, read off the source: imports go one way (ir <- rewrite, eval, show, export, programs <- verify <-
commands, cli, the package), siblings do not import each other, and no module imports another that imports it back,
counting imports inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "linearize"
# a subpackage's rank: a module may import its own subpackage and any subpackage of a lower rank
RANK = {"ir": 0, "rewrite": 1, "eval": 1, "show": 1, "export": 1, "programs": 1, "verify": 2, "commands": 3, "": 4}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = modules()


def imports(name: str) -> set[str]:
    """The linearize modules `name` imports anywhere in its source (a package's submodule when it names one)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                base = ".".join(up + ([n.module] if n.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in n.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else ""


def test_every_subpackage_has_a_rank():
    assert {layer(m) for m in MODULES} <= set(RANK), "a new subpackage needs its place in RANK and docs/architecture.md"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
    mine = layer(name)
    wrong = [t for t in imports(name) if layer(t) != mine and RANK[layer(t)] >= RANK[mine]]
    assert not wrong, f"{name} ({mine or 'top'}) imports {wrong}: a layer imports only from the layers below it"


def test_no_import_cycles():
    graph = {m: imports(m) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in graph:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_imports_inside_functions():
    """The contract counts lazy imports: the package's renderer hook imports show/ from inside a function."""
    assert "linearize.show.latex" in imports("linearize") or "linearize.show" in imports("linearize")
