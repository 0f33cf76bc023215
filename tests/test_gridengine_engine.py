"""GridEngine's use of the scheduler, with a fake runner that counts calls and injects faults.

Grid Engine's behaviour itself is tested on the real cell (tests/test_gridengine_cell.py); here: how
many commands a run costs, and what the engine makes of each kind of answer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import pytest

from jobroot import folders as fs
from jobroot.engine import Ending, EngineError, Observation, State, SubmitRefused
from jobroot.engines._process import Result
from jobroot.engines.gridengine import DELETE_GRACE, GridEngine
from jobroot.folders import Submitted

pytestmark = pytest.mark.unit

Answer = Union[Result, Exception, Callable[[list[str]], Result]]


class FakeRunner:
    """Answers each command from a table by its first word (and `qstat -j` apart); records every argv."""

    def __init__(self, **answers: Answer) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float, cwd: Path | None, env: Mapping[str, str] | None = None) -> Result:
        assert timeout > 0, "every scheduler command needs a timeout"
        self.calls.append(list(argv))
        key = "qstat_j" if argv[0] == "qstat" and "-j" in argv else argv[0]
        answer = self.answers[key]
        if isinstance(answer, Exception):
            raise answer
        return answer(list(argv)) if callable(answer) else answer

    def count(self, command: str) -> int:
        return sum(1 for c in self.calls if c[0] == command)


def ok(stdout: str = "", stderr: str = "", rc: int = 0) -> Result:
    return Result([], rc, stdout, stderr)


def qstat(*jobs: tuple[str, str, str]) -> Result:
    """`qstat -xml` listing (job, state, tasks), each received just before submitted() recorded it."""
    received = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 61))
    rows = "".join(
        f"<job_list><JB_job_number>{j}</JB_job_number><state>{s}</state>"
        f"<JB_submission_time>{received}</JB_submission_time>{f'<tasks>{t}</tasks>' if t else ''}</job_list>"
        for j, s, t in jobs
    )
    return ok(f"<?xml version='1.0'?><job_info><queue_info></queue_info><job_info>{rows}</job_info></job_info>")


def details(*jobs: tuple[str, str, str]) -> Result:
    """`qstat -xml -j` for (job, account, message)."""
    rows = "".join(
        f"<element><JB_job_number>{j}</JB_job_number><JB_submission_time>{int(time.time())}</JB_submission_time>"
        f"<JB_account>{a}</JB_account><JB_cwd>/w</JB_cwd><JB_ja_tasks><ulong_sublist><JAT_message_list><element>"
        f"<QIM_message>11/27/2026 23:52:03 [0:22139]: {m}</QIM_message></element></JAT_message_list></ulong_sublist>"
        f"</JB_ja_tasks></element>"
        for j, a, m in jobs
    )
    return ok(f"<?xml version='1.0'?><detailed_job_info><djob_info>{rows}</djob_info></detailed_job_info>")


def record(job: str, exit_status: int = 0, account: str = "", task: str = "undefined", failed: str = "0") -> str:
    qsub_time = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime())
    return (
        f"==============================================================\njobnumber    {job}\ntaskid       {task}\n"
        f"account      {account}\nqsub_time    {qsub_time}\nfailed       {failed}\nexit_status  {exit_status}\n"
        "ru_wallclock 1s\n"
    )


def submitted(tmp_path: Path, job_id: str, token: str = "", age: float = 60) -> Submitted:
    path = tmp_path / job_id.replace(".", "_")
    path.mkdir(exist_ok=True)
    return Submitted("gridengine", job_id, time.time() - age, str(path), token)


def test_nothing_pending_asks_nothing() -> None:
    runner = FakeRunner()
    assert GridEngine(runner=runner, user="u").observe([], []) == Observation()
    assert runner.calls == []


@pytest.mark.parametrize("pending", [1, 1000])
def test_one_qstat_and_no_qacct_while_everything_is_queued(tmp_path: Path, pending: int) -> None:
    runner = FakeRunner(qstat=qstat(*[(str(i), "r", "") for i in range(1, pending + 1)]))
    obs = GridEngine(runner=runner, user="u").observe([submitted(tmp_path, str(i)) for i in range(1, pending + 1)], [])
    assert (runner.count("qstat"), runner.count("qacct")) == (1, 0)
    assert {s.state for s in obs.statuses.values()} == {State.ACTIVE}


@pytest.mark.parametrize("pending", [2, 1000])
def test_one_qstat_and_one_qacct_however_many_have_ended(tmp_path: Path, pending: int) -> None:
    runner = FakeRunner(qstat=qstat(), qacct=ok("".join(record(str(i), i % 2 * 3) for i in range(1, pending + 1))))
    obs = GridEngine(runner=runner, user="u").observe([submitted(tmp_path, str(i)) for i in range(1, pending + 1)], [])
    assert (runner.count("qstat"), runner.count("qacct")) == (1, 1)
    assert obs.statuses["2"].state is State.DONE and obs.statuses["1"].state is State.FAILED
    argv = runner.calls[-1]
    assert argv[:4] == ["qacct", "-o", "u", "-b"] and argv[-1] == "-j"


def test_qacct_looks_back_no_further_than_lookback(tmp_path: Path) -> None:
    runner = FakeRunner(qstat=qstat(), qacct=ok(""))
    GridEngine(runner=runner, user="u", lookback="1h").observe([submitted(tmp_path, "1", age=30 * 86400)], [])
    when = time.strptime(runner.calls[-1][4], "%Y%m%d%H%M")
    assert abs(time.mktime(when) - time.timezone - (time.time() - 3600)) < 120


def test_a_qstat_that_failed_is_an_error_never_an_empty_queue(tmp_path: Path) -> None:
    for answer in (ok(stderr="error: commlib error: got select error (Connection refused)", rc=1), ok(""), ok("<junk")):
        runner = FakeRunner(qstat=answer)
        with pytest.raises(EngineError):
            GridEngine(runner=runner, user="u").observe([submitted(tmp_path, "1")], [])


def test_a_qacct_that_failed_leaves_ended_jobs_unknown(tmp_path: Path) -> None:
    runner = FakeRunner(qstat=qstat(), qacct=ok(stderr="error: can't open accounting file", rc=1))
    obs = GridEngine(runner=runner, user="u").observe([submitted(tmp_path, "1")], [])
    assert obs.statuses["1"].state is State.UNKNOWN and "qacct failed" in obs.problems[0]
    # Before the cell's first job ends there is no accounting file: nothing has ended, and no problem.
    runner = FakeRunner(qstat=qstat(), qacct=ok("No jobs running since startup", rc=1))
    obs = GridEngine(runner=runner, user="u").observe([submitted(tmp_path, "1")], [])
    assert obs.statuses["1"].state is State.UNKNOWN and obs.problems == ()


def test_a_job_in_an_error_state_is_failed_in_grid_engines_words_and_deleted_with_its_reason_noted_first(
    tmp_path: Path,
) -> None:
    job = submitted(tmp_path, "12", token="jobroot-t")
    reason = 'error: can\'t open output file "/nonexistent/dir/out": No such file or directory'
    runner = FakeRunner(qstat=qstat(("12", "Eqw", "")), qstat_j=details(("12", "jobroot-t", reason)), qacct=ok(""))
    status = GridEngine(runner=runner, user="u").observe([job], []).statuses["12"]
    assert status.state is State.FAILED and status.stuck and "error state (Eqw)" in status.reason and reason in status.reason
    assert ["qstat", "-xml", "-j", "12"] in runner.calls and runner.count("qdel") == 0  # observing deletes nothing

    def qdel(argv: list[str]) -> Result:
        note = json.loads((Path(job.path) / fs.CLAIM).read_text())["deleted"]
        assert note["why"] == status.reason, "the reason must be on disk before the job is deleted"
        return ok("root has deleted job 12\n")

    GridEngine(runner=FakeRunner(qstat_j=details(("12", "jobroot-t", reason)), qdel=qdel), user="u").cancel([job], status.reason)
    # Killed right after qdel: the next run finds the job nowhere, and the note says why.
    runner = FakeRunner(qstat=qstat(), qacct=ok(""))
    assert GridEngine(runner=runner, user="u").observe([job], []).statuses["12"] == status._replace(ending=Ending.FAILED)


def test_a_garbled_id_never_deletes_another_job_nor_takes_its_verdict(tmp_path: Path) -> None:
    job = submitted(tmp_path, "12", token="jobroot-mine")
    other = details(("12", "jobroot-someone-else", "error: x"))
    runner = FakeRunner(qstat=qstat(("12", "Eqw", "")), qstat_j=other, qacct=ok(""))
    assert GridEngine(runner=runner, user="u").observe([job], []).statuses["12"].state is State.UNKNOWN
    deleting = FakeRunner(qstat_j=other, qdel=ok())
    with pytest.raises(EngineError, match="another folder's token"):
        GridEngine(runner=deleting, user="u").cancel([job])
    assert deleting.count("qdel") == 0


def test_a_job_in_an_error_state_that_cannot_be_deleted_stays_and_is_reported(tmp_path: Path) -> None:
    runner = FakeRunner(qstat_j=details(("12", "", "error: x")), qdel=ok(stderr="denied: not allowed", rc=1))
    with pytest.raises(EngineError):
        GridEngine(runner=runner, user="u").cancel([submitted(tmp_path, "12")], "why")
    quick = FakeRunner(qstat=qstat(("12", "Eqw", "")))
    shown = GridEngine(runner=quick, user="u").observe([submitted(tmp_path, "12")], [], quick=True)
    assert shown.statuses["12"].state is State.ACTIVE
    assert quick.count("qdel") == 0  # a status display changes nothing


def test_a_job_in_an_error_state_waits_while_qstat_j_cannot_give_its_reason(tmp_path: Path) -> None:
    runner = FakeRunner(qstat=qstat(("12", "Eqw", "")), qstat_j=ok(stderr="error: commlib error", rc=1), qdel=ok())
    obs = GridEngine(runner=runner, user="u").observe([submitted(tmp_path, "12")], [])
    assert obs.statuses["12"].state is State.ACTIVE and runner.count("qdel") == 0 and "qstat -j failed" in obs.problems[0]


def test_a_job_deleted_before_it_started_is_failed_once_its_record_cannot_still_come(tmp_path: Path) -> None:
    job = submitted(tmp_path, "5")
    engine = GridEngine(runner=FakeRunner(qstat_j=details(("5", "", "")), qdel=ok("root has deleted job 5\n")), user="u")
    engine.cancel([job])
    runner = FakeRunner(qstat=qstat(), qacct=ok(""))
    assert GridEngine(runner=runner, user="u").observe([job], []).statuses["5"].state is State.UNKNOWN  # its record may come
    claim = Path(job.path) / fs.CLAIM
    data = json.loads(claim.read_text())
    data["deleted"]["at"] -= DELETE_GRACE + 1
    claim.write_text(json.dumps(data))
    status = GridEngine(runner=runner, user="u").observe([job], []).statuses["5"]
    assert status.state is State.FAILED and "deleted (qdel) before it started" in status.reason
    # A deleted job that had started has a record: that record is the verdict.
    runner = FakeRunner(qstat=qstat(), qacct=ok(record("5", 137, failed="100 : assumedly after job")))
    assert "signal 9" in GridEngine(runner=runner, user="u").observe([job], []).statuses["5"].reason


def test_qdel_of_a_job_that_has_just_ended_is_not_an_error(tmp_path: Path) -> None:
    runner = FakeRunner(qstat_j=details(), qdel=ok(stderr='denied: job "41" does not exist', rc=1))
    GridEngine(runner=runner, user="u").cancel([submitted(tmp_path, "41")])
    runner = FakeRunner(qstat_j=details(), qdel=ok(stderr="error: commlib error: got select error (Connection refused)", rc=1))
    with pytest.raises(EngineError):
        GridEngine(runner=runner, user="u").cancel([submitted(tmp_path, "41")])


def claim(tmp_path: Path, name: str, token: str, age: float) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / fs.CLAIM).write_text(json.dumps({"token": token, "claimed": time.time() - age}))
    return path


def test_a_claimed_job_is_found_by_its_token_in_qstat_or_in_qacct(tmp_path: Path) -> None:
    queued, ended, lost = (
        claim(tmp_path, "q", "jobroot-q", 5),
        claim(tmp_path, "e", "jobroot-e", 5),
        claim(tmp_path, "l", "jobroot-l", 5),
    )
    runner = FakeRunner(
        qstat=qstat(("7", "qw", ""), ("8", "r", "")),
        qstat_j=details(("7", "jobroot-q", ""), ("8", "someone-else", "")),
        qacct=ok(record("9", 0, "jobroot-e", task="1") + record("9", 0, "jobroot-e", task="2")),
    )
    obs = GridEngine(runner=runner, user="u").observe([], [queued, ended, lost])
    assert dict(obs.found) == {"q": "7", "e": "9.1-2:1"}
    assert obs.unsure == {"l"}  # too recent to rule out
    assert runner.count("qstat") == 2 and runner.count("qacct") == 1
    old = claim(tmp_path, "old", "jobroot-old", 600)
    assert "old" not in GridEngine(runner=runner, user="u").observe([], [old]).unsure  # never submitted: submit it
    failing = FakeRunner(qstat=qstat(), qacct=ok(stderr="error: can't open accounting file", rc=1))
    assert "old" in GridEngine(runner=failing, user="u").observe([], [old]).unsure  # qacct did not answer: rule nothing out


def test_a_claim_is_never_ruled_unsubmitted_while_qstat_j_cannot_show_the_queued_jobs_tokens(tmp_path: Path) -> None:
    # A run killed between qsub and the record leaves a claim; the job it made may be the unrecorded
    # one in qstat, whose token only qstat -j shows. Long past the grace period, still: never submit again.
    old = claim(tmp_path, "old", "jobroot-old", 600)
    failing = ok(
        stderr="error: failed receiving gdi request response for mid=1 (got syncron message receive timeout error).\n", rc=1
    )
    runner = FakeRunner(qstat=qstat(("7", "qw", "")), qstat_j=failing, qacct=ok(record("6", 0, "jobroot-another")))
    obs = GridEngine(runner=runner, user="u").observe([], [old])
    assert obs.unsure == {"old"} and not obs.found
    assert any("qstat -j failed" in p for p in obs.problems)
    answered = FakeRunner(qstat=qstat(("7", "qw", "")), qstat_j=details(("7", "jobroot-old", "")), qacct=ok(record("6")))
    assert dict(GridEngine(runner=answered, user="u").observe([], [old]).found) == {"old": "7"}


def test_a_recorded_id_whose_records_carry_another_token_is_never_judged_by_them(tmp_path: Path) -> None:
    job = submitted(tmp_path, "3", token="jobroot-mine")
    runner = FakeRunner(
        qstat=qstat(("4", "r", "")), qstat_j=details(("4", "jobroot-mine", "")), qacct=ok(record("3", 0, "jobroot-other"))
    )
    obs = GridEngine(runner=runner, user="u").observe([job], [])
    assert obs.statuses["3"].state is State.UNKNOWN
    assert dict(obs.found) == {Path(job.path).name: "4"}


def test_submit_puts_the_token_in_the_account_string_unless_the_job_sets_its_own(tmp_path: Path) -> None:
    runner = FakeRunner(qsub=ok("42\n"))
    job = tmp_path / "a"
    job.mkdir()
    (job / "job.sh").write_text("#!/bin/bash\ntrue\n")
    assert GridEngine(runner=runner, user="u").submit(job) == "42"
    token = json.loads((job / fs.CLAIM).read_text())["token"]
    assert runner.calls[-1] == ["qsub", "-terse", "-cwd", "-A", token, "job.sh"] and token.startswith("jobroot-")
    (job / "job.sh").write_text("#!/bin/bash\n#$ -A lab42\ntrue\n")
    GridEngine(runner=runner, user="u").submit(job)
    assert runner.calls[-1] == ["qsub", "-terse", "-cwd", "job.sh"]


@pytest.mark.parametrize(
    ("stderr", "permanent", "claim_kept"),
    [
        ('Unable to run job: Job was rejected because job requests unknown queue "nope.q"\nExiting.', True, False),
        ("Unable to run job: job rejected: only 1 jobs are allowed per user (current job count: 1)\nExiting.", False, True),
        (
            'Unable to run job: unable to send message to qmaster using port 6444 on host "vm": got send error\nExiting.',
            False,
            True,
        ),
    ],
)
def test_refusals_are_final_or_passing_by_qsubs_words(tmp_path: Path, stderr: str, permanent: bool, claim_kept: bool) -> None:
    job = tmp_path / "a"
    job.mkdir()
    (job / "job.sh").write_text("#!/bin/bash\ntrue\n")
    with pytest.raises(SubmitRefused) as refused:
        GridEngine(runner=FakeRunner(qsub=ok(stderr=stderr, rc=1)), user="u").submit(job)
    assert refused.value.permanent is permanent and "Unable to run job" in str(refused.value)
    assert (job / fs.CLAIM).exists() is claim_kept  # a passing error may follow a job qmaster did create


def test_an_id_printed_means_a_job_was_created_whatever_the_exit_status(tmp_path: Path) -> None:
    job = tmp_path / "a"
    job.mkdir()
    (job / "job.sh").write_text("#!/bin/bash\n#$ -sync y\nexit 3\n")
    assert GridEngine(runner=FakeRunner(qsub=ok("42\n", rc=3)), user="u").submit(job) == "42"


def test_max_queued_counts_every_task_of_the_user(tmp_path: Path) -> None:
    runner = FakeRunner(qstat=qstat(("1", "r", "1"), ("1", "r", "2"), ("1", "qw", "3-10:1"), ("2", "hqw", "")))
    obs = GridEngine(runner=runner, user="u", max_queued=20).observe([], [])
    assert obs.room == 20 - 11


def test_a_recorded_id_that_names_no_job_is_corrected_by_the_token(tmp_path: Path) -> None:
    # qsub's answer cut short ("4" for "42"): job 4 is in neither qstat nor qacct; 42 carries the token.
    job = submitted(tmp_path, "4", token="jobroot-mine")
    runner = FakeRunner(qstat=qstat(("42", "r", "")), qstat_j=details(("42", "jobroot-mine", "")), qacct=ok(""))
    obs = GridEngine(runner=runner, user="u").observe([job], [])
    assert obs.statuses["4"].state is State.UNKNOWN and dict(obs.found) == {Path(job.path).name: "42"}


def test_two_folders_recording_one_id_are_told_apart_by_their_tokens(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    a, b = submitted(tmp_path, "7", token="jobroot-a"), submitted(tmp_path / "b", "7", token="jobroot-b")
    runner = FakeRunner(
        qstat=qstat(("7", "r", ""), ("8", "r", "")), qstat_j=details(("7", "jobroot-a", ""), ("8", "jobroot-b", "")), qacct=ok("")
    )
    obs = GridEngine(runner=runner, user="u").observe([a, b], [])
    assert dict(obs.found) == {Path(b.path).name: "8"}
    assert ["qstat", "-xml", "-j", "7,8"] in runner.calls


def test_an_array_adopted_from_qacct_is_recorded_with_its_whole_range_from_job_sh(tmp_path: Path) -> None:
    # Its tasks' records reach the accounting file in different flushes: two of three have come so far.
    path = claim(tmp_path, "arr", "jobroot-arr", 600)
    (path / "job.sh").write_text("#!/bin/bash\n#$ -t 1-3\ntrue\n")
    runner = FakeRunner(
        qstat=qstat(), qacct=ok(record("9", 0, "jobroot-arr", task="1") + record("9", 0, "jobroot-arr", task="2"))
    )
    assert dict(GridEngine(runner=runner, user="u").observe([], [path]).found) == {"arr": "9.1-3:1"}
    (path / "job.sh").write_text("#!/bin/bash\n#$ -t 2-10:4\ntrue\n")
    assert dict(GridEngine(runner=runner, user="u").observe([], [path]).found) == {"arr": "9.2-10:4"}
    job = submitted(tmp_path, "9.1-3:1", token="jobroot-arr")
    assert GridEngine(runner=runner, user="u").observe([job], []).statuses["9.1-3:1"].state is State.UNKNOWN  # task 3 to come


def test_jobs_share_a_bundle_only_with_the_same_qsub_words_and_the_bundle_asks_for_all_their_time(tmp_path: Path) -> None:
    engine = GridEngine(runner=FakeRunner(), user="u")

    def script(name: str, lines: str) -> Path:
        (tmp_path / name).write_text(f"#!/bin/bash\n{lines}\necho run\n")
        return tmp_path / name

    a = script("a", "#$ -l h_rt=0:10:0,h_vmem=1G\n#$ -q all.q")
    form = engine.bundling(a)
    assert (
        form is not None
        and form.limit == 600
        and form == engine.bundling(script("b", "#$ -l h_rt=0:10:0,h_vmem=1G\n#$ -q all.q"))
    )
    assert engine.bundling(script("c", "#$ -l h_rt=600")) != form
    for alone in ("#$ -t 1-3", "#$ -sync y", "#$ -hold_jid 4", "#$ -l h_rt=ten"):
        assert engine.bundling(script("d", alone)) is None, alone
    assert engine.bundle_header(a, 3) == "#$ -l h_rt=1950,h_vmem=1G\n#$ -q all.q\n#$ -S /bin/bash"  # 3 x 630 s + 60 s
