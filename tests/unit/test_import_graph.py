"""The import graph keeps its floors (README, "Architecture").

- the core, `fluidos_sensors`, imports no other package of the project;
- a part (resource_manager, router_manager, mapper, consumer, tui) imports the core and
  itself, never another part, the testbed or the benchmarks;
- the testbed imports the core and the parts; the benchmarks may also import the testbed;
- the CLI's composition root, `fluidos_sensors_cli`, may import everything, and nothing of
  the project imports it (tests may: they drive the CLI).

Every import counts, also one inside a function; the modules are parsed, not imported.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = "fluidos_sensors"
PARTS = ("resource_manager", "router_manager", "mapper", "consumer", "tui")
TESTBED, BENCH = "testbed", "bench"
CLI_ROOT = "fluidos_sensors_cli"
PACKAGES = (CORE, *PARTS, TESTBED, BENCH, CLI_ROOT)

ALLOWED: dict[str, frozenset[str]] = {
    CORE: frozenset({CORE}),
    **{part: frozenset({CORE, part}) for part in PARTS},
    TESTBED: frozenset({CORE, *PARTS, TESTBED}),
    BENCH: frozenset({CORE, *PARTS, TESTBED, BENCH}),
    CLI_ROOT: frozenset(PACKAGES),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                found.append(
                    (node.lineno, ".".join([*base, *([node.module] if node.module else [])]))
                )
            else:
                found.append((node.lineno, str(node.module)))
    return found


def _edges() -> list[tuple[str, str, str]]:
    """(importer's package, imported package, "file:line -> module") between project packages."""
    edges = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, name in _imported(path):
                target = name.split(".")[0]
                if target in PACKAGES and target != package:
                    where = f"{path.relative_to(ROOT)}:{line} -> {name}"
                    edges.append((package, target, where))
    return edges


def test_every_package_has_a_floor() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in included} == set(PACKAGES) - {BENCH}
    for package in PACKAGES:
        assert (ROOT / package).is_dir(), package


def test_the_console_script_is_the_composition_root() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = config["project"]["scripts"]["fluidos-sensors"]
    assert target.split(":")[0].split(".")[0] == CLI_ROOT


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_only_go_down(package: str) -> None:
    wrong = [
        where
        for importer, target, where in _edges()
        if importer == package and target not in ALLOWED[package]
    ]
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def test_the_parser_sees_imports() -> None:
    """A guard on the guard: the edges it must find are found."""
    edges = {(importer, target) for importer, target, _ in _edges()}
    assert (CLI_ROOT, TESTBED) in edges
    assert (TESTBED, CORE) in edges
    assert ("tui", CORE) in edges
