"""The import structure the architecture promises, checked from the source with `ast` (no module is imported):

(a) no import cycles among torchship modules (module-level imports; `if TYPE_CHECKING:` blocks excluded,
    since they never run);
(b) no stage module imports a later stage's module (any import, also those inside functions: a lazy import
    is still a dependency on the later stage);
(c) `torchship.handlers` imports nothing else from torchship: it is copied into the .mar and runs inside
    TorchServe, where torchship is not installed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "torchship"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    module_level: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The torchship module that `name` refers to: itself or its nearest enclosing module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the body never runs
                visit(child, module_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _target(alias.name, modules)
                if target:
                    found.append(Import(name, target, node.lineno, module_level))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name, is_package)
            for alias in node.names:
                # `from pkg import sub` imports the submodule pkg.sub when there is one.
                target = _target(f"{base}.{alias.name}", modules) or _target(base, modules)
                if target:
                    found.append(Import(name, target, node.lineno, module_level))
        inside = module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, True)
    return found


def _all_imports() -> list[Import]:
    modules = all_modules()
    return [i for name, path in modules.items() for i in imports_of(name, path, modules)]


def _parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def module_graph() -> dict[str, set[str]]:
    modules = all_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in _all_imports():
        if imp.module_level and imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
            # A module's parent packages run first; a package importing its own child is not a cycle edge back.
            for parent in _parents(imp.imported):
                if parent in modules and not imp.importer.startswith(parent + ".") and parent != imp.importer:
                    graph[imp.importer].add(parent)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as one cycle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_through(graph, c) for c in components]


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete path start -> ... -> start inside the component, for a readable failure."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return component


# The pipeline's stages in order, each as the module prefixes that implement it (most specific first).
STAGE_ORDER = ("fetch", "compile", "validate", "package", "verify", "publish", "image", "deploy")
STAGE_MODULES = (
    ("torchship.validate.served", "verify"),
    ("torchship.serving", "verify"),
    ("torchship.sources", "fetch"),
    ("torchship.compile", "compile"),
    ("torchship.validate", "validate"),
    ("torchship.archiver", "package"),
    ("torchship.publish", "publish"),
    ("torchship.image", "image"),
    ("torchship.deploy", "deploy"),
)
# Pairs tolerated for now, each with why (empty: the validate stage's import of the package stage went
# when the handler configuration moved to handler_settings.py).
KNOWN_LATER_STAGE_IMPORTS: set[tuple[str, str]] = set()


def stage_of(module: str) -> str | None:
    for prefix, stage in STAGE_MODULES:
        if module == prefix or module.startswith(prefix + "."):
            return stage
    return None


def test_the_checker_sees_cycles_and_type_checking_blocks(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import torchship.spec\n"
        "if TYPE_CHECKING:\n    from torchship import cli\n"
        "def f():\n    from torchship import pipeline\n"
    )
    found = imports_of("torchship.m", source, all_modules())
    assert [(i.imported, i.module_level) for i in found] == [
        ("torchship.spec", True),
        ("torchship.pipeline", False),
    ]


def test_no_import_cycles() -> None:
    cycles = find_cycles(module_graph())
    assert not cycles, "import cycles among torchship modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_stage_imports_a_later_stage() -> None:
    wrong = []
    for imp in _all_imports():
        mine, theirs = stage_of(imp.importer), stage_of(imp.imported)
        if mine is None or theirs is None or mine == theirs:
            continue
        if STAGE_ORDER.index(theirs) > STAGE_ORDER.index(mine):
            if (imp.importer, imp.imported) in KNOWN_LATER_STAGE_IMPORTS:
                continue
            wrong.append(f"{imp.importer}:{imp.line} ({mine}) imports {imp.imported} ({theirs})")
    assert not wrong, "a stage imports a later stage:\n" + "\n".join(sorted(set(wrong)))


def test_known_exceptions_still_exist() -> None:
    """An exception whose import is gone must leave the list, so it cannot hide a new one later."""
    present = {(imp.importer, imp.imported) for imp in _all_imports()}
    stale = KNOWN_LATER_STAGE_IMPORTS - present
    assert not stale, f"remove from KNOWN_LATER_STAGE_IMPORTS (the import is gone): {sorted(stale)}"


def test_handlers_import_nothing_from_torchship() -> None:
    modules = all_modules()
    handlers = [m for m in modules if m == "torchship.handlers" or m.startswith("torchship.handlers.")]
    assert handlers, "no handler modules found: the checker looks in the wrong place"
    outside = [
        f"{imp.importer}:{imp.line} imports {imp.imported}"
        for m in handlers
        for imp in imports_of(m, modules[m], modules)
        if not imp.imported.startswith("torchship.handlers")
    ]
    assert not outside, "handlers/ is shipped inside the .mar and must not import torchship:\n" + "\n".join(
        outside
    )


def test_registry_backends_are_one_module_each() -> None:
    modules = all_modules()
    for backend in ("base", "s3", "neptune", "none"):
        assert f"torchship.publish.registries.{backend}" in modules
    # The registries compare manifests through publish.manifest, never through the publisher that uses them.
    registry_imports = {
        imp.imported
        for name, path in modules.items()
        if name.startswith("torchship.publish.registries")
        for imp in imports_of(name, path, modules)
    }
    assert "torchship.publish.publisher" not in registry_imports
    assert "torchship.publish.manifest" in registry_imports
