"""Size limits on the package, read from the source with ``ast``: short modules, short signatures.

- no module of ``autocompress/`` is over ``MAX_LINES`` lines;
- no public function or method (name not starting with ``_``) takes more than ``MAX_PARAMS``
  parameters: positional, keyword-only, ``*args`` and ``**kwargs`` all count, ``self`` / ``cls``
  do not. Functions nested in functions are not API and are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
MAX_PARAMS = 8


def _modules(src: Path) -> list[Path]:
    return sorted((src / "autocompress").rglob("*.py"))


def _public_functions(
    tree: ast.Module,
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """(qualified name, node, is a method) for module-level functions and class methods."""

    def walk(
        body: list[ast.stmt], prefix: str, in_class: bool
    ) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not node.name.startswith("_"):
                    yield prefix + node.name, node, in_class
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{prefix}{node.name}.", True)
            elif isinstance(node, (ast.If, ast.Try)):  # if TYPE_CHECKING / try-import blocks
                yield from walk(node.body, prefix, in_class)
                yield from walk(node.orelse, prefix, in_class)

    yield from walk(tree.body, "", False)


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    a = node.args
    positional = [*a.posonlyargs, *a.args]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if method and not static and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    return len(positional) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def long_modules(src: Path) -> list[str]:
    out = []
    for path in _modules(src):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            out.append(f"{path.relative_to(src)}: {lines} lines (at most {MAX_LINES})")
    return out


def long_signatures(src: Path) -> list[str]:
    out = []
    for path in _modules(src):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node, method in _public_functions(tree):
            n = parameter_count(node, method)
            if n > MAX_PARAMS:
                out.append(
                    f"{path.relative_to(src)}:{node.lineno}: {name} takes {n} parameters "
                    f"(at most {MAX_PARAMS} for a public function; group them in a dataclass)"
                )
    return out


def _check(problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{len(problems)} violation(s):\n" + "\n".join(problems), pytrace=False)


def test_no_module_is_too_long() -> None:
    _check(long_modules(ROOT))


def test_no_public_function_takes_too_many_parameters() -> None:
    _check(long_signatures(ROOT))


def test_the_checks_on_a_synthetic_module(tmp_path: Path) -> None:
    pkg = tmp_path / "autocompress"
    pkg.mkdir()
    (pkg / "ok.py").write_text("x = 1\n" * MAX_LINES)
    (pkg / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (pkg / "sig.py").write_text(
        "def fine(a, b, c, d, e, f, g, *, h): ...\n"
        "def wide(a, b, c, d, e, f, g, *args, h): ...\n"
        "def _private(a, b, c, d, e, f, g, h, i): ...\n"
        "class C:\n"
        "    def method(self, a, b, c, d, e, f, g, h): ...\n"
        "    def __init__(self, a, b, c, d, e, f, g, h, i): ...\n"
        "    @staticmethod\n"
        "    def static(self, a, b, c, d, e, f, g, h): ...\n"
        "def outer():\n"
        "    def inner(a, b, c, d, e, f, g, h, i): ...\n"
    )
    assert long_modules(tmp_path) == [f"autocompress/long.py: {MAX_LINES + 1} lines (at most 400)"]
    found = [p.split(" takes")[0] for p in long_signatures(tmp_path)]
    assert found == ["autocompress/sig.py:2: wide", "autocompress/sig.py:8: C.static"]
