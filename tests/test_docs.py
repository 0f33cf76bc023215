"""The documentation: a site that builds strictly (no broken link, no page left out of it), a reference
and a man page that say what `reconcile --help` says, and a README a newcomer reads in two minutes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RECONCILE, REPO

pytestmark = pytest.mark.docs


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "engines" / "slurm" / "index.html").exists()


def test_the_options_reference_and_the_man_page_are_what_the_parser_says() -> None:
    checked = subprocess.run([sys.executable, str(REPO / "docs" / "generate.py"), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    helped = subprocess.run([*RECONCILE, "--help"], capture_output=True, text=True, timeout=60).stdout
    reference = (REPO / "docs" / "reference" / "options.md").read_text()
    man = (REPO / "docs" / "reconcile.1").read_text()
    for flag in ("--max-queued", "--sbatch-defaults", "--slots", "--retries", "--dry-run"):
        assert flag in helped and flag in reference and flag.replace("-", "\\-") in man, flag
    assert "status.html" in helped


def test_the_readme_is_short_and_begins_with_the_two_commands() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 260, f"the README has {len(lines)} lines: the rest belongs in docs/"
    commands = [line.strip() for line in lines[:15] if line.startswith("    ")]
    assert commands[:2] == [
        "python3 -m pip install . && bash examples/demo.sh",
        "python3 -m pip install '.[test]' && python3 -m pytest",
    ]
    assert (REPO / ".ci" / "run").read_text().strip().endswith(commands[1])  # CI runs exactly the README's command
