"""Imports run downwards (issue 16): the building blocks (``dwnas.nn``, ``dwnas.space``,
``dwnas.data``) never import the stages built on them (search, transform, train, report,
baselines). Checked statically, on every import statement of their files: at module level,
inside functions (the lazy imports that keep ``dwnas --help`` light) and the module names of the
lazy ``_EXPORTS`` tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dwnas"
LOWER = ("nn", "space.py", "data")
UPPER = ("search", "transform", "train", "report", "baselines")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, relative imports resolved, plus the
    ``dwnas.*`` module names its string constants hold (lazy export tables)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("dwnas.")
        ):
            found.append((node.lineno, node.value))
    return found


def layer_files() -> list[Path]:
    files = []
    for part in LOWER:
        path = PACKAGE / part
        if path.is_dir():
            files += sorted(path.rglob("*.py"))
        elif path.is_file():
            files.append(path)
    return files


def upward(module: str) -> str | None:
    """The stage ``module`` belongs to, when it is one the lower layers must not import."""
    parts = module.split(".")
    if parts[0] == "dwnas" and len(parts) > 1 and parts[1] in UPPER:
        return parts[1]
    return None


def test_the_lower_layers_exist():
    files = {f.relative_to(PACKAGE).as_posix() for f in layer_files()}
    assert {"nn/counters.py", "nn/static.py", "space.py", "data/loaders.py"} <= files


def test_nn_space_and_data_never_import_a_stage():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}"
        for path in layer_files()
        for line, module in imported_modules(path)
        if upward(module)
    ]
    assert found == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from dwnas.transform import fold_deep\n", "dwnas.transform"),
        ("def f():\n    from dwnas.train.evaluate import EvalData\n", "dwnas.train.evaluate"),
        ("import dwnas.search.latency\n", "dwnas.search.latency"),
        ("from ..report import tables\n", "dwnas.report"),
        ('_EXPORTS = {"x": "dwnas.baselines.common"}\n', "dwnas.baselines.common"),
    ],
)
def test_the_check_sees_every_kind_of_import(tmp_path, monkeypatch, source, expected):
    """The check itself: a lower-layer file with each kind of upward import is caught."""
    package = tmp_path / "dwnas"
    (package / "nn").mkdir(parents=True)
    (package / "nn/bad.py").write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", package)
    modules = [module for _, module in imported_modules(package / "nn/bad.py")]
    assert expected in modules and upward(expected)
    assert [
        path.name for path in layer_files() if any(upward(m) for _, m in imported_modules(path))
    ] == ["bad.py"]
