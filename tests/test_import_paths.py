"""Every import the README and the docs show still works after the tree was regrouped (issue 28).

The modules moved into sub-packages (``transport/``, ``features/``, ``sync/memory/``...); the
old public paths the docs show (``sailthru_destination.api``, ``.calllog``, ``.imports``,
``.postbacks``) are small packages that re-export the new modules' names. These tests read
every ``from sailthru_destination... import ...`` in README.md and docs/**/*.md and import it,
and check that no file of the repository still names a path that moved.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from samples import ROOT

FROM = re.compile(r"^[ \t]*from\s+(sailthru_destination[\w.]*)\s+import\s+(\([^)]*\)|[^\n]+)",
                  re.MULTILINE)
PLAIN = re.compile(r"^[ \t]*import\s+(sailthru_destination[\w.]*)", re.MULTILINE)


def documents() -> list[Path]:
    """The README and every page of the docs site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def documented_imports(text: str) -> list[tuple[str, str | None]]:
    """``(module, name)`` for each name imported from the package in ``text``; ``name`` is
    None for a plain ``import module``."""
    found: list[tuple[str, str | None]] = [(module, None) for module in PLAIN.findall(text)]
    for module, names in FROM.findall(text):
        names = names.split("#", 1)[0].strip("()")
        for name in names.split(","):
            name = name.split(" as ", 1)[0].strip()
            if name:
                found.append((module, name))
    return found


def every_documented_import() -> list[tuple[str, str, str | None]]:
    return [(str(path.relative_to(ROOT)), module, name)
            for path in documents() for module, name in documented_imports(path.read_text())]


def regroup() -> ModuleType:
    """tools/regroup.py, the map of the regrouping (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("regroup", ROOT / "tools" / "regroup.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("regroup", module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_the_reader_finds_the_imports_of_a_page() -> None:
    text = ("```python\nfrom sailthru_destination import (\n    AppOptions, ProfileChange,\n)\n"
            "from sailthru_destination.api import SailthruApi as Api  # the client\n"
            "import sailthru_destination.testing\n```\n")
    assert documented_imports(text) == [
        ("sailthru_destination.testing", None), ("sailthru_destination", "AppOptions"),
        ("sailthru_destination", "ProfileChange"), ("sailthru_destination.api", "SailthruApi")]


def test_the_docs_show_imports_of_the_old_public_paths() -> None:
    """The check below is not vacuous: the docs do import from the paths kept as shims."""
    modules = {module for _, module, _ in every_documented_import()}
    assert {"sailthru_destination.api", "sailthru_destination.postbacks",
            "sailthru_destination.imports", "sailthru_destination"} <= modules


@pytest.mark.parametrize(("page", "module", "name"), every_documented_import())
def test_every_documented_import_resolves(page: str, module: str, name: str | None) -> None:
    loaded = importlib.import_module(module)
    if name is not None:
        assert hasattr(loaded, name), f"{page}: {module} has no {name}"


def test_each_old_public_path_is_the_new_module_under_another_name() -> None:
    """A shim re-exports every public name of its module, as the same object."""
    tools = regroup()
    for old in tools.SHIMS:
        new = importlib.import_module(tools.PLANNED[f"sailthru_destination.{old}"])
        shim = importlib.import_module(f"sailthru_destination.{old}")
        assert new.__all__
        assert {name: getattr(shim, name, None) for name in new.__all__} == {
            name: getattr(new, name) for name in new.__all__}


def test_no_file_names_a_path_that_moved() -> None:
    """``tools/regroup.py fix-imports --check`` finds nothing left to rewrite."""
    assert regroup().fix_imports(check=True) == []


# Every module of 0.1.0's flat tree that moved (the released public ones, and the private ones
# a pickle may name as a class's home), with a name each defined, as that release had it.
RELEASED = {
    "sailthru_destination.profiles": "ProfileExporter",
    "sailthru_destination.profile_payload": "ProfileChange",
    "sailthru_destination.events": "Event",
    "sailthru_destination._commerce_records": "Purchase",
    "sailthru_destination.retries": "RetryPolicy",
    "sailthru_destination._postback_fields": "PostbackError",
    "sailthru_destination.sentkeys": "SentKeys",
    "sailthru_destination.locks": "NamedLock",
    "sailthru_destination.mapping": "InvalidValue",
    "sailthru_destination.sync.state": "SyncState",
}


@pytest.mark.parametrize("old", sorted(RELEASED))
def test_a_module_path_of_the_flat_tree_still_imports_as_the_same_module(old: str) -> None:
    from sailthru_destination._moved import MOVED

    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        found = importlib.import_module(old)
    assert found is new
    assert getattr(found, RELEASED[old]) is getattr(new, RELEASED[old])
    assert new.__spec__ is not None
    assert new.__spec__.name == MOVED[old]  # its own spec kept


def test_every_moved_path_of_the_map_is_answered() -> None:
    from sailthru_destination._moved import MOVED

    for old, new in MOVED.items():
        assert importlib.util.find_spec(new) is not None, new
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
            found = importlib.import_module(old)
        assert found is importlib.import_module(new)


def test_an_object_pickled_under_its_old_module_path_loads() -> None:
    import pickle

    from sailthru_destination import ProfileChange
    from sailthru_destination.features.events import Event

    for thing in (ProfileChange("ann@example.com", new_properties={"a": 1}),
                  Event("ann@example.com", "email", "x", {"n": 1}, "r1")):
        text = pickle.dumps(thing, protocol=0)
        new_home = type(thing).__module__.encode()
        old_home = new_home.replace(b".features.", b".")
        assert new_home in text
        old = text.replace(new_home, old_home)  # what 0.1.0 wrote
        sys.modules.pop(old_home.decode(), None)
        with pytest.warns(DeprecationWarning, match="moved to"):
            loaded = pickle.loads(old)
        assert loaded == thing


@pytest.mark.parametrize("old", ["api", "calllog", "imports", "postbacks"])
def test_a_star_import_of_an_old_path_binds_its_names_and_nothing_else(old: str) -> None:
    shim = importlib.import_module(f"sailthru_destination.{old}")
    found: dict[str, object] = {}
    exec(f"from sailthru_destination.{old} import *", found)  # the statement itself
    found.pop("__builtins__")
    assert set(found) == set(shim.__all__)
    assert "annotations" not in found  # __future__'s feature object stayed home
