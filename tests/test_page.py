"""status.html: escaped, self-contained, and rendered by a real headless Chromium (Debian's package).

The Chromium test keeps its screenshot in test-artifacts/status-page.png (look at it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO, make_job, run

from jobroot.page import render

EVIL = '<b>x</b> & "q" <script>alert(1)</script>'
EVIL_NAME = '<b>x & "q" <img src=x onerror=alert(1)>'  # a folder name cannot hold a slash
ARTIFACTS = REPO / "test-artifacts"


@pytest.mark.unit
def test_every_name_and_reason_is_escaped_and_the_page_needs_nothing_beside_it(tmp_path: Path) -> None:
    now = time.time()
    rows = [(EVIL, "failed", "7", now - 30, f"reason with {EVIL}"), ("ok", "done", "8", now - 90, "")]
    page = render(tmp_path / "root", rows, {"failed": 1, "done": 1}, now)
    assert "<script>alert" not in page and "<b>x</b>" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    assert not re.search(r"(src|href)=|https?:|@import|url\(", page)  # no network, no files beside it
    assert "<svg" in page and 'fill="#c0392b"' in page and 'fill="#2e8b57"' in page  # failed and done bars
    assert "<svg" not in render(tmp_path, rows[:0], {}, now)  # no endings, no picture


class Table(HTMLParser):
    """The rows of the page's table as the browser left its DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


@pytest.fixture(scope="module")
def chromium() -> str:
    result = subprocess.run(
        ["bash", str(REPO / "tests" / "browser" / "chromium.sh")], capture_output=True, text=True, timeout=900
    )
    if result.returncode == 0:
        return result.stdout.strip().splitlines()[-1]
    if os.environ.get("CI") == "true" or result.returncode != 77:
        pytest.fail(f"Chromium could not be installed: {result.stderr}")
    pytest.skip(f"the status page test needs Chromium: {result.stderr.strip()}")


def browse(chromium: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([*argv, *args, url], capture_output=True, text=True, timeout=120)


def test_the_page_in_a_real_headless_chromium(root: Path, chromium: str) -> None:
    for name, script in (("ok-1", "true"), ("ok-2", "true"), ("three", "exit 3"), (EVIL_NAME, "true")):
        make_job(root, name, f"#!/bin/bash\n{script}\n")
    for _ in range(40):
        run(root)
        if len(os.listdir(root / "complete")) == 4:
            break
        time.sleep(0.2)
    make_job(root, "held", "#!/bin/bash\ntrue\n", {"hold": ""})
    assert run(root).returncode == 0
    url = (root / "status.html").as_uri()
    shown = browse(chromium, url, "--dump-dom", "--virtual-time-budget=2000")
    assert shown.returncode == 0, shown.stderr
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console  # the page's script ran without an error
    table = Table()
    table.feed(shown.stdout)
    rows = {r[0]: r for r in table.rows if r}
    default = [r[0] for r in table.rows if r]  # busiest first
    assert set(rows) == {"ok-1", "ok-2", "three", EVIL_NAME, "held"}  # every job, the hostile name as text
    assert rows["three"][1] == "failed" and "exited with code 3" in rows["three"][4]
    assert rows["held"][1] == "held" and rows["ok-1"][1] == "done"
    by_name = browse(chromium, url + "#sort=0-", "--dump-dom", "--virtual-time-budget=2000")  # sorted by name, descending
    table = Table()
    table.feed(by_name.stdout)
    names = [r[0] for r in table.rows if r]
    assert names == sorted(names, reverse=True) and names != default
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    for width, path in ((900, shot), (390, ARTIFACTS / "status-page-phone.png")):
        taken = browse(chromium, url, f"--screenshot={path}", f"--window-size={width},800")
        assert taken.returncode == 0 and path.stat().st_size > 10_000, taken.stderr
    shutil.copy(root / "status.html", ARTIFACTS / "status-page.html")
