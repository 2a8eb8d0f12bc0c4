"""Group the package's flat folders into sub-packages by concern (issue 28), re-runnably.

The tree is the map: ``transport/`` is the one door to Sailthru, ``shaping/`` turns properties
into vars, ``once/`` holds what must happen at most once, ``features/`` one module per kind of
record, and ``sync/`` keeps the run with ``memory/``, ``reporting/``, ``bulkload/`` and
``warehouse/`` beside it; the fake's endpoints and the CLI's model handling get a room too.
This script is the single source of that map (``GROUPS``).

Usage, from the repository root::

    python tools/regroup.py fix-imports          # rewrite old paths everywhere (idempotent)
    python tools/regroup.py fix-imports --check  # exit 1, listing files that name old paths
    python tools/regroup.py move [GROUP ...]     # git mv groups not moved yet, then fix-imports
    python tools/regroup.py move --commit        # the same, one commit per group
    python tools/regroup.py shims                # (re)write the compatibility packages at old paths
    python tools/regroup.py list                 # the map: old module -> new module

``fix-imports`` is what to run after merging a branch that was written against the old tree:
it rewrites ``from .state import X`` (resolved from where the file is now, or, for a moved file,
from where it was) and every dotted ``sailthru_destination.x.y`` and ``sailthru_destination/x.py``
path in the code, the tests, the benchmarks, the docs and mkdocs.yml. Only import lines, dotted
names and paths change; nothing else in a file is touched.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "sailthru_destination"


@dataclass(frozen=True)
class Group:
    """One new sub-package: where it goes, what it is for, and the modules moved into it."""

    package: str  # dotted, relative to the package: "transport", "sync.memory"
    doc: str  # the three lines of its __init__'s docstring
    modules: tuple[str, ...]  # dotted old names, relative to the package: "api", "sync.state"
    message: str  # the commit message's why


GROUPS: tuple[Group, ...] = (
    Group(
        "transport",
        "The one door to Sailthru: the only code that talks HTTP.\n\n"
        "It signs, paces, retries, classifies Sailthru's answers and records every call redacted;\n"
        "everything above it sends through :class:`~.api.SailthruApi` and nothing else.",
        ("api", "_http", "_transport", "retries", "ratelimit", "_adaptive", "_concurrency",
         "calllog", "auth", "_protocol"),
        "the transport layer (api, HTTP, pacing, retries, call log, auth) is one room: "
        "the one door to Sailthru reads as one folder",
    ),
    Group(
        "shaping",
        "From a record's properties to the values Sailthru holds.\n\n"
        "Var names, value coercion, amounts in cents, nulls and the row contract: pure functions\n"
        "with no I/O, used by every feature and by the sync's model.",
        ("mapping", "varnames", "values", "amounts", "nulls", "_invalid", "_json",
         "row_contract"),
        "the pure value-shaping modules (mapping, varnames, values, amounts, nulls) sit "
        "together: they have no I/O and every feature uses them",
    ),
    Group(
        "once",
        "What must happen at most once: sends, orders, lists.\n\n"
        "Sent keys (in memory or Redis), outcomes in doubt, the list mutex and the list registry;\n"
        "the features consult them so a retry or a second host never repeats a write.",
        ("sentkeys", "sentkeys_redis", "doubt", "doubt_redis", "locks", "lists"),
        "the at-most-once pieces (sent keys, doubt, locks, lists) sit together: they are the "
        "answer to Sailthru's non-idempotent writes",
    ),
    Group(
        "features",
        "One module per kind of record: what to send, what to read first, how to verify.\n\n"
        "Profiles, events, purchases, returns, carts, imports and postbacks; the destination\n"
        "facade routes each record here, and each sends through the transport layer.",
        ("profiles", "profile_payload", "decide", "events", "commerce", "_commerce_records",
         "purchases", "carts", "imports", "postbacks", "_postback_fields"),
        "the feature modules (one kind of record each) sit together, so the folder lists "
        "what the library can send",
    ),
    Group(
        "sync.memory",
        "The run's memory and its lock.\n\n"
        "The SQLite state of what was applied, seen, sent, in doubt or promised (write-ahead\n"
        "intents), how promises are settled, and the lock that keeps a second run out.",
        ("sync.state", "sync._db", "sync.seen", "sync.sentstore", "sync.digest", "sync.runlock",
         "sync.intents", "sync.settle", "sync.doubtstore", "sync.retry_memory", "sync.records",
         "sync.readahead"),
        "sync's state modules (the SQLite memory, its stores and the run lock) sit together "
        "under sync/memory",
    ),
    Group(
        "sync.reporting",
        "What a run tells its operator: the summary, the report page and its parts, the audit.\n\n"
        "The counts and reasons, the self-contained HTML page (timeline, assets), and the audit\n"
        "that compares the state with what Sailthru holds.",
        ("sync.report", "sync.report_html", "sync.report_timeline", "sync.report_assets",
         "sync.report_reasons", "sync.summary", "sync.audit", "sync.audit_read"),
        "sync's reporting modules (summary, report page and its parts, audit) sit together "
        "under sync/reporting",
    ),
    Group(
        "sync.bulkload",
        "Large batches through Sailthru's job API.\n\n"
        "The job file, the job's lifecycle, the cost model that chooses bulk or per-record\n"
        "calls, and the purchase import.",
        ("sync.bulk", "sync.bulk_choice", "sync.jobfile", "sync.jobs", "sync.purchase_import"),
        "sync's bulk path (job files, jobs, the cost model, purchase import) sits together "
        "under sync/bulkload",
    ),
    Group(
        "sync.warehouse",
        "Reading the model: rows from CSV, JSON lines or SQL, and their columns.\n\n"
        "Sources, the SQL dialects and PostgreSQL dates, and the column checks and types\n"
        "that say what each column becomes in Sailthru.",
        ("sync.sources", "sync.columns", "sync.column_check", "sync.dialect", "sync.pg_dates"),
        "sync's row readers (sources, dialects, columns) sit together under sync/warehouse",
    ),
    Group(
        "testing._endpoints",
        "The fake's endpoints, one module per part of Sailthru's API.\n\n"
        "/user, /list, /event, /purchase, /return, /send, /blast, /job and page-view tracking,\n"
        "each reading and writing the fake's world (:mod:`.._state`) as Sailthru would.",
        ("testing._users", "testing._lists", "testing._commerce", "testing._jobs",
         "testing._sends", "testing._tracking"),
        "the fake's endpoint modules sit together under testing/_endpoints, apart from its "
        "server, state and faults",
    ),
    Group(
        "cli._model",
        "The model a ``sync`` reads, as the command line settles it.\n\n"
        "Opening the file or query, ``--map`` and ``--types`` and the column check, defaults\n"
        "that depend on the columns, and which state file holds the model.",
        ("cli._open", "cli._columns", "cli._defaults", "cli._model_state"),
        "the sync command's model handling (opening, columns, defaults, state file) sits "
        "together under cli/_model",
    ),
)

# Old public paths shown in README.md and docs/ imports: a tiny package at the old path
# re-exports the module's names. A package (old/__init__.py), not a module (old.py), so that
# git still sees old.py renamed to its new place and carries other branches' edits there.
SHIMS: tuple[str, ...] = ("api", "calllog", "imports", "postbacks")

# Files the rewrite leaves alone: history, and the test that checks the old paths still work.
KEEP = {"CHANGELOG.md", "docs/changelog.md", "tests/test_import_paths.py", "tools/regroup.py",
        "sailthru_destination/_moved.py"}
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".cfg", ".toml", ".txt", ".ini", ".sh", ""}
WHERE = ("sailthru_destination", "tests", "bench", "docs", ".ci")
TOP_FILES = ("mkdocs.yml", "setup.cfg", "pyproject.toml", "README.md")


def planned() -> dict[str, str]:
    """Every module of the map: full old dotted name -> full new dotted name."""
    found = {}
    for group in GROUPS:
        for old in group.modules:
            found[f"{PKG}.{old}"] = f"{PKG}.{group.package}.{old.rsplit('.', 1)[-1]}"
    return found


PLANNED = planned()
# The moves done so far (the new file is there): the rewrite applies only these, so that
# moving one group at a time leaves the others' paths alone. Refreshed by refresh().
MOVES: dict[str, str] = {}
BACK: dict[str, str] = {}


def refresh() -> None:
    """Re-read which moves are done."""
    MOVES.clear()
    MOVES.update({old: new for old, new in PLANNED.items() if path_of(new).is_file()})
    BACK.clear()
    BACK.update({new: old for old, new in MOVES.items()})
DOTTED = re.compile(r"\b" + PKG + r"(?:\.[A-Za-z_]\w*)+")
SLASHED = re.compile(r"\b" + PKG + r"(?:/\w+)+\.py\b")
RELATIVE = re.compile(r"^(\s*from\s+)(\.+)([\w.]*)(\s+import\b)", re.MULTILINE)


def path_of(module: str) -> Path:
    """The file of a dotted module name (a package's ``__init__.py``), whether or not it exists."""
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def module_of(path: Path) -> str:
    """The dotted name of a file under the repository root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def exists(module: str) -> bool:
    """A module that is there now and is not an old path (a shim does not count)."""
    if module in MOVES:
        return False
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def absolute(here: str, package: bool, dots: str, name: str) -> str:
    """What ``from <dots><name> import`` means in the module ``here``."""
    parts = here.split(".") if package else here.split(".")[:-1]
    parts = parts[: len(parts) - (len(dots) - 1)]
    return ".".join(parts + ([name] if name else []))


def relative(here: str, package: bool, target: str) -> tuple[str, str]:
    """The shortest ``(dots, name)`` that names ``target`` from the module ``here``."""
    base = here.split(".") if package else here.split(".")[:-1]
    goal = target.split(".")
    common = 0
    while common < min(len(base), len(goal)) and base[common] == goal[common]:
        common += 1
    return "." * (len(base) - common + 1), ".".join(goal[common:])


def rebase(text: str, here: str, package: bool, new_here: str, mapping: dict[str, str]) -> str:
    """The relative imports of a file that moves from ``here`` to ``new_here``, re-aimed."""
    def fix(match: re.Match[str]) -> str:
        target = absolute(here, package, match[2], match[3])
        target = mapping.get(target, target)
        dots, name = relative(new_here, package, target)
        return f"{match[1]}{dots}{name}{match[4]}"
    return RELATIVE.sub(fix, text)


def fix_relative(text: str, path: Path) -> str:
    """Re-aim a file's relative imports that name an old module.

    Resolved from where the file is; a file that was moved (its lines may come from a branch
    written before the move) falls back to where it was when the name is not found here.
    """
    here, package = module_of(path), is_package(path)

    def fix(match: re.Match[str]) -> str:
        target = absolute(here, package, match[2], match[3])
        if target in MOVES:
            target = MOVES[target]
        elif not exists(target) and here in BACK:
            before = absolute(BACK[here], package, match[2], match[3])
            target = MOVES.get(before, before)
            if not exists(target):
                return match[0]
        else:
            return match[0]
        dots, name = relative(here, package, target)
        return f"{match[1]}{dots}{name}{match[4]}"
    return RELATIVE.sub(fix, text)


def fix_dotted(text: str, keep_shims: bool) -> str:
    """Rewrite ``sailthru_destination.old.path[.attr]`` to the new path."""
    def fix(match: re.Match[str]) -> str:
        name = match[0]
        parts = name.split(".")
        for cut in range(len(parts), 1, -1):
            head = ".".join(parts[:cut])
            if head in MOVES:
                if keep_shims and head.split(".", 1)[1] in SHIMS:
                    return name
                return ".".join([MOVES[head], *parts[cut:]])
        return name
    return DOTTED.sub(fix, text)


SUBMODULES = re.compile(r"^(\s*from\s+)(" + PKG + r"[\w.]*)(\s+import\s+)([\w ,]+)$", re.MULTILINE)


def fix_submodules(text: str) -> str:
    """``from sailthru_destination.sync import jobs`` (a module by name) -> its new package.

    Only when every name imported is a moved module of one new package; a line that mixes
    them is left for a person (and reported).
    """
    def fix(match: re.Match[str]) -> str:
        names = [n.strip().split(" as ")[0].strip() for n in match[4].split(",") if n.strip()]
        homes = {MOVES[f"{match[2]}.{n}"].rsplit(".", 1)[0] if f"{match[2]}.{n}" in MOVES
                 else None for n in names}
        if homes == {None}:
            return match[0]
        if len(homes) != 1:
            print(f"regroup: mixed import left alone: {match[0].strip()}", file=sys.stderr)
            return match[0]
        return f"{match[1]}{homes.pop()}{match[3]}{match[4]}"
    return SUBMODULES.sub(fix, text)


def old_rel_paths() -> dict[str, str]:
    """Moved files, relative to the package folder: ``sync/state.py`` -> ``sync/memory/...``."""
    return {old.split(".", 1)[1].replace(".", "/") + ".py": new.split(".", 1)[1].replace(".", "/")
            + ".py" for old, new in MOVES.items()}


def fix_paths(text: str) -> str:
    """Rewrite ``sailthru_destination/old/path.py`` to the new file."""
    rel = old_rel_paths()
    return SLASHED.sub(lambda m: PKG + "/" + rel.get(m[0][len(PKG) + 1:], m[0][len(PKG) + 1:]),
                       text)


# Modules split after the moves: the mutation table runs a module's tests against its parts too.
SPLITS = {"sync/runner.py": ("sync/_diff.py", "sync/_export.py"),
          "shaping/mapping.py": ("shaping/_coercion.py",)}


def fix_mutation_table(text: str) -> str:
    """bench/mutation.py names files relative to the package: ``["sync/state.py"]``."""
    for old, new in old_rel_paths().items():
        text = re.sub(r'(["\'])' + re.escape(old) + r"\1", lambda m, n=new: f"{m[1]}{n}{m[1]}",
                      text)
    for whole, parts in SPLITS.items():
        if all((ROOT / PKG / part).is_file() for part in parts):
            listed = ", ".join(f'"{name}"' for name in (whole, *parts))
            text = text.replace(f'["{whole}"]', f"[{listed}]")
    return text


def page(module: str) -> str:
    """A module's reference page, relative to docs/: ``reference/sync/state.md``."""
    return "reference/" + module.split(".", 1)[1].replace(".", "/") + ".md"


def fix_pages(text: str, labels: bool) -> str:
    """Links to reference pages (and, in mkdocs.yml, the nav labels) of moved modules."""
    for old, new in MOVES.items():
        text = re.sub(r"(?<![\w/])" + re.escape(page(old)), page(new), text)
        if labels:
            short_old, short_new = old.split(".", 1)[1], new.split(".", 1)[1]
            text = re.sub(r"^(\s*- )" + re.escape(short_old) + ":", rf"\g<1>{short_new}:", text,
                          flags=re.MULTILINE)
    return text


def files() -> list[Path]:
    """Every text file the rewrite looks at."""
    found = [ROOT / name for name in TOP_FILES if (ROOT / name).is_file()]
    for where in WHERE:
        folder = ROOT / where
        if folder.is_file():
            found.append(folder)
        elif folder.is_dir():
            found += [p for p in folder.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES
                      and "__pycache__" not in p.parts]
    return [p for p in found if str(p.relative_to(ROOT)) not in KEEP]


def rewritten(path: Path, text: str) -> str:
    """The file's text with every old path re-aimed."""
    rel = str(path.relative_to(ROOT))
    shim = any(rel == f"{PKG}/{name}/__init__.py" for name in SHIMS)
    prose = path.suffix == ".md" and not rel.startswith("docs/reference/")
    if path.suffix == ".py" and rel.startswith(PKG + "/") and not shim:
        text = fix_relative(text, path)
    if not shim:
        if path.suffix == ".py":
            text = fix_submodules(text)
        text = fix_dotted(text, keep_shims=prose)
    text = fix_paths(text)
    if rel == "bench/mutation.py":
        text = fix_mutation_table(text)
    if path.suffix == ".md" or path.name == "mkdocs.yml":
        text = fix_pages(text, labels=path.name == "mkdocs.yml")
    return text


def fix_imports(check: bool) -> list[Path]:
    """Rewrite every file that still names an old path; the files changed (or to change).

    The rewritten Python files then get their import blocks re-sorted (ruff's isort rule), as
    the project's lint wants: a renamed module may sort elsewhere.
    """
    refresh()
    changed = []
    for path in files():
        text = path.read_text()
        new = rewritten(path, text)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    if not check:
        sort_imports(changed)
    return changed


def sort_imports(paths: list[Path]) -> None:
    """Re-sort the import blocks and `__all__` lists of these files (ruff's I and RUF022)."""
    python = [str(p) for p in paths if p.suffix == ".py"]
    if python:
        ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
        subprocess.run(  # noqa: S603 (our own file names)
            [ruff, "check", "--quiet", "--fix", "--select", "I,RUF022", *python], cwd=ROOT,
            check=False)


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)  # noqa: S603, S607 (git from PATH)


def move(group: Group, commit: bool) -> bool:
    """git mv one group's modules (and reference pages) into its package; False if done already."""
    pending = [m for m in group.modules if path_of(f"{PKG}.{m}").is_file()
               and path_of(f"{PKG}.{m}").name != "__init__.py"]
    if not pending:
        return False
    package_dir = ROOT.joinpath(PKG, *group.package.split("."))
    package_dir.mkdir(exist_ok=True)
    init = package_dir / "__init__.py"
    if not init.exists():
        init.write_text(f'"""{group.doc}\n"""\n')
        git("add", str(init.relative_to(ROOT)))
    mapping = {f"{PKG}.{m}": PLANNED[f"{PKG}.{m}"] for m in group.modules}
    for module in pending:
        old, new = f"{PKG}.{module}", mapping[f"{PKG}.{module}"]
        source = path_of(old)
        source.write_text(rebase(source.read_text(), old, False, new, mapping))
        git("mv", str(source.relative_to(ROOT)), str(path_of(new).relative_to(ROOT)))
        old_page, new_page = ROOT / "docs" / page(old), ROOT / "docs" / page(new)
        if old_page.is_file():
            new_page.parent.mkdir(parents=True, exist_ok=True)
            git("mv", str(old_page.relative_to(ROOT)), str(new_page.relative_to(ROOT)))
    fix_imports(check=False)
    sort_imports([path_of(mapping[f"{PKG}.{m}"]) for m in pending])
    if commit:
        git("add", "-A", PKG, "tests", "bench", "docs", "mkdocs.yml", "README.md")
        git("commit", "-q", "-m", f"regroup: {group.package.replace('.', '/')}/: {group.message}"
            "\n\nOnly git mv and the import/path rewrites of tools/regroup.py (issue 28), so that "
            "git log --follow and merges keep each file's history.")
    return True


def all_names(module: str) -> list[str]:
    """A module's ``__all__``, read from its source."""
    tree = ast.parse(path_of(module).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            return sorted(value)
    raise SystemExit(f"{module} has no __all__ to re-export")


def write_shims() -> None:
    """A package at each old public path that re-exports the new module's names."""
    for name in SHIMS:
        old, new = f"{PKG}.{name}", PLANNED[f"{PKG}.{name}"]
        names = all_names(new)
        dots, name_there = relative(old, True, new)
        lines = [f'"""The old path of :mod:`{new}`: existing imports keep working.\n\n'
                 f"New code imports from ``{new}``;\nthe names are documented on its page.\n"
                 '``X as X`` re-exports them (mypy --strict sees them as exported).\n"""\n',
                 "from __future__ import annotations\n"]
        lines += [f"from {dots}{name_there} import {n} as {n}" for n in names]
        lines += ["", "__all__ = [", *(f'    "{n}",' for n in names), "]", ""]
        folder = ROOT / PKG / name
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text("\n".join(lines))
        sort_imports([folder / "__init__.py"])


def write_moved() -> None:
    """``sailthru_destination/_moved.py``: every other old module path, for the import hook."""
    pairs = sorted((old, new) for old, new in PLANNED.items()
                   if old.removeprefix(f"{PKG}.") not in SHIMS)
    body = "".join(f'    "{old}":\n        "{new}",\n' for old, new in pairs)
    target = ROOT / PKG / "_moved.py"
    text = target.read_text()
    start = text.index("MOVED: dict[str, str] = {\n") + len("MOVED: dict[str, str] = {\n")
    target.write_text(text[:start] + body + text[text.index("}\n", start):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fix = sub.add_parser("fix-imports", help="rewrite old module paths everywhere")
    fix.add_argument("--check", action="store_true", help="only list files that need it")
    mv = sub.add_parser("move", help="git mv the groups not moved yet")
    mv.add_argument("groups", nargs="*", help="packages such as transport sync.memory")
    mv.add_argument("--commit", action="store_true", help="one commit per group")
    sub.add_parser("shims", help="write the compatibility packages at old public paths "
                   "and the old-path map of sailthru_destination/_moved.py")
    sub.add_parser("list", help="print the map")
    args = parser.parse_args(argv)
    if args.command == "list":
        for old, new in PLANNED.items():
            print(f"{old} -> {new}")
    elif args.command == "fix-imports":
        changed = fix_imports(args.check)
        for path in changed:
            print(path.relative_to(ROOT))
        return 1 if args.check and changed else 0
    elif args.command == "move":
        chosen = [g for g in GROUPS if not args.groups or g.package in args.groups]
        for group in chosen:
            print(f"{group.package}: {'moved' if move(group, args.commit) else 'already moved'}")
    elif args.command == "shims":
        write_shims()
        write_moved()
    return 0


if __name__ == "__main__":
    sys.exit(main())
