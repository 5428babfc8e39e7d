"""The structure: imports go one way only, and only the command line has a ``main``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The layers, lowest first: a module may import its own layer and those before it.
LAYERS = ("simulators", "pasta_env", "agents", "pasta_app", "benchmarks", "pasta_cli")
#: A string that names a module (``pkg.mod`` or ``pkg.mod:attr``), as importlib, entry points or ``-m`` take it.
MODULE_NAME = re.compile(r"^(" + "|".join(LAYERS) + r")(\.[A-Za-z_][\w]*)*(:[A-Za-z_][\w.]*)?$")


def modules():
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path


def names_used(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, package)`` of every import and every string that names one of the project's modules."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.match(node.value):
            out.append((node.lineno, node.value.split(".")[0].split(":")[0]))
    return out


def test_no_module_names_a_higher_layer():
    upward = []
    for layer, path in modules():
        rank = LAYERS.index(layer)
        for line, package in names_used(ast.parse(path.read_text(), str(path))):
            if package in LAYERS and LAYERS.index(package) > rank:
                upward.append(f"{path.relative_to(ROOT)}:{line} names {package}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_packages_form_no_circle():
    edges = {layer: set() for layer in LAYERS}
    for layer, path in modules():
        for _, package in names_used(ast.parse(path.read_text(), str(path))):
            if package in LAYERS and package != layer:
                edges[layer].add(package)

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, (*seen, n))) for n in edges[a])

    assert not [p for p in LAYERS if reaches(p, p)]


def test_only_the_command_line_has_entry_points():
    found = []
    for layer, path in modules():
        if layer == "pasta_cli":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "main" and node.col_offset == 0:
                found.append(f"{path.relative_to(ROOT)}: def main")
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "__name__":
                found.append(f"{path.relative_to(ROOT)}: if __name__ == ...")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("layer", LAYERS)
def test_every_module_says_what_it_does(layer):
    missing = [str(p.relative_to(ROOT)) for lay, p in modules() if lay == layer
               and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"modules without a docstring: {missing}"
