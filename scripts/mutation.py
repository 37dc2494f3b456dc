#!/usr/bin/env python3
"""Mutation testing of one core module with Cosmic Ray (docs/mutation.md).

    .venv/bin/python scripts/mutation.py merkle            # or records, or a path + --tests
    .venv/bin/python scripts/mutation.py records --rerun-survivors

What it does, for each module named:

1. Installs the pinned Cosmic Ray into its own venv under the work directory (once). Cosmic
   Ray runs the tests as a subprocess with the project's .venv, so it needs no place in the
   project's dependencies (and mutmut 3.8 could not have one: it needs click>=8.4.2, which
   faust-streaming in the dev extras refuses).
2. Copies the work tree (tracked and untracked, not ignored files) to the work directory:
   Cosmic Ray mutates the module *on disk*, and a copy keeps the real tree, and anyone
   running tests in it, away from the mutants.
3. ``cosmic-ray init`` + ``baseline`` (the selected tests must pass unmutated) + ``exec``
   with the local distributor: one mutant at a time, one test process at a time; with
   ``--jobs N``, N ``exec`` at once, each on its own copy of the tree and its own share of
   the pending mutants (a copy of the session), merged back into the session as they end. Each
   mutant's test command is scripts/mutation_runner.py, which runs the module's test stages
   (SELECTIONS below) in the order ORDERS gives for the function the mutant is in.
4. Prints the score and every surviving mutant as a one-line diff, minus the ones listed
   as equivalent in scripts/mutation_equivalents.json (matched on operator, original line
   and mutated line); exits 1 if any other mutant survived.

Session databases, the copy and reports live in the work directory
(``$LEDGERSTREAM_MUTATION_DIR``, default ``~/.cache/ledgerstream-mutation``), never in the
repository; the copy is deleted at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

COSMIC_RAY = "cosmic-ray==8.7.0"
REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = REPO / "scripts" / "mutation_equivalents.json"

# The unit tests that cover each module, in stages: a later stage runs only if every test of
# the earlier ones passed (pytest -x within a stage), so a mutant is usually killed by a
# cheap stage and only survivors pay for all. ORDERS gives, per function, another stage
# order (scripts/mutation_runner.py finds the function a mutant is in): the same tests,
# the likeliest killers first.
VERIFY_CHECKER = [
    "tests/unit/test_verify_checker.py::test_long_clean_ledger_raises_nothing",
    "tests/unit/test_verify_checker.py::test_checkpoint_signing_mode_verifies_through_checkpoints",
    "tests/unit/test_verify_checker.py::test_each_fault_raises_exactly_its_kind",
    "tests/unit/test_verify_checker.py::test_random_bit_flips_are_always_rejected_and_never_break_the_chain",
    "tests/unit/test_verify_checker.py::test_a_run_of_garbage_is_one_incident",
    "tests/unit/test_verify_checker.py::test_injected_chain_break_then_honest_entries_resyncs_on_the_honest_chain",
    "tests/unit/test_verify_checker.py::test_one_entry_gap_keeps_checkpoints_verifiable",
    "tests/unit/test_verify_checker.py::test_longer_gap_makes_later_checkpoints_unverifiable_not_alarming",
    "tests/unit/test_verify_checker.py::test_fork_of_the_head_is_followed_when_the_chain_continues_from_it",
    "tests/unit/test_verify_checker.py::test_redelivered_offsets_are_skipped",
    "tests/unit/test_verify_checker.py::test_pending_link_resolved_later_becomes_an_edge",
    "tests/unit/test_verify_checker.py::test_link_grace_in_ledger_time_and_or_entries",
    "tests/unit/test_verify_checker.py::test_resolved_links_must_answer_the_actions_links",
    "tests/unit/test_verify_checker.py::test_checkpoint_before_its_entries_waits_for_them",
    "tests/unit/test_verify_checker.py::test_checkpoint_beyond_the_ledger_is_reported_at_the_end",
    "tests/unit/test_verify_checker.py::test_approved_action_without_valid_approvals_is_reported_when_approvers_are_configured",
    "tests/unit/test_verify_checker.py::test_restore_from_journal_and_state_continues_exactly",
    "tests/unit/test_verify_checker.py::test_stalled_when_actions_wait_and_the_signer_does_not_move",
    "tests/unit/test_verify_checker.py::test_stalled_without_signer_offsets_uses_the_entries_end",
    "tests/unit/test_verify_checker.py::test_stalled_when_checkpoints_are_overdue",
    "tests/unit/test_verify_checker.py::test_every_kind_has_a_severity_and_a_documented_section",
    "tests/unit/test_verify_checker.py::test_pipelined_signature_checks_find_exactly_what_one_by_one_finds",
    "tests/unit/test_verify_checker.py::test_signature_pool_checks_a_chunk_per_worker_and_keeps_the_order",
    "tests/unit/test_verify_checker.py::test_checked_entries_can_be_integrated_by_another_checker",
]
SELECTIONS: dict[str, list[list[str]]] = {
    "ledgerstream/core/merkle.py": [[
        "tests/unit/test_merkle_vectors.py",
        "tests/unit/test_merkle.py",
        "tests/unit/test_merkle_mutants.py",
        "tests/unit/test_merkle_compact.py",
    ]],
    "ledgerstream/core/records.py": [[
        "tests/unit/test_signer_fast_paths.py::test_fast_paths_on_the_spec_vectors",
        "tests/unit/test_records_vectors.py",
        "tests/unit/test_jcs.py",
        "tests/unit/test_records_mutants.py",
        "tests/fuzz/test_fuzz_checkpoint.py",
    ], [
        # imports the CLI, signer and producer modules: ~2 s before the first test
        "tests/unit/test_approvals_verify.py",
        "tests/unit/test_producer_basics.py",
        "tests/unit/test_identifiers.py",
    ], [
        # 3000 random entries, the typed writer against entry_hash: ~9 s when it passes
        "tests/unit/test_signer_fast_paths.py::test_entry_hash_typed_equals_entry_hash_on_random_entries",
    ]],
    # core/verify/: small ledgers fed through the Checker, ~4 s a mutant when all pass. The copy
    # has no compiled _entry_reader (an ignored build product), so only test_entry_reader's
    # fallback test is selected. entries and checkpoints ran with VERIFY_CHECKER, all of
    # test_verify_checker.py but its on-disk index test, which was being reworked at the time
    # (2026-12-06, D38); the later modules run the whole file.
    "ledgerstream/core/verify/entries.py": [[
        "tests/unit/test_verify_entries_mutants.py",
        "tests/unit/test_raw_signatures.py",
        "tests/unit/test_entry_reader.py::test_without_the_compiled_reader_the_checker_falls_back",
        "tests/unit/test_wire_byte_order.py",
        *VERIFY_CHECKER,
        "tests/unit/test_verdict_vectors.py",
    ], [
        "tests/unit/test_approvals_verify.py",
        "tests/unit/test_sequencer.py",
    ]],
    "ledgerstream/core/verify/checkpoints.py": [[
        "tests/unit/test_verify_checkpoints_mutants.py",
        "tests/unit/test_verify_note_signatures.py",
        *VERIFY_CHECKER,
        "tests/unit/test_verdict_vectors.py",
        "tests/fuzz/test_fuzz_note.py",
    ], [
        "tests/unit/test_witness_client.py",
    ]],
    "ledgerstream/core/verify/signatures.py": [[
        "tests/unit/test_verify_signatures_mutants.py",
        "tests/unit/test_raw_signatures.py",
        "tests/unit/test_wire_byte_order.py",
        "tests/unit/test_verify_checker.py",
        "tests/unit/test_verdict_vectors.py",
    ]],
    "ledgerstream/core/verify/findings.py": [[
        "tests/unit/test_verify_findings_mutants.py",
        "tests/unit/test_verify_checker.py",
        "tests/unit/test_verify_note_signatures.py",
        "tests/unit/test_verdict_vectors.py",
        "tests/unit/test_alert_signature_vector.py",
    ], [
        # ~2.5 s: signs and verifies alerts with ML-DSA
        "tests/unit/test_alert_signature.py",
    ]],
    "ledgerstream/core/verify/liveness.py": [[
        "tests/unit/test_verify_liveness_mutants.py",
        "tests/unit/test_verify_checker.py::test_stalled_when_actions_wait_and_the_signer_does_not_move",
        "tests/unit/test_verify_checker.py::test_stalled_without_signer_offsets_uses_the_entries_end",
        "tests/unit/test_verify_checker.py::test_stalled_when_checkpoints_are_overdue",
    ]],
    "ledgerstream/core/verify/links.py": [[
        "tests/unit/test_verify_links_mutants.py",
        "tests/unit/test_verify_checker.py",
        "tests/unit/test_verdict_vectors.py",
        "tests/unit/test_index_query.py",
    ], [
        # the verifier's and the index's stores round-trip the call graph: ~6 s and ~3 s
        "tests/unit/test_verifier_store.py",
        "tests/unit/test_index_core.py",
    ]],
    "ledgerstream/core/verify/history.py": [[
        "tests/unit/test_verify_history_mutants.py",
        "tests/unit/test_verify_checker.py",
        "tests/unit/test_verdict_vectors.py",
    ], [
        "tests/unit/test_verifier_store.py",
        "tests/unit/test_index_history.py",
    ]],
    # trust.py: CheckerConfig is used by every Checker test, but its loaders (HOME's keys,
    # witnesses.json, the TSA CA, the policy) are reached in the suite only through CLI tests
    # that run the installed `ledgerstream` as a subprocess, which imports the real tree, not
    # the mutated copy: those are not selected.
    "ledgerstream/core/verify/trust.py": [[
        "tests/unit/test_verify_trust_mutants.py",
        "tests/unit/test_verify_note_signatures.py",
        "tests/unit/test_raw_signatures.py",
        "tests/unit/test_verdict_vectors.py",
        "tests/unit/test_verify_checker.py::test_link_grace_in_ledger_time_and_or_entries",
    ], [
        # ~1.5 s: a witness quorum configured through CheckerConfig
        "tests/unit/test_witness_client.py",
    ]],
    "ledgerstream/core/verify/checker.py": [[
        "tests/unit/test_verify_checker_mutants.py",
        "tests/unit/test_verify_checker_ingest_mutants.py",
        "tests/unit/test_verify_checker_evaluate_mutants.py",
        "tests/unit/test_verify_checker.py",
        "tests/unit/test_verdict_vectors.py",
        "tests/unit/test_verify_note_signatures.py",
    ], [
        # the verifier's and the index's stores restore a Checker: ~6 s and ~3 s
        "tests/unit/test_verifier_store.py",
        "tests/unit/test_index_core.py",
    ]],
}
ORDERS: dict[str, dict[str, list[int]]] = {
    "ledgerstream/core/records.py": {f: [0, 2, 1] for f in ("entry_hash_typed", "_jcs_typed_action", "_q_opt")},
}
# Slow tests that kill few mutants: run after the rest of their stage (mutation_pytest_order).
RUN_LAST = ["test_every_code_point_follows_unicodedata"]
SHORT = {Path(p).stem: p for p in SELECTIONS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="+", help="merkle, records, or a module path (then give --tests)")
    parser.add_argument("--tests", nargs="+", action="append",
                        help="pytest paths / node ids to run for every mutant; repeat for a later stage")
    parser.add_argument("--timeout", type=float, default=45.0,
                        help="seconds for one mutant's whole test run (over it: killed, as a hang)")
    parser.add_argument("--test-timeout", type=int, default=20,
                        help="seconds for one test (pytest-timeout; the slowest selected test takes ~5 s)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(os.environ.get("LEDGERSTREAM_MUTATION_DIR",
                                                    Path.home() / ".cache" / "ledgerstream-mutation")))
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="run again only the mutants that survived the last full run unexplained")
    parser.add_argument("--resume", action="store_true",
                        help="keep the session and run only the mutants it has no result for")
    parser.add_argument("--summary", action="store_true",
                        help="run nothing: summarise the last session again (after editing the equivalents)")
    parser.add_argument("--keep", action="store_true", help="keep the copied tree")
    parser.add_argument("--jobs", type=int, default=1,
                        help="mutants run at once, each share on its own tree copy (default 1; a mutant's "
                             "tests are single-process, so up to the number of cores)")
    parser.add_argument("--skip-listed", action="store_true",
                        help="do not run the mutants that scripts/mutation_equivalents.json lists by operator and "
                             "original line alone (e.g. the annotation-only ones): a survivor costs the whole "
                             "selection; they are reported as equivalent, not run")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    workdir = args.workdir.resolve()
    if workdir == REPO or REPO in workdir.parents:
        parser.error("the work directory must be outside the repository")
    workdir.mkdir(parents=True, exist_ok=True)
    cosmic_ray = _tool(workdir)
    failed = False
    for name in args.modules:
        module = SHORT.get(name, name)
        tests = args.tests or SELECTIONS.get(module)
        if not tests:
            parser.error(f"no test selection known for {module}: give --tests")
        stages = [[t for t in stage if (REPO / t.split("::")[0]).exists()] for stage in tests]
        for t in sorted({t for stage in tests for t in stage} - {t for stage in stages for t in stage}):
            print(f"== {module}: {t} does not exist, left out", flush=True)
        failed |= not _run(cosmic_ray, workdir, module, stages, args)
    return 1 if failed else 0


def _tool(workdir: Path) -> Path:
    venv = workdir / ("venv-" + COSMIC_RAY.replace("==", "-"))
    exe = venv / "bin" / "cosmic-ray"
    if not exe.exists():
        print(f"== installing {COSMIC_RAY} into {venv}", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", COSMIC_RAY], check=True)
    return exe


def _copy_tree(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(dest / ".copy.tar", "w") as archive:
        for rel in filter(None, listed.decode().split("\0")):
            if (REPO / rel).is_file():
                archive.add(REPO / rel, arcname=rel, recursive=False)
    with tarfile.open(dest / ".copy.tar") as archive:
        archive.extractall(dest, filter="tar")
    (dest / ".copy.tar").unlink()


def _test_command(workdir: Path, tree: Path, module: str, stages: list[list[str]], per_test: int) -> str:
    """A runner config for scripts/mutation_runner.py, and the command that runs it."""
    name = Path(module).stem
    pristine = workdir / f"{name}.pristine.py"
    pristine.write_bytes((tree / module).read_bytes())
    runner = workdir / f"{name}-runner.json"
    # No plugin autoload: the adapters' pytest plugins cost ~8 s of start-up per mutant.
    # pytest-timeout is loaded by hand so that a mutant that loops fails its test early;
    # mutation_pytest_order (scripts/) runs the cases round-robin across test functions.
    runner.write_text(json.dumps({
        "module": module, "pristine": str(pristine), "stages": stages, "order": ORDERS.get(module, {}),
        "pytest_args": ["-p", "no:cacheprovider", "-p", "pytest_timeout", "-p", "mutation_pytest_order",
                        f"--timeout={per_test}", "-x", "-q", "--no-header", "-p", "no:warnings"],
    }, indent=1))
    python = REPO / ".venv" / "bin" / "python"
    return shlex.join(["env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", "PYTHONPATH=scripts",
                       "MUTATION_RUN_LAST=" + ",".join(RUN_LAST), str(python), "scripts/mutation_runner.py", str(runner)])


def _run(cosmic_ray: Path, workdir: Path, module: str, tests: list[str], args) -> bool:
    name = Path(module).stem
    tree = workdir / f"tree-{name}"
    session = workdir / f"{name}.sqlite"
    report_path = workdir / f"{name}-report.json"
    out_path = workdir / f"{name}-rerun-report.json" if args.rerun_survivors else report_path
    if args.rerun_survivors:  # the full run's session stays as it is
        session = workdir / f"{name}-rerun.sqlite"
    config = workdir / f"{name}.toml"
    if args.summary:
        old = json.loads(out_path.read_text()) if out_path.exists() else {"tests": tests, "seconds": 0}
        report = _report(cosmic_ray, module, session, old["tests"], old["seconds"])
        out_path.write_text(json.dumps(report, indent=1))
        _print(report)
        return not report["unexpected"] and not report["pending"]
    print(f"== {module}: copying the work tree to {tree}", flush=True)
    _copy_tree(tree)
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {args.timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(_test_command(workdir, tree, module, tests, args.test_timeout))}\n\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n')
    previous = None
    if args.rerun_survivors:
        if not report_path.exists():
            print(f"!! {module}: no previous report {report_path} to take the survivors from", file=sys.stderr)
            return False
        previous = json.loads(report_path.read_text())
    try:
        for leftover in sorted(session.parent.glob(f"{session.stem}.shard*.sqlite")):  # a killed --jobs run
            if args.resume and session.exists():
                _merge_results(session, leftover)
            leftover.unlink()
        if not (args.resume and session.exists()):
            session.unlink(missing_ok=True)
            _cr(cosmic_ray, tree, "init", config, session)
            if args.skip_listed:
                print(f"== {module}: {_skip_listed(session, module, tree)} mutants listed as equivalent "
                      "(operator and line) are not run", flush=True)
        if previous is not None:
            # the listed equivalents survived the full run; only the unexplained are run again
            keep = {(s["operator"], s["occurrence"]) for s in previous["unexpected"]}
            _restrict(session, keep)
        print(f"== {module}: baseline", flush=True)
        if subprocess.run([str(cosmic_ray), "baseline", str(config)], cwd=tree).returncode:
            print(f"!! {module}: the selected tests fail on the unmutated copy", file=sys.stderr)
            return False
        started = time.monotonic()
        print(f"== {module}: exec ({_count(session)} mutants, {_pending(session)} to run, "
              f"{args.jobs} at a time)", flush=True)
        if args.jobs == 1:
            _cr(cosmic_ray, tree, "exec", config, session)
        else:
            _exec_shards(cosmic_ray, tree, config, session, args.jobs)
        elapsed = time.monotonic() - started
    finally:
        for copy in [tree, *_shard_trees(tree, args.jobs)]:
            if not args.keep and copy.exists():
                shutil.rmtree(copy)
    report = _report(cosmic_ray, module, session, tests, elapsed)
    if previous is not None:
        report["rerun_of"] = {k: previous[k] for k in ("total", "killed", "survived")}
    out_path.write_text(json.dumps(report, indent=1))
    print(f"== report: {out_path}")
    _print(report)
    return not report["unexpected"] and not report["pending"]


def _cr(cosmic_ray: Path, tree: Path, verb: str, config: Path, session: Path) -> None:
    subprocess.run([str(cosmic_ray), verb, str(config), str(session)], cwd=tree, check=True)


def _shard_trees(tree: Path, jobs: int) -> list[Path]:
    return [tree.with_name(f"{tree.name}-{k}") for k in range(1, jobs)]


def _exec_shards(cosmic_ray: Path, tree: Path, config: Path, session: Path, jobs: int) -> None:
    """Run the pending mutants in `jobs` parallel ``exec``: shard k gets every jobs-th
    pending mutant in a copy of the session and runs it in its own tree copy (Cosmic Ray
    mutates files on disk, so two mutants must never share a tree). Each shard's results
    are merged into the session when it ends, also when another one failed or on Ctrl-C
    (and by ``--resume`` if this process was killed), so no finished mutant runs again."""
    with sqlite3.connect(session) as db:
        pending = [job for (job,) in db.execute(
            "select job_id from work_items where job_id not in (select job_id from work_results) order by job_id")]
    trees = [tree, *_shard_trees(tree, jobs)]
    for copy in trees[1:]:
        _copy_tree(copy)
    shards = []
    for k, copy in enumerate(trees):
        share = set(pending[k::jobs])
        path = session.with_name(f"{session.stem}.shard{k}.sqlite")
        shutil.copyfile(session, path)
        _restrict_jobs(path, share)
        shards.append((path, subprocess.Popen([str(cosmic_ray), "exec", str(config), str(path)], cwd=copy)))
    failed = []
    try:
        for path, proc in shards:
            if proc.wait():
                failed.append(path.name)
    finally:
        for path, proc in shards:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            _merge_results(session, path)
            path.unlink()
    if failed:
        raise subprocess.CalledProcessError(1, f"cosmic-ray exec of {', '.join(failed)}")


def _restrict_jobs(session: Path, keep: set[str]) -> None:
    """Leave in `session` only the pending work items in `keep` (finished ones stay)."""
    with sqlite3.connect(session) as db:
        _drop(db, [job for (job,) in db.execute(
            "select job_id from work_items where job_id not in (select job_id from work_results)") if job not in keep])


def _merge_results(session: Path, shard: Path) -> None:
    with sqlite3.connect(session) as db:
        db.execute("attach database ? as shard", (str(shard),))
        db.execute("insert or ignore into work_results (worker_outcome, output, test_outcome, diff, job_id) "
                   "select worker_outcome, output, test_outcome, diff, job_id from shard.work_results")
        db.commit()
        db.execute("detach database shard")


def _count(session: Path) -> int:
    with sqlite3.connect(session) as db:
        return db.execute("select count(*) from work_items").fetchone()[0]


def _pending(session: Path) -> int:
    with sqlite3.connect(session) as db:
        return db.execute("select count(*) from work_items where job_id not in (select job_id from work_results)"
                          ).fetchone()[0]


SKIPPED_LISTED = "listed equivalent, not run: "


def _skip_listed(session: Path, module: str, tree: Path) -> int:
    """Record a 'skipped' result for every one-line mutant that an entry of
    scripts/mutation_equivalents.json without an "after" matches (operator glob and original
    line): Cosmic Ray then does not run it, and _report counts it as equivalent."""
    listed = [e for e in (json.loads(EQUIVALENTS.read_text()).get(module, []) if EQUIVALENTS.exists() else [])
              if "after" not in e]
    source = (tree / module).read_text().splitlines()
    skip = []
    with sqlite3.connect(session) as db:
        for job, operator, first, last in db.execute(
                "select job_id, operator_name, start_pos_row, end_pos_row from mutation_specs"):
            before = source[first - 1].strip()
            if first == last and any(fnmatch.fnmatchcase(operator, e["operator"]) and e["before"] == before
                                     for e in listed):
                skip.append((job, SKIPPED_LISTED + before))
        db.executemany("insert into work_results (job_id, worker_outcome, output, test_outcome, diff) "
                       "values (?, 'SKIPPED', ?, NULL, NULL)", skip)
    return len(skip)


def _restrict(session: Path, keep: set[tuple[str, int]]) -> None:
    with sqlite3.connect(session) as db:
        _drop(db, [job for job, op, occ in db.execute("select job_id, operator_name, occurrence from mutation_specs")
                   if (op, occ) not in keep])


def _drop(db: sqlite3.Connection, jobs: list[str]) -> None:
    db.executemany("delete from mutation_specs where job_id = ?", [(j,) for j in jobs])
    db.executemany("delete from work_items where job_id = ?", [(j,) for j in jobs])


def _diff_lines(diff: str) -> tuple[str, str]:
    minus = [l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return " / ".join(minus), " / ".join(plus)


def _report(cosmic_ray: Path, module: str, session: Path, tests: list[str], elapsed: float) -> dict:
    dump = subprocess.run([str(cosmic_ray), "dump", str(session)], check=True, capture_output=True, text=True)
    listed = json.loads(EQUIVALENTS.read_text()).get(module, []) if EQUIVALENTS.exists() else []
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "pending": 0, "no_test": 0, "not_run_equivalent": 0}
    survivors, unexpected, matched = [], [], set()
    for line in dump.stdout.splitlines():
        item, result = json.loads(line)
        spec = item["mutations"][0]
        if result is None:
            counts["pending"] += 1
            continue
        if result["worker_outcome"] == "skipped" and (result["output"] or "").startswith(SKIPPED_LISTED):
            entry = {"operator": spec["operator_name"], "occurrence": spec["occurrence"],
                     "line": spec["start_pos"][0], "function": spec.get("definition_name"),
                     "before": result["output"][len(SKIPPED_LISTED):], "after": None, "not_run": True}
            match = next((k for k, e in enumerate(listed) if "after" not in e and _matches(e, entry)), None)
            if match is not None:
                counts["not_run_equivalent"] += 1
                entry["reason"] = listed[match]["reason"]
                matched.add(match)
                survivors.append(entry)
                continue
        if result["worker_outcome"] in ("no-test", "skipped"):
            counts["no_test"] += 1
            continue
        outcome = result["test_outcome"]
        counts[outcome if outcome in counts else "incompetent"] += 1
        if outcome != "survived":
            continue
        before, after = _diff_lines(result["diff"] or "")
        entry = {"operator": spec["operator_name"], "occurrence": spec["occurrence"],
                 "line": spec["start_pos"][0], "function": spec.get("definition_name"),
                 "before": before, "after": after}
        survivors.append(entry)
        match = next((k for k, e in enumerate(listed) if _matches(e, entry)), None)
        if match is None:
            unexpected.append(entry)
        else:
            entry["reason"] = listed[match]["reason"]
            matched.add(match)
    return {
        "module": module, "tool": COSMIC_RAY, "tests": tests, "seconds": round(elapsed),
        "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
        "total": sum(counts.values()), **counts,
        "equivalent": len(survivors) - len(unexpected), "survivors": survivors, "unexpected": unexpected,
        "stale_equivalents": [e for k, e in enumerate(listed) if k not in matched],
    }


def _matches(listed: dict, survivor: dict) -> bool:
    """An entry of scripts/mutation_equivalents.json names the operator (a glob: one entry can
    stand for every replacement of one operator on a line), the original line and, unless
    every mutation of that line by those operators is equivalent, the mutated line."""
    return (fnmatch.fnmatchcase(survivor["operator"], listed["operator"])
            and survivor["before"] == listed["before"]
            and listed.get("after", survivor["after"]) == survivor["after"])


def _print(r: dict) -> None:
    print(f"== {r['module']}: {r['total']} mutants, {r['killed']} killed, {r['equivalent']} equivalent "
          f"(listed; {r.get('not_run_equivalent', 0)} of them not run), {len(r['unexpected'])} survived unexplained, "
          f"{r['incompetent']} incompetent, "
          f"{r['pending']} not run; {r['seconds']} s")
    for s in r["unexpected"]:
        print(f"   SURVIVED line {s['line']} ({s['function']}) {s['operator']}#{s['occurrence']}:\n"
              f"     - {s['before']}\n     + {s['after']}")
    for e in r["stale_equivalents"]:
        print(f"   note: listed equivalent not seen in this run: {e['operator']}: {e['before']} -> {e.get('after', '(any)')}")


if __name__ == "__main__":
    sys.exit(main())
