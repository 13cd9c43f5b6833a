"""Mutation testing of the rule modules (``scripts/mutation``; docs/testing.md explains the habit).

Each rule module named in ``[tool.mustcheck.mutation.modules]`` of pyproject.toml is mutated by
cosmic-ray, one module at a time, and each mutant is tested by that module's own fast unit tests only
(not the whole suite). The run happens in a copy of the working tree under ``results/mutation/tree``
with ``sdk/`` and ``gateway/`` put first on ``PYTHONPATH``, so the two packages that pyproject's
package-dir maps from those folders are imported from the copy; the working tree is never touched,
and one can keep editing and testing while a run goes on.

    scripts/mutation                      # every module that is not deferred, one after another
    scripts/mutation identifiers masking  # just these
    scripts/mutation --list               # modules, their files, tests and mutant counts
    scripts/mutation --survivors masking  # the diff of every mutant that survived the last run
    scripts/mutation --recheck masking    # re-test only last run's survivors (after adding tests)

Sessions are kept in ``results/mutation/<module>.sqlite``; a run resumes an unfinished session and
``--fresh`` starts over; ``--sample N`` tests a fixed-seed random sample of N mutants per module.
Exit status 1 when a module scores under its target or was not finished.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "mutation"
TREE = RESULTS / "tree"


@dataclass(frozen=True)
class Module:
    name: str
    paths: tuple[str, ...]
    tests: tuple[str, ...]
    target: float
    functions: tuple[str, ...]  # empty: every function in the files
    deferred: str  # why this module is not run now; empty when it is
    timeout: float  # seconds a mutant's test run may take before it counts as killed (a loop)


@dataclass(frozen=True)
class Seeded:
    """A bug seeded by hand and the named test that must fail on it."""

    bug: str
    file: str
    old: str
    new: str
    test: str


@dataclass(frozen=True)
class Settings:
    timeout: float
    exclude_operators: tuple[str, ...]
    modules: dict[str, Module]
    seeded: tuple[Seeded, ...]


@dataclass(frozen=True)
class Score:
    total: int
    not_sampled: int
    skipped: int
    killed: int
    survived: int
    pending: int

    @property
    def tested(self) -> int:
        return self.killed + self.survived

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.tested if self.tested else 0.0


def load_settings() -> Settings:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        table = tomllib.load(handle)["tool"]["mustcheck"]["mutation"]
    modules = {
        name: Module(
            name=name,
            paths=tuple(entry["paths"]),
            tests=tuple(entry["tests"]),
            target=float(entry.get("target", table["target"])),
            functions=tuple(entry.get("functions", ())),
            deferred=str(entry.get("deferred", "")),
            timeout=float(entry.get("timeout", table["timeout"])),
        )
        for name, entry in table["modules"].items()
    }
    seeded = tuple(
        Seeded(entry["bug"], entry["file"], entry["old"], entry["new"], entry["test"])
        for entry in table.get("seeded", ())
    )
    return Settings(float(table["timeout"]), tuple(table["exclude-operators"]), modules, seeded)


def copy_tree() -> None:
    """The tracked and untracked-but-not-ignored files, as they are now, into ``TREE``."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    if TREE.exists():
        shutil.rmtree(TREE)
    for raw in listed:
        if not raw:
            continue
        relative = Path(os.fsdecode(raw))
        source = ROOT / relative
        if not source.is_file():
            continue
        target = TREE / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    first = os.pathsep.join(str(TREE / folder) for folder in ("sdk", "gateway"))
    env["MUSTCHECK_HYPOTHESIS_PROFILE"] = "mutation"  # tests/conftest.py: fewer property examples
    env["PYTHONPATH"] = first + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_command(module: Module) -> str:
    """The module's tests, the fast rule tests (``tests/test_rules_*``) first and on their own: most
    mutants fail there, and only the survivors pay for starting the slower tests' gateways."""
    pytest = f"{sys.executable} -m pytest -x -q -p no:cacheprovider"
    fast = [path for path in module.tests if Path(path).name.startswith("test_rules_")]
    slow = [path for path in module.tests if path not in fast]
    stages = [f"{pytest} {' '.join(files)}" for files in (fast, slow) if files]
    return f"sh -c '{' && '.join(stages)}'"


def write_config(module: Module, settings: Settings) -> Path:
    config = RESULTS / f"{module.name}.toml"
    paths = ", ".join(f'"{path}"' for path in module.paths)
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = [{paths}]\n"
        f"timeout = {module.timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{test_command(module)}"\n'
        "[cosmic-ray.distributor]\n"
        'name = "local"\n',
        encoding="utf-8",
    )
    return config


Span = tuple[int, int, int, int]


def annotation_spans(path: Path) -> list[Span]:
    """Where the annotations of a module under ``from __future__ import annotations`` are: never
    evaluated, so a mutant inside one (``X | None`` to ``X - None``) cannot change behaviour."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    future = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not future:
        return []
    annotations: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            annotations.append(node.returns)
        elif isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            annotations.append(node.annotation)
    return [(a.lineno, a.col_offset, a.end_lineno or a.lineno, a.end_col_offset or 0) for a in annotations]


def _inside(row: int, col: int, spans: list[Span]) -> bool:
    return any((row, col) >= (r0, c0) and (row, col) < (r1, c1) for r0, c0, r1, c1 in spans)


NOT_SAMPLED = "not sampled"
SAMPLE_SEED = 20


def skip_out_of_scope(database: Path, module: Module, settings: Settings, sample: int | None = None) -> None:
    """Mark as skipped the mutants of excluded operators, of functions outside ``functions``, and those
    inside annotations that are never evaluated."""
    excluded = [re.compile(pattern) for pattern in settings.exclude_operators]
    spans = {path: annotation_spans(TREE / path) for path in module.paths}
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT s.job_id, s.operator_name, s.definition_name, s.module_path, s.start_pos_row, "
            "s.start_pos_col FROM mutation_specs s "
            "LEFT JOIN work_results r ON r.job_id = s.job_id WHERE r.job_id IS NULL"
        ).fetchall()
        skipped = [
            (job_id,)
            for job_id, operator, definition, path, row, col in rows
            if any(pattern.search(operator) for pattern in excluded)
            or (module.functions and definition not in module.functions)
            or _inside(row, col, spans.get(path, []))
        ]
        if sample is not None:
            # A fixed-seed random sample of the mutants in scope, so that a bounded run still estimates
            # the whole module's score rather than that of its first functions.
            done = {job for (job,) in skipped}
            in_scope = sorted(job_id for job_id, *_ in rows if job_id not in done)
            tested = connection.execute(
                "SELECT count(*) FROM work_results WHERE worker_outcome != 'skipped'"
            ).fetchone()[0]
            keep = set(
                random.Random(SAMPLE_SEED).sample(in_scope, max(0, min(len(in_scope), sample - tested)))
            )
            connection.executemany(
                "INSERT INTO work_results (job_id, worker_outcome, output) VALUES (?, 'skipped', ?)",
                [(job_id, NOT_SAMPLED) for job_id in in_scope if job_id not in keep],
            )
        connection.executemany(
            "INSERT INTO work_results (job_id, worker_outcome) VALUES (?, 'skipped')", skipped
        )


def score(database: Path) -> Score:
    with sqlite3.connect(database) as connection:
        total = connection.execute("SELECT count(*) FROM mutation_specs").fetchone()[0]
        outcomes = dict(
            connection.execute(
                "SELECT lower(coalesce(test_outcome, worker_outcome)), count(*) FROM work_results GROUP BY 1"
            ).fetchall()
        )
        not_sampled = connection.execute(
            "SELECT count(*) FROM work_results WHERE output = ?", (NOT_SAMPLED,)
        ).fetchone()[0]
    skipped = outcomes.pop("skipped", 0) - not_sampled
    survived = outcomes.pop("survived", 0)
    # killed, incompetent (the mutant does not even import) and abnormal (timeout) all fail the tests
    killed = sum(outcomes.values())
    pending = total - not_sampled - skipped - killed - survived
    return Score(total, not_sampled, skipped, killed, survived, pending)


def cosmic_ray(*arguments: str | Path) -> None:
    executable = Path(sys.executable).parent / "cosmic-ray"
    subprocess.run([str(executable), *map(str, arguments)], cwd=TREE, env=environment(), check=True)


def run(module: Module, settings: Settings, *, fresh: bool, sample: int | None) -> Score:
    config = write_config(module, settings)
    database = RESULTS / f"{module.name}.sqlite"
    if fresh and database.exists():
        database.unlink()
    if not database.exists():
        cosmic_ray("init", config, database)
    skip_out_of_scope(database, module, settings, sample)
    cosmic_ray("baseline", config)
    cosmic_ray("exec", config, database)
    return score(database)


def survivors(module: Module) -> list[str]:
    with sqlite3.connect(RESULTS / f"{module.name}.sqlite") as connection:
        return [
            f"{path}:{row} {operator}\n{diff}"
            for path, row, operator, diff in connection.execute(
                "SELECT s.module_path, s.start_pos_row, s.operator_name, r.diff FROM work_results r "
                "JOIN mutation_specs s ON s.job_id = r.job_id WHERE lower(r.test_outcome) = 'survived' "
                "ORDER BY s.module_path, s.start_pos_row"
            )
        ]


def forget_survivors(module: Module) -> None:
    with sqlite3.connect(RESULTS / f"{module.name}.sqlite") as connection:
        connection.execute("DELETE FROM work_results WHERE lower(test_outcome) = 'survived'")


def run_seeded(seeded: Seeded) -> bool:
    """Whether the named test fails on the seeded bug (and passes without it)."""
    path = TREE / seeded.file
    original = path.read_text(encoding="utf-8")
    if original.count(seeded.old) != 1:
        raise SystemExit(f"{seeded.file}: the text to replace for {seeded.bug!r} is not there exactly once")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", seeded.test]

    def passes() -> bool:
        done = subprocess.run(command, cwd=TREE, env=environment(), capture_output=True, check=False)
        return done.returncode == 0

    if not passes():
        raise SystemExit(f"{seeded.test} fails without the seeded bug")
    try:
        path.write_text(original.replace(seeded.old, seeded.new), encoding="utf-8")
        return not passes()
    finally:
        path.write_text(original, encoding="utf-8")


def report(module: Module, result: Score) -> str:
    return (
        f"{module.name}: {result.percent:.1f} % killed ({result.killed} of {result.tested}; "
        f"{result.survived} survived, {result.skipped} out of scope, {result.pending} not run"
        + (f", {result.not_sampled} not sampled)" if result.not_sampled else ")")
    )


def run_in_parallel(chosen: list[Module], arguments: argparse.Namespace) -> int:
    """Each module in its own process, ``--jobs`` at a time, the largest first (so the last to start are
    the quick ones); each prints its own line when it ends."""
    from concurrent.futures import ThreadPoolExecutor

    def one(module: Module) -> int:
        command = [sys.executable, __file__, module.name]
        command += ["--recheck"] * arguments.recheck + ["--fresh"] * arguments.fresh
        command += [f"--sample={arguments.sample}"] if arguments.sample is not None else []
        return subprocess.run(command, check=False).returncode

    order = sorted(chosen, key=lambda module: -sum((ROOT / p).stat().st_size for p in module.paths))
    with ThreadPoolExecutor(max_workers=arguments.jobs) as pool:
        codes = list(pool.map(one, order))
    return 1 if any(codes) else 0


def main(argv: list[str] | None = None) -> int:
    global TREE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "modules", nargs="*", help="module names from pyproject.toml (default: all not deferred)"
    )
    parser.add_argument("--list", action="store_true", help="list the modules and stop")
    parser.add_argument("--survivors", action="store_true", help="print last run's survivors and stop")
    parser.add_argument("--recheck", action="store_true", help="re-test only last run's survivors")
    parser.add_argument("--fresh", action="store_true", help="start the sessions over")
    parser.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="test a fixed-seed random sample of N mutants per module (a bounded run; its score estimates "
        "the module's)",
    )
    parser.add_argument(
        "--seeded", action="store_true", help="run the hand-seeded bugs against their named tests and stop"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run N modules side by side, each in its own process and copy of the tree (default 1)",
    )
    arguments = parser.parse_args(argv)

    settings = load_settings()
    unknown = [name for name in arguments.modules if name not in settings.modules]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(settings.modules)}")
    chosen = [settings.modules[name] for name in arguments.modules] or [
        module for module in settings.modules.values() if not module.deferred
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)

    if arguments.list:
        for module in chosen:
            state = f"deferred: {module.deferred}" if module.deferred else f"target {module.target:g} %"
            print(f"{module.name} ({state})")
            print(f"  mutates {' '.join(module.paths)}\n  tests {' '.join(module.tests)}")
        return 0
    if arguments.survivors:
        for module in chosen:
            print(f"== {module.name}")
            print("\n".join(survivors(module)))
        return 0

    if arguments.seeded:
        TREE = RESULTS / "seeded-tree"  # its own copy: a module's run may be going on in the other
        copy_tree()
        survived = 0
        for seeded in settings.seeded:
            killed = run_seeded(seeded)
            survived += not killed
            verdict = "killed  " if killed else "SURVIVED"
            print(f"{verdict} {seeded.bug}\n         by {seeded.test}", flush=True)
        return 1 if survived else 0
    if arguments.jobs > 1 and len(chosen) > 1:
        return run_in_parallel(chosen, arguments)
    below = False
    for module in chosen:
        TREE = RESULTS / f"tree-{module.name}"  # each module its own copy: modules may run side by side
        copy_tree()
        if arguments.recheck:
            forget_survivors(module)
        result = run(module, settings, fresh=arguments.fresh, sample=arguments.sample)
        print(report(module, result), flush=True)
        below = below or result.percent < module.target or result.pending > 0
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
