"""Mutation score per core module, with mutmut, sampled and within a time budget.

Each module is mutated on its own, in a scratch copy of the project, with only the test files
that exercise it (mutmut then runs, for each mutant, only the tests that reach the mutated
function). A seeded sample of ``--sample`` mutants per module is tested, so a run is bounded and
repeatable; ``--budget`` caps each module's wall-clock time (mutants left unchecked when it runs
out are reported, never counted). Everything runs under ``nice -n 19``: the machine is shared.

    python bench/mutation.py                          # every module, 40 mutants each
    python bench/mutation.py profiles postbacks --sample 60 --budget 300 --survivors

Not run in CI: a full module takes minutes. The latest scores are in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "sailthru_destination"

# module name -> (source files to mutate, test files or folders that exercise them)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "profiles": (
        ["features/profiles.py"],
        ["tests/test_profiles.py", "tests/test_profiles_bad_input.py",
         "tests/test_profiles_faults.py", "tests/test_profiles_behaviour.py"],
    ),
    "sync/runner": (["sync/runner.py", "sync/_diff.py", "sync/_export.py"], ["tests/sync/"]),
    "sync/gone": (["sync/gone.py"], ["tests/sync/"]),
    "postbacks": (
        ["features/postbacks.py"],
        ["tests/test_postbacks.py", "tests/test_postbacks_tampering.py",
         "tests/test_postbacks_replies.py"],
    ),
    "mapping": (["shaping/mapping.py", "shaping/_coercion.py"],
                ["tests/test_mapping.py", "tests/test_mapping_limits.py"]),
    "varnames": (["shaping/varnames.py"], ["tests/test_mapping.py", "tests/test_mapping_limits.py",
                                   "tests/test_profiles_behaviour.py"]),
    "amounts": (["shaping/amounts.py"], ["tests/test_mapping.py", "tests/test_mapping_limits.py",
                                 "tests/test_purchases.py", "tests/test_commerce.py"]),
    "lists": (["once/lists.py"], ["tests/test_lists_registry.py", "tests/test_list_race.py",
                             "tests/test_profiles.py",
                             "tests/test_destination.py", "tests/test_coordination.py"]),
    "events": (["features/events.py"], ["tests/test_events.py", "tests/test_events_refusals.py"]),
    "commerce": (["features/commerce.py"], ["tests/test_commerce.py", "tests/test_returns.py",
                                   "tests/test_purchases.py",
                                   "tests/test_carts.py"]),
    "purchases": (["features/purchases.py"],
                  ["tests/test_purchases.py", "tests/test_purchases_in_doubt.py",
                                     "tests/test_commerce.py", "tests/test_purchases_doubt_rule.py",
                                     "tests/sync/test_sync_purchase_import.py"]),
    "sync/purchase_import": (["sync/bulkload/purchase_import.py"],
                             ["tests/sync/test_sync_purchase_import.py",
                              "tests/test_exactly_once_stateful.py"]),
    "integrations/_records": (["integrations/_records.py"],
                              ["tests/test_task_records.py", "tests/test_record_validation.py",
                               "tests/test_bad_records.py"]),
    "carts": (["features/carts.py"], ["tests/test_carts.py", "tests/test_commerce.py"]),
    "_commerce_records": (["features/_commerce_records.py"], ["tests/test_commerce_refusals.py",
                                                     "tests/test_commerce.py",
                                                     "tests/test_purchases.py",
                                                     "tests/test_carts.py"]),
    "api": (["transport/api.py"], ["tests/test_api.py", "tests/test_api_retry.py",
                         "tests/test_api_redaction.py", "tests/test_api_pacing.py"]),
    "segment": (["segment/*"], ["tests/test_segment.py", "tests/test_segment_golden.py",
                                "tests/test_segment_real_messages.py"]),
    "serve/queue": (["serve/queue.py"], ["tests/serve/test_serve_queue.py",
                                         "tests/serve/test_serve_worker.py",
                                         "tests/serve/test_serve_intake_fixes.py"]),
    "sentkeys_redis": (["once/sentkeys_redis.py"], ["tests/test_sentkeys_redis.py"]),
    "sync/intents": (["sync/memory/intents.py"], ["tests/sync/test_sync_intents.py",
                                           "tests/test_crash_injection.py"]),
    "sync/settle": (["sync/memory/settle.py"], ["tests/sync/test_sync_intents.py",
                                         "tests/test_crash_injection.py"]),
    "sentkeys": (["once/sentkeys.py"], ["tests/test_sentkeys.py", "tests/test_sentkeys_redis.py",
                                   "tests/test_events.py", "tests/sync/test_sync_state.py"]),
    "doubt": (["once/doubt.py"], ["tests/test_purchases_doubt_rule.py",
                             "tests/test_purchases_in_doubt.py", "tests/test_purchases.py"]),
    "sync/doubtstore": (["sync/memory/doubtstore.py"], ["tests/sync/test_sync_purchase_import.py",
                                                 "tests/test_exactly_once_stateful.py"]),
    "sync/retry_memory": (["sync/memory/retry_memory.py"],
                          ["tests/integrations/test_incremental_retries.py",
                           "tests/sync/test_sync_deleted.py"]),
    "nulls": (["shaping/nulls.py"], ["tests/test_nulls_export.py", "tests/warehouses/test_nulls.py",
                             "tests/integrations/test_host_values.py"]),
    "values": (["shaping/values.py"],
               ["tests/warehouses/test_typing_rule.py", "tests/test_mapping.py",
                               "tests/integrations/test_host_values.py"]),
    "row_contract": (["shaping/row_contract.py"], ["tests/sync/test_sync_row_contract.py"]),
    "profile_payload": (["features/profile_payload.py"],
                        ["tests/test_profiles.py", "tests/test_profiles_behaviour.py",
                         "tests/test_profiles_bad_input.py", "tests/sync/test_sync_row_contract.py",
                         "tests/sync/test_sync_plan_agrees.py"]),
    "decide": (["features/decide.py", "sync/decide.py"],
               ["tests/sync/test_sync_plan_agrees.py", "tests/test_profiles.py",
                "tests/test_profiles_bad_input.py", "tests/test_profiles_faults.py",
                "tests/test_profiles_behaviour.py"]),
}

# mutmut's verdicts, grouped: a crash or a timeout under a mutant is a kill; a mutant no test
# reaches is a survivor (it is exactly the gap this measures); an unchecked one is not counted.
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
SURVIVED = {"survived", "no tests", "suspicious"}


@dataclass
class Outcome:
    """What one module's run found."""

    module: str
    generated: int = 0
    killed: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    seconds: float = 0.0
    diffs: dict[str, str] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        tested = len(self.killed) + len(self.survived)
        return None if tested == 0 else len(self.killed) / tested

    @property
    def sql_case(self) -> list[str]:
        """Survivors that only change the letter case of an SQL statement: equivalent."""
        return [name for name in self.survived if sql_case_only(self.diffs.get(name, ""))]

    @property
    def score_without_sql_case(self) -> float | None:
        tested = len(self.killed) + len(self.survived) - len(self.sql_case)
        return None if tested == 0 else len(self.killed) / tested


# Matched in the original line with its case: the code writes SQL keywords in capitals, so an
# English message holding "and" or "from" is never taken for SQL.
_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|BEGIN|COMMIT|ROLLBACK|"
                  r"SAVEPOINT|RELEASE|AND|WHERE|FROM|INTO|VALUES)\b")


def sql_case_only(diff: str) -> bool:
    """Whether a mutant's diff only changes the case of SQL statements' text.

    SQLite reads keywords, table and column names without regard to case, so such a mutant
    behaves exactly as the original: no test can kill it, and it is left out of the second
    score. Any other change (a value, a string that is not SQL) keeps it counted.
    """
    lines = diff.splitlines()
    removed = [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    return bool(removed) and len(removed) == len(added) and all(
        old != new and old.lower() == new.lower() and _SQL.search(old)
        for old, new in zip(removed, added, strict=True))


def _mutmut() -> str:
    exe = Path(sys.executable).with_name("mutmut")
    return str(exe) if exe.exists() else "mutmut"


def _scratch_project(sources: list[str], tests: list[str]) -> Path:
    """A copy of the project whose [tool.mutmut] mutates ``sources`` and selects ``tests``."""
    work = Path(tempfile.mkdtemp(prefix="mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / PKG, work / PKG, ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    for name in ("setup.cfg", "setup.py"):
        shutil.copy2(ROOT / name, work / name)
    # Some selected tests read the published files beside the package (the config's JSON
    # schema): copy them, and have mutmut copy them into its own tree too.
    shutil.copytree(ROOT / "schemas", work / "schemas", ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    present = [t for t in tests if (ROOT / t).exists()]
    selection = "pytest_add_cli_args_test_selection = " + json.dumps(present)
    text, found = re.subn(r"(?m)^pytest_add_cli_args_test_selection = .*$", selection, text)
    if not found:
        raise SystemExit("pyproject.toml has no [tool.mutmut] pytest_add_cli_args_test_selection")
    only = "only_mutate = " + json.dumps([f"{PKG}/{s}" for s in sources])
    also = 'also_copy = ["schemas/"]'
    text = text.replace("[tool.mutmut]\n", f"[tool.mutmut]\n{only}\n{also}\n", 1)
    (work / "pyproject.toml").write_text(text, encoding="utf-8")
    return work


def _run(cmd: list[str], cwd: Path, deadline: float, log: Path) -> bool:
    """Run ``cmd`` niced, killing its whole process group at ``deadline``; True if it finished."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["nice", "-n", "19", *cmd], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return False


def _verdicts(work: Path, sources: list[str]) -> dict[str, int | None]:
    """Every generated mutant of ``sources`` and its exit code (None: not checked yet)."""
    found: dict[str, int | None] = {}
    for pattern in sources:
        for meta in (work / "mutants" / PKG).glob(pattern + ".meta"):
            found.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return found


def measure(module: str, sample: int, budget: float, seed: int, jobs: int) -> Outcome:
    """Mutate ``module``, test a seeded sample of its mutants within ``budget`` seconds."""
    from mutmut.stats import status_by_exit_code

    sources, tests = MODULES[module]
    outcome = Outcome(module)
    work = _scratch_project(sources, tests)
    log = work / "mutmut.log"
    start = time.monotonic()
    deadline = start + budget
    try:
        # Generating the mutants and the per-test coverage ends in mutmut's own refusal of a
        # filter that matches nothing; that is how to generate without testing anything.
        _run([_mutmut(), "run", f"{PKG}.zz_generate_only*", "--max-children", str(jobs)],
             work, deadline, log)
        names = sorted(_verdicts(work, sources))
        outcome.generated = len(names)
        chosen = random.Random(seed).sample(names, min(sample, len(names)))
        if chosen:
            _run([_mutmut(), "run", *chosen, "--max-children", str(jobs)], work, deadline, log)
        verdicts = _verdicts(work, sources)
        # mutmut stops before testing anything when no selected test reaches any mutant:
        # then every mutant is one no test reaches (a survivor), not an unchecked one.
        untested = "could not find any test case" in log.read_text(errors="replace")
        for name in sorted(chosen):
            code = verdicts.get(name)
            status = "no tests" if code is None and untested else status_by_exit_code[code]
            if status in KILLED:
                outcome.killed.append(name)
            elif status in SURVIVED:
                outcome.survived.append(name)
            else:
                outcome.unchecked.append(name)
        for name in outcome.survived:  # each survivor's diff: shown, and read for SQL case
            shown = subprocess.run([_mutmut(), "show", name], cwd=work, capture_output=True,
                                   text=True, timeout=60, check=False)
            outcome.diffs[name] = shown.stdout.strip()
        if chosen and not outcome.killed and not outcome.survived:
            # Nothing was tested: say why (a selected test that fails unmutated, most often).
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"{module}: no mutant was tested; mutmut's log ends:", *tail,
                  sep="\n", file=sys.stderr)
    finally:
        outcome.seconds = time.monotonic() - start
        shutil.rmtree(work, ignore_errors=True)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="module",
                        help=f"any of: {', '.join(MODULES)} (default: all)")
    parser.add_argument("--sample", type=int, default=40, help="mutants per module (default 40)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="wall-clock seconds per module, generation included (default 300)")
    parser.add_argument("--seed", type=int, default=18, help="sampling seed (default 18)")
    parser.add_argument("--jobs", type=int, default=1, help="mutmut workers (default 1)")
    parser.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}")
    os.chdir(ROOT)  # mutmut reads [tool.mutmut] from the working directory's pyproject.toml

    outcomes = []
    print(f"{'module':<20} {'killed/tested':>13} {'score':>6} {'no SQL case':>11} "
          f"{'unchecked':>9} {'generated':>9} {'seconds':>7}")
    for module in args.modules or list(MODULES):
        o = measure(module, args.sample, args.budget, args.seed, args.jobs)
        outcomes.append(o)
        tested = len(o.killed) + len(o.survived)
        score = "-" if o.score is None else f"{o.score:.0%}"
        plain = o.score_without_sql_case
        without = "-" if plain is None else f"{plain:.0%}"
        print(f"{module:<20} {f'{len(o.killed)}/{tested}':>13} {score:>6} {without:>11} "
              f"{len(o.unchecked):>9} {o.generated:>9} {o.seconds:>7.0f}", flush=True)
        for name in o.survived:
            print(f"    survived: {name}" + (" (SQL case only)" if name in o.sql_case else ""))
            if args.survivors and name in o.diffs:
                print("        " + o.diffs[name].replace("\n", "\n        "))
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ | {"score": o.score} for o in outcomes],
                                        indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
