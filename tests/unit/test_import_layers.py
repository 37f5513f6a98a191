"""The engine's layers, read from the imports of src/safekit (ARCHITECTURE.md, ADR 0014).

Dependencies point one way: the daemon's entry point wires the API (the only upward import),
nothing else reaches into `daemon/`; the replication process shares only the ground with
safekitd; the decision packages and the configuration model do no I/O; no import circle.
Every import counts, including those inside functions; only `if TYPE_CHECKING:` blocks are left out.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "safekit").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _import_statements(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports in `node`, at any depth, except under `if TYPE_CHECKING:` (its `else` counts)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _import_statements(child)


def _imported_names(module: str, source: str) -> set[str]:
    """Every module name `module` imports (absolute; `from X import y` gives X.y when y is a module)."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _import_statements(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                names.add(submodule if submodule in MODULES else base)
    return names


def imports_of(module: str) -> set[str]:
    return _imported_names(module, MODULES[module].read_text(encoding="utf-8"))


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _local(name: str) -> str | None:
    """The safekit module `name` is, or lies in (`safekit.x.Y` -> `safekit.x`); None outside safekit."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _edges(module: str) -> set[str]:
    return {m for m in map(_local, imports_of(module)) if m and m != module}


GROUND = ("safekit.mirror", "safekit.farm", "safekit.membership", "safekit.config", "safekit.lifecycle")
"""The pure ground: the machines, membership, configuration and the vocabulary of a module's life."""
PURE_CONTRACTS = ("safekit.rfs.channel",)
"""Modules outside the ground that the ground may import: the control channel's vocabulary."""
IO_MODULES = frozenset(
    {
        "asyncio", "concurrent", "ctypes", "fcntl", "http", "mmap", "multiprocessing", "select",
        "selectors", "shutil", "signal", "socket", "socketserver", "ssl", "subprocess", "tempfile",
        "threading", "time", "urllib",
    }
)  # fmt: skip
PURE_LIBRARIES = frozenset({"defusedxml"})
"""Libraries outside the standard one that the ground may use: the XML parser of the configuration."""
FILE_ACCESS = frozenset({"os", "pathlib"})
READS_FILES = frozenset(
    {"safekit.config.loader", "safekit.config.module_parser", "safekit.membership.clusterkey"}
)
"""The ground's modules that read a file or the environment (the configuration, the cluster key)."""


def _violations(rule: str, offenders: dict[str, set[str]]) -> str:
    return f"{rule}:\n" + "\n".join(
        f"  {m} imports {', '.join(sorted(v))}" for m, v in sorted(offenders.items())
    )


def test_nothing_outside_the_daemon_imports_it() -> None:
    offenders = {
        m: bad
        for m in MODULES
        if not _in(m, "safekit.daemon") and (bad := {i for i in imports_of(m) if _in(i, "safekit.daemon")})
    }
    assert not offenders, _violations("only safekitd imports safekit.daemon", offenders)


def test_the_entry_point_is_the_only_upward_import() -> None:
    offenders = {
        m: bad
        for m in MODULES
        if _in(m, "safekit.daemon") and m != "safekit.daemon.main"
        if (bad := {i for i in imports_of(m) if _in(i, "safekit.api", "safekit.cli", "safekit.commands")})
    }
    assert not offenders, _violations("only daemon/main.py wires the API", offenders)


def test_the_replication_process_shares_only_the_ground() -> None:
    allowed = ("safekit.host", "safekit.membership", "safekit.config")
    offenders = {
        m: bad
        for m in MODULES
        if _in(m, "safekit.rfs")
        if (bad := {i for i in imports_of(m) if _in(i, "safekit") and not _in(i, "safekit.rfs", *allowed)})
    }
    assert not offenders, _violations("rfs/ imports only rfs, host, membership, config", offenders)


def _does_io(module: str, name: str) -> bool:
    top = name.partition(".")[0]
    if top == "safekit":
        return name != "safekit" and not _in(name, *GROUND, *PURE_CONTRACTS)
    if top not in sys.stdlib_module_names:
        return top not in PURE_LIBRARIES
    return top in IO_MODULES or (top in FILE_ACCESS and module not in READS_FILES)


@pytest.mark.parametrize("module", [m for m in MODULES if _in(m, *GROUND, *PURE_CONTRACTS)])
def test_the_decisions_and_the_model_do_no_io(module: str) -> None:
    bad = {name for name in imports_of(module) if _does_io(module, name)}
    assert not bad, f"{module} (pure) imports {', '.join(sorted(bad))}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and (SRC / "safekit" / parts[1]).is_dir() else module


def test_no_import_circle_between_modules() -> None:
    graph = {m: _edges(m) for m in MODULES}
    assert _cycles(graph) == []


def test_no_import_circle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for m in MODULES:
        graph.setdefault(_package(m), set()).update(
            p for p in map(_package, _edges(m)) if p != _package(m) and p != "safekit"
        )
    assert _cycles(graph) == []


def test_the_checks_see_a_forbidden_import() -> None:
    """The rules above read what they claim to read: a planted import is found."""
    planted = "from safekit.daemon.node import Node\n\ndef f() -> None:\n    import socket\n"
    assert {"safekit.daemon.node", "socket"} <= _imported_names("safekit.api.cli", planted)
    hidden = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from safekit.daemon import node\n"
    assert "safekit.daemon.node" not in _imported_names("safekit.api.cli", hidden)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
