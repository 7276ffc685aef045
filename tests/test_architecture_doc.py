"""docs/architecture.md names real code: every path and code reference it puts in backticks exists.

What is checked (backticked spans outside fenced blocks):
- a path under src/, tests/, bench/, docs/ or .cargo/, or a top-level file (pyproject.toml...);
- `tests/x.py::test_name`: the file defines that test;
- `a.b.Name.attr` (lower case first): its longest leading part that names a Python module or
  package under src/webops, by its dotted name or the end of it (`aggregate`, `backends.base`,
  `webops.cli`), must exist, and the names after it be defined there (top level, then in the
  class), in at least one module of that name (prose that only looks like code: PROSE);
- `file::Name::name`, a Rust reference: native/src/<file>.rs defines each name.
Other spans (config keys, commands, `Class.method` shorthand) are prose, not checked.

It also holds the page's claim that tools never import each other, and that it has a word for
every tool.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "webops"
RUST = PACKAGE / "statsd" / "native" / "src"
DOC = ROOT / "docs" / "architecture.md"

PATH_ROOTS = ("src/", "tests/", "bench/", "docs/", ".cargo/")
TOP_FILES = {"pyproject.toml", "Makefile", "README.md"}
DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
RUST_REF = re.compile(r"([a-z_]\w*)((?:::[A-Za-z_]\w*)+)")
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
FILE_SUFFIX = re.compile(r"\.(py|pyi|rs|toml|lock|md|c|vcc|js|json|sqlite|txt)$")
PROSE = {"sys.exit", "module.name"}  # dotted spans that name no webops code
TOOLS = sorted(p.parent.name for p in PACKAGE.glob("*/cli.py"))


def spans() -> list[str]:
    text = re.sub(r"```.*?```", "", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", text)]


@cache
def modules() -> dict[str, list[Path]]:
    """Dotted module name -> files; packages too, marked by their __init__.py."""
    out: dict[str, list[Path]] = {}
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyi")]:
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.setdefault(".".join(parts), []).append(path)
    return out


def module_files(prefix: str) -> list[Path]:
    """The files of the modules and packages whose dotted name is `prefix` or ends with `.prefix`."""
    return [
        f for name, files in modules().items() if name == prefix or name.endswith("." + prefix) for f in files
    ]


def names(node: ast.stmt) -> set[str]:
    """The names a statement defines: a def or class, or the plain names it assigns."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def defines(path: Path, chain: list[str]) -> bool:
    """Whether `path` defines chain[0] at top level, chain[1] inside it (a class), and so on."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for name in chain:
        found = [node for node in body if name in names(node)]
        if not found:
            return False
        body = found[-1].body if isinstance(found[-1], ast.ClassDef) else []
    return True


def python_ref(span: str) -> tuple[list[Path], list[str]] | None:
    """The modules a dotted span starts with and the names after them; None: it names no module."""
    parts = span.split(".")
    for cut in range(len(parts), 0, -1):
        files = module_files(".".join(parts[:cut]))
        if files:
            return files, parts[cut:]
    return None


def is_path(span: str) -> bool:
    return " " not in span and "::" not in span and (span.startswith(PATH_ROOTS) or span in TOP_FILES)


def code_spans() -> list[str]:
    """The dotted spans that may name webops code: lower case (or `_`) first."""
    return [s for s in spans() if DOTTED.fullmatch(s) and (s[0].islower() or s[0] == "_")]


def test_the_page_exists_and_names_enough_code_to_be_checked() -> None:
    checked = [s for s in spans() if is_path(s) or TEST_REF.fullmatch(s) or RUST_REF.fullmatch(s)]
    checked += [s for s in code_spans() if not FILE_SUFFIX.search(s) and s not in PROSE]
    assert len(checked) > 100, checked


def test_every_path_exists() -> None:
    missing = [s for s in spans() if is_path(s) and not (ROOT / s).exists()]
    assert not missing, missing


def test_every_test_named_exists() -> None:
    missing = []
    for span in spans():
        if m := TEST_REF.fullmatch(span):
            path = ROOT / m[1]
            if not path.is_file() or not defines(path, [m[2]]):
                missing.append(span)
    assert not missing, missing


def test_every_python_name_exists() -> None:
    missing = []
    for span in code_spans():
        if FILE_SUFFIX.search(span) or span in PROSE:
            continue
        ref = python_ref(span)
        if ref is None or (ref[1] and not any(defines(f, ref[1]) for f in ref[0])):
            missing.append(span)
    assert not missing, missing


def test_every_rust_name_exists() -> None:
    missing = []
    for span in spans():
        if m := RUST_REF.fullmatch(span):
            path = RUST / f"{m[1]}.rs"
            names = m[2].split("::")[1:]
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
            kinds = r"(?:fn|struct|enum|const|type|trait|mod|static)"
            if not text or not all(re.search(rf"\b{kinds}\s+{n}\b", text) for n in names):
                missing.append(span)
    assert not missing, missing


def test_every_tool_has_a_file_of_its_own_named() -> None:
    paths = [s for s in spans() if is_path(s)]
    assert len(TOOLS) >= 7, TOOLS
    unnamed = [t for t in TOOLS if not any(p.startswith(f"src/webops/{t}/") for p in paths)]
    assert not unnamed, unnamed


def imported(path: Path) -> set[str]:
    """The absolute dotted names of what `path` imports."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    package = parts[:-1]  # an __init__.py's package is its own directory, as for any module here
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = [*base, *(node.module.split(".") if node.module else [])]
            out.update(".".join([*target, alias.name]) for alias in node.names)
    return out


def test_tools_never_import_each_other() -> None:
    crossings = []
    for tool in [*TOOLS, "common"]:
        for path in (PACKAGE / tool).rglob("*.py"):
            for name in imported(path):
                parts = name.split(".")
                if parts[0] == "webops" and len(parts) > 1 and parts[1] in TOOLS and parts[1] != tool:
                    crossings.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not crossings, crossings
