"""The package's structure, measured from its source: imports counted everywhere.

Every ``import`` and ``from ... import`` counts, inside functions and under ``TYPE_CHECKING``
too, and so does a module named as a string to ``lazy(...)`` or ``importlib.import_module``:
the structure that runs, not only the one at the top of each file.
``uv run python -m tests.architecture`` prints the figures; tests/test_architecture.py holds
the package to them.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "reconcile"


@dataclasses.dataclass(frozen=True)
class Source:
    """One module of the package: its dotted name, whether it is a package face, its tree."""

    name: str
    is_package: bool
    tree: ast.Module


def sources(root: Path = PACKAGE) -> list[Source]:
    """Every module under ``root``, parsed."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found.append(Source(".".join(parts), is_package, ast.parse(path.read_text(), str(path))))
    return found


def _owner(name: str, modules: set[str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(source: Source, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = source.name.split(".") if source.is_package else source.name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@dataclasses.dataclass(frozen=True)
class Import:
    """``importer`` imports ``name`` (a module, or a name of a module) from ``module``."""

    importer: str
    module: str
    name: str | None
    line: int


def imports(root: Path = PACKAGE) -> Iterator[Import]:
    """Every import of a module of the package by another, wherever it is written."""
    every = sources(root)
    top = root.name
    for source in every:
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == top:
                        yield Import(source.name, alias.name, None, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                module = _imported(source, node)
                if module.split(".")[0] == top:
                    for alias in node.names:
                        yield Import(source.name, module, alias.name, node.lineno)
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                called = getattr(func, "id", None) or getattr(func, "attr", None)
                first = node.args[0]
                if (
                    called in ("lazy", "import_module")
                    and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and first.value.split(".")[0] == top
                ):
                    yield Import(source.name, first.value, None, node.lineno)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name of a submodule counts as it)."""
    modules = {source.name for source in sources(root)}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for each in imports(root):
        full = f"{each.module}.{each.name}" if each.name else each.module
        target = full if full in modules else _owner(each.module, modules)
        if target and target != each.importer:
            graph[each.importer].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(root: Path = PACKAGE) -> list[str]:
    """Imports of a private name (or from a private module) of another module."""
    return [
        f"{each.importer}:{each.line} imports {each.name or each.module} from {each.module}"
        for each in imports(root)
        if each.module != each.importer
        and (
            (each.name is not None and _private(each.name))
            or any(_private(part) for part in each.module.split("."))
        )
    ]


def _defined_types(tree: ast.Module) -> Iterator[str]:
    """The classes a module defines, anywhere, and its module-level type aliases."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield node.name
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and getattr(node.annotation, "id", getattr(node.annotation, "attr", None))
            == "TypeAlias"
        ):
            yield node.target.id
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id[:1].isupper()
            and not node.targets[0].id.isupper()
            and isinstance(node.value, ast.Subscript | ast.BinOp)
        ):
            yield node.targets[0].id


def shared_class_names(root: Path = PACKAGE) -> dict[str, list[str]]:
    """Type names (classes and type aliases) defined in more than one place."""
    defined = collections.defaultdict(list)
    for source in sources(root):
        for name in _defined_types(source.tree):
            defined[name].append(source.name)
    return {name: where for name, where in defined.items() if len(where) > 1}


def _moves_a_file(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Name):  # from os import replace / from shutil import move
        return func.id in ("replace", "rename", "move")
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value.id if isinstance(func.value, ast.Name) else None
    if owner in ("os", "shutil"):
        return func.attr in ("replace", "rename", "move")
    # Path.replace(target): one argument (str.replace takes two). Path.rename is not told
    # apart from polars' DataFrame.rename by the syntax; the package has no Path.rename.
    return func.attr == "replace" and len(node.args) == 1 and not node.keywords


#: Moves that are not a write made atomic by hand: the inbox files a processed input away.
MOVES = ("reconcile.inbox",)


def replace_sites(root: Path = PACKAGE) -> list[str]:
    """Calls that move a file into place (``os.replace``, ``Path.replace``, ``rename``,
    ``shutil.move``): each is a hand-written atomic write, except the listed :data:`MOVES`."""
    return [
        f"{source.name}:{node.lineno}"
        for source in sources(root)
        if source.name not in MOVES
        for node in ast.walk(source.tree)
        if isinstance(node, ast.Call) and _moves_a_file(node)
    ]


def any_uses(root: Path = PACKAGE) -> collections.Counter[str]:
    """Uses of ``typing.Any`` per module (the name, not its import)."""
    counts: collections.Counter[str] = collections.Counter()
    for source in sources(root):
        for node in ast.walk(source.tree):
            if (isinstance(node, ast.Name) and node.id == "Any") or (
                isinstance(node, ast.Attribute)
                and node.attr == "Any"
                and isinstance(node.value, ast.Name)
                and node.value.id == "typing"
            ):
                counts[source.name] += 1
    return counts


#: Third-party modules that cost the quick commands' start-up (``--help``: bench/startup.py)
#: when imported: the only reason a module of the package is imported inside a function.
HEAVY = frozenset(
    {
        "aiohttp",
        "anyio",
        "argon2",
        "fastexcel",
        "httpx",
        "itsdangerous",
        "jinja2",
        "jsonschema",
        "multipart",
        "openpyxl",
        "pandera",
        "polars",
        "psycopg",
        "psycopg_pool",
        "rfc8785",
        "rich",
        "starlette",
        "uvicorn",
        "xlsxwriter",
        "yarl",
        "zxcvbn",
    }
)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports run when the module is imported: not in a function, class body or
    ``if TYPE_CHECKING``."""
    work: list[ast.stmt] = list(tree.body)
    while work:
        node = work.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            work += node.body + node.orelse
        elif isinstance(node, ast.Try):
            work += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                work += handler.body


def loads_heavy(root: Path = PACKAGE) -> dict[str, bool]:
    """Per module: whether importing it imports a :data:`HEAVY` module (itself, or through the
    package's modules it imports at module level)."""
    every = {source.name: source for source in sources(root)}
    direct: dict[str, bool] = {}
    inner: dict[str, set[str]] = {}
    for name, source in every.items():
        direct[name], inner[name] = False, set()
        for node in _module_level(source.tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [_imported(source, node)]
            )
            for each in names:
                top = each.split(".")[0]
                if top in HEAVY:
                    direct[name] = True
                elif top == root.name:
                    candidates = [each]
                    if isinstance(node, ast.ImportFrom):
                        candidates = [f"{each}.{alias.name}" for alias in node.names] + [each]
                    for candidate in candidates:
                        owner = _owner(candidate, set(every))
                        if owner and owner != name:
                            inner[name].add(owner)
    for name in every:  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = name.split(".")
        inner[name] |= {".".join(parts[:i]) for i in range(1, len(parts))} & set(every)
    heavy = {name for name, is_heavy in direct.items() if is_heavy}
    changed = True
    while changed:
        grown = {name for name, found in inner.items() if found & heavy} - heavy
        heavy |= grown
        changed = bool(grown)
    return {name: name in heavy for name in every}


def deferred_imports(root: Path = PACKAGE) -> list[Import]:
    """Imports of the package's modules written inside a function (run on first call)."""
    found = []
    for source in sources(root):
        for function in ast.walk(source.tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    module = _imported(source, node)
                    if module.split(".")[0] == root.name:
                        found += [
                            Import(source.name, module, a.name, node.lineno) for a in node.names
                        ]
                elif isinstance(node, ast.Import):
                    found += [
                        Import(source.name, a.name, None, node.lineno)
                        for a in node.names
                        if a.name.split(".")[0] == root.name
                    ]
    return found


def needless_deferrals(root: Path = PACKAGE) -> list[str]:
    """Function-level imports of a module that loads nothing heavy: they can only be hiding an
    import that should be at the top (or a cycle). The package face's ``__getattr__`` is not
    one: every import of a submodule runs it, so it loads the API on first use (PEP 562). Nor
    is the command line's dispatcher (``cli``): each command's modules load when that command
    runs, so ``--help`` pays for the parser alone (bench/startup.py; tests/test_startup.py)."""
    modules = {source.name for source in sources(root)}
    heavy = loads_heavy(root)
    needless = []
    for each in deferred_imports(root):
        if each.importer in (root.name, f"{root.name}.cli"):
            continue
        full = f"{each.module}.{each.name}" if each.name else each.module
        target = full if full in modules else _owner(each.module, modules)
        if target and not heavy[target]:
            needless.append(f"{each.importer}:{each.line} imports {target}")
    return needless


def main() -> None:
    needless = needless_deferrals()
    print(f"function-level imports of modules that load nothing heavy: {len(needless)}")
    for each in needless:
        print("  ", each)
    groups = cycles(import_graph())
    print(f"import cycles: {len(groups)}")
    for group in groups:
        print("  ", " ".join(group))
    private = private_imports()
    print(f"private names imported across modules: {len(private)}")
    for line in private:
        print("  ", line)
    shared = shared_class_names()
    print(f"class names defined twice: {len(shared)}")
    for name, where in sorted(shared.items()):
        print("  ", name, " ".join(where))
    sites = replace_sites()
    print(f"os.replace sites: {len(sites)} {' '.join(sites)}")
    uses = any_uses()
    print(f"Any: {sum(uses.values())}")
    for module, count in uses.most_common():
        print(f"   {count:4} {module}")


if __name__ == "__main__":
    main()
