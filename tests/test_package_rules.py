"""The layout rules of issue 10, checked on the source: no import cycle among ``helpers`` modules (function-level
imports included), no module using another module's private (``_x``) name, no file over 500 lines, each naming
constant defined once (in ``helpers/io.py``), each module's docstring naming the notebook that introduces it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "helpers"
MAX_LINES = 500
NAMING_CONSTANTS = ("MASK_SUFFIX", "MASK_EXTENSION", "IMAGE_EXTENSIONS")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> tuple[set[str], dict[str, str], list[tuple[str, str]]]:
    """(helpers modules imported anywhere in the file, local alias -> module, (module, private name) imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets, aliases, private = set(), {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    targets.add(alias.name)
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                if full in MODULES:
                    targets.add(full)
                    aliases[alias.asname or alias.name] = full
                elif module in MODULES:
                    targets.add(module)
                    if alias.name.startswith("_"):
                        private.append((module, alias.name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            private.append((aliases[node.value.id], node.attr))
    targets.discard(name)
    return targets, aliases, private


def test_no_import_cycle_among_helpers_modules():
    graph = {name: _imports(name, path)[0] - {"helpers"} for name, path in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_no_module_uses_another_modules_private_name():
    used = {name: [(m, n) for m, n in _imports(name, path)[2] if m != name] for name, path in MODULES.items()}
    assert {k: v for k, v in used.items() if v} == {}


def test_no_helpers_file_over_500_lines():
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert {k: v for k, v in lengths.items() if v > MAX_LINES} == {}


def test_naming_constants_are_defined_once_in_io():
    defined = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            defined += [(name, t.id) for t in targets if isinstance(t, ast.Name) and t.id in NAMING_CONSTANTS]
    assert sorted(defined) == sorted(("helpers.io", c) for c in NAMING_CONSTANTS)


@pytest.mark.parametrize("name", ["helpers.io", "helpers.layouts", "helpers.data", "helpers.cache", "helpers.checks",
                                  "helpers.download", "helpers.metrics", "helpers.losses", "helpers.evaluate",
                                  "helpers.synthetic", "helpers.transforms"])
def test_data_side_docstrings_name_their_notebook(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8"))) or ""
    assert "notebook 0" in doc, f"{name}: say which notebook introduces it"
