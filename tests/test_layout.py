"""The shape of the code: one installed name, dependencies pointing one way, an idle run that loads no engine."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import RECONCILE, REPO, run

import jobroot

pytestmark = pytest.mark.unit

CORE = sorted((REPO / "jobroot").glob("*.py"))
ENGINES = sorted((REPO / "engines").glob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name a file imports, wherever in the file the import stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_the_core_never_imports_an_engine_and_engines_import_only_the_core() -> None:
    assert CORE and ENGINES
    for path in CORE:
        wrong = {n for n in imported(path) if n.startswith(("jobroot.engines", "engines"))}
        assert not wrong, f"{path.name} imports {wrong}: the core names engines only in jobroot/engine.py's table"
    for path in ENGINES:
        wrong = {n for n in imported(path) if n == "engines" or n.startswith("engines.")}
        assert not wrong, f"engines/{path.name} imports {wrong}: one import name per module (jobroot.engines...)"


def test_no_module_is_past_400_lines() -> None:
    long = {p.name: n for p in [*CORE, *ENGINES, REPO / "reconcile.py"] if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these: {long}"


def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("jobroot-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"jobroot"}
    assert {"jobroot/engines/local.py", "jobroot/engines/slurm.py", "jobroot/folders.py"} <= set(names)


def test_an_idle_run_imports_no_engine(tmp_path: Path) -> None:
    for engine in ("local", "slurm", "gridengine"):
        r = tmp_path / engine
        assert run(r, "-s", "-e", engine).returncode == 0
        idle = subprocess.run([sys.executable, "-X", "importtime", *RECONCILE[1:], "-r", str(r)], capture_output=True, text=True)
        assert idle.returncode == 0, idle.stderr
        modules = {line.rsplit("|", 1)[-1].strip() for line in idle.stderr.splitlines() if line.startswith("import time:")}
        assert "jobroot.cli" in modules  # the measurement saw our imports at all
        assert not {m for m in modules if m.startswith("jobroot.engines") or m in ("filelock", "datetime")}, engine


def test_help_groups_the_options_by_engine(tmp_path: Path) -> None:
    result = run(tmp_path, "--help")
    assert result.returncode == 0
    heads = re.findall(r"^(.*) engine options:$", result.stdout, re.MULTILINE)
    assert heads == ["local", "slurm and gridengine", "slurm"]  # an option several engines take is listed once
    parts = result.stdout.split(" engine options:")
    assert "--slots" in parts[1] and "--max-queued" not in parts[1]
    assert all(flag in parts[2] for flag in ("--max-queued", "--lookback", "--command-timeout")) and "--slots" not in parts[2]
    assert "--sbatch-defaults" in parts[3] and "--lookback" not in parts[3]


def test_an_engine_option_given_to_another_engine_records_nothing(tmp_path: Path) -> None:
    r = tmp_path / "r"
    result = run(r, "-s", "-e", "local", "--max-queued", "5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "reconcile: --max-queued is not an option of the local engine (reconcile --help lists each engine's options)"
    ]
    assert not r.exists()  # refused before anything was created or recorded
    assert run(r, "-s", "-e", "local").returncode == 0
    later = run(r, "--max-queued", "5")  # on a plain run too, not only at setup
    assert later.returncode == 2 and "--max-queued is not an option of the local engine" in later.stderr


def test_the_core_only_parser_never_decides_what_the_full_parser_would_refuse(tmp_path: Path) -> None:
    # --version after a bad engine option: the full parser refuses the option first (exit 2), as before.
    result = run(tmp_path, "--max-queued=abc", "--version")
    assert result.returncode == 2 and "invalid positive value" in result.stderr
    assert run(tmp_path, "--version").returncode == 0


def test_every_row_of_the_mutation_catalogue_applies_to_the_tree_as_it_is() -> None:
    """A row whose text the code no longer holds would be skipped at run time: refactors carry the rows along."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutations", REPO / "tests" / "mutations.py")
    assert spec and spec.loader
    mutations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutations)
    for m in mutations.CATALOGUE:
        assert (REPO / m.path).read_text().count(m.old) == 1, f"{m.name!r}: its text is not in {m.path} exactly once"
        file, _, name = m.test.partition("::")
        assert f"def {name.split('[')[0]}(" in (REPO / file).read_text(), f"{m.name!r}: no test {m.test}"


def test_no_import_cycle_anywhere_in_the_core_and_the_engines() -> None:
    """Imports inside functions count too: a cycle there is a cycle a reader has to untangle."""
    modules = {f"jobroot.{p.stem}": p for p in CORE} | {f"jobroot.engines.{p.stem}": p for p in ENGINES}
    graph = {name: {n for n in imported(path) if n in modules and n != name} for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(name) :], name]))
        if name not in done:
            for onward in sorted(graph[name]):
                visit(onward, [*trail, name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_one_tool_under_two_names_and_its_version_says_both(tmp_path: Path) -> None:
    scripts = re.search(r"\[project\.scripts\]\n(.*?)\n\n", (REPO / "pyproject.toml").read_text(), re.S)
    assert scripts and re.findall(r'^(\w+) = "(.+)"$', scripts.group(1), re.M) == [
        ("reconcile", "jobroot.cli:main"),
        ("jobroot", "jobroot.cli:main"),
    ]
    result = run(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, f"reconcile (jobroot) {jobroot.__version__}\n")
