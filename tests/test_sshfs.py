"""Uploads through the real thing: a root mounted over sshfs from a throwaway sshd on 127.0.0.1.

tests/sshfs/server.sh installs openssh-server, sshfs and rsync (Debian's packages) and starts sshd
on a free port with throwaway keys. The three upload recipes of docs/guide/uploading.md run against it, a slow upload
through the mount races sweeps every 0.2 s, hold and cancel files go through the mount, and the
status file and a result are read back through it.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import REPO, read_ledger, run

from jobroot import folders as fs

SERVER = REPO / "tests" / "sshfs" / "server.sh"
FILES = 6


class Remote:
    def __init__(self, keys: Path, port: str, mount: Path) -> None:
        self.keys, self.port, self.mount = keys, port, mount
        self.ssh = ["ssh", "-p", port, *self.options()]

    def options(self) -> list[str]:
        return ["-i", str(self.keys / "id_ed25519"), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]  # fmt: skip

    def sh(self, command: str) -> None:
        subprocess.run([*self.ssh, "root@127.0.0.1", command], check=True, timeout=60)


@pytest.fixture
def remote(root: Path, tmp_path: Path) -> Iterator[Remote]:
    keys = tmp_path / "ssh"
    result = subprocess.run(["bash", str(SERVER), str(keys)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        if os.environ.get("CI") == "true" or result.returncode != 77:
            pytest.fail(f"sshd for the sshfs tests did not start: {result.stderr}")
        pytest.skip(f"the sshfs tests need root, apt-get and /dev/fuse: {result.stderr.strip()}")
    port = result.stdout.strip()
    mount = tmp_path / "mnt"
    mount.mkdir()
    r = Remote(keys, port, mount)
    opts = f"IdentityFile={keys / 'id_ed25519'},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes"
    subprocess.run(["sshfs", "-p", port, "-o", opts, f"root@127.0.0.1:{root}", str(mount)], check=True, timeout=60)
    try:
        yield r
    finally:
        subprocess.run(["fusermount3", "-u", str(mount)], timeout=60)
        subprocess.run(["bash", str(SERVER), "stop", str(keys)], timeout=60)


def local_job(tmp_path: Path, name: str, ledger: Path) -> Path:
    """A job on the laptop: job.sh that says whether it saw all its files, and the files."""
    src = tmp_path / "laptop" / name
    src.mkdir(parents=True)
    (src / "job.sh").write_text(
        f'#!/bin/bash\nn=$(ls data.* | wc -l)\necho "{name} $n" >> {ledger}\necho result-{name} > result.txt\n'
    )
    for i in range(FILES):
        (src / f"data.{i}").write_text("x" * 100_000)
    return src


def drain(root: Path, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while os.listdir(root / "inbox") or os.listdir(root / "pending"):
        assert run(root).returncode == 0
        assert time.monotonic() < deadline, os.listdir(root / "pending")
        time.sleep(0.1)


def test_the_readmes_three_upload_recipes(root: Path, remote: Remote, tmp_path: Path, ledger: Path) -> None:
    inbox = f"{root}/inbox"
    ssh = " ".join(remote.ssh)
    rsync = local_job(tmp_path, "by-rsync", ledger)
    subprocess.run(["rsync", "-a", "-e", ssh, f"{rsync}/", f"root@127.0.0.1:{inbox}/.by-rsync/"], check=True, timeout=60)
    remote.sh(f"mv {inbox}/.by-rsync {inbox}/by-rsync")
    scp = local_job(tmp_path, "by-scp", ledger)
    subprocess.run(["scp", "-P", remote.port, *remote.options(), "-r", str(scp), f"root@127.0.0.1:{inbox}/.by-scp"], check=True)
    remote.sh(f"mv {inbox}/.by-scp {inbox}/by-scp")
    cp = local_job(tmp_path, "by-sshfs", ledger)
    subprocess.run(["cp", "-r", str(cp), str(remote.mount / "inbox" / ".by-sshfs")], check=True, timeout=60)
    os.rename(remote.mount / "inbox" / ".by-sshfs", remote.mount / "inbox" / "by-sshfs")
    drain(root)
    assert sorted(read_ledger(ledger)) == [f"by-rsync {FILES}", f"by-scp {FILES}", f"by-sshfs {FILES}"]  # each once, whole
    # Read back through the mount: the status file and a result.
    status = (remote.mount / fs.STATUS_TXT).read_text()
    assert all(f"by-{how}" in status for how in ("rsync", "scp", "sshfs")) and "3 done" in status
    assert (remote.mount / "complete" / "by-sshfs" / "result.txt").read_text() == "result-by-sshfs\n"


def test_a_slow_upload_through_the_mount_is_never_submitted_early(
    root: Path, remote: Remote, tmp_path: Path, ledger: Path
) -> None:
    src = local_job(tmp_path, "slow", ledger)
    dest = remote.mount / "inbox" / "slow"
    done = threading.Event()

    def upload() -> None:  # job.sh first, then one file every 0.7 s, straight into the visible name
        dest.mkdir()
        (dest / "job.sh").write_bytes((src / "job.sh").read_bytes())
        for i in range(FILES):
            time.sleep(0.7)
            (dest / f"data.{i}").write_bytes((src / f"data.{i}").read_bytes())
        done.set()

    uploader = threading.Thread(target=upload)
    uploader.start()
    while not done.is_set():
        assert run(root, "--settle", "2").returncode == 0
        time.sleep(0.2)
    uploader.join()
    deadline = time.monotonic() + 60
    while os.listdir(root / "complete") != ["slow"]:
        assert run(root, "--settle", "2").returncode == 0
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert read_ledger(ledger) == [f"slow {FILES}"]  # it saw every file: not submitted early


def test_hold_and_cancel_files_dropped_through_the_mount(root: Path, remote: Remote, tmp_path: Path, ledger: Path) -> None:
    held = remote.mount / "inbox" / "held"
    os.mkdir(held)
    (held / "hold").touch()
    (held / "job.sh").write_text(f"#!/bin/bash\necho held >> {ledger}\n")
    long = remote.mount / "inbox" / "long"
    os.mkdir(long)
    (long / "job.sh").write_text(f"#!/bin/bash\necho long >> {ledger}\nsleep 300\n")
    time.sleep(0.5)
    for _ in range(5):
        assert run(root).returncode == 0
    assert os.listdir(root / "inbox") == ["held"] and os.listdir(root / "pending") == ["long"]
    (remote.mount / "pending" / "long" / "cancel").touch()
    deadline = time.monotonic() + 60
    while os.listdir(root / "complete") != ["long"]:
        assert run(root).returncode == 0
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "cancelled at the user's request" in (remote.mount / "complete" / "long" / fs.ERROR).read_text()
    os.unlink(held / "hold")
    drain(root)
    assert sorted(read_ledger(ledger)) == ["held", "long"]
