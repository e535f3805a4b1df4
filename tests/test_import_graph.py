"""The import graph of ``traild/``: no circle, and imports point down the layers.

Every module is parsed with ``ast`` (nothing is imported): each ``import`` and ``from ... import``
anywhere in it counts, at module level, inside a function or under ``if TYPE_CHECKING:`` (two
modules that need each other's names are one responsibility cut in two, whether or not the
interpreter notices), relative ones resolved. Running this file as a script prints the circles
and the layer breaches found.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "traild"

# layer -> the only traild packages/modules it may import (itself included)
ONLY = {
    "traild.core": ("traild.core",),
    "traild.runtime": ("traild.core", "traild.ports", "traild.runtime"),
}
# layer -> traild packages it must never import
NEVER = {
    "traild.adapters": ("traild.runtime", "traild.daemon", "traild.cli"),
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    inside.update(id(n) for n in ast.walk(stmt))
    return inside


def _in(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def edges_of(name: str, path: Path, known: dict[str, Path]) -> Iterator[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    type_only = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                sub = f"{stem}.{alias.name}"
                targets.append(sub if sub in known else stem)
        else:
            continue
        for target in targets:
            # ``import traild.a.b`` where traild.a.b is not a file: the nearest module above
            while target and target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                yield Edge(name, target, node.lineno, id(node) in type_only)


def all_edges() -> list[Edge]:
    known = modules()
    return [e for name, path in known.items() for e in edges_of(name, path, known)]


def _graph(edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    return graph


def tangles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected sets of modules (more than one module each): every module of a
    set reaches every other through imports."""
    graph = _graph(edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def circles(edges: list[Edge]) -> list[list[str]]:
    """Every import circle of two modules or more: for each module of a tangle, the shortest
    circle from it back to it (each circle listed once)."""
    graph = _graph(edges)
    out: list[list[str]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for group in tangles(edges):
        members = set(group)
        for start in group:
            circle = _shortest_back(start, graph, members)
            hops = frozenset(itertools.pairwise(circle))
            if hops not in seen:
                seen.add(hops)
                out.append(circle)
    return out


def _shortest_back(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """start -> ... -> start, breadth first within a tangle (which always has a way back)."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"{start} has no way back in its tangle")


def layer_breaches(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        for layer, allowed in ONLY.items():
            if _in(e.source, layer) and not any(_in(e.target, a) for a in allowed):
                out.append(f"{e.source}:{e.line} imports {e.target} ({layer} may import only "
                           f"{', '.join(allowed)})")  # fmt: skip
        for layer, banned in NEVER.items():
            if _in(e.source, layer) and any(_in(e.target, b) for b in banned):
                out.append(f"{e.source}:{e.line} imports {e.target} ({layer} never imports "
                           f"{', '.join(banned)})")  # fmt: skip
    return out


def _describe(circle: list[str], edges: list[Edge]) -> str:
    where = {(e.source, e.target): e for e in edges}
    hops = []
    for a, b in itertools.pairwise(circle):
        e = where[(a, b)]
        hops.append(f"{a} (line {e.line}{', TYPE_CHECKING' if e.type_only else ''})")
    return " -> ".join([*hops, circle[-1]])


def test_the_graph_sees_function_level_relative_and_type_only_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..other import thing, helper\n"
        "if TYPE_CHECKING:\n"
        "    from p.q import typed\n"
        "def f():\n"
        "    import p.deep.mod.attr\n",
        encoding="utf-8",
    )
    known = dict.fromkeys(["p.sub.sibling", "p.other", "p.other.thing", "p.q", "p.deep.mod"], ROOT)
    edges = {(e.target, e.line, e.type_only) for e in edges_of("p.sub.mod", source, known)}
    assert edges == {
        ("p.sub.sibling", 2, False),
        ("p.other.thing", 3, False),  # a module
        ("p.other", 3, False),  # ``helper``: a name in p.other
        ("p.q", 5, True),
        ("p.deep.mod", 7, False),  # inside a function; ``attr`` is not a module
    }
    # and on traild itself: the CLI imports the store inside its commands
    assert ("traild.cli.store_cmds", "traild.adapters.store") in {
        (e.source, e.target) for e in all_edges()
    }


def test_no_import_circle() -> None:
    edges = all_edges()
    found = [_describe(c, edges) for c in circles(edges)]
    assert not found, "import circles:\n  " + "\n  ".join(found)


def test_imports_point_down_the_layers() -> None:
    breaches = layer_breaches(all_edges())
    assert not breaches, "layer breaches:\n  " + "\n  ".join(breaches)


def test_a_circle_is_found_and_named() -> None:
    edges = [Edge("a", "b", 1, False), Edge("b", "c", 2, False), Edge("c", "a", 3, False),
             Edge("c", "d", 4, False), Edge("d", "c", 5, True)]  # fmt: skip
    assert tangles(edges) == [["a", "b", "c", "d"]]
    assert circles(edges) == [["a", "b", "c", "a"], ["c", "d", "c"]]
    assert _describe(["a", "b", "c", "a"], edges) == "a (line 1) -> b (line 2) -> c (line 3) -> a"
    assert _describe(["d", "c", "d"], edges) == "d (line 5, TYPE_CHECKING) -> c (line 4) -> d"


if __name__ == "__main__":
    graph = all_edges()
    for c in circles(graph):
        print("circle:", _describe(c, graph))
    for breach in layer_breaches(graph):
        print("layer:", breach)
