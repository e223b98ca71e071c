"""The package's layering, read from the source with ``ast`` (nothing is imported).

Every import statement counts: top-level, function-local (lazy) and under ``if TYPE_CHECKING:``
(a module cycle is only one that runs, so a type named back under ``TYPE_CHECKING`` is no edge);
relative imports are resolved. Strings that name modules (the root package's ``_LAZY`` map,
``importlib.import_module``) are not imports. The rules:

- each module belongs to one layer of ``LAYERS`` and imports only its own layer and lower ones;
- no import cycle, neither between packages (the units of ``LAYERS``) nor between modules;
- each wrapped third-party library is imported by exactly one module, its adapter;
- no module imports another package's private module (``autocompress.config._schema`` from
  outside ``config``): shared names are re-exported from the package.

The same order is documented in docs/ARCHITECTURE.md ("## Layers"); keep both in step.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "autocompress"

# Lowest first. A name is a module or a package (then it covers every module under it); the
# root package itself is the exact module ``autocompress`` only.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "autocompress",
            "autocompress.errors",
            "autocompress._faults",
            "autocompress.plan",
            "autocompress._ray",
            "autocompress._names",
            "autocompress._files",
        ),
    ),
    ("config", ("autocompress.config",)),
    ("measure", ("autocompress.measure",)),
    ("data", ("autocompress.data",)),
    ("backend", ("autocompress.backend",)),
    ("models", ("autocompress.models",)),
    ("runtimes", ("autocompress.runtimes",)),
    ("record", ("autocompress.record",)),
    ("worker", ("autocompress.worker",)),
    ("front", ("autocompress.front",)),
    ("study", ("autocompress.study",)),
    ("deploy", ("autocompress.deploy",)),
    (
        "top",
        (
            "autocompress._api",
            "autocompress._cli_verbs",
            "autocompress.cli",
            "autocompress.__main__",
        ),
    ),
)

# third-party library -> the one module allowed to import it
# library -> its adapter; a tuple is one adapter split in modules for size (the ONNX realization:
# _onnxrt owns sessions and quantization, _onnxrt_weights the graph surgery on its output)
ADAPTERS: dict[str, str | tuple[str, ...]] = {
    "ray": "autocompress._ray",
    "onnxruntime": "autocompress.runtimes._onnxrt",
    "onnx": ("autocompress.runtimes._onnxrt", "autocompress.runtimes._onnxrt_weights"),
    "torch_pruning": "autocompress.backend._prune",
    "torchao": "autocompress.runtimes._inductor",
    "plotly": "autocompress.deploy._report",
}


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # absolute module name as written (``from a.b import c`` -> a.b.c if a module)
    path: str  # importer's file, relative to the repository
    line: int
    where: str  # "top-level", "function-local" or "TYPE_CHECKING"

    def at(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(src: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of ``package`` under ``src``."""
    return {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement of a module, with where it sits."""

    def walk(node: ast.AST, where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, where
                continue
            inner = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "function-local" if where == "top-level" else where
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from walk(ast.Module(body=child.body, type_ignores=[]), "TYPE_CHECKING")
                yield from walk(ast.Module(body=child.orelse, type_ignores=[]), where)
                continue
            yield from walk(child, inner)

    yield from walk(tree, "top-level")


def _resolve_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def read_imports(modules: Mapping[str, Path], repo: Path) -> list[Import]:
    """Every import of every module; ``from pkg import name`` targets ``pkg.name`` when that is
    one of ``modules``, else ``pkg``."""
    out = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = str(path.relative_to(repo))
        for node, where in _statements(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = _resolve_from(name, path.name == "__init__.py", node)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for target in dict.fromkeys(targets):
                out.append(Import(name, target, rel, node.lineno, where))
    return out


def layer_index(module: str) -> int | None:
    for i, (_, names) in enumerate(LAYERS):
        for unit in names:
            if module == unit or (unit != PACKAGE and module.startswith(unit + ".")):
                return i
    return None


def unit_of(module: str) -> str | None:
    """The package or module of ``LAYERS`` that ``module`` belongs to."""
    for _, names in LAYERS:
        for unit in names:
            if module == unit or (unit != PACKAGE and module.startswith(unit + ".")):
                return unit
    return None


def is_ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def find_cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with a cycle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                components.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    cycles = []
    for comp in components:
        members = set(comp)
        start = comp[0]
        # breadth-first from start's successors back to start: the shortest cycle through it
        prev: dict[str, str] = {}
        frontier = [w for w in sorted(edges[start]) if w in members]
        for w in frontier:
            prev.setdefault(w, start)
        while start not in frontier:
            nxt = []
            for v in frontier:
                for w in sorted(edges.get(v, ())):
                    if w in members and w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        node = prev[start]
        while node != start:
            path.append(node)
            node = prev[node]
        cycles.append([start, *reversed(path[1:]), start])
    return cycles


def _describe(cycle: list[str], lines: Mapping[tuple[str, str], Import]) -> str:
    steps = [f"{a} -> {b} ({lines[a, b].at()})" for a, b in itertools.pairwise(cycle)]
    return "import cycle: " + "; ".join(steps)


# --- the checks, as functions of a source tree (tested on synthetic trees below) -------------


def layer_violations(imports: list[Import]) -> list[str]:
    out = []
    for imp in imports:
        if not is_ours(imp.target) or imp.target == imp.importer:
            continue
        low, high = layer_index(imp.target), layer_index(imp.importer)
        if low is None or high is None or low <= high:
            continue  # modules in no layer are reported by unplaced_modules
        out.append(
            f"{imp.at()}: {imp.importer} (layer {LAYERS[high][0]}) imports {imp.target} "
            f"(layer {LAYERS[low][0]}, {imp.where}): a layer imports only its own and lower ones"
        )
    return out


def unplaced_modules(modules: Mapping[str, Path], imports: list[Import], repo: Path) -> list[str]:
    out = [
        f"{path.relative_to(repo)}:1: module {name} is in no layer: add it to LAYERS "
        "(tests/test_layering.py) and docs/ARCHITECTURE.md"
        for name, path in modules.items()
        if layer_index(name) is None
    ]
    out += [
        f"{imp.at()}: {imp.importer} imports {imp.target}, which is in no layer"
        for imp in imports
        if is_ours(imp.target) and imp.target not in modules and layer_index(imp.target) is None
    ]
    return out


def module_cycles(imports: list[Import]) -> list[str]:
    """Cycles that run: an import under ``TYPE_CHECKING`` (a type named back) is no edge."""
    edges: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], Import] = {}
    for imp in imports:
        if is_ours(imp.target) and imp.target != imp.importer and imp.where != "TYPE_CHECKING":
            edges.setdefault(imp.importer, set()).add(imp.target)
            lines.setdefault((imp.importer, imp.target), imp)
    return [_describe(c, lines) for c in find_cycles(edges)]


def package_cycles(imports: list[Import]) -> list[str]:
    edges: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], Import] = {}
    for imp in imports:
        a, b = unit_of(imp.importer), unit_of(imp.target)
        if a is None or b is None or a == b or not is_ours(imp.target):
            continue
        edges.setdefault(a, set()).add(b)
        lines.setdefault((a, b), imp)
    return [_describe(c, lines) for c in find_cycles(edges)]


def adapter_violations(imports: list[Import], library: str) -> list[str]:
    owners = _owners(library)
    return [
        f"{imp.at()}: {imp.importer} imports {imp.target} ({imp.where}): only "
        f"{' / '.join(owners)}, the adapter, may import {library}"
        for imp in imports
        if imp.target.split(".")[0] == library and imp.importer not in owners
    ]


def _owners(library: str) -> tuple[str, ...]:
    owner = ADAPTERS[library]
    return (owner,) if isinstance(owner, str) else owner


def private_reaches(imports: list[Import]) -> list[str]:
    """Imports of another package's private module (``autocompress.pkg._x`` from outside pkg):
    what is shared is re-exported from the package's ``__init__``."""
    out = []
    for imp in imports:
        parts = imp.target.split(".")
        if len(parts) < 3 or parts[0] != PACKAGE or parts[1].startswith("_"):
            continue
        package = ".".join(parts[:2])
        inside = imp.importer == package or imp.importer.startswith(package + ".")
        if parts[2].startswith("_") and not inside:
            out.append(
                f"{imp.at()}: {imp.importer} imports {imp.target} ({imp.where}): import it "
                f"from {package} (re-export it there)"
            )
    return out


def _check(problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{len(problems)} violation(s):\n" + "\n".join(problems), pytrace=False)


# --- the package ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> tuple[dict[str, Path], list[Import]]:
    modules = find_modules(ROOT)
    return modules, read_imports(modules, ROOT)


def test_every_module_is_in_a_layer(tree: tuple[dict[str, Path], list[Import]]) -> None:
    modules, imports = tree
    problems = unplaced_modules(modules, imports, ROOT)
    _check(problems)


def test_no_import_goes_up_a_layer(tree: tuple[dict[str, Path], list[Import]]) -> None:
    problems = layer_violations(tree[1])
    _check(problems)


def test_no_import_cycle_between_packages(tree: tuple[dict[str, Path], list[Import]]) -> None:
    problems = package_cycles(tree[1])
    _check(problems)


def test_no_import_cycle_between_modules(tree: tuple[dict[str, Path], list[Import]]) -> None:
    problems = module_cycles(tree[1])
    _check(problems)


def test_no_module_reaches_into_another_package(
    tree: tuple[dict[str, Path], list[Import]],
) -> None:
    _check(private_reaches(tree[1]))


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_third_party_library_has_one_adapter(
    tree: tuple[dict[str, Path], list[Import]], library: str
) -> None:
    imports = tree[1]
    problems = adapter_violations(imports, library)
    _check(problems)
    for owner in _owners(library):
        assert any(
            imp.importer == owner and imp.target.split(".")[0] == library for imp in imports
        ), f"{owner} no longer imports {library}: update ADAPTERS"


# --- the reader and the checks, on synthetic trees ----------------------------------------


def _write(src: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return find_modules(src)


def test_reader_counts_every_import_statement_and_no_string(tmp_path: Path) -> None:
    modules = _write(
        tmp_path,
        {
            "autocompress/__init__.py": (
                "from autocompress.errors import E\n"
                "_LAZY = {'search': 'autocompress._api'}\n"
                "def __getattr__(name):\n"
                "    import importlib\n"
                "    return importlib.import_module(_LAZY[name])\n"
            ),
            "autocompress/errors.py": "class E(Exception): ...\n",
            "autocompress/config/__init__.py": (
                "from typing import TYPE_CHECKING\n"
                "from . import _schema\n"
                "from .._ray import x\n"
                "if TYPE_CHECKING:\n"
                "    from ..study import S\n"
                "def f():\n"
                "    from autocompress import deploy\n"
            ),
            "autocompress/config/_schema.py": "from . import _other\nfrom .. import errors\n",
            "autocompress/study/__init__.py": "",
            "autocompress/deploy/__init__.py": "",
        },
    )
    found = {(i.importer, i.target, i.where) for i in read_imports(modules, tmp_path)}
    assert found == {
        ("autocompress", "autocompress.errors", "top-level"),
        ("autocompress", "importlib", "function-local"),
        ("autocompress.config", "typing", "top-level"),
        ("autocompress.config", "autocompress.config._schema", "top-level"),
        ("autocompress.config", "autocompress._ray", "top-level"),
        ("autocompress.config", "autocompress.study", "TYPE_CHECKING"),
        ("autocompress.config", "autocompress.deploy", "function-local"),
        ("autocompress.config._schema", "autocompress.config", "top-level"),  # _other: a name
        ("autocompress.config._schema", "autocompress.errors", "top-level"),
    }
    problems = layer_violations(read_imports(modules, tmp_path))
    assert len(problems) == 2
    assert problems[0].startswith("autocompress/config/__init__.py:5: autocompress.config ")
    assert "imports autocompress.study (layer study, TYPE_CHECKING)" in problems[0]
    assert "imports autocompress.deploy (layer deploy, function-local)" in problems[1]


def test_cycles_are_reported_with_their_lines(tmp_path: Path) -> None:
    modules = _write(
        tmp_path,
        {
            "autocompress/__init__.py": "",
            "autocompress/errors.py": "from autocompress import plan\n",
            "autocompress/plan.py": "\n\ndef f():\n    from autocompress.errors import E\n",
            "autocompress/data/__init__.py": "from autocompress.data._a import A\n",
            "autocompress/data/_a.py": "from autocompress.data import B\n",
        },
    )
    imports = read_imports(modules, tmp_path)
    assert module_cycles(imports) == [
        "import cycle: autocompress.data -> autocompress.data._a (autocompress/data/__init__.py:1)"
        "; autocompress.data._a -> autocompress.data (autocompress/data/_a.py:1)",
        "import cycle: autocompress.errors -> autocompress.plan (autocompress/errors.py:1)"
        "; autocompress.plan -> autocompress.errors (autocompress/plan.py:4)",
    ]
    assert package_cycles(imports) == [
        "import cycle: autocompress.errors -> autocompress.plan (autocompress/errors.py:1)"
        "; autocompress.plan -> autocompress.errors (autocompress/plan.py:4)",
    ]
    assert layer_violations(imports) == []


def test_adapters_and_unplaced_modules(tmp_path: Path) -> None:
    modules = _write(
        tmp_path,
        {
            "autocompress/__init__.py": "",
            "autocompress/_ray.py": "import ray\n",
            "autocompress/stray.py": "def f():\n    from ray.util import x\n",
        },
    )
    imports = read_imports(modules, tmp_path)
    assert adapter_violations(imports, "ray") == [
        "autocompress/stray.py:2: autocompress.stray imports ray.util (function-local): "
        "only autocompress._ray, the adapter, may import ray"
    ]
    assert adapter_violations(imports, "onnx") == []
    assert unplaced_modules(modules, imports, tmp_path) == [
        "autocompress/stray.py:1: module autocompress.stray is in no layer: add it to LAYERS "
        "(tests/test_layering.py) and docs/ARCHITECTURE.md"
    ]
