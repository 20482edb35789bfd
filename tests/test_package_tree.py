"""The folder tree is the architecture (issue 20): concept sub-packages, imports that go one way between them,
a thin command-line layer, and no trace of the flat layout's module paths.

Stages, lowest first: the core modules at the top of ``helpers/`` (config, runtime, runfolder), ``data``,
``models``, ``evaluation``, ``train`` (validation scores with ``evaluation.metrics``), ``course``, ``cli``, and
last the ``python -m`` entry points. A module may import its own stage and the stages below it, never above.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "helpers"

CORE = ("config", "runtime", "runfolder")
STAGES = ("data", "models", "evaluation", "train", "course", "cli")
#: ``python -m helpers.<name>`` commands kept by a two-line module at the top of the package.
ENTRY_MODULES = ("predict", "evaluate", "demo")
#: The flat layout's module paths (before issue 20): nothing may import or name them any more.
REMOVED = ("io", "layouts", "cache", "checks", "download", "synthetic", "transforms", "losses", "training", "fit",
           "resume", "distributed", "metrics", "reliability", "subgroups", "plots", "profiles", "colab",
           "exercises")


def _module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(ROOT).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _rank(module: str) -> int:
    """The stage of a ``helpers`` module: 0 core, 1 + index in STAGES, 8 for an entry point."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    if parts[-1] == "__main__" or (len(parts) == 2 and parts[1] in ENTRY_MODULES):
        return 8
    if len(parts) == 2 and parts[1] in CORE:
        return 0
    return 1 + STAGES.index(parts[1])


def _imported(path: Path) -> list[tuple[int, str]]:
    """``(line, helpers module)`` of every import in the file (function-level ones too), names resolved to the
    module they come from (``from helpers.data import files`` -> ``helpers.data.files``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "helpers"]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "helpers":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((node.lineno, full if full in MODULES else node.module))
    return found


def test_the_tree_is_core_modules_entry_points_and_the_stage_packages():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert top == set(CORE) | set(ENTRY_MODULES)
    assert packages == set(STAGES)


def test_no_relative_imports_in_helpers():
    """Absolute imports only: a module's imports then read the same wherever it sits in the tree."""
    relative = [f"{_module_name(p)}:{n.lineno}" for p in MODULES.values()
                for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                if isinstance(n, ast.ImportFrom) and n.level]
    assert relative == []


def test_imports_go_from_higher_stages_to_lower_ones_only():
    upward = [f"{name}:{line} imports {target}" for name, path in MODULES.items() for line, target in _imported(path)
              if target in MODULES and _rank(target) > _rank(name)]
    assert upward == [], "a stage may import its own and lower stages (see this file's docstring)"


def test_the_command_line_layer_is_imported_by_entry_points_only():
    users = [f"{name}:{line}" for name, path in MODULES.items() for line, target in _imported(path)
             if target.startswith("helpers.cli") and _rank(name) < _rank("helpers.cli.common")]
    assert users == []


def test_library_code_imports_names_from_their_home_module_not_from_a_package_reexport():
    """``helpers.data`` and ``helpers.models`` re-export what notebooks call; inside helpers, import the home."""
    reexports = {"helpers.data", "helpers.models"}
    found = []
    for name, path in MODULES.items():
        if name in reexports:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in reexports:
                found += [f"{name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                          if f"{node.module}.{a.name}" not in MODULES]
    assert found == []


def test_package_reexports_are_defined_in_a_submodule():
    import helpers.data
    import helpers.models

    for package in (helpers.data, helpers.models):
        for name in package.__all__:
            home = getattr(getattr(package, name), "__module__", None)
            assert home is None or home.startswith(package.__name__ + "."), f"{package.__name__}.{name}: {home}"


@pytest.mark.parametrize("name", ENTRY_MODULES)
def test_entry_modules_only_run_their_command_line(name):
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    statements = [ast.unparse(n) for n in tree.body[1:]]  # after the docstring
    assert statements == [f"from helpers.cli.{name} import main",
                          "if __name__ == '__main__':\n    raise SystemExit(main())"]


def _texts() -> dict[str, str]:
    """Every tracked text the course ships: Python, notebooks' code and markdown, docs, README, CI."""
    out = {}
    for pattern in ("*.py", "*.md", "*.toml", "*.yml", "*.sh", "*.txt"):
        for path in ROOT.rglob(pattern):
            if {".git", "runs", "data", ".device-data"} & set(path.relative_to(ROOT).parts) or path == Path(__file__):
                continue
            out[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8", errors="replace")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        out[str(path.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells)
    out[".ci/run"] = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    return out


def test_nothing_names_a_removed_module_path():
    """``helpers.io``, ``helpers/fit.py``, ``python -m helpers.colab`` ...: the flat layout's paths are gone."""
    dotted = re.compile(r"\bhelpers[./](" + "|".join(REMOVED + ("course", "train", "data", "cli")) + r")\b(\.py)?")
    found = []
    for where, text in _texts().items():
        for match in dotted.finditer(text):
            name, py = match.group(1), match.group(2)
            if name in ("course", "train", "data", "cli") and not py:
                continue  # the packages (and `python -m helpers.train` ...) are the new homes
            found.append(f"{where}: {match.group(0)}")
        found += [f"{where}: {m.group(0)}" for m in re.finditer(r"\bhelpers\.(predict|evaluate)\.(?!main\b)\w+", text)]
    assert found == [], "; ".join(found[:20])
