"""Where things live: arrows run down only (transforms/ never imports pipeline/), no circles inside transforms/,
one package name (`wirewash.*`, never the bare folder names), and ruff finds no unused or broken code."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib

import wirewash.transforms
from tests.helpers import python_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED_FOLDERS = ("pipeline", "transforms", "tests", "bench", "deploy")
TRANSFORMS = os.path.join(REPO, "transforms")


def _transforms_modules() -> list[str]:
    return sorted(name[:-3] for name in os.listdir(TRANSFORMS) if name.endswith(".py") and name != "__init__.py")


def test_every_transforms_module_imports_without_pipeline():
    """In a fresh interpreter, importing every module of transforms/ imports no module of pipeline/: the stages
    stand on their own (a back-arrow, even a function-local one run at import, fails here)."""
    code = ("import importlib, json, pkgutil, sys\n"
            "import wirewash.transforms as package\n"
            "names = [m.name for m in pkgutil.iter_modules(package.__path__, 'wirewash.transforms.')]\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps({'imported': names,\n"
            "                  'pipeline': sorted(m for m in sys.modules if m.startswith('wirewash.pipeline'))}))\n")
    found = json.loads(python_output(code).strip().splitlines()[-1])
    assert {f"wirewash.transforms.{name}" for name in _transforms_modules()} <= set(found["imported"])
    assert found["pipeline"] == [], f"transforms/ imports pipeline/: {found['pipeline']}"


def _imported_transforms(path: str) -> set[str]:
    """The transforms modules a file imports anywhere (top level or inside a function)."""
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "wirewash.transforms":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("wirewash.transforms."):
                names.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[2] for alias in node.names
                         if alias.name.startswith("wirewash.transforms."))
    return names


def _cycle(graph: dict) -> list:
    """One import circle of `graph` (module -> imported modules), or []."""
    state: dict = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return []


def test_no_import_circles_inside_transforms():
    """The modules of transforms/ import each other downward only: a circle, even one dodged by a
    function-local import, fails here."""
    graph = {name: _imported_transforms(os.path.join(TRANSFORMS, f"{name}.py")) - {name}
             for name in _transforms_modules()}
    assert graph["boilerplate"] >= {"repeated_lines", "text"}  # the check reads real imports
    assert _cycle(graph) == []
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # ...and finds a circle


# An import of the bare folder names, in code or in code given to a subprocess as a string: `from pipeline.x
# import`, `import pipeline`, `import sys, transforms`, `python -m pipeline.cli`.
BARE_IMPORT = re.compile(r"(?<![\w.])(?:from\s+(?:pipeline|transforms)(?:\.\w+)*\s+import\b"
                         r"|import\s+(?:[\w.]+\s*,\s*)*(?:pipeline|transforms)\b(?![/\w-])"
                         r"|-m\s+(?:pipeline|transforms)\.)")


def _checked_files():
    for folder in CHECKED_FOLDERS:
        for root, dirs, files in os.walk(os.path.join(REPO, folder)):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "data")]
            for name in files:
                if name.endswith((".py", ".md", ".sh", ".json", ".yaml", ".yml", ".toml")) or name == "Dockerfile":
                    yield os.path.join(root, name)


def test_code_imports_wirewash_never_the_bare_folder_names():
    """Installed, the package is `wirewash` (`wirewash.pipeline`, `wirewash.transforms`): an import of the bare
    `pipeline` or `transforms` works only from the repository's root, and would load a second copy of a
    module (or a user's own `pipeline.py`)."""
    assert BARE_IMPORT.search("code = 'from pipeline.io import x'") and BARE_IMPORT.search("import sys, transforms\n")
    assert BARE_IMPORT.search("python -m pipeline.cli run")
    assert not BARE_IMPORT.search("from wirewash.pipeline.io import x; import wirewash.transforms; see pipeline/io.py")
    found = []
    for path in _checked_files():
        if os.path.samefile(path, __file__):
            continue  # this file holds the pattern's own examples
        text = open(path, encoding="utf-8", errors="replace").read()
        found += [f"{os.path.relpath(path, REPO)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
                  for m in BARE_IMPORT.finditer(text)]
    assert found == []


def test_ruff_finds_no_unused_or_broken_code():
    """`ruff check` with the rules of pyproject's [tool.ruff.lint] (pyflakes: unused imports F401, unused
    variables F841, redefinitions F811, undefined names...) passes over the code (what a developer's editor
    or `ruff check` shows)."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as handle:
        selected = tomllib.load(handle)["tool"]["ruff"]["lint"]["select"]
    assert all(any(code.startswith(prefix) for prefix in selected) for code in ("F401", "F841", "F811"))
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *CHECKED_FOLDERS], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_package_is_the_repository():
    """The installed `wirewash.transforms` is this repository's transforms/ (an editable install), so the
    checks above read the code that runs."""
    assert os.path.realpath(wirewash.transforms.__path__[0]) == os.path.realpath(TRANSFORMS)
