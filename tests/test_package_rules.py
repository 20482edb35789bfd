"""The layout rules of issue 10, checked on the source: no import cycle among ``helpers`` modules (function-level
imports included), no module using another module's private (``_x``) name, no file over 500 lines, each naming
constant defined once (in ``helpers/io.py``), each module's docstring naming the notebook that introduces it;
the run folder's file names written only in ``helpers/runfolder.py`` (issue 20).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from helpers import runfolder

PACKAGE = Path(__file__).resolve().parents[1] / "helpers"
BENCHMARKS = PACKAGE.parent / "benchmarks"
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


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every string constant in the file's code (f-string parts included, docstrings not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


#: Strings that hold a run-folder name but mean another file: smp-hub's ``config.json`` of an encoder.
OTHER_FILES_OF_THE_SAME_NAME = {("helpers/models/pretrained.py", "config.json")}


def test_run_folder_file_names_are_written_only_in_runfolder():
    """Code in helpers/ and benchmarks/ names best.pt, last.pt, history.csv, config.json via helpers.runfolder."""
    name = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in runfolder.RUN_FILES) + r")\b")
    root = PACKAGE.parent
    files = [p for p in sorted(PACKAGE.rglob("*.py")) + sorted(BENCHMARKS.glob("*.py")) if p.name != "runfolder.py"]
    found = [(str(p.relative_to(root)), line, text) for p in files for line, text in _code_strings(p)
             if name.search(text) and (str(p.relative_to(root)), text) not in OTHER_FILES_OF_THE_SAME_NAME]
    assert not found, "use helpers.runfolder's constants or path helpers: " + "; ".join(
        f"{path}:{line} {text!r}" for path, line, text in found)


def _literal_threshold_defaults(path: Path) -> list[int]:
    """Lines where a ``threshold`` parameter or a ``--threshold`` option defaults to a number literal."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            lines += [d.lineno for a, d in pairs if a.arg == "threshold" and isinstance(d, ast.Constant)
                      and isinstance(d.value, float)]
        elif isinstance(node, ast.Call) and any(isinstance(a, ast.Constant) and a.value == "--threshold"
                                                for a in node.args):
            lines += [k.value.lineno for k in node.keywords if k.arg == "default" and isinstance(k.value, ast.Constant)]
    return lines


def test_threshold_defaults_are_metrics_default_threshold():
    """Every threshold default is ``helpers.metrics.DEFAULT_THRESHOLD``, the one place the 0.5 is written."""
    root = PACKAGE.parent
    found = {str(p.relative_to(root)): lines for p in sorted(PACKAGE.rglob("*.py")) + sorted(BENCHMARKS.glob("*.py"))
             if (lines := _literal_threshold_defaults(p))}
    assert found == {}, "default to helpers.metrics.DEFAULT_THRESHOLD"
