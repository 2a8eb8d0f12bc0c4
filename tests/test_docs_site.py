"""The documentation site builds (``mkdocs build --strict``), its API reference covers every
public name, and its pages work in a browser: navigation, search and highlighted code."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path

import griffe
import pytest
from browser import load
from samples import ROOT

import sailthru_destination
from sailthru_destination.options import AppOptions, DestinationOptions
from sailthru_destination.segment import SegmentSettings
from sailthru_destination.sync import SyncConfig

REFERENCE = ROOT / "docs" / "reference"
OPTIONS = (AppOptions, DestinationOptions, SegmentSettings, SyncConfig)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as ``mkdocs build --strict`` makes it (a warning fails the build), built from
    another folder than the repository's: its paths are the configuration file's, not the
    working directory's (red team: the snippets were only found from the root)."""
    out = tmp_path_factory.mktemp("site")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def public_modules() -> dict[str, list[str]]:
    """Every public module (no part of its name starts with ``_``) and its ``__all__``."""
    found = {"sailthru_destination": list(sailthru_destination.__all__)}
    for info in pkgutil.walk_packages(sailthru_destination.__path__, "sailthru_destination."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        if (module.__doc__ or "").startswith("The old path of"):
            continue  # a compatibility package: its names are documented at their new home
        names = getattr(module, "__all__", None)
        if names:
            found[info.name] = list(names)
    return found


def reference_page(module: str) -> Path:
    """Where a module's reference page is: ``docs/reference/<path>.md``, or ``<path>/index.md``
    for a package (the package itself is ``docs/reference/index.md``)."""
    parts = module.split(".")[1:]
    if not parts:
        return REFERENCE / "index.md"
    package = REFERENCE.joinpath(*parts) / "index.md"
    return package if package.exists() else REFERENCE.joinpath(*parts[:-1], parts[-1] + ".md")


def html_of(site: Path, page: Path) -> str:
    """The built HTML of a page: ``x.md`` is ``x/index.html``, ``a/index.md`` is
    ``a/index.html``."""
    relative = page.relative_to(ROOT / "docs")
    folder = relative.parent if relative.name == "index.md" else relative.with_suffix("")
    return (site / folder / "index.html").read_text()


def missing_names(module: str, names: list[str], html: str) -> list[str]:
    """The names of ``module`` that have no entry (an element with the name's id) in ``html``."""
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    return [name for name in names if f"{module}.{name}" not in ids]


def test_the_pages_that_include_files_have_them(site: Path) -> None:
    """The snippets (the changelog, the bench tables) are read beside mkdocs.yml."""
    changelog = (site / "changelog" / "index.html").read_text()
    assert "Unreleased" in changelog
    assert "Keep a Changelog" in changelog or "Fixed" in changelog


def test_every_public_name_has_an_entry_in_the_reference(site: Path) -> None:
    modules = public_modules()
    assert len(modules) > 50
    missing = {}
    for module, names in modules.items():
        page = reference_page(module)
        assert page.is_file(), f"{module} has no reference page ({page.relative_to(ROOT)})"
        assert f"::: {module}\n" in page.read_text()
        gone = missing_names(module, names, html_of(site, page))
        if gone:
            missing[module] = gone
    assert missing == {}


def test_every_public_name_has_a_docstring() -> None:
    """Read as mkdocstrings reads them (Griffe: a constant's docstring is the string below it)."""
    package = griffe.load("sailthru_destination", search_paths=[str(ROOT)],
                          resolve_aliases=True, resolve_external=False)
    undocumented = []
    for module, names in public_modules().items():
        loaded = package if module == "sailthru_destination" else package[module.split(".", 1)[1]]
        if not loaded.docstring:
            undocumented.append(module)
        undocumented += [f"{module}.{name}" for name in names if not loaded[name].docstring]
    assert undocumented == []


def test_the_coverage_check_sees_a_name_that_is_not_rendered(site: Path) -> None:
    html = html_of(site, reference_page("sailthru_destination.options"))
    assert missing_names("sailthru_destination.options", ["AppOptions", "Nonesuch"], html) == [
        "Nonesuch"]


def test_every_reference_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in REFERENCE.rglob("*.md")}
    assert {page for page in pages if page not in config} == set()
    assert {reference_page(m).relative_to(ROOT / "docs").as_posix()
            for m in public_modules()} == pages


@pytest.mark.parametrize("options", OPTIONS, ids=lambda c: c.__name__)
def test_each_field_of_the_options_shows_its_type_default_and_meaning(
    site: Path, options: type
) -> None:
    assert is_dataclass(options)
    # SegmentSettings is documented where it is imported from, not in its private module.
    owner_module = options.__module__.removesuffix("._settings")
    page = html_of(site, reference_page(owner_module))
    owner = f"{owner_module}.{options.__name__}"
    for field in fields(options):
        anchor = page.index(f'id="{owner}.{field.name}"')
        after = page.find('<div class="doc doc-object', anchor)
        entry = page[anchor:after if after != -1 else len(page)]
        signature = re.sub(r"<[^>]+>", "", entry.split("</code></pre>")[0])
        assert f"{field.name}:" in signature, f"{owner}.{field.name}: no type shown"
        assert " = " in signature or field.name in ("api_key",), (
            f"{owner}.{field.name}: no default shown")
        meaning = re.sub(r"<[^>]+>", "", entry.split("</code></pre>", 1)[1]).strip()
        assert len(meaning) > 10, f"{owner}.{field.name}: no meaning (docstring)"


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("page", ["getting-started/index.html", "cli-sync/index.html",
                                  "reference/options/index.html"])
def test_a_page_in_chromium_has_navigation_search_and_highlighted_code(
    site: Path, page: str, tmp_path: Path
) -> None:
    loaded = load(site / page, tmp_path / "profile")
    dom = loaded.dom
    # The navigation: the tabs and the guides, each a working link.
    nav = dom[dom.index('class="md-tabs"'):]
    for title in ("Getting started", "Guides", "API reference", "Changelog"):
        assert title in _text(nav[:nav.index("</nav>")])
    for guide in ("The CLI sync", "The export API", "For operators"):
        assert guide in _text(dom)
    # Search: the box is on the page and its index holds every guide.
    assert 'class="md-search"' in dom
    assert "md-search__input" in dom
    index = json.loads((site / "search" / "search_index.json").read_text())
    titles = " | ".join(_text(doc["title"]) for doc in index["docs"])
    for title in ("The CLI sync", "For test authors", "AppOptions", "Bulk jobs"):
        assert title in titles
    # Highlighting: code blocks were tokenised by Pygments (a class per kind of token).
    assert re.search(r'<div class="[^"]*\bhighlight\b[^"]*">', dom)
    assert re.search(r'<span class="(?:kn|k|nb|s1|s2|c1|nt|na)">', dom)
