"""A catalogue of hostile inbox folders, each with its expected outcome, through the real CLI.

Outcomes: "ran" (in complete/, no job_error.txt, ran once), "failed:TEXT" (in complete/ with
job_error.txt containing TEXT), "rejected:TEXT" (in complete/, never run, job_error.txt says
"Not submitted: ...TEXT"), "left" (still where it was, never run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
from conftest import read_ledger, run

from jobroot import folders as fs

pytestmark = pytest.mark.local

NOBODY = 65534


def job(script: str = "", files: dict[str, str] | None = None) -> Callable[[Path, str, str], None]:
    def build(inbox: Path, name: str, ledger: str) -> None:
        d = inbox / name
        d.mkdir()
        (d / "job.sh").write_text(f"echo {tag(name)} >> {ledger}\n{script}")
        for fname, text in (files or {}).items():
            (d / fname).parent.mkdir(parents=True, exist_ok=True)
            (d / fname).write_text(text)

    return build


def raw(content: bytes) -> Callable[[Path, str, str], None]:
    def build(inbox: Path, name: str, ledger: str) -> None:
        (inbox / name).mkdir()
        (inbox / name / "job.sh").write_bytes(content)

    return build


def custom(fn: Callable[[Path], None], base: Callable[[Path, str, str], None] | None = None) -> Callable[[Path, str, str], None]:
    def build(inbox: Path, name: str, ledger: str) -> None:
        if base:
            base(inbox, name, ledger)
        fn(inbox / name)

    return build


def many_files(d: Path) -> None:
    for i in range(3000):
        (d / f"f{i:04}.dat").write_text(str(i))


def deep_tree(d: Path) -> None:
    p = d
    for i in range(100):
        p = p / f"d{i}"
    p.mkdir(parents=True)
    (p / "leaf").write_text("deep")


def script_dir(d: Path) -> None:
    d.mkdir()
    (d / "job.sh").mkdir()


def script_link(d: Path) -> None:
    d.mkdir()
    (d / "real.sh").write_text("true\n")
    os.symlink("real.sh", d / "job.sh")


def script_fifo(d: Path) -> None:
    d.mkdir()
    os.mkfifo(d / "job.sh")


def chmod(mode: int) -> Callable[[Path], None]:
    return lambda d: os.chmod(d / "job.sh", mode)


def chown(target: str, uid: int, gid: int = -1) -> Callable[[Path], None]:
    return lambda d: os.chown(d if target == "folder" else d / "job.sh", uid, gid)


def group_writable_foreign_group(d: Path) -> None:
    os.chown(d / "job.sh", -1, NOBODY)
    os.chmod(d / "job.sh", 0o664)


def tag(name: str) -> str:
    """The ledger line of a job: its name in hex (a name may hold a newline or quotes)."""
    return name.encode().hex()


LONG = "L" * 255
CASES: list[tuple[str, str, Callable[[Path, str, str], None]]] = [
    ("plain", "ran", job("echo ok")),
    ("no-shebang", "ran", job("echo no shebang needed by bash")),
    ("crlf", "failed:exited with code", job("echo start\r\nexit 0\r\n")),
    ("binary", "failed:exited with code", raw(b"\x7fELF\x00\x01\x02\xff\xfe" * 50)),
    ("exit-3", "failed:exited with code 3", job("exit 3")),
    ("sigterm", "failed:signal 15 (SIGTERM)", job("kill -TERM $$")),
    ("sigkill", "failed:signal 9 (SIGKILL)", job("kill -KILL $$")),
    ("3000-files", "ran", custom(many_files, job("ls | wc -l > count"))),
    ("deep-tree", "ran", custom(deep_tree, job())),
    ("new\nline", "ran", job()),
    ("$(touch pwned)", "ran", job()),
    ("a;touch pwned;b", "ran", job()),
    ("-rf", "ran", job()),
    ("--help", "ran", job()),
    ("spaces and ünïcødé 名前", "ran", job()),
    ("back\\slash 'quote\" `tick`", "ran", job()),
    ("*", "ran", job()),
    (LONG, "ran", job()),
    ("link-out", "ran", custom(lambda d: os.symlink("/etc/hostname", d / "outside"), job())),
    ("link-in", "ran", custom(lambda d: os.symlink("job.sh", d / "inside"), job())),
    ("dangling-link", "ran", custom(lambda d: os.symlink("/nonexistent/x", d / "dangling"), job())),
    ("fifo-inside", "ran", custom(lambda d: os.mkfifo(d / "pipe"), job())),
    ("deletes-itself", "ran", job("rm -f job.sh")),
    ("writes-100-files", "ran", job("for i in $(seq 100); do echo $i > out.$i; done")),
    ("only-sbatch-lines", "ran", job("#SBATCH --time=1\n#SBATCH --mem=1G\n")),
    ("script-dir", "rejected:job.sh is a directory", custom(script_dir)),
    ("script-link", "rejected:symbolic link", custom(script_link)),
    ("script-empty", "rejected:job.sh is empty", raw(b"")),
    ("script-fifo", "rejected:not a regular file", custom(script_fifo)),
    ("world-writable", "rejected:writable by every user", custom(chmod(0o666), job())),
    ("group-writable", "rejected:writable by its group", custom(group_writable_foreign_group, job())),
    ("foreign-folder", "rejected:the folder belongs to nobody", custom(chown("folder", NOBODY), job())),
    ("foreign-script", "rejected:job.sh belongs to nobody", custom(chown("script", NOBODY), job())),
    ("no-script", "left", custom(lambda d: (d.mkdir(), (d / "data").write_text("uploading")))),
    ("held", "left", job(files={"hold": ""})),
    (".hidden-upload", "left", job()),
    ("link-to-folder", "left", custom(lambda d: os.symlink("/tmp", d))),
]


NEEDS_ROOT = {"group-writable", "foreign-folder", "foreign-script"}  # chown to another user or group


def test_hostile_catalogue(root: Path, ledger: Path, tmp_path: Path) -> None:
    cases = [c for c in CASES if os.geteuid() == 0 or c[0] not in NEEDS_ROOT]  # the rest need no privilege
    if os.environ.get("CI") == "true":
        assert cases == CASES, "CI runs as root: every case, the ownership ones included"
    assert len(cases) >= 30
    (root / "inbox" / "plain-file").write_text("not a job")
    (root / "complete" / LONG).mkdir()  # a 255-byte name that collides in complete/
    for name, _, build in cases:
        build(root / "inbox", name, str(ledger))
    for _ in range(40):
        result = run(root, "--slots", "8", "--batch-limit", "50")
        assert result.returncode == 0, result.stderr
        if not os.listdir(root / "pending") and not [
            n
            for n in os.listdir(root / "inbox")
            if n not in ("plain-file",) and dict((c[0], c[1]) for c in cases).get(n) != "left"
        ]:
            break
    ran = [bytes.fromhex(line).decode() for line in read_ledger(ledger)]
    assert len(ran) == len(set(ran)), "a job ran twice"
    for name, expected, _ in cases:
        kind, _, text = expected.partition(":")
        if kind == "left":
            assert os.path.lexists(root / "inbox" / name), name
            assert name not in ran
            continue
        done = root / "complete" / (name if name != LONG else LONG[:253] + ".2")
        assert done.is_dir(), f"{name!r} is not in complete/"
        error = (done / fs.ERROR).read_text() if (done / fs.ERROR).exists() else None
        if kind == "ran":
            assert error is None, f"{name!r}: {error}"
            assert ran.count(name) == 1, f"{name!r} ran {ran.count(name)} times"
        elif kind == "failed":
            assert error is not None and text in error.splitlines()[0], f"{name!r}: {error}"
        else:
            assert error is not None and error.startswith("Not submitted:") and text in error, f"{name!r}: {error}"
            assert name not in ran
    assert os.listdir(root / "inbox" / "..") and (root / "inbox" / "plain-file").read_text() == "not a job"
    assert len(list((root / "complete" / "3000-files").glob("f*.dat"))) == 3000  # every file travelled
    assert (root / "complete" / "deep-tree" / Path(*[f"d{i}" for i in range(100)]) / "leaf").read_text() == "deep"
    assert os.readlink(root / "complete" / "link-out" / "outside") == "/etc/hostname"
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()
    assert "a symbolic link, not a folder" in (root / "reconcile.log").read_text()
    shutil.rmtree(root / "complete")  # the 3000-file folder would slow tmp cleanup less this way


def test_a_script_writable_by_the_owners_private_group_is_accepted(tmp_path: Path) -> None:
    """umask 002 on a system with user private groups gives job.sh mode 664: that group is the owner alone."""
    import grp
    import pwd
    import time

    from jobroot.observe import judge_inbox_folder

    me = pwd.getpwuid(os.geteuid())
    assert not grp.getgrgid(me.pw_gid).gr_mem, "this test needs the user's primary group to be private"
    d = tmp_path / "job"
    d.mkdir()
    (d / "job.sh").write_text("true\n")
    os.chown(d / "job.sh", -1, me.pw_gid)
    os.chmod(d / "job.sh", 0o664)
    assert judge_inbox_folder(d, 0, time.time()).verdict == "ready"
