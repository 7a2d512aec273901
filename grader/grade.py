"""Grade submission tarballs: intake, re-runs in the sandbox, scoring, outputs.

Each submission is graded in its own try-block: a corrupt, hostile or incomplete one gets a zero
with the reason, and the others go on. A submission whose own code (the hook probe or the fixed
re-run) the sandbox stops, for a limit or for an action it refuses (a write outside its folder, a
network connection), or that leaves a link, FIFO or device where a run file belongs, gets status
`stopped` and 0 with the reason. Everything is written under `out`: the grades, and the working
folder `out/.work` (removed at the end unless keep_work):

    .work/submissions/ID/     the intake's copy of each tarball (for people; the grader reads memory)
    .work/checkouts/KEY/      git checkouts of a base commit, with the in-scope patch applied
    .work/runs/KEY/tree/      the run's private copy of the course tree (no .git, no solutions/),
                              read-only in the sandbox
    .work/runs/KEY/work       the run's only writable folder
    .work/runs/KEY/files/     the run's files, copied out by breaklab.untrusted after it ended
    .work/cache/              the grader's own unpacked test set

A re-run sees the system, the Python installation, its own tree and its own work folder, nothing
else: no other submission, no solutions/, no --out (grader/sandbox.py). Re-runs are shared
between submissions when they are the same computation: the broken and the clean run of one
(base commit, break, seed, epochs, threads), and the fixed run of one in-scope patch. They are
deterministic, so running them once per grading session changes no result.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from breaklab.submission import parse_symptom_block
from breaklab.grader import fixcheck, gitrepo, intake, rubric
from breaklab.grader.integrity import keep_report
from breaklab.grader.recovery import check_recovery
from breaklab.grader.runs import DEFAULT_TIMEOUT, RunResult, RunSpec, parse_records, read_json, train
from breaklab.grader.sandbox import (exposed, fs_isolation_available, isolation_notes, network_isolation_available,
                                     python, run_sandboxed)

RESERVED = {".work", "grades.csv", "results.json", "shard.json"}


class IsolationUnavailable(Exception):
    """This machine cannot keep the students' code apart; str(e) says where to grade instead."""


ISOLATION_HELP = ("this machine cannot isolate the students' code (no mount namespaces: util-linux unshare "
                  "needs unprivileged user namespaces, or root): each submission's code could read the other "
                  "submissions, solutions/ and the grades. Grade in a container or VM where `unshare --user "
                  "--map-root-user --mount true` works (e.g. a Linux VM, or `docker run --privileged`), or "
                  "pass --no-isolation to run it anyway with only the limits and the audit hook")


@dataclass
class Grader:
    repo: Path
    out: Path
    solutions_root: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    keep_work: bool = False
    plots: bool = True
    formats: tuple[str, ...] = ("json", "csv")
    progress: Callable[[str], None] = lambda s: None
    no_isolation: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key_locks: dict = field(default_factory=dict)
    _runs: dict = field(default_factory=dict)
    _trees: dict = field(default_factory=dict)
    _commits: dict = field(default_factory=dict)
    _references: dict | None = None
    _probes: dict = field(default_factory=dict)
    _evals: dict = field(default_factory=dict)

    def __post_init__(self):
        from breaklab.solutions import SOLUTIONS_DIR

        self.repo = Path(self.repo).resolve()
        self.out = Path(self.out).resolve()
        self.solutions_root = Path(self.solutions_root or SOLUTIONS_DIR)
        self.work = self.out / ".work"

    def check_isolation(self) -> None:
        """Refuse to run students' code where it would not be kept apart (unless no_isolation)."""
        if not fs_isolation_available() and not self.no_isolation:
            raise IsolationUnavailable(ISOLATION_HELP)
        for what, path in (("--out", self.out), ("--repo", self.repo), ("the solutions", self.solutions_root)):
            if exposed(path):
                raise IsolationUnavailable(f"{what} {path} lies inside the system or Python folders every re-run "
                                           "can read; choose a folder elsewhere")

    # -- shared, cached resources ------------------------------------------------------------
    def _key_lock(self, key) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def tree(self, base: str, patch: bytes | None) -> Path:
        """The grader's checkout of base (with patch applied); raises GitError. Never shown to a
        sandboxed run: each run gets its own copy (run_tree)."""
        key = (base, hashlib.sha256(patch).hexdigest() if patch is not None else None)
        with self._key_lock(("tree", key)):
            if key in self._trees:
                if isinstance(self._trees[key], Exception):
                    raise self._trees[key]
                return self._trees[key]
            dest = self.work / "checkouts" / (base[:12] + (f"-{key[1][:12]}" if key[1] else "-base"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                if dest.exists():
                    shutil.rmtree(dest)
                gitrepo.checkout(self.repo, base, dest)
                if patch is not None:
                    gitrepo.apply_patch(dest, patch)
            except gitrepo.GitError as e:
                self._trees[key] = e
                raise
            self._trees[key] = dest
            return dest

    def _run_folder(self, key) -> Path:
        folder = self.work / "runs" / hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def run(self, base: str, patch: bytes | None, spec: RunSpec, out_name: str,
            capability: str | None = None) -> RunResult:
        """One re-run; `capability`: ATEN_CPU_CAPABILITY for it (default: the grader's own)."""
        key = (base, hashlib.sha256(patch).hexdigest() if patch is not None else None, spec, out_name, capability)
        with self._key_lock(("run", key)):
            if key not in self._runs:
                checkout = self.tree(base, patch)
                folder = self._run_folder(key)
                tree = private_tree(checkout, folder / "tree")
                self.progress(f"  re-run: {spec.command(out_name)}" + (" (patched)" if patch is not None else "")
                              + (f" with ATEN_CPU_CAPABILITY={capability}" if capability else ""))
                self._runs[key] = train(tree, spec, folder / "work", out_name, timeout=self.timeout,
                                        copy_to=folder / "files",
                                        env={"ATEN_CPU_CAPABILITY": capability} if capability else None)
            return self._runs[key]

    def probe(self, base: str, patch: bytes, break_name: str, seed: int) -> tuple[dict | None, Any, str, list[str]]:
        """Run grader/probe.py in the sandbox on the patched tree: (its output or None, the
        sandbox's result, why there is no output, files it left that are not plain files)."""
        from breaklab.grader import probe as probe_module
        from breaklab.untrusted import read_folder_files

        key = (base, hashlib.sha256(patch).hexdigest(), break_name, seed, "probe")
        with self._key_lock(("probe", key)):
            if key not in self._probes:
                checkout = self.tree(base, patch)
                folder = self._run_folder(key)
                tree = private_tree(checkout, folder / "tree")
                code = folder / "probe"
                code.mkdir()
                shutil.copyfile(probe_module.__file__, code / "probe.py")
                inputs = probe_module.make_inputs()
                (code / "inputs.json").write_text(json.dumps(inputs))
                work = folder / "work"
                work.mkdir()
                self.progress(f"  probe: the patched {break_name} hooks")
                res = run_sandboxed([python(), "-s", str(code / "probe.py"), str(tree), break_name, str(seed),
                                     str(code / "inputs.json"), "probe-out.json"],
                                    cwd=work, timeout=self.timeout,  # importing torch is most of a run
                                    readable=[tree, code])
                files, problems = read_folder_files(work, {"probe-out.json": probe_module.MAX_OUTPUT})
                output, why = None, ""
                if problems:
                    why = "; ".join(problems)
                elif not res.ok:
                    why = res.why()
                elif "probe-out.json" not in files:
                    why = "the probe wrote no output"
                else:
                    output = read_json(files["probe-out.json"]) or None
                    why = "" if output else "the probe's output is not JSON"
                self._probes[key] = (output, res, why, problems)
            output, res, why, problems = self._probes[key]
            return output, res, why, problems

    def evaluate(self, res: RunResult | None, threads: int):
        """The grader's own evaluation of a re-run's checkpoint (cached per checkpoint)."""
        from breaklab.grader.trusted import evaluate_checkpoint

        if res is None or not res.ok:
            return None
        digest = res.checkpoint_sha()
        key = (digest, threads)
        with self._key_lock(("eval", key)):
            if key not in self._evals:
                self._evals[key] = evaluate_checkpoint(res.copied.get("checkpoint.pt"), threads, self.work / "cache")
            return self._evals[key]

    def has_commit(self, commit: str) -> bool:
        """Whether commit is in the course repository (asked once per commit)."""
        with self._key_lock(("commit", commit)):
            if commit not in self._commits:
                self._commits[commit] = gitrepo.resolve_commit(self.repo, commit) == commit
            return self._commits[commit]

    # -- one submission ------------------------------------------------------------------------
    def grade(self, tarball: Path, sub_id: str) -> dict[str, Any]:
        folder = self.out / sub_id
        if folder.is_symlink():
            folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        base_info = {"submission": sub_id, "tarball": Path(tarball).name}
        try:
            grade = self._grade(Path(tarball), sub_id, base_info)
        except Exception as e:  # a bug or an unforeseen input: this submission only
            grade = failed(base_info, "error", f"internal error while grading ({type(e).__name__}: {e}); "
                           f"grade it by hand", detail=traceback.format_exc(limit=5))
        from breaklab.grader.report import write_submission_outputs

        write_submission_outputs(folder, grade, plots=self.plots, gradescope="gradescope" in self.formats,
                                 scratch=self.work / "plots" / sub_id)
        keep_report(folder, grade)
        return grade

    def references(self) -> dict[str, str]:
        """The reference write-ups (solutions/*/WRITEUP.md) a report must not copy, read once."""
        with self._lock:
            if self._references is None:
                from breaklab.solutions import names as solution_names

                self._references = {}
                for name in solution_names(self.solutions_root):
                    path = self.solutions_root / name / "WRITEUP.md"
                    if path.is_file():
                        self._references[f"solutions/{name}/WRITEUP.md"] = path.read_text(errors="replace")
            return self._references

    def _explanation(self, report: str, concepts: list[dict[str, Any]], broken: list[dict] | None,
                     clean: list[dict] | None):
        """The explanation criteria, judged against the broken and clean re-runs and the write-ups."""
        return rubric.explanation_criteria(report, concepts, broken, self.references(), clean)

    def _grade(self, tarball: Path, sub_id: str, info: dict[str, Any]) -> dict[str, Any]:
        from breaklab.solutions import names as solution_names
        from breaklab.solutions import rubric as load_rubric
        from breaklab.breaks import REGISTRY

        extract_to = self.work / "submissions" / sub_id
        if extract_to.exists():
            shutil.rmtree(extract_to)
        extract_to.parent.mkdir(parents=True, exist_ok=True)
        try:
            sub = intake.open_submission(tarball, extract_to)
        except intake.Rejected as e:
            return failed(info, "rejected", str(e))
        m = sub.manifest
        info.update(tarball_sha256=sub.tarball_sha256, student=m["student"], break_name=m["break"],
                    seed=m["seed"], epochs=m["epochs"], threads=m["threads"], base_commit=m["base_commit"])
        if not self.has_commit(m["base_commit"]):
            # Every re-run would fail the same way; say so once, as an error of the grading setup.
            return failed(info, "error", f"base commit {m['base_commit'][:12]} is not in --repo {self.repo}: "
                          "grade against the repository the students cloned")
        if m["break"] not in solution_names(self.solutions_root) or m["break"] not in REGISTRY:
            return failed(info, "rejected", f"unknown break {m['break']!r}: no rubric for it")
        rub = load_rubric(m["break"], self.solutions_root)
        brk_cls = REGISTRY[m["break"]]
        self.progress(f"{sub_id}: {m['break']} seed {m['seed']}, {m['epochs']} epoch(s), base {m['base_commit'][:12]}")

        spec = RunSpec(m["break"], m["seed"], m["epochs"], m["threads"])
        clean_spec = RunSpec("none", m["seed"], m["epochs"], m["threads"])
        patch = sub.read_bytes("fix.patch")
        allowed = rub["fix"]["allowed_files"]
        in_scope, dropped = gitrepo.restrict_patch(patch, allowed)
        base = m["base_commit"]
        integrity: list[str] = []
        notes: list[str] = []
        if dropped:
            notes.append(f"out of scope, not run: the patch's changes to {', '.join(dropped)} (a fix for this break "
                         f"changes only {', '.join(allowed)})")

        def attempt(fn):
            try:
                return fn(), ""
            except gitrepo.GitError as e:
                return None, str(e)

        # The submission's own code first: the hook probe, then the fixed run.
        probe_out, probe_res, probe_why, fixed, fixed_err = None, None, "", None, ""
        verdict: fixcheck.FixVerdict
        if not in_scope.strip():
            verdict = fixcheck.out_of_scope(dropped, allowed)
            fixed_err = "not run: " + verdict.reasons[0]
        else:
            probed, probe_err = attempt(lambda: self.probe(base, in_scope, m["break"], m["seed"]))
            if probed is None:
                verdict = fixcheck.FixVerdict("unchecked", [f"the patch cannot be probed: {probe_err}"])
            else:
                probe_out, probe_res, probe_why, probe_problems = probed
                stop = _stopped(probe_res, probe_problems, "the hook probe")
                if stop:
                    return self._stopped(info, stop, {"probe": _sandbox_facts(probe_res)})
                from breaklab.grader.probe import make_inputs
                from breaklab.grader.trusted import probe_expectations

                inputs = make_inputs()
                clean_out, broken_out = probe_expectations(m["break"], m["seed"], inputs)
                verdict = fixcheck.judge_probe(brk_cls.hook, probe_out, clean_out, broken_out, inputs, probe_why)
            fixed, fixed_err = attempt(lambda: self.run(base, in_scope, spec, "fixed"))
            if fixed is not None:
                stop = _stopped(fixed.sandbox, fixed.problems, "the fixed run (the submission's code)")
                if stop:
                    return self._stopped(info, stop, {"fixed": _run_facts(fixed)})
        broken, broken_err = attempt(lambda: self.run(base, None, spec, "broken"))
        clean, clean_err = attempt(lambda: self.run(base, None, clean_spec, "clean"))
        reruns = {label: _run_facts(res) for label, res in (("broken", broken), ("fixed", fixed), ("clean", clean))}

        records = {
            "sub_broken": parse_records(sub.read_bytes("broken/metrics.jsonl")),
            "sub_fixed": parse_records(sub.read_bytes("fixed/metrics.jsonl")),
            "broken": parse_records(broken.copied.get("metrics.jsonl")) if broken and broken.ok else None,
            "fixed": parse_records(fixed.copied.get("metrics.jsonl")) if fixed and fixed.ok else None,
            "clean": parse_records(clean.copied.get("metrics.jsonl")) if clean and clean.ok else None,
        }

        # The fix, measured by the grader's own code
        trusted_fixed = self.evaluate(fixed, m["threads"])
        trusted_clean = self.evaluate(clean, m["threads"])
        if verdict.kind in ("fixed", "not_fixed", "unchecked") and records["fixed"] is not None:
            verdict = fixcheck.judge_measurement(verdict, trusted_fixed, fixcheck.logged_final(records["fixed"]))
        integrity += verdict.integrity
        for label, res in (("fixed", fixed), ("clean", clean)):
            ev = trusted_fixed if label == "fixed" else trusted_clean
            if reruns.get(label) is not None and ev is not None and ev.ok:
                reruns[label].update(trusted_test_acc=ev.test_acc, trusted_test_loss=ev.test_loss)

        criteria: list[rubric.Criterion] = []

        # Reproducibility
        checks: dict[str, rubric.RunCheck] = {}
        for label, res, err in (("broken", broken, broken_err), ("fixed", fixed, fixed_err)):
            ok = res is not None and res.ok
            sub_ckpt = _first_word(sub.read_bytes(f"{label}/checkpoint.pt.sha256"))
            sub_env = _env(sub.read_bytes(f"{label}/meta.json"))
            env_diff = rubric.env_differences(sub_env, _env(res.copied.get("meta.json"))) if ok else []
            metrics_same = ok and res.copied["metrics.jsonl"] == sub.read_bytes(f"{label}/metrics.jsonl")
            ckpt_same = ok and sub_ckpt is not None and res.checkpoint_sha() == sub_ckpt
            alt = {}
            if env_diff and not (metrics_same and ckpt_same) and (
                    label == "broken" or (verdict.earns_points and not dropped)):
                # Another machine: re-run once more under another CPU capability (the submission's
                # own where this CPU has it), which shows how far this run moves with the kernels.
                cap = other_capability(sub_env.get("cpu_capability"), _env(res.copied.get("meta.json")).get("cpu_capability"))
                if cap:
                    alt_res, _ = attempt(lambda: self.run(base, None if label == "broken" else in_scope, spec, label,
                                                          capability=cap))
                    if label == "fixed" and alt_res is not None:
                        stop = _stopped(alt_res.sandbox, alt_res.problems, "the fixed run (the submission's code)")
                        if stop:
                            return self._stopped(info, stop, {"fixed": _run_facts(alt_res)})
                    if alt_res is not None and alt_res.ok:
                        alt = {"alt_records": parse_records(alt_res.copied.get("metrics.jsonl")), "alt_capability": cap,
                               "alt_same": alt_res.copied["metrics.jsonl"] == sub.read_bytes(f"{label}/metrics.jsonl")
                               and alt_res.checkpoint_sha() == sub_ckpt}
                        if reruns.get(label) is not None:
                            reruns[label]["also_run_with"] = f"ATEN_CPU_CAPABILITY={cap}"
            checks[label] = rubric.check_run(
                label, rerun_ok=ok, rerun_why=err or (_why(res) if res is not None else "not run"),
                metrics_same=metrics_same, ckpt_same=ckpt_same, env_diff=env_diff,
                sub_records=records[f"sub_{label}"], rerun_records=records[label],
                not_rerun_code="the patch's changes to " + ", ".join(dropped) if label == "fixed" and dropped else "",
                **alt)
        tampered = [c.detail for c in checks.values() if c.status == "tampered"]
        if tampered:
            integrity += [f"tampered run: {t}" for t in tampered]
            why = "integrity: a submitted run was edited (" + "; ".join(tampered)[:400] + "): no reproducibility points"
            for label in ("broken", "fixed"):
                criteria += rubric.reproducibility(label, checks[label], void=why)
        else:
            void = None if verdict.earns_points else "no points for the fixed run: " + verdict.reasons[0]
            criteria += rubric.reproducibility("broken", checks["broken"])
            criteria += rubric.reproducibility("fixed", checks["fixed"], void=void)

        # Diagnostics: the claim is checked against the student's own run when it is verified in
        # another environment (its numbers are not the grader's CPU's), else against the re-run.
        report_text = sub.read_text("report.md")
        claim = parse_symptom_block(report_text)
        claim_records = records["sub_broken"] if checks["broken"].status == "verified" else records["broken"]
        criteria += rubric.claim_criteria(claim, claim_records, records["clean"], rub["symptom_metrics"])
        criteria.append(rubric.evidence_criterion({n.split("/", 1)[1]: sub.read_bytes(n) for n in sub.evidence},
                                                  claim, claim_records))
        criteria.append(rubric.metric_fields_criterion({"broken": records["sub_broken"], "fixed": records["sub_fixed"]}))

        # Fix
        criteria += self._fix_criteria(verdict, records, fixed, fixed_err, clean, clean_err, trusted_fixed,
                                       trusted_clean, rub, brk_cls, patch, base, in_scope)

        # Explanation
        explained, copied = self._explanation(report_text, rub["concepts"], claim_records, records["clean"])
        criteria += explained
        integrity += copied

        totals = rubric.total(criteria)
        return {**info, "status": "graded", "reason": None, **totals,
                "criteria": [c.as_dict() for c in criteria],
                "needs_review": [f"{c.name}: {c.review}" for c in criteria if c.review],
                "integrity": integrity, "_report": report_text,
                "fix_verdict": {"kind": verdict.kind, "reasons": verdict.reasons},
                "notes": notes,
                "network_isolated": network_isolation_available(),
                "sandbox": sandbox_facts(),
                "reruns": reruns,
                "_plots": {label: str(res.folder) for label, res in
                           (("broken", broken), ("fixed", fixed)) if res is not None and res.ok}}

    def _fix_criteria(self, verdict, records, fixed, fixed_err, clean, clean_err, trusted_fixed, trusted_clean,
                      rub, brk_cls, patch, base, in_scope) -> list[rubric.Criterion]:
        changes = gitrepo.parse_patch(patch)
        if not verdict.earns_points:
            why = "; ".join(verdict.reasons)
            return [rubric.award("recovers", 0, why),
                    rubric.award("minimal_scope", 0, "no fix points: " + verdict.reasons[0]),
                    rubric.award("minimal_size", 0, "no fix points: " + verdict.reasons[0])]
        out = []
        if records["fixed"] is None or records["clean"] is None:
            why = ("fixed run: " + (fixed_err or (_why(fixed) if fixed else "not run"))) if records["fixed"] is None \
                else ("clean reference run: " + (clean_err or (_why(clean) if clean else "not run")))
            out.append(rubric.recovery_criterion(None, "no re-run to judge: " + why))
        else:
            logged = check_recovery(records["fixed"], records["clean"], rub["recovery"])
            trusted_ok, trusted_reasons = fixcheck.trusted_recovery(trusted_fixed, trusted_clean,
                                                                    float(rub["recovery"]["max_acc_drop"]),
                                                                    brk_cls.needs_amp)
            logged.passed = logged.passed and trusted_ok and verdict.kind == "fixed"
            logged.reasons = verdict.reasons + trusted_reasons + logged.reasons
            out.append(rubric.recovery_criterion(logged))
        # Which functions a line belongs to needs the source before and after the patch; when a
        # checkout fails, the scope is not judged (rather than judged against empty files).
        allowed = rub["fix"]["allowed_files"]
        old_src = new_src = None
        unread = ""
        try:
            base_tree = self.tree(base, None)
            old_src = {f: _read(base_tree / f) for f in allowed}
            patched = self.tree(base, in_scope)
            new_src = {f: _read(patched / f) for f in allowed}
        except gitrepo.GitError as e:
            unread = str(e)
        out.append(rubric.scope_criterion(changes, allowed, rub["fix"]["allowed_functions"], old_src, new_src,
                                          unread=unread))
        out.append(rubric.size_criterion(changes, rub["fix"]["max_changed_lines"]))
        return out

    def _stopped(self, info: dict[str, Any], reason: str, reruns: dict[str, Any]) -> dict[str, Any]:
        """The submission's code was stopped by the sandbox: nothing it produced is graded."""
        grade = failed(info, "stopped", reason, criterion_name="sandbox")
        return {**grade, "sandbox": sandbox_facts(), "network_isolated": network_isolation_available(),
                "reruns": reruns}

    # -- many submissions ----------------------------------------------------------------------
    def grade_all(self, tarballs: list[Path], jobs: int = 1, formats: tuple[str, ...] = ("json", "csv"),
                  on_done: Callable[[int, int, dict], None] = lambda i, n, g: None,
                  ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Grade every tarball (ids: their folder names, when chosen for a whole class of which these
        are a shard), then run the class checks and write grades.csv."""
        from breaklab.grader.integrity import finalize

        self.check_isolation()
        self.out.mkdir(parents=True, exist_ok=True)
        self.formats = tuple(formats)
        ids = list(ids) if ids is not None else submission_ids(tarballs)
        grades: list[dict[str, Any] | None] = [None] * len(tarballs)
        try:
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                futures = {pool.submit(self.grade, t, i): n for n, (t, i) in enumerate(zip(tarballs, ids))}
                for done, fut in enumerate(as_completed(futures), 1):
                    n = futures[fut]
                    grades[n] = fut.result()
                    on_done(done, len(tarballs), grades[n])
        finally:
            if not self.keep_work:
                shutil.rmtree(self.work, ignore_errors=True)
        graded = [g for g in grades if g is not None]
        finalize(self.out, graded, self.formats)
        return graded


def other_capability(submitted: Any, rerun: Any) -> str | None:
    """The CPU capability for a second re-run of a run made elsewhere: the submission's own when
    this CPU supports it, else another one it supports; None when there is no other."""
    from breaklab.grader.runs import cpu_capabilities

    here = cpu_capabilities()
    theirs, ours = str(submitted or "").lower(), str(rerun or "").lower()
    if theirs in here and theirs != ours:
        return theirs
    others = [c for c in here if c != ours]
    return others[0] if others else None


def private_tree(checkout: Path, dest: Path) -> Path:
    """A run's own copy of the course tree: every file of the checkout but .git (whose objects
    lead back to the course repository) and solutions/ (the answers)."""
    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n == ".git" or (Path(folder) == checkout and n == "solutions")]

    shutil.copytree(checkout, dest, symlinks=True, ignore=ignore)
    return dest


def _stopped(res, problems: list[str], what: str) -> str | None:
    """Why the submission's code is stopped: a sandbox violation, or files it planted."""
    if res is not None and res.violation:
        return f"{what} was stopped by the sandbox: {res.violation}"
    if problems:
        return (f"{what} left something other than a plain file where the grader reads a run file "
                f"({problems[0]}): planted links, FIFOs and devices are refused and never followed")
    return None


def submission_ids(tarballs: list[Path]) -> list[str]:
    """Folder names for the submissions: the tarball's name, made safe and unique."""
    ids, seen = [], set()
    for t in tarballs:
        stem = Path(t).name
        for suffix in (".tar.gz", ".tgz", ".tar"):
            stem = stem.removesuffix(suffix)
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-")[:80] or "submission"
        name, n = stem, 2
        while name in seen or name in RESERVED:
            name = f"{stem}-{n}"
            n += 1
        seen.add(name)
        ids.append(name)
    return ids


def failed(info: dict[str, Any], status: str, reason: str, detail: str | None = None,
           criterion_name: str | None = None) -> dict[str, Any]:
    """A zero in every group, with the reason."""
    name = criterion_name or ("intake" if status == "rejected" else "grading")
    criteria = [rubric.whole_group(g, name, reason) for g in rubric.WEIGHTS]
    grade = {**info, "status": status, "reason": reason, **rubric.total(criteria),
             "criteria": [c.as_dict() for c in criteria],
             "needs_review": [f"{status}: {reason}"] if status == "error" else []}
    if detail:
        grade["detail"] = detail
    return grade


def sandbox_facts() -> dict[str, Any]:
    """How the re-runs were confined on this machine, and what was not (docs/GRADING.md)."""
    return {"file_system_isolated": fs_isolation_available(),
            "network_isolated": network_isolation_available(), "notes": isolation_notes()}


def _first_word(data: bytes | None) -> str | None:
    if data is None:
        return None
    words = data[:200].decode("utf-8", errors="replace").split()
    return words[0] if words else None


def _env(data: bytes | None) -> dict[str, Any]:
    env = read_json(data).get("env", {})
    return env if isinstance(env, dict) else {}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _why(res: RunResult) -> str:
    if res.problems:
        return "; ".join(res.problems)
    if res.sandbox.ok and "metrics.jsonl" not in res.copied:
        return "the run wrote no metrics.jsonl"
    return res.sandbox.why()


def _sandbox_facts(res) -> dict[str, Any] | None:
    if res is None:
        return None
    return {"ok": res.ok, "why": None if res.ok else res.why(), "stopped_by_sandbox": res.violation}


def _run_facts(res: RunResult | None) -> dict[str, Any] | None:
    if res is None:
        return None
    s = res.summary()
    return {"ok": res.ok, "why": None if res.ok else _why(res),
            "stopped_by_sandbox": res.sandbox.violation,
            "test_acc": s.get("test_acc"), "initial_loss": s.get("initial_loss"),
            "final_loss": s.get("final_loss"), "symptoms": s.get("symptoms"),
            "checkpoint_sha256": res.checkpoint_sha()}
