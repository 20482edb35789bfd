"""The layout rules of issue 10, checked on the source: no import cycle among ``helpers`` modules (function-level
imports included), no module using another module's private (``_x``) name, no file over 500 lines, each naming
constant defined once (in ``helpers/data/files.py``), each module's docstring naming the notebook that introduces it;
the run folder's file names written only in ``helpers/runfolder.py`` (issue 20).

Issue 20 also puts ``benchmarks/*.py`` under the size and private-name rules (a private name of a ``helpers``
module or of a sibling benchmark module), gives each script (a file not starting with ``_``) a
``main(argv=None)`` behind an ``if __name__ == "__main__"`` guard, lets no benchmark file do anything at import
beyond imports, definitions and constants, and fails on a string literal equal to a naming constant of
``helpers/data/files.py`` or ``helpers/runfolder.py`` anywhere but in the module that defines it.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from helpers import runfolder
from helpers.data import files

PACKAGE = Path(__file__).resolve().parents[1] / "helpers"
ROOT = PACKAGE.parent
BENCHMARKS = ROOT / "benchmarks"
MAX_LINES = 500
#: Every benchmark file (``_x.py`` are the scripts' shared modules; the others are scripts run as
#: ``python benchmarks/<name>.py``).
BENCHMARK_FILES = sorted(BENCHMARKS.glob("*.py"))
BENCHMARK_SCRIPTS = [p for p in BENCHMARK_FILES if not p.name.startswith("_")]


def _defined_constants(module: ModuleType) -> dict[str, tuple[str, ...]]:
    """The naming constants ``module`` defines: public upper-case names assigned at its top level whose value
    is a string or a tuple of strings, read from the module (``{name: its strings}``)."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_")]
    out = {}
    for name in names:
        value = getattr(module, name)
        if isinstance(value, str):
            out[name] = (value,)
        elif isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
            out[name] = value
    return out


#: ``{module file: {constant: its strings}}``: the file names and extensions the package names in one place.
CONSTANT_HOMES = {"helpers/data/files.py": _defined_constants(files), "helpers/runfolder.py": _defined_constants(runfolder)}


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


def _sibling_private_uses(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every private name of a sibling benchmark module that ``path`` imports or reads
    (``from real_data import _x``, ``real_data._x``). A module named ``_x`` itself is fine: the scripts share it."""
    siblings = {p.stem for p in BENCHMARK_FILES} - {path.stem}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases, used = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name: a.name for a in node.names if a.name in siblings}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module in siblings:
            used += [(node.module, a.name) for a in node.names if a.name.startswith("_")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            used.append((aliases[node.value.id], node.attr))
    return used


def test_no_benchmark_uses_a_private_name_of_helpers_or_of_another_benchmark():
    used = {path.name: _imports(f"benchmarks.{path.stem}", path)[2] + _sibling_private_uses(path)
            for path in BENCHMARK_FILES}
    assert {k: v for k, v in used.items() if v} == {}, "use public names (or make the name public where it lives)"


def test_no_file_over_500_lines():
    """helpers/ modules and benchmarks/*.py alike."""
    paths = [*MODULES.values(), *BENCHMARK_FILES]
    lengths = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in paths}
    assert {k: v for k, v in lengths.items() if v > MAX_LINES} == {}, f"split files over {MAX_LINES} lines"


def test_naming_constants_are_defined_once_where_they_live():
    """io's naming constants only in helpers/data/files.py, the run folder's only in helpers/runfolder.py."""
    homes = {c: home for home, constants in CONSTANT_HOMES.items() for c in constants}
    assert {"MASK_SUFFIX", "MASK_EXTENSION", "IMAGE_EXTENSIONS", "BEST_FILE", "RUN_FILES"} <= set(homes)
    defined = []
    for path in [*MODULES.values(), *BENCHMARK_FILES]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            defined += [(str(path.relative_to(ROOT)), t.id) for t in targets
                        if isinstance(t, ast.Name) and t.id in homes]
    assert sorted(defined) == sorted((home, c) for c, home in homes.items())


# -------------------------------------------------------------------------------------- the benchmark scripts
def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__": raise SystemExit(main())`` (or ``sys.exit(main())``), nothing else."""
    if not (isinstance(node, ast.If) and not node.orelse and len(node.body) == 1
            and ast.unparse(node.test) in ("__name__ == '__main__'", "'__main__' == __name__")):
        return False
    return ast.unparse(node.body[0]) in ("raise SystemExit(main())", "sys.exit(main())")


def _constant_name(name: str) -> bool:
    return bool(re.fullmatch(r"_?[A-Z][A-Z0-9_]*|__\w+__", name))


#: Calls that read the command line: never at import, not even into a constant.
PARSING_CALLS = ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args")


def _import_time_work(path: Path) -> list[str]:
    """``line: what`` for every top-level statement that is not an import, a definition, a constant
    (UPPER_CASE names assigned, not from the command line), a docstring or the ``__main__`` guard."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        parsing = [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                   and n.func.attr in PARSING_CALLS]
        if parsing and not _is_main_guard(node):
            found.append(f"{node.lineno}: {ast.unparse(node).splitlines()[0][:80]} (parses the command line)")
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(t, ast.Name) and _constant_name(t.id) for t in targets) and node.value is not None:
                continue
        if _is_main_guard(node):
            continue
        found.append(f"{node.lineno}: {ast.unparse(node).splitlines()[0][:80]}")
    return found


def test_benchmarks_do_nothing_at_import():
    """Top level: imports, definitions, UPPER_CASE constants and the ``__main__`` guard; no parsing, no work."""
    found = {p.name: lines for p in BENCHMARK_FILES if (lines := _import_time_work(p))}
    assert found == {}, "move it into a function (main() parses the arguments): " + repr(found)


@pytest.mark.parametrize("path", BENCHMARK_SCRIPTS, ids=lambda p: p.name)
def test_each_benchmark_script_has_main_argv_none_and_a_main_guard(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert mains, f"{path.name}: define main(argv=None) -> int"
    args = mains[0].args
    assert [a.arg for a in args.posonlyargs + args.args] == ["argv"] and len(args.defaults) == 1 \
        and isinstance(args.defaults[0], ast.Constant) and args.defaults[0].value is None \
        and not args.kwonlyargs and not args.vararg and not args.kwarg, f"{path.name}: main(argv=None), nothing else"
    assert any(_is_main_guard(n) for n in tree.body), \
        f'{path.name}: end with if __name__ == "__main__": raise SystemExit(main())'


def test_importing_a_benchmark_parses_no_argument_and_prints_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]):
    """Each file executed afresh under an argv that any parser would refuse: no parsing, no output."""
    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{self.prog}: arguments parsed at import")

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", ["benchmark", "--no-such-option"])
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", refuse)
    for path in BENCHMARK_FILES:
        spec = importlib.util.spec_from_file_location(f"_import_check_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
        spec.loader.exec_module(module)
        assert capsys.readouterr() == ("", ""), f"{path.name} printed at import"


#: Modules whose docstring need not name a notebook: packages' maps and the ``python -m`` entry points.
NO_NOTEBOOK = {"helpers", "helpers.predict", "helpers.evaluate"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in NO_NOTEBOOK and not n.endswith("__main__")))
def test_each_module_docstring_names_its_notebook(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8"))) or ""
    assert re.search(r"notebooks?\s+0\d", doc, re.IGNORECASE), f"{name}: say which notebook introduces it"


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every string constant in the file's code (f-string parts included, docstrings not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


#: Strings equal to (or holding) a naming constant that mean something else: smp-hub's ``config.json`` of an
#: encoder, and the extension of a saved matplotlib figure (a PNG, but not a mask).
OTHER_FILES_OF_THE_SAME_NAME = {("helpers/models/pretrained.py", "config.json"), ("helpers/evaluation/plots.py", ".png")}


def _respelled_constants(path: Path) -> list[str]:
    """``file:line 'text' (home.CONSTANT, ...)`` for every code string of ``path`` equal to a naming constant (or
    to one of the strings of a tuple constant) defined in another module."""
    rel = str(path.relative_to(ROOT))
    owners: dict[str, list[str]] = {}
    for home, constants in CONSTANT_HOMES.items():
        for constant, values in constants.items():
            for value in values if home != rel else ():
                owners.setdefault(value, []).append(f"{Path(home).stem}.{constant}")
    return [f"{rel}:{line} {text!r} ({', '.join(owners[text])})" for line, text in _code_strings(path)
            if text in owners and (rel, text) not in OTHER_FILES_OF_THE_SAME_NAME]


def test_no_string_literal_respells_a_naming_constant():
    """A literal ``".png"``, ``"_segmentation"``, ``"best.pt"`` ... in helpers/ or benchmarks/ code (docstrings and
    comments aside) is a copy of a constant of helpers/data/files.py or helpers/runfolder.py: import the constant."""
    found = [hit for p in [*MODULES.values(), *BENCHMARK_FILES] for hit in _respelled_constants(p)]
    assert not found, "use the constant instead of its value: " + "; ".join(found)


def test_run_folder_file_names_are_written_only_in_runfolder():
    """Code in helpers/ and benchmarks/ names best.pt, last.pt, history.csv, config.json via helpers.runfolder."""
    name = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in runfolder.RUN_FILES) + r")\b")
    root = PACKAGE.parent
    paths = [p for p in sorted(PACKAGE.rglob("*.py")) + sorted(BENCHMARKS.glob("*.py")) if p.name != "runfolder.py"]
    found = [(str(p.relative_to(root)), line, text) for p in paths for line, text in _code_strings(p)
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
    """Every threshold default is ``helpers.evaluation.metrics.DEFAULT_THRESHOLD``, the one place the 0.5 is written."""
    root = PACKAGE.parent
    found = {str(p.relative_to(root)): lines for p in sorted(PACKAGE.rglob("*.py")) + sorted(BENCHMARKS.glob("*.py"))
             if (lines := _literal_threshold_defaults(p))}
    assert found == {}, "default to helpers.evaluation.metrics.DEFAULT_THRESHOLD"
