"""The package's layers, checked: every module imports only from its own layer or the ones below,
and nothing imports in a cycle. The order (low to high) is the one README and DEVELOPERS describe:
core -> data -> run folder -> models -> reports -> training -> predict -> evaluation -> deploy -> lab -> api -> cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "transferlab"
LAYERS = [
    "core",
    "data",
    "rundir",
    "models",
    "reports",
    "training",
    "predict",
    "evaluation",
    "deploy",
    "lab",
    "api",
    "cli",
]
CORE = {"transferlab", "transferlab.__main__", "transferlab.config", "transferlab.modes", "transferlab.files",
        "transferlab.runtime", "transferlab.metrics", "transferlab.distributed"}  # fmt: skip


def _layer(module: str) -> str:
    if module in CORE:
        return "core" if module != "transferlab.__main__" else "cli"
    part = module.split(".")[1]
    return {"rundir": "rundir", "cli": "cli"}.get(part, part)


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = p
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every transferlab module ``name`` imports, at module level or inside functions."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[: len(base) - node.level + 1]
                target = ".".join(root + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("transferlab"):
                found.add(target)
                for alias in node.names:  # "from . import zoo" imports a module
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("transferlab")}
    modules = _modules()
    return {t for t in found if t in modules and t != name}


MODULES = _modules()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers_only(name):
    here = LAYERS.index(_layer(name))
    for target in _imports(name, MODULES[name]):
        there = LAYERS.index(_layer(target))
        assert there <= here, f"{name} ({LAYERS[here]}) imports {target} ({LAYERS[there]}), a layer above it"


def test_no_import_cycles():
    graph = {n: _imports(n, p) - {"transferlab"} for n, p in MODULES.items()}
    seen, stack = set(), []

    def visit(n):
        if n in stack:
            cycle = stack[stack.index(n) :] + [n]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if n in seen:
            return
        stack.append(n)
        for m in graph[n]:
            if not (n.startswith(m + ".") and MODULES[m].name == "__init__.py"):  # a module's own package
                visit(m)
        stack.pop()
        seen.add(n)

    for n in graph:
        visit(n)


def test_the_layer_test_can_fail(tmp_path):
    """A data module that imported the trainer would be reported."""
    fake = tmp_path / "index.py"
    fake.write_text("from ..training.trainer import train\n")
    found = _imports("transferlab.data.index", fake)
    assert "transferlab.training.trainer" in found
    assert LAYERS.index(_layer("transferlab.training.trainer")) > LAYERS.index(_layer("transferlab.data.index"))
