"""The shape of the ``lmnb`` package, read from its source (nothing is imported or run).

- No import cycles between modules. Every ``import``/``from`` statement counts, those inside
  functions too: a lazy import still ties two modules together, it only hides the knot.
- No module imports another package's private module (``lmnb.hub._hf``, ``lmnb.engine._llama``,
  ``lmnb.widgets._pane``...), nor uses another module's private (underscore) name, whether
  imported (``from .model import _fill_batch``) or read off the module (``api._engine``). What
  other modules use is public; a package's own ``_private.py`` modules are for its other modules.
- No module is longer than ``MAX_LINES``.

The allow-lists below name today's known violations, each with the file it lives in, so that they
are fixed in place rather than forgotten. A test fails when an entry is no longer needed: remove
it then, so the lists only ever shrink.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent / "lmnb"
MAX_LINES = 540  # "about 500": a module past it has two jobs; split it

# Import edges (importer -> imported) that close a cycle today. Each must go; none may be added.
CYCLE_ALLOWED: set[tuple[str, str]] = set()

# (importer, "imported/module.py:_name") uses of another module's private name, or of another
# package's private module (then the name is public or empty), today.
PRIVATE_ALLOWED: set[tuple[str, str]] = set()

# Modules over MAX_LINES today (path under lmnb/). Split them; do not add to this list.
OVERSIZED_ALLOWED: set[str] = {
}


# ------------------------------------------------------------------------------------------------
# Reading the package
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Use:
    """One module using another: an import, or a ``module._name`` attribute read."""

    importer: str
    target: str  # the lmnb module imported (or whose attribute is read)
    name: Optional[str]  # the name taken from it (``from target import name``, ``target.name``)
    line: int

    def where(self) -> str:
        return f"{module_path(self.importer)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


_PATHS: dict[str, Path] = {}


def modules() -> dict[str, Path]:
    """Every module of lmnb, by dotted name (packages by their ``__init__.py``)."""
    if not _PATHS:
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
            for f in sorted(filenames):
                if f.endswith(".py"):
                    p = Path(dirpath) / f
                    _PATHS[module_name(p)] = p
    return _PATHS


def module_path(name: str) -> str:
    return str(modules()[name].relative_to(ROOT.parent))


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def package_of(name: str) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to the package itself)."""
    return name if is_package(name) else name.rpartition(".")[0]


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(importer: str, module: Optional[str], level: int) -> Optional[str]:
    """The absolute dotted name a (possibly relative) ``from`` names."""
    if level == 0:
        return module
    base = package_of(importer).split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def uses(importer: str) -> list[Use]:
    """The lmnb modules ``importer`` imports, and the private attributes it reads off them."""
    tree = ast.parse(modules()[importer].read_text(encoding="utf-8"))
    out: list[Use] = []
    aliases: dict[str, str] = {}  # local name -> lmnb module it is bound to (for attribute reads)
    known = modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known:
                    out.append(Use(importer, a.name, None, node.lineno))
                    if a.asname:
                        aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(importer, node.module, node.level)
            if base is None or base not in known:
                continue  # not an lmnb module (third-party, or stdlib)
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:  # `from . import api`, `from ..hub import _hf`: a module
                    out.append(Use(importer, sub, None, node.lineno))
                    aliases[a.asname or a.name] = sub
                else:  # `from .model import tokenize`: a name defined in a module
                    out.append(Use(importer, base, a.name, node.lineno))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and is_private(node.attr)):  # fmt: skip
            out.append(Use(importer, aliases[node.value.id], node.attr, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in modules()}
    for m in modules():
        for u in uses(m):
            if u.target != m:
                g[m].add(u.target)
    return g


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other (cycles), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
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
                groups.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(groups, key=len, reverse=True)


def private_uses() -> list[Use]:
    """Uses of another package's private module, or of another module's private name."""
    bad = []
    for m in modules():
        own = package_of(m)
        for u in uses(m):
            if u.target == m:
                continue
            private_module = is_private(u.target.rpartition(".")[2]) and package_of(u.target) != own
            private_name = u.name is not None and is_private(u.name)
            if private_module or private_name:
                bad.append(u)
    return bad


def _key(u: Use) -> tuple[str, str]:
    return (module_path(u.importer), f"{module_path(u.target)}:{u.name or ''}")


# ------------------------------------------------------------------------------------------------
# The tests
# ------------------------------------------------------------------------------------------------
def test_the_reader_sees_the_package():
    mods = modules()
    assert {"lmnb", "lmnb.api", "lmnb.engine", "lmnb.engine.model", "lmnb.hub.cache"} <= set(mods)
    g = graph()
    assert "lmnb.engine._llama" in g["lmnb.engine.model"]  # a top-level `from ._llama import ...`
    assert "lmnb.hub.cache" in g["lmnb.sources.library"]  # a lazy import inside a function counts too
    assert "lmnb.hub" in g["lmnb.sources.library"]  # `from . import hub` names the subpackage


def _reaches(g: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        x = todo.pop()
        if x not in seen:
            seen.add(x)
            todo += g[x]
    return goal in seen


def test_the_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(g) == [["a", "b", "c"]]
    assert _reaches(g, "d", "c") and not _reaches(g, "a", "d")


def test_no_import_cycles():
    g = graph()
    edges = {(module_path(a), module_path(b)) for a in g for b in g[a]}
    for a, b in CYCLE_ALLOWED:
        assert (a, b) in edges, f"{a} no longer imports {b}: remove it from CYCLE_ALLOWED"
    pruned = {m: {t for t in ts if (module_path(m), module_path(t)) not in CYCLE_ALLOWED} for m, ts in g.items()}
    cycles = strongly_connected(pruned)
    report = []
    for group in cycles:
        inside = set(group)
        lines = sorted({
            f"{u.where()}: {module_path(u.importer)} -> {module_path(u.target)}"
            for m in group for u in uses(m) if u.target in inside and u.target != m
        })  # fmt: skip
        report.append(" <-> ".join(module_path(m) for m in group) + "\n    " + "\n    ".join(lines))
    assert not cycles, "import cycles (break them; see the edges):\n" + "\n".join(report)
    by_path = {module_path(m): m for m in g}
    stale = [(a, b) for a, b in CYCLE_ALLOWED if not _reaches(pruned, by_path[b], by_path[a])]
    assert not stale, f"these edges no longer close a cycle, remove them from CYCLE_ALLOWED: {stale}"


def test_no_private_names_outside_their_module():
    found = private_uses()
    keys = {_key(u) for u in found}
    new = sorted(f"{u.where()}: {_key(u)[1]}" for u in found if _key(u) not in PRIVATE_ALLOWED)
    assert not new, (
        "private names or modules of another package (make them public, or move the code):\n" + "\n".join(new)
    )
    stale = sorted(PRIVATE_ALLOWED - keys)
    assert not stale, f"fixed, remove from PRIVATE_ALLOWED: {stale}"


def test_no_module_is_too_long():
    lengths = {module_path(m): len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules().items()}
    too_long = sorted(f"{p}: {n} lines" for p, n in lengths.items() if n > MAX_LINES and p not in OVERSIZED_ALLOWED)
    assert not too_long, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(too_long)
    stale = sorted(p for p in OVERSIZED_ALLOWED if lengths.get(p, 0) <= MAX_LINES)
    assert not stale, f"now at most {MAX_LINES} lines (or gone), remove from OVERSIZED_ALLOWED: {stale}"


def test_the_engine_and_the_remote_backend_implement_the_backend_protocol():
    import typing

    from lmnb.backend import Backend
    from lmnb.engine import Engine
    from lmnb.remote import RemoteBackend

    members = [m for m in dir(Backend) if not m.startswith("_")] + list(typing.get_type_hints(Backend))
    for cls in (Engine, RemoteBackend):
        source = Path(__import__("inspect").getsourcefile(cls)).read_text(encoding="utf-8")
        for m in set(members):
            assert hasattr(cls, m) or f"self.{m} =" in source or f"self.{m}:" in source, f"{cls.__name__}.{m}"


def test_the_package_face_declares_its_lazy_names_statically():
    """``lmnb/__init__.py`` imports lazily (``_EXPORTS``) and repeats each name under ``TYPE_CHECKING``,
    so IDEs and type checkers see ``lmnb.chat``; the two lists must name the same things."""
    tree = ast.parse((ROOT / "__init__.py").read_text(encoding="utf-8"))
    exports = next(ast.literal_eval(n.value) for n in tree.body
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "_EXPORTS")
    guard = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    static = {a.name: node.module for node in guard.body if isinstance(node, ast.ImportFrom) for a in node.names}
    assert static == exports
    import lmnb

    for name, module in exports.items():  # and each lazy name is where it says
        assert getattr(lmnb, name).__module__ == f"lmnb.{module}", name
