#!/usr/bin/env python3
"""The mutation catalogue: each core promise broken on purpose, in a copy of the tree, and the test that must catch it.

    python3 tests/mutations.py              # every mutation that needs no cluster (about 4 minutes)
    python3 tests/mutations.py --cluster    # also those caught only on the real Slurm cluster (+ about 10 minutes)
    python3 tests/mutations.py --cluster-only  # only those
    python3 tests/mutations.py --only NAME  # one mutation (a substring of its name)
    python3 tests/mutations.py --list

A mutation is one exact text replacement in one file (the text must occur exactly once). For each,
the tree is copied to a temporary folder, the replacement is made, and the named test is run there:
the mutation is caught when that test fails (pytest exit 1; a copy that does not even import is a
broken mutation, not a catch). Every named test is first run on the unchanged copy and must pass.
The table is printed as markdown; the exit status is 1 when any mutation survives.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent


class Mutation(NamedTuple):
    name: str  # the promise it breaks
    path: str
    old: str
    new: str
    test: str  # the test named for that promise: tests/FILE.py::NAME
    cluster: bool = False  # caught only on the real Slurm cluster


M = Mutation
CATALOGUE = [
    # ---- the folder protocol (jobroot/folders.py)
    M("move overwrites a taken name", "jobroot/folders.py", "        if os.path.lexists(target):\n            continue\n", "",
      "tests/test_fs.py::test_move_never_replaces_an_empty_folder_a_file_or_a_link"),
    M("move raises when the target appears after its check", "jobroot/folders.py",
      "            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):\n                continue\n", "",
      "tests/test_fs.py::test_move_takes_the_next_name_when_the_target_appears_after_the_check"),
    M("settle time ignores subfolders", "jobroot/folders.py", "                    stack.append(entry.path)", "                    pass",
      "tests/test_fs.py::test_settle_time_sees_a_change_deep_in_a_subfolder"),
    M("settle time reads modification times, not change times", "jobroot/folders.py", "newest = max(newest, st.st_ctime)",
      "newest = max(newest, st.st_mtime)", "tests/test_fs.py::test_settle_time_counts_change_times_not_only_modification_times"),
    M("write_atomic does not replace an existing file", "jobroot/folders.py", "        os.replace(tmp, path)", "        os.link(tmp, path)",
      "tests/test_fs.py::test_write_atomic_replaces_whole_and_leaves_no_temp"),
    M("set-aside forgets an earlier run's files", "jobroot/folders.py", "    present = [h for h in names if os.path.lexists(job_dir / h)]",
      "    present = [h for h in names if os.path.lexists(job_dir / h) and h != RECORD]",
      "tests/test_fs.py::test_set_aside_numbers_each_earlier_run"),
    M("inbox order is not byte order", "jobroot/folders.py", 'return sorted((n for n in os.listdir(folder) if not n.startswith(".")), key=os.fsencode)',
      'return sorted((n for n in os.listdir(folder) if not n.startswith(".")), reverse=True)',
      "tests/test_cli.py::test_byte_order_and_batch_limit"),
    # ---- the plan (jobroot/plan.py)
    M("a job not reported is finished", "jobroot/plan.py", "        if status is None or status.state is State.UNKNOWN:",
      "        if status is None:", "tests/test_plan.py::test_a_job_not_reported_is_never_finished"),
    M("a job unreported past the grace period stays quiet", "jobroot/plan.py", "problem=late)", "problem=False)",
      "tests/test_plan.py::test_a_job_unreported_past_the_grace_period_is_a_problem"),
    M("batch limit 0 still launches claimed folders", "jobroot/plan.py", "        if self.batch_limit <= 0:  # 0: collect results only, start nothing\n            return None\n", "",
      "tests/test_plan.py::test_batch_limit_zero_starts_nothing_not_even_a_claimed_folder"),
    M("a claim the engine is unsure about is launched", "jobroot/plan.py", "        if p.name in self.obs.unsure:\n            return None\n", "",
      "tests/test_plan.py::test_a_claim_the_engine_is_unsure_about_is_left_alone"),
    M("submissions past the batch limit", "jobroot/plan.py", "                if room == 0:\n                    break\n", "",
      "tests/test_plan.py::test_inbox_in_given_order_up_to_the_batch_limit"),
    M("the engine's room is ignored", "jobroot/plan.py", "    room = (batch_limit if obs.room is None else min(batch_limit, obs.room)) - starts", "    room = batch_limit - starts",
      "tests/test_plan.py::test_room_left_by_the_engine_limits_submissions"),
    M("breaker counts rejections as failures", "jobroot/plan.py", "e.state not in (\"failed\", \"cancelled\") or (e.state == \"failed\" and e.cause == Cause.OWN)", "True",
      "tests/test_breaker.py::test_rejections_and_cancels_are_not_job_failures"),
    M("breaker reads a cancel as a job that ended well", "jobroot/plan.py",
      "e.state not in (\"failed\", \"cancelled\") or (e.state == \"failed\" and e.cause == Cause.OWN)",
      "e.state != \"failed\" or e.cause == Cause.OWN", "tests/test_breaker.py::test_rejections_and_cancels_are_not_job_failures"),
    M("breaker never opens", "jobroot/plan.py", '    if failures <= 0:\n        return ""', '    if failures <= 10**9:\n        return ""',
      "tests/test_breaker.py::test_breaker_opens_only_when_the_last_n_all_failed_recently"),
    # ---- the sweep (jobroot/sweep.py, jobroot/observe.py)
    M("job_error.txt written after the move to complete/", "jobroot/act.py",
      "        if a.reason:\n            fs.write_atomic(path / fs.ERROR, a.reason.rstrip(\"\\n\") + \"\\n\")\n"
      "        fs.remove_temp_files(path)\n        fs.crash_point(\"error-written\")\n"
      "        dest = fs.move(path, self.root / fs.COMPLETE, a.name)\n",
      "        fs.remove_temp_files(path)\n        fs.crash_point(\"error-written\")\n"
      "        dest = fs.move(path, self.root / fs.COMPLETE, a.name)\n"
      "        if a.reason:\n            fs.write_atomic(dest / fs.ERROR, a.reason.rstrip(\"\\n\") + \"\\n\")\n",
      "tests/test_sweep.py::test_a_folder_never_reaches_complete_without_its_verdict"),
    M("after a transient refusal the run keeps calling sbatch", "jobroot/act.py",
      '                self.refused = True  # "not now": ask no more this run', "                pass",
      "tests/test_sweep.py::test_a_transient_refusal_stops_the_batch"),
    M("an earlier run's record is not set aside", "jobroot/act.py", "        old = fs.set_aside(src)\n", "        old = None\n",
      "tests/test_cli.py::test_a_folder_moved_back_from_complete_is_a_fresh_job"),
    M("the run lock is not taken", "jobroot/sweep.py", "            lock.acquire()", "            pass",
      "tests/test_cli.py::test_a_run_while_another_holds_the_lock_changes_nothing"),
    M("a cancel file is ignored", "jobroot/observe.py", "        cancel = os.path.lexists(f\"{path}/{fs.CANCEL}\")", "        cancel = False",
      "tests/test_steer.py::test_cancel_a_running_local_job"),
    M("modification times hold a folder back", "jobroot/folders.py", "                newest = max(newest, st.st_ctime)\n",
      "                newest = max(newest, st.st_ctime, st.st_mtime)\n",
      "tests/test_uploads.py::test_modification_times_in_the_future_never_hold_a_folder_back"),
    M("a change time in the future waits silently", "jobroot/observe.py", "            return InboxFolder(name, Verdict.SKEWED, skewed(newest - now))",
      '            return InboxFolder(name, Verdict.WAIT, "still changing")',
      "tests/test_uploads.py::test_a_change_time_in_the_future_is_reported_with_its_skew_never_a_silent_wait"),
    M("a hold file is ignored", "jobroot/observe.py", "    if os.path.lexists(path / fs.HOLD):", "    if False:",
      "tests/test_steer.py::test_hold_keeps_a_folder_waiting_until_removed"),
    M("the settle time is ignored", "jobroot/observe.py", "        if newest > now - settle:",
      "        if False:", "tests/test_uploads.py::test_a_slow_upload_is_submitted_only_once_settled"),
    M("the owner's private group is refused", "jobroot/observe.py", "and not _private_group(script.st_gid, me)", "",
      "tests/test_hostile.py::test_a_script_writable_by_the_owners_private_group_is_accepted"),
    M("a world-writable job.sh runs", "jobroot/observe.py", "    if script.st_mode & stat.S_IWOTH:", "    if False:",
      "tests/test_hostile.py::test_hostile_catalogue"),
    # ---- the command line and layout
    M("the core imports an engine", "jobroot/plan.py", "from jobroot.engine import Bundling, Ending, Observation, State, Status\n",
      "from jobroot.engine import Bundling, Ending, Observation, State, Status\nimport jobroot.engines.local  # noqa\n",
      "tests/test_layout.py::test_the_core_never_imports_an_engine_and_engines_import_only_the_core"),
    M("an idle run loads every engine", "jobroot/cli.py", "    core = _parser(engines=False)\n", "    core = _parser(engines=True)\n", "tests/test_layout.py::test_an_idle_run_imports_no_engine"),
    M("the core-only parser acts before an unknown option is judged", "jobroot/cli.py",
      '    if all(not a.startswith("--") or a.split("=", 1)[0] in known for a in args_list):', "    if True:",
      "tests/test_layout.py::test_the_core_only_parser_never_decides_what_the_full_parser_would_refuse"),
    M("an engine option is passed to another engine", "jobroot/config.py",
      "        if any(name not in DEFAULTS for name in given):", "        if False:",
      "tests/test_layout.py::test_an_engine_option_given_to_another_engine_records_nothing"),
    # ---- the local engine
    M("an unreadable job_exit.json counts as success", "engines/local.py", "        return 255, 0  #", "        return 0, 0  #",
      "tests/test_local.py::test_an_unreadable_exit_record_is_a_failure"),
    M("a lost local job counts as done", "engines/local.py",
      '                State.FAILED, f"{_LOST} its processes', '                State.DONE, f"{_LOST} its processes',
      "tests/test_local.py::test_a_job_whose_processes_all_died_without_a_record_is_lost"),
    M("a launch under way is not unsure", "engines/local.py", "                unsure.add(path.name)", "                pass",
      "tests/test_local.py::test_a_claim_whose_lock_is_held_before_its_id_is_written_is_unsure"),
    M("a second launch of a folder runs it again", "engines/local.py",
      '                raise SubmitUnknown("this folder\'s job is already running") from None', "                pass",
      "tests/test_local.py::test_a_second_launch_of_a_running_or_finished_folder_is_refused"),
    # ---- commands (engines/_process.py)
    M("sbatch does not die with a killed reconciler", "engines/_process.py", "            preexec_fn=_death_signal(),",
      "            preexec_fn=None,", "tests/test_process.py::test_a_command_dies_with_a_killed_reconciler"),
    # ---- Slurm's words (engines/_slurmparse.py)
    M("a job squeue shows with one part completed and another failed is done", "engines/_slurmparse.py",
      "        if all(r.word in SUCCESS for r in queued) and not (array and accounting):",
      "        if any(r.word in SUCCESS for r in queued) and not (array and accounting):",
      "tests/test_slurm_parse.py::test_a_job_squeue_shows_with_one_part_completed_and_another_failed_is_not_done"),
    M("an array with a task the infrastructure ended is submitted again whole", "engines/_slurmparse.py",
      '    ending = Ending.CANCELLED if all(r.word == "CANCELLED" for r in failed) else Ending.FAILED',
      '    ending = Ending.LOST if any(r.word in LOST for r in failed) else Ending.FAILED',
      "tests/test_slurm_parse.py::test_an_array_with_a_task_the_infrastructure_ended_is_never_lost_whole"),
    M("an sbatch that cannot be run fails the job for good", "engines/_batch.py",
      "(PATH is {path!r})\", permanent=False,", "(PATH is {path!r})\", permanent=True,",
      "tests/test_cli.py::test_an_sbatch_that_cannot_be_run_keeps_the_folder_waiting_with_one_problem_a_run"),
    M("an sbatch that cannot be run is said only in the log", "jobroot/act.py",
      "                if e.unrunnable:  # the setup needs mending", "                if False:  # the setup needs mending",
      "tests/test_cli.py::test_an_sbatch_that_cannot_be_run_keeps_the_folder_waiting_with_one_problem_a_run"),
    M("sacct row start not anchored on the separator", "engines/_slurmparse.py", '%,:.\\-]*)?" + SEP)', '%,:.\\-]*)?")',
      "tests/test_slurm_parse.py::test_a_folder_name_line_starting_with_digits_continues_its_row"),
    M("an array's remainder row (with `:`) glued to the row before", "engines/_slurmparse.py", '[\\d\\[\\]%,:.\\-]', '[\\d\\[\\]%,.\\-]',
      "tests/test_slurm_parse.py::test_an_arrays_unstarted_remainder_is_a_row_of_its_own_and_counts_every_task"),
    M("an array done from squeue alone", "engines/_slurmparse.py", " and not (array and accounting):", ":",
      "tests/test_slurm_parse.py::test_an_array_is_never_done_from_squeue_alone"),
    M("a remainder row counted as one task", "engines/_slurmparse.py", "        total, bad = sum(_tasks(r, listed) for r in final), sum(_tasks(r, listed) for r in failed)",
      "        total, bad = len(final), len(failed)",
      "tests/test_slurm_parse.py::test_an_arrays_unstarted_remainder_is_a_row_of_its_own_and_counts_every_task"),
    M("a remainder shown by its bare id counted as one task", "engines/_slurmparse.py", '    return array and "_" not in row.job_id',
      "    return False", "tests/test_slurm_parse.py::test_a_remainder_shown_by_its_bare_id_is_tasks_that_never_started_not_one_task"),
    M("squeue's bare remainder row waited on after sacct listed it", "engines/_slurmparse.py", "        accounted_ids.add(job_id)  #", "        pass  #",
      "tests/test_slurm_parse.py::test_squeues_bare_remainder_row_is_the_one_sacct_lists_with_its_tasks"),
    M("a state this code does not know is an ending", "engines/_slurmparse.py", "    return word not in SUCCESS and word not in FAILURE",
      "    return word in ACTIVE", "tests/test_slurm_engine.py::test_a_state_this_code_does_not_know_is_active_and_logged_never_an_ending"),
    M("Slurm's times read in this machine's zone", "engines/_slurmparse.py", "datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc).timestamp()",
      "datetime.fromisoformat(text.strip()).timestamp()", "tests/test_slurm_engine.py::test_times_are_read_as_utc"),
    M("a passing refusal judged by the final table first", "engines/_batch.py",
      "    if any(words in reason for words in passing):\n        return Refusal.PASSING\n", "",
      "tests/test_gridengine_parse.py::test_qsub_refusals_are_judged_by_the_reason_qsub_gives"),
    M("a refusal judged by its generic line", "engines/_slurmparse.py", "                return before\n", "                return line\n",
      "tests/test_slurm_engine.py::test_refusals_are_judged_by_the_reason_slurm_gives"),
    M("a job nobody reports is done", "engines/_slurmparse.py", "    if not final:\n        return Status(State.UNKNOWN)",
      "    if not final:\n        return Status(State.DONE)", "tests/test_slurm_parse.py::test_a_job_nobody_reports_is_unknown_never_done"),
    M("a final state without an end time is final", "engines/_slurmparse.py",
      "if r.word in SUCCESS | FAILURE and r.end is not None]", "if r.word in SUCCESS | FAILURE]",
      "tests/test_slurm_parse.py::test_a_final_state_without_an_end_time_is_not_final_yet"),
    M("a lost answer from sbatch is a permanent refusal", "engines/_slurmparse.py", '    "socket timed out",\n', "",
      "tests/test_slurm_parse.py::test_sbatch_ids_and_refusals"),
    M("--lookback DATE parsed and then ignored", "jobroot/config.py", "        return parser.parse(text).timestamp()",
      "        parser.parse(text)\n        return now - 7 * 86400", "tests/test_slurm_engine.py::test_lookback_bounds_the_sacct_window"),
    # ---- the Slurm engine (engines/slurm.py)
    M("a failed sacct read as an empty answer", "engines/slurm.py",
      '                answer.problems.append(f"sacct failed; jobs that left the queue wait for it: {e}")\n            return None',
      "                answer.problems.append(f\"sacct failed; jobs that left the queue wait for it: {e}\")\n            return []", "tests/test_slurm_engine.py::test_a_failed_sacct_never_lets_a_claim_be_submitted_again"),
    M("the sacct window starts at the newest submission", "engines/slurm.py", "start = max(min(since) - 300,", "start = max(max(since) - 300,",
      "tests/test_slurm_engine.py::test_the_sacct_window_starts_before_the_oldest_submission"),
    M("--lookback does not bound the window", "engines/slurm.py", "start = max(min(since) - 300, parse_lookback(self.lookback, now))",
      "start = min(since) - 300", "tests/test_slurm_engine.py::test_lookback_bounds_the_sacct_window"),
    M("a failed scancel ignored", "engines/slurm.py", "        if failed:\n            raise failed\n", "", "tests/test_slurm_engine.py::test_a_failed_scancel_is_an_error"),
    M("a recorded id of another job is trusted", "engines/slurm.py", "    if not job.token:\n        return False",
      "    if True:\n        return False", "tests/test_slurm_engine.py::test_a_recorded_id_that_is_another_jobs_is_never_used_and_the_right_one_is_found"),
    M("one sacct per ended job", "engines/slurm.py", "        if not argv or not (need_sacct or searching):\n            return None\n",
      "        if not argv or not (need_sacct or searching):\n            return None\n        for _ in need_sacct[1:]:\n            self._query(argv, False, cluster)\n",
      "tests/test_slurm_engine.py::test_one_squeue_and_one_sacct_however_many_have_ended"),
    M("the sweep's environment steers Slurm", "engines/_slurmenv.py", "if k in _KEPT or not k.startswith(_DROPPED)}", "}",
      "tests/test_slurm_engine.py::test_slurm_commands_run_with_an_environment_the_reconciler_controls"),
    M("a site default overrides the job's own line", "engines/slurm.py", "if not user_sets(lines, d[2:].split(\"=\", 1)[0])]", "]",
      "tests/test_slurm_engine.py::test_site_defaults_apply_only_where_job_sh_does_not_set_the_option"),
    M("an error on stderr with exit 0 read as no rows", "engines/slurm.py", '        if re.search(r"^\\S+: error:", result.stderr, re.MULTILINE):',
      "        if False:", "tests/test_slurm_engine.py::test_an_error_on_stderr_with_exit_0_is_a_failed_query"),
    M("recorded jobs searched by a time window (held jobs never found)", "engines/slurm.py", "        if not searching and len(ids) < MAX_ID_LIST:\n", "        if False:\n",
      "tests/test_slurm_engine.py::test_one_squeue_and_one_sacct_however_many_have_ended"),
    M("an unrecognised refusal retried forever", "engines/_batch.py", "        if len(refusals) < REFUSAL_TRIES:", "        if True:",
      "tests/test_slurm_engine.py::test_an_unrecognised_refusal_is_tried_a_bounded_number_of_times_then_final_with_every_attempts_words"),
    M("sbatch --wait's job status read as a refusal", "engines/_batch.py", "    job_id = read_id(result.stdout)\n",
      "    job_id = read_id(result.stdout) if result.returncode == 0 else None\n",
      "tests/test_slurm_engine.py::test_sbatch_wait_never_turns_a_job_that_ran_into_a_refusal"),
    M("an adopted job recorded with the time of adoption", "engines/slurm.py", "            answer.adopt(path.name, match.job_id, match.submitted or claim[1])",
      "            answer.adopt(path.name, match.job_id, now)", "tests/test_slurm_engine.py::test_an_adopted_job_is_recorded_with_slurms_own_submit_time"),
    M("rows of an older job with a reused id taken for this one", "engines/slurm.py", "if r.submit is None or r.submit >= old]", "]",
      "tests/test_slurm_engine.py::test_rows_of_an_older_job_with_a_reused_id_are_not_this_jobs"),
    M("the cluster dropped from sbatch's answer", "engines/_slurmparse.py", r'm = re.match(r"\s*(\d+(?:;[\w.-]+)?)\s*$", stdout)',
      r'm = re.match(r"\s*(\d+)(?:;[\w.-]+)?\s*$", stdout)',
      "tests/test_slurm_engine.py::test_a_job_for_another_cluster_is_recorded_with_it_and_its_claim_says_where"),
    M("another cluster's job looked for on this host's", "engines/slurm.py", 'f"--clusters={cluster}" if cluster else "--federation"', '"--federation"',
      "tests/test_slurm_engine.py::test_the_same_id_on_two_clusters_is_two_jobs_each_judged_by_its_own_cluster"),
    M("a claim on a cluster that cannot be asked is submitted again", "engines/slurm.py",
      "                part = Observation(unsure=frozenset(p.name for p in claims), room=0, problems=(why,))",
      "                part = Observation(room=0, problems=(why,))",
      "tests/test_slurm_engine.py::test_a_cluster_that_cannot_be_asked_holds_its_own_jobs_and_the_room_only"),
    M("--max-queued counts one cluster's jobs", "engines/slurm.py", "        used += 0 if limit is None else limit - (obs.room or 0)",
      "        used = 0 if limit is None else limit - (obs.room or 0)",
      "tests/test_slurm_engine.py::test_max_queued_counts_the_jobs_of_every_cluster_asked"),
    M("scancel sent to this host's cluster", "engines/slurm.py", '"scancel", *([f"--clusters={cluster}"] if cluster else [])', '"scancel"',
      "tests/test_slurm_engine.py::test_scancel_goes_to_each_jobs_cluster"),
    M("a site default cluster matched to job.sh by its spelling only", "engines/slurm.py",
      "        self.defaults = [full_name(w) for w in shlex.split(sbatch_defaults)]", "        self.defaults = shlex.split(sbatch_defaults)",
      "tests/test_slurm_engine.py::test_a_site_default_cluster_never_overrides_the_jobs_own"),
    M("cluster names read in the case given", "engines/slurm.py", '        where = (option_value(lines, "clusters") or self.default_where).lower()',
      '        where = option_value(lines, "clusters") or self.default_where',
      "tests/test_slurm_engine.py::test_cluster_names_are_read_as_slurm_reads_them_in_any_case"),
    M("--max-queued counted on this host's cluster when jobs go elsewhere", "engines/slurm.py",
      '            for cluster in self.default_where.split(","):', '            for cluster in [""]:',
      "tests/test_slurm_engine.py::test_max_queued_is_counted_where_new_jobs_go"),
    M("a chain across clusters handed to Slurm", "engines/slurm.py", "        if elsewhere:", "        if False:",
      "tests/test_slurm_engine.py::test_a_chain_is_handed_to_slurm_only_within_one_cluster"),
    M("#SBATCH lines after the first command read", "engines/_batch.py", "            break\n",
      "            continue\n", "tests/test_slurm_engine.py::test_an_sbatch_line_after_the_first_command_is_not_read_as_sbatch_does_not"),
    M("sacct by id looks at every user's jobs", "engines/slurm.py", '            f"--user={self.user}",\n', "",
      "tests/test_slurm_engine.py::test_sacct_by_id_asks_only_for_this_users_jobs_and_only_when_there_is_an_id"),
    M("a recorded id that names no job is never searched for", "engines/slurm.py",
      "            if not window and _named_no_job(need_sacct, by_base, accounted):", "            if False:",
      "tests/test_slurm_engine.py::test_a_recorded_id_that_names_no_job_is_searched_for_by_its_token"),
    M("sbatch's retry notice taken for the reason", "engines/_slurmparse.py", ' and not line.strip().endswith("retrying")]', "]",
      "tests/test_slurm_engine.py::test_refusals_are_judged_by_the_reason_slurm_gives"),
    M("a job's own option seen only first on its line", "engines/_batch.py", "            words += shlex.split(line[len(prefix) :], comments=True)\n", "            words += shlex.split(line[len(prefix) :], comments=True)[:1]\n",
      "tests/test_slurm_engine.py::test_a_jobs_own_option_is_seen_in_every_spelling_sbatch_reads"),
    # ---- chains and retries (jobroot/chains.py, jobroot/plan.py, jobroot/sweep.py)
    M("a failed upstream is ignored", "jobroot/plan.py", "            if up.failed:", "            if False:",
      "tests/test_chains.py::test_a_failed_link_fails_the_rest_fast_naming_it_and_retry_failed_runs_them_again"),
    M("a cycle of after files is not seen", "jobroot/chains.py", "    return tuple(path) if walk(first) else ()", "    return ()",
      "tests/test_chains.py::test_a_cycle_never_runs_and_names_its_members"),
    M("a reused name means its first ending, not its latest", "jobroot/chains.py", "        if newest is None or when >= newest[0]:",
      "        if newest is None:", "tests/test_chains.py::test_a_reused_name_means_its_latest_drop"),
    M("a chain handed to the engine for an upstream not active", "jobroot/plan.py",
      "            if in_engine and status is not None and status.state is State.ACTIVE:", "            if in_engine:",
      "tests/test_chains.py::test_the_plan_hands_a_chain_to_an_engine_that_takes_it_and_waits_otherwise"),
    M("the job's own failure retried", "jobroot/plan.py", "        if status.lost and not p.cancel and len(earlier) < self.retries and not chain.failed:",
      "        if not p.cancel and len(earlier) < self.retries and not chain.failed:",
      "tests/test_retries.py::test_never_for_the_jobs_own_exit_or_a_cancel_and_never_without_retries"),
    M("a retry sets the attempt count aside with the helper files", "jobroot/act.py",
      "        old = fs.set_aside(path, fs.HELPERS)", "        old = fs.set_aside(path)",
      "tests/test_retries.py::test_the_last_attempt_lists_every_attempt_and_why_it_ended"),
    M("an attempt noted twice by a run killed after noting it", "jobroot/folders.py",
      "    if attempt.job_id not in {a.job_id for a in attempts}:", "    if True:",
      "tests/test_retries.py::test_an_attempt_noted_again_is_the_same_attempt"),
    M("status.html does not escape names", "jobroot/page.py", """            f'<tr><td class="name">{escape(name)}</td>'""",
      """            f'<tr><td class="name">{name}</td>'""",
      "tests/test_page.py::test_every_name_and_reason_is_escaped_and_the_page_needs_nothing_beside_it"),
    M("an unstarted link's error does not name the upstream that failed", "jobroot/plan.py",
      "        elif chain.failed and (status.lost or (self.dependencies and status.ending is Ending.CANCELLED)):", "        elif False:",
      "tests/test_chains.py::test_a_link_the_batch_system_ended_unstarted_names_the_upstream_that_failed_first"),
    M("a claimed link is started though its upstream failed", "jobroot/plan.py",
      '        if up.failed:\n            return Finish(p.name, f"{NOT_RUN} {up.failed}", cause=Cause.UPSTREAM)\n', "",
      "tests/test_chains.py::test_a_claimed_link_is_started_handed_on_failed_or_left_waiting_by_the_same_rule"),
    M("a claimed link is started before its upstream has ended", "jobroot/plan.py",
      "        if up.waits:\n            return Note(", "        if False:\n            return Note(",
      "tests/test_chains.py::test_a_claimed_link_is_started_handed_on_failed_or_left_waiting_by_the_same_rule"),
    M("a link cancelled for a lost upstream does not name it", "jobroot/plan.py",
      "        elif chain.lost and self.dependencies and status.ending is Ending.CANCELLED:", "        elif False:",
      "tests/test_chains.py::test_a_link_cancelled_because_the_job_before_it_was_lost_says_so"),
    M("a lost link waiting for its chain is held in silence", "jobroot/plan.py",
      "            if chain.waits:\n                return Note(", "            if chain.waits:\n                return None\n                return Note(",
      "tests/test_chains.py::test_a_lost_link_waits_to_run_again_until_the_job_before_it_has_ended_well_and_says_so"),
    M("a link submitted without the id of a job it waits for", "jobroot/act.py", "        if not all(after):", "        if False:",
      "tests/test_sweep.py::test_a_link_whose_upstream_got_no_id_this_run_is_not_submitted_without_it"),
    M("a retry ignores the run's start limits", "jobroot/plan.py",
      "            if starts >= self.batch_limit or (self.obs.room is not None and starts >= self.obs.room):", "            if False:",
      "tests/test_retries.py::test_a_retry_is_a_start_within_the_runs_limits"),
    M("a job the infrastructure ended fails its chain though it may run again", "jobroot/plan.py",
      "            if status is not None and status.state is State.FAILED and not status.lost:",
      "            if status is not None and status.state is State.FAILED:",
      "tests/test_chains.py::test_a_link_waits_while_the_job_before_it_may_be_run_again"),
    # ---- Grid Engine (engines/_gridparse.py, engines/gridengine.py)
    M("a job found in neither qstat nor qacct is done", "engines/_gridparse.py", "    if not records:\n        return Status(State.UNKNOWN)",
      "    if not records:\n        return Status(State.DONE)", "tests/test_gridengine_parse.py::test_nothing_reported_is_never_done"),
    M("an array judged before every task has a record", "engines/_gridparse.py", "    if {int(r.task) for r in records if r.task.isdigit()} < wanted:",
      "    if False:", "tests/test_gridengine_parse.py::test_an_array_is_judged_once_every_task_qsub_named_has_a_record"),
    M("a qacct record cut short read as a verdict", "engines/_gridparse.py", ' or list(fields)[-1] == "exit_status":', ":",
      "tests/test_gridengine_parse.py::test_a_qacct_record_cut_short_is_an_error_not_a_verdict"),
    M("qstat -j's communication error read as no jobs", "engines/_gridparse.py", '    if root.tag == "comunication_error":', "    if False:",
      "tests/test_gridengine_parse.py::test_qstat_j_that_could_not_reach_qmaster_is_an_error_though_it_exits_0"),
    M("exit 130 read as a signal", "engines/_gridparse.py", "    if record.failed == 0:\n", "    if record.failed == 0 and record.exit_status <= 128:\n",
      "tests/test_gridengine_parse.py::test_qacct_records_in_grid_engines_words"),
    M("an Eqw job's reason remembered only after qdel", "engines/gridengine.py",
      "        for job in ours:\n            note_deleted(Path(job.path), now, why)\n        if ours:\n            self._qdel([base_id(j.job_id) for j in ours])\n",
      "        if ours:\n            self._qdel([base_id(j.job_id) for j in ours])\n        for job in ours:\n            note_deleted(Path(job.path), now, why)\n",
      "tests/test_gridengine_engine.py::test_a_job_in_an_error_state_is_failed_in_grid_engines_words_and_deleted_with_its_reason_noted_first"),
    M("an array adopted from qacct with only the tasks recorded so far", "engines/gridengine.py",
      "    if match.workdir or \".\" not in match.job_id:", "    if True:",
      "tests/test_gridengine_engine.py::test_an_array_adopted_from_qacct_is_recorded_with_its_whole_range_from_job_sh"),
    M("a garbled id deletes another folder's job", "engines/gridengine.py", "        ours = [j for j in jobs if j not in others]",
      "        ours = list(jobs)", "tests/test_gridengine_engine.py::test_a_garbled_id_never_deletes_another_job_nor_takes_its_verdict"),
    M("a stuck job's folder moves while the batch system still holds it", "jobroot/act.py",
      "        if a.end is not None:", "        if False:", "tests/test_gridengine_cell.py::test_outcomes_in_grid_engines_own_words", True),
    M("a deleted job with no record failed at once (its record may still come)", "engines/gridengine.py",
      "    if now - when < DELETE_GRACE:", "    if False:",
      "tests/test_gridengine_engine.py::test_a_job_deleted_before_it_started_is_failed_once_its_record_cannot_still_come"),
    M("another job's qacct records judge a folder", "engines/gridengine.py", "    return recent and (not job.token or record.account == job.token)",
      "    return recent", "tests/test_gridengine_engine.py::test_a_recorded_id_whose_records_carry_another_token_is_never_judged_by_them"),
    M("a claim given up while qacct did not answer", "engines/gridengine.py", "        if seen.records is None or (seen.strangers and not seen.details) or",
      "        if", "tests/test_gridengine_engine.py::test_a_claimed_job_is_found_by_its_token_in_qstat_or_in_qacct"),
    M("a job Grid Engine could not start (failed 26-28, exit_status 0) is done", "engines/_gridparse.py",
      "    failed = [r for r in records if r.failed or r.exit_status]", "    failed = [r for r in records if r.exit_status]",
      "tests/test_gridengine_parse.py::test_a_job_grid_engine_could_not_start_is_a_failure_though_its_exit_status_is_0"),
    M("a claim given up while qstat -j could not show the queued jobs' tokens", "engines/gridengine.py",
      " or (seen.strangers and not seen.details) or ", " or ",
      "tests/test_gridengine_engine.py::test_a_claim_is_never_ruled_unsubmitted_while_qstat_j_cannot_show_the_queued_jobs_tokens"),
    M("qdel of a job that just ended is an error", "engines/_gridparse.py", '    harmless = ("does not exist", ', "    harmless = (",
      "tests/test_gridengine_engine.py::test_qdel_of_a_job_that_has_just_ended_is_not_an_error"),
    # ---- the first hour (jobroot/cli.py, jobroot/sweep.py)
    M("--retry-failed --dry-run moves the folders", "jobroot/sweep.py", "    if dry_run:\n        failed = [",
      "    if False:\n        failed = [", "tests/test_cli.py::test_a_dry_run_changes_nothing_whatever_it_is_given"),
    M("-s --dry-run sets the root up", "jobroot/cli.py", "        if args.dry_run and args.setup:", "        if False:",
      "tests/test_cli.py::test_a_dry_run_changes_nothing_whatever_it_is_given"),
    M("a watch period below the engine's floor accepted", "jobroot/cli.py", "        if args.period < floor:", "        if False:",
      "tests/test_cli.py::test_a_watch_period_below_the_engines_floor_is_refused_with_the_reason"),
    M("a root that cannot be written gives a traceback", "jobroot/sweep.py", "        except OSError as e:\n            raise UsageError(",
      "        except ValueError as e:\n            raise UsageError(", "tests/test_fs_faults.py::test_a_root_that_cannot_be_written_is_one_line_naming_it"),
    M("-s on a root that cannot be written names a temporary file", "jobroot/config.py",
      "        raise OSError(e.errno, e.strerror, str(root / fs.CONFIG)) from None", "        raise",
      "tests/test_fs_faults.py::test_a_root_that_cannot_be_written_is_one_line_naming_it"),
    M("a cancelled job shown as failed", "jobroot/act.py", "        phase = Phase.CANCELLED if a.cause is Cause.CANCELLED else Phase.FAILED",
      "        phase = Phase.FAILED", "tests/test_cli.py::test_a_cancelled_job_is_cancelled_everywhere_and_retried_only_when_named"),
    M("--retry-failed runs a cancelled job again", "jobroot/sweep.py", "        return name in named if named else not st.cancelled(path)",
      "        return name in named if named else True",
      "tests/test_cli.py::test_a_cancelled_job_is_cancelled_everywhere_and_retried_only_when_named"),
    M("a cancel's verdict not kept as a cancel", "jobroot/act.py", "        if a.cause is Cause.CANCELLED:\n            fs.write_atomic(",
      "        if False:\n            fs.write_atomic(", "tests/test_cli.py::test_a_cancelled_job_is_cancelled_everywhere_and_retried_only_when_named"),
    M("-s without -e sets the root up for the local engine", "jobroot/config.py",
      '        if "engine" not in given and "engine" not in load_config(root):', "        if False:",
      "tests/test_cli.py::test_setup_without_an_engine_takes_the_batch_system_this_machine_has"),
    M("--status silent when sweeps have stopped", "jobroot/cli.py", "    if last and now - last > STALE and not fs.idle(root):",
      "    if False:", "tests/test_cli.py::test_status_says_when_the_last_sweep_ran_and_warns_when_sweeps_have_stopped"),
    M("a folder with a misnamed script waits in silence", "jobroot/observe.py", "Verdict.WAIT, no_script(path), Waiting.NO_SCRIPT)",
      'Verdict.WAIT, "no job.sh yet", Waiting.NO_SCRIPT)', "tests/test_cli.py::test_a_folder_without_job_sh_says_what_it_holds_instead"),
    # ---- bundles (jobroot/bundle.py, jobroot/packing.py, jobroot/act.py)
    M("a bundle's runner starts a member again (a copy replaces, a link never does)", "jobroot/bundle.py",
      '  if ! ln "$tmp" "$dir/{started}" 2>/dev/null; then', '  if ! cp -f "$tmp" "$dir/{started}" 2>/dev/null; then',
      "tests/test_bundles.py::test_a_requeued_or_restarted_runner_never_starts_a_member_twice"),
    M("a bundle's runner starts a folder given to another bundle", "jobroot/bundle.py",
      '  grep -qF "\\"bundle\\": \\"$bundle\\"" "$dir/{note}" 2>/dev/null || continue', "  true",
      "tests/test_bundles.py::test_a_requeued_or_restarted_runner_never_starts_a_member_twice"),
    M("a member is held to the bundle's time, not its own", "jobroot/bundle.py", 'exec timeout --kill-after=30 "$limit"',
      "exec timeout --kill-after=30 0", "tests/test_bundles.py::test_each_member_is_held_to_its_own_time_limit"),
    M("a member its bundle never started is failed", "jobroot/packing.py",
      '        return Unbundle("", f"its bundle job {record.job_id} ended before it started it; it runs in a later one")',
      '        return Status(State.FAILED, "never started")',
      "tests/test_bundle_plan.py::test_a_member_its_bundle_never_started_waits_again_never_failed_nor_an_attempt"),
    M("a member judged while its bundle is not reported", "jobroot/packing.py",
      "    if record is None or status is None or status.state in (State.UNKNOWN, State.ACTIVE):",
      "    if record is None or status is None or status.state in (State.ACTIVE,):",
      "tests/test_bundle_plan.py::test_a_member_is_never_called_done_while_its_bundle_is_not_known_to_have_ended"),
    M("a member waits for its whole bundle before its verdict", "jobroot/packing.py", "    if seen.ended is not None:\n        failure",
      "    if seen.ended is not None and status is not None and status.state is not State.ACTIVE:\n        failure",
      "tests/test_bundles.py::test_a_member_has_its_verdict_while_the_rest_of_its_bundle_runs"),
    M("folders with other directives share a bundle", "jobroot/packing.py", "        cap = min(self.size, bundling.most or self.size)\n",
      '        cap = min(self.size, bundling.most or self.size)\n        bundling = bundling._replace(key="")\n',
      "tests/test_bundle_plan.py::test_waiting_folders_are_packed_in_name_order_by_their_directives"),
    M("a bundle's folder removed while a member still waits on it", "jobroot/plan.py",
      "        if status is not None and status.state in (State.DONE, State.FAILED) and not members:",
      "        if status is not None and status.state in (State.DONE, State.FAILED):",
      "tests/test_bundle_plan.py::test_a_member_its_bundle_never_started_waits_again_never_failed_nor_an_attempt"),
    M("a bundle refused for good fails its members", "jobroot/act.py", "            if e.permanent and members:", "            if False:",
      "tests/test_bundles.py::test_a_bundle_refused_for_good_is_split_never_its_members_failure"),
    M("a cancel in a member not yet started is left to the runner", "jobroot/packing.py", "    if cancel and not seen.started:",
      "    if False:", "tests/test_bundles.py::test_a_cancel_before_a_member_starts_and_one_while_it_runs"),
    M("a bundle asks for one member's time", "engines/_batch.py", "(limit + KILL_AFTER) * members + BUNDLE_SLACK", "limit + BUNDLE_SLACK",
      "tests/test_slurm_engine.py::test_jobs_share_a_bundle_only_with_the_same_sbatch_words_and_the_bundle_asks_for_all_their_time"),
    M("a member judged by what the sweep saw before its bundle ended", "jobroot/sweep.py",
      "        if p.member.member.bundle in ended:", "        if False:",
      "tests/test_bundles.py::test_the_sweep_that_bundles_shows_the_members_and_a_stale_look_is_taken_again"),
    M("a bundle's runner told its members' paths as the sweep was given them (relative)", "jobroot/act.py",
      "Path(os.path.abspath(self.root / fs.PENDING / m))", "self.root / fs.PENDING / m",
      "tests/test_bundles.py::test_a_relative_root_and_undecodable_names_are_bundled_and_run_once"),
    M("a folder name that is not UTF-8 stops the sweep", "jobroot/folders.py", 'encoding="utf-8", errors="surrogateescape"',
      'encoding="utf-8"', "tests/test_bundles.py::test_a_relative_root_and_undecodable_names_are_bundled_and_run_once"),
    M("the sweep that bundles folders shows them nowhere", "jobroot/sweep.py", "    for name, seen in work.noted.items():",
      "    for name, seen in {}.items():",
      "tests/test_bundles.py::test_the_sweep_that_bundles_shows_the_members_and_a_stale_look_is_taken_again"),
    M("a bundle that started none of its folders sends them round for ever", "jobroot/packing.py", "    if not seen.started and idle:",
      "    if False:", "tests/test_bundle_plan.py::test_a_bundle_that_started_none_of_its_folders_sends_them_alone_and_says_so"),
    M("a bundle held for ever is left in the queue", "jobroot/plan.py", "Forget(b.name, b.record if status.stuck else None)",
      "Forget(b.name)", "tests/test_bundle_plan.py::test_a_bundle_the_batch_system_holds_but_never_starts_is_ended_before_its_folder_goes"),
    M("a member moved back though its runner has just started it", "jobroot/act.py", '        if not bundle.take(path, "returned"):',
      "        if False:", "tests/test_bundles.py::test_a_member_its_runner_started_after_the_sweep_looked_is_never_moved_back"),
    # ---- caught on the real Slurm cluster
    M("the sacct window starts after the oldest submission", "engines/slurm.py", "start = max(min(since) - 300,",
      "start = max(min(since) + 300,", "tests/test_slurm_engine.py::test_the_sacct_window_starts_before_the_oldest_submission"),
    M("a job on another cluster followed on this host's", "engines/slurm.py", 'f"--clusters={cluster}" if cluster else "--federation"',
      '"--federation"', "tests/test_slurm_clusters.py::test_a_job_on_another_cluster_is_followed_there_to_its_end", cluster=True),
    M("a job a federation's sibling runs looked for on this cluster only", "engines/slurm.py",
      'argv = [argv[0], f"--clusters={cluster}" if cluster else "--federation", *argv[1:]]',
      'argv = [argv[0], *([f"--clusters={cluster}"] if cluster else []), *argv[1:]]',
      "tests/test_slurm_clusters.py::test_a_job_a_federation_sibling_runs_is_judged_by_the_siblings_record", cluster=True),
    M("cancel without scancel", "engines/slurm.py",
      '            result = self.run(["scancel", *([f"--clusters={cluster}"] if cluster else []), *ids], self.timeout, None, self.env)',
      "            continue", "tests/test_slurm_cluster.py::test_a_cancel_file_cancels_the_slurm_job", cluster=True),
    M("an array is done when one task is", "engines/_slurmparse.py", "    failed = [r for r in final if r.word not in SUCCESS]",
      "    failed = [r for r in final[:1] if r.word not in SUCCESS]", "tests/test_slurm_cluster.py::test_outcomes_in_slurms_own_words",
      cluster=True),
    M("a held job searched for by a time window", "engines/slurm.py", "        if not searching and len(ids) < MAX_ID_LIST:\n", "        if False:\n",
      "tests/test_slurm_as_run.py::test_a_held_job_cancelled_through_the_cancel_file_is_collected", cluster=True),
    M("a drained partition is a permanent refusal", "engines/_slurmparse.py", '    "required partition not available (inactive or drain)",', "",
      "tests/test_slurm_as_run.py::test_a_drained_partition_keeps_folders_waiting_until_it_is_back", cluster=True),
    M("the claim token is not recorded", "jobroot/folders.py", '        token = str(json.loads((job_dir / CLAIM).read_text())["token"])',
      '        token = ""', "tests/test_fs.py::test_the_record_keeps_the_claims_token"),
]  # fmt: skip


def copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "*.egg-info", "bench"
    )
    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)


def run_test(tree: Path, test: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()[-1:][0] if result.stdout else result.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--cluster", action="store_true", help="also the mutations only the real Slurm cluster catches")
    p.add_argument("--cluster-only", action="store_true", help="only the mutations the real Slurm cluster catches")
    p.add_argument("--only", help="only mutations whose name contains this")
    p.add_argument("--list", action="store_true", help="print the catalogue and exit")
    args = p.parse_args()
    chosen = [
        m
        for m in CATALOGUE
        if (args.cluster or args.cluster_only or not m.cluster)
        and (m.cluster or not args.cluster_only)
        and (not args.only or args.only in m.name)
    ]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.path} -> {m.test}")
        return 0
    survivors = 0
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        for m in chosen:  # every mutation applies to the tree as it is, exactly once
            count = (tree / m.path).read_text().count(m.old)
            if count != 1:
                sys.exit(f"mutation {m.name!r}: its text occurs {count} times in {m.path}; fix the catalogue")
        baseline = sorted({m.test for m in chosen})
        for test in baseline:
            code, said = run_test(tree, test)
            if code != 0:
                sys.exit(f"{test} fails on the unchanged tree: {said}")
        print("| mutation (the promise it breaks) | file | caught by | result |\n| --- | --- | --- | --- |")
        for m in chosen:
            target = tree / m.path
            original = target.read_text()
            target.write_text(original.replace(m.old, m.new))
            start = time.monotonic()
            try:
                code, said = run_test(tree, m.test)
            finally:
                target.write_text(original)
            result = "caught" if code == 1 else "SURVIVED" if code == 0 else f"broken copy (pytest exit {code}): {said}"
            survivors += code != 1
            print(
                f"| {m.name} | `{m.path}` | `{m.test.split('::')[1]}` | {result} ({time.monotonic() - start:.0f} s) |", flush=True
            )
    print(f"\n{len(chosen) - survivors} of {len(chosen)} mutations caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
