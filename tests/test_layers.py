"""The package's layers: no import cycles between its folders, no hidden imports inside functions.

Each folder (stage) of lava_deploy may import only folders below it. Imports
inside functions are kept for optional heavy dependencies alone (Lava, Intel's
lava-loihi, lava-dl, matplotlib), so that the core runs without them.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lava_deploy"
#: Dependencies a function may import lazily: optional or heavy (Lava, lava-dl, lava-loihi, matplotlib, the
#: datasets' packages, nir and sinabs of the extra 'nir', Ray, Hugging Face's transformers: the optional extra that
#: loads pretrained models), and this package's own Lava processes, which import Lava when they load.
LAZY_ALLOWED = ("lava", "matplotlib", "tqdm", "sklearn", "mlxtend", "nir", "nirtorch", "sinabs", "ray", "transformers",
                "lava_deploy.simulate.lava_cpu.process")


def _unit(module: str) -> str:
    """The layer a lava_deploy module belongs to: its top-level folder or module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lava_deploy"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [(alias.name, True) for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                    found.append((inner.module, True))
    top = []
    for node in tree.body:
        stack = [node]
        while stack:        # module level, including inside if/try blocks, not inside functions or classes' methods
            current = stack.pop()
            if isinstance(current, ast.Import):
                top += [(alias.name, False) for alias in current.names]
            elif isinstance(current, ast.ImportFrom) and current.module and not current.level:
                top.append((current.module, False))
            elif not isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.extend(ast.iter_child_nodes(current))
    return top + found


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles_between_the_package_folders():
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _unit(_module_name(path))
        for module, _ in _imports(path):
            if module.startswith("lava_deploy.") and _unit(module) != source:
                edges.setdefault(source, set()).add(_unit(module))
    cycles = []

    def visit(unit: str, trail: list[str]) -> None:
        for target in sorted(edges.get(unit, ())):
            if target in trail:
                cycles.append(trail[trail.index(target):] + [target])
            elif len(trail) < 12:
                visit(target, trail + [target])
    for unit in sorted(edges):
        visit(unit, [unit])
    assert edges and not cycles, f"import cycles: {sorted({' -> '.join(c) for c in cycles})}"


def test_functions_import_only_optional_heavy_dependencies():
    hidden = [f"{path.relative_to(PACKAGE.parent)}: {module}"
              for path in PACKAGE.rglob("*.py") for module, lazy in _imports(path)
              if lazy and not any(module == name or module.startswith(name + ".") for name in LAZY_ALLOWED)]
    assert not hidden, hidden
