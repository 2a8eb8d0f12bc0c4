"""The architecture page's diagrams are the imports, and the tree stays a map (issue 28).

docs/architecture.md draws the layers as mermaid flowcharts: each box names folders (``sync/``)
or top-level modules (``destination``), each arrow says "imports from". These tests read the
imports of every module of the package and check that each arrow is an import and each import
between two boxes is an arrow, so the picture cannot drift from the code.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from samples import ROOT

PKG = "sailthru_destination"
PAGE = ROOT / "docs" / "architecture.md"
NODE = re.compile(r'^\s*(\w+)\["([^"]+)"\]\s*$', re.MULTILINE)
EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", re.MULTILINE)


@dataclass
class Diagram:
    """One mermaid flowchart: its boxes (and what each claims), its arrows, its scope."""

    claims: dict[str, list[str]]  # box -> folders ("sync/") and modules ("destination")
    edges: set[tuple[str, str]]
    not_drawn: list[str]  # what the page says it leaves out (the layers diagram)
    inside: str | None  # the folder a detail diagram is about ("sync/")


def names(label: str) -> list[str]:
    """What a box's label claims: ``"ways in: cli/, _demo"`` -> ``["cli/", "_demo"]``."""
    listed = label.split(": ", 1)[1] if ": " in label else label
    return [name.strip() for name in listed.split(",") if name.strip()]


def diagrams(text: str) -> list[Diagram]:
    found = []
    for block in re.findall(r"```mermaid\n(.*?)```", text, re.DOTALL):
        not_drawn = re.search(r"^%% not drawn: (.+)$", block, re.MULTILINE)
        inside = re.search(r"^%% inside: (.+)$", block, re.MULTILINE)
        found.append(Diagram(
            {box: names(label) for box, label in NODE.findall(block)},
            set(EDGE.findall(block)),
            names(not_drawn[1]) if not_drawn else [],
            inside[1].strip() if inside else None))
    return found


def dotted(name: str) -> str:
    """``sync/memory/`` or ``destination`` as a dotted name under the package."""
    name = name.rstrip("/").replace("/", ".")
    return PKG if name == "__init__" else f"{PKG}.{name}"


def owner(module: str, claims: dict[str, list[str]]) -> str | None:
    """The box that claims ``module``: the longest folder or module name that covers it."""
    best, length = None, -1
    for box, claimed in claims.items():
        for name in claimed:
            target = dotted(name)
            covers = module == target or (name.endswith("/") and module.startswith(target + "."))
            if covers and len(target) > length:
                best, length = box, len(target)
    return best


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exists(module: str) -> bool:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def modules() -> list[str]:
    return sorted(module_of(p) for p in (ROOT / PKG).rglob("*.py"))


def imports() -> set[tuple[str, str]]:
    """``(importer, imported)`` for every import of a package module by another, including
    ``from package import module`` and imports inside functions."""
    found = set()
    for path in (ROOT / PKG).rglob("*.py"):
        here = module_of(path)
        package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(here, a.name) for a in node.names if a.name.startswith(PKG)}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith(PKG):
                    continue
                found.add((here, target))
                found |= {(here, f"{target}.{a.name}") for a in node.names
                          if exists(f"{target}.{a.name}")}
    return found


def drawn_against_code(diagram: Diagram) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(arrows with no import behind them, imports between boxes with no arrow)."""
    actual = set()
    for importer, imported in imports():
        a, b = owner(importer, diagram.claims), owner(imported, diagram.claims)
        if a is not None and b is not None and a != b:
            actual.add((a, b))
    return diagram.edges - actual, actual - diagram.edges


def page_diagrams() -> list[Diagram]:
    return diagrams(PAGE.read_text())


def test_the_page_has_the_layers_and_the_sync_diagram() -> None:
    found = page_diagrams()
    assert [d.inside for d in found] == [None, "sync/"]
    assert all(len(d.edges) >= 5 for d in found)


@pytest.mark.parametrize("index", [0, 1], ids=["layers", "sync"])
def test_every_arrow_is_an_import_and_every_import_an_arrow(index: int) -> None:
    diagram = page_diagrams()[index]
    assert drawn_against_code(diagram) == (set(), set())


def test_every_module_is_in_a_box_or_named_as_left_out() -> None:
    """A new folder or top-level module must be placed on the picture (or said to be left out)."""
    layers = page_diagrams()[0]
    claims = {**layers.claims, "(not drawn)": layers.not_drawn}
    assert [m for m in modules() if owner(m, claims) is None] == []


def test_the_detail_diagram_covers_its_whole_folder() -> None:
    diagram = page_diagrams()[1]
    assert diagram.inside is not None
    inside = dotted(diagram.inside)
    assert [m for m in modules() if m.startswith(inside) and
            owner(m, diagram.claims) is None] == []


def test_the_check_sees_a_missing_and_a_made_up_arrow() -> None:
    diagram = page_diagrams()[1]
    wrong = Diagram(diagram.claims, (diagram.edges - {("run", "memory")}) | {("warehouse",
                                                                             "reporting")},
                    [], diagram.inside)
    assert drawn_against_code(wrong) == ({("warehouse", "reporting")}, {("run", "memory")})


def test_each_sub_package_says_what_it_is_for() -> None:
    """The new rooms of the tree open with a docstring of at most three lines of prose."""
    for folder in ("transport", "shaping", "once", "features", "sync/memory", "sync/reporting",
                   "sync/bulkload", "sync/warehouse"):
        doc = ast.get_docstring(ast.parse((ROOT / PKG / folder / "__init__.py").read_text()))
        assert doc, folder
        assert 1 <= len([line for line in doc.splitlines() if line.strip()]) <= 3, folder


def test_no_folder_holds_more_than_fifteen_modules() -> None:
    """The tree is the map: a folder that grows past this is split by concern (issue 28)."""
    crowded = {}
    for folder in [ROOT / PKG, *(p.parent for p in (ROOT / PKG).rglob("__init__.py"))]:
        count = len(list(folder.glob("*.py")))
        if count > 15:
            crowded[str(folder.relative_to(ROOT))] = count
    assert crowded == {}
