"""Look at the folders: what pending/ holds and what each inbox folder is (ready, not yet, never), once per run.

`judge_inbox_folder` is the one judge of an inbox folder: the sweep acts on its verdict and `--status` shows it.
"""

import os
import stat
from pathlib import Path
from typing import Callable, Iterator, Mapping, NamedTuple, Optional, Sequence

from jobroot import bundle
from jobroot import folders as fs
from jobroot.chains import Upstream, find_cycle, locate, read_after
from jobroot.engine import Bundling
from jobroot.folders import Submitted, printable
from jobroot.packing import BundleFolder
from jobroot.plan import InboxFolder, PendingFolder, Verdict, Waiting


def scan_pending(root: Path) -> list[PendingFolder]:
    """Every folder in pending/ with its record: one scandir, then per folder one stat and one read."""
    found = []
    with os.scandir(root / fs.PENDING) as entries:
        folders = [e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    folders.sort(key=os.fsencode)
    base = os.path.join(root, fs.PENDING)
    for name in folders:
        path = f"{base}/{name}"  # per job per run: plain strings, not os.path.join or Path
        cancel = os.path.lexists(f"{path}/{fs.CANCEL}")
        try:
            record = fs.read_record(path)
            found.append(PendingFolder(name, record, cancel=cancel, member=bundle.look(path) if record is None else None))
        except ValueError as e:
            found.append(PendingFolder(name, None, problem=str(e), cancel=cancel))
    return found


def scan_bundles(root: Path) -> list[BundleFolder]:
    """Every folder in bundles/ (--bundle) with its record; none when bundles/ does not exist."""
    try:
        with os.scandir(root / fs.BUNDLES) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            found.append(BundleFolder(name, fs.read_record(root / fs.BUNDLES / name)))
        except ValueError as e:
            found.append(BundleFolder(name, None, problem=str(e)))
    return found


SKEW = 2.0  # seconds a change time may lie ahead of this machine's clock before it is called skew


class Stages(NamedTuple):
    """The stages as this run found them (the root, inbox/'s names, pending/'s records), to locate `after` names in."""

    root: Path
    inbox: frozenset[str]
    pending: Mapping[str, Optional[Submitted]]

    def upstreams(self, path: Path) -> tuple[Upstream, ...]:
        """Where each job a submitted folder's after file names stands. The file was read when the folder
        was submitted: one garbled since does not stop a started chain."""
        try:
            return self.locate(read_after(path))
        except ValueError:
            return ()

    def locate(self, names: Sequence[str]) -> tuple[Upstream, ...]:
        """Where each named job stands (chains.locate)."""
        return tuple(locate(self.root, n, self.inbox, self.pending) for n in names)


def scan_inbox(
    root: Path,
    names: Sequence[str],
    settle: float,
    now: float,
    shared: bool = False,
    stages: Optional[Stages] = None,
    bundling: Optional[Callable[[Path], Optional[Bundling]]] = None,
) -> Iterator[InboxFolder]:
    """The named inbox folders in order, each looked at only when the plan asks for it (bundling: with --bundle,
    the engine's reading of how a ready folder may share a scheduler job)."""
    for name in names:
        path = root / fs.INBOX / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            yield InboxFolder(
                name, Verdict.NOTE, "a symbolic link, not a folder: never submitted (replace it with the folder itself)"
            )
        elif stat.S_ISDIR(info.st_mode):
            folder = judge_inbox_folder(path, settle, now, shared, info, stages)._replace(since=info.st_ctime)
            if bundling is not None and folder.verdict == Verdict.READY:
                folder = folder._replace(bundling=_with_most(path, bundling(path / fs.SCRIPT)))
            yield folder
        # plain files are not jobs


def _with_most(path: Path, form: Optional[Bundling]) -> Optional[Bundling]:
    """The engine's reading, with the cap a refused bundle left in the folder (job_bundle_most)."""
    try:
        most = int((path / fs.MOST).read_text().strip() or 0)
    except (OSError, ValueError):
        return form
    return form._replace(most=max(most, 1)) if form is not None else None


def judge_inbox_folder(
    path: Path,
    settle: float,
    now: float,
    shared: bool = False,
    folder: Optional[os.stat_result] = None,
    stages: Optional[Stages] = None,
) -> InboxFolder:
    """Is this inbox folder ready to submit, not ready yet, or never runnable (and why)?"""
    name = path.name
    script = path / fs.SCRIPT
    if os.path.lexists(path / fs.HOLD):
        return InboxFolder(name, Verdict.WAIT, "held", Waiting.HELD)
    try:
        info = os.lstat(script)
    except FileNotFoundError:
        return InboxFolder(name, Verdict.WAIT, no_script(path), Waiting.NO_SCRIPT)
    except OSError as e:
        return InboxFolder(name, Verdict.BAD, f"job.sh cannot be examined: {e.strerror}.")
    try:
        newest = fs.newest_change(path) if settle > 0 else now
        if newest > now + SKEW:
            return InboxFolder(name, Verdict.SKEWED, skewed(newest - now))
        if newest > now - settle:
            return InboxFolder(name, Verdict.WAIT, "still changing", Waiting.SETTLING)
    except OSError:
        return InboxFolder(name, Verdict.WAIT, "vanished", Waiting.VANISHED)
    if stat.S_ISLNK(info.st_mode):
        return InboxFolder(name, Verdict.BAD, "job.sh is a symbolic link; put a regular file named job.sh in the folder.")
    if stat.S_ISDIR(info.st_mode):
        return InboxFolder(name, Verdict.BAD, "job.sh is a directory, not a script.")
    if not stat.S_ISREG(info.st_mode):
        return InboxFolder(name, Verdict.BAD, "job.sh is not a regular file.")
    if info.st_size == 0:
        return InboxFolder(name, Verdict.BAD, "job.sh is empty.")
    untrusted = distrust(folder or os.lstat(path), info, shared)
    if untrusted:
        return InboxFolder(name, Verdict.BAD, untrusted)
    try:
        with open(script, "rb") as f:
            f.read(1)
    except OSError as e:
        return InboxFolder(name, Verdict.BAD, f"job.sh cannot be read: {e.strerror}.")
    try:
        after = read_after(path)
    except ValueError as e:
        return InboxFolder(name, Verdict.BAD, f"{e}.")
    if not after or stages is None:
        return InboxFolder(name, Verdict.READY)
    if name in after:
        return InboxFolder(name, Verdict.BAD, "its after file names the folder itself, so it could never run.")
    cycle = find_cycle(stages.root, name, stages.inbox, after)
    if cycle:
        loop = " -> ".join(printable(n) for n in (*cycle, name))
        return InboxFolder(name, Verdict.BAD, f"it is part of a cycle of after files ({loop}): none of them could ever run.")
    return InboxFolder(name, Verdict.READY, after=stages.locate(after))


SCRIPT_LIKE = (".sh", ".slurm", ".sbatch", ".sge", ".pbs", ".job")


def no_script(path: Path) -> str:
    """Why a folder without job.sh waits, naming what it holds that looks meant to be it: `Job.sh`,
    `run.sh`, `job.slurm`, `job.sh.txt`, or a job.sh one or two folders down."""
    said = "no job.sh yet"
    try:
        top = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return said
    for entry in top:
        lower = entry.name.lower()
        if lower.startswith(fs.SCRIPT) or lower.endswith(SCRIPT_LIKE) and entry.is_file(follow_symlinks=False):
            return f"{said}; found {printable(entry.name)}: the script must be named job.sh, at the top of the folder"
    for found in sorted(path.glob(f"*/{fs.SCRIPT}")) + sorted(path.glob(f"*/*/{fs.SCRIPT}")):
        shown = printable(os.fspath(found.relative_to(path)))
        return f"{said}; found {shown}: the script must be named job.sh, at the top of the folder"
    return said


def skewed(ahead: float) -> str:
    """Why a folder whose change time lies in the future waits."""
    span = f"{ahead / 3600:.1f} h" if ahead >= 3600 else f"{ahead / 60:.0f} min" if ahead >= 60 else f"{ahead:.0f} s"
    return (
        f"a file changed {span} in the future by this machine's clock: the file server's clock is ahead of it; "
        "waiting until that time has passed (fix the clocks with NTP)"
    )


def distrust(folder: os.stat_result, script: os.stat_result, shared: bool) -> str:
    """Why a folder someone else could have written must not run as this user; "" when it may.

    Default: folder and job.sh owned by this user, job.sh writable by nobody else (group-writable
    is fine when the group is the owner's private group). --shared-group: anyone in the group.
    """
    me = os.geteuid()
    if script.st_mode & stat.S_IWOTH:
        return "job.sh is writable by every user; run chmod o-w job.sh and submit it again."
    if shared:
        ours = set(os.getgroups()) | {os.getegid()}
        for what, st_ in (("the folder", folder), ("job.sh", script)):
            if st_.st_uid != me and st_.st_gid not in ours:
                return f"{what} belongs to {_user(st_.st_uid)} and to a group this user is not in."
        return ""
    for what, st_ in (("the folder", folder), ("job.sh", script)):
        if st_.st_uid != me:
            return (
                f"{what} belongs to {_user(st_.st_uid)}, not to {_user(me)} who runs the reconciler "
                "(a lab sharing a root can allow this with --shared-group)."
            )
    if script.st_mode & stat.S_IWGRP and not _private_group(script.st_gid, me):
        return "job.sh is writable by its group; run chmod g-w job.sh (or set the root up with --shared-group)."
    return ""


def _user(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _private_group(gid: int, uid: int) -> bool:
    """A user private group: the user's own primary group, with no other members."""
    import grp
    import pwd

    try:
        return pwd.getpwuid(uid).pw_gid == gid and not grp.getgrgid(gid).gr_mem
    except KeyError:
        return False
