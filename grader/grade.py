"""Grade submission tarballs: intake, re-runs in the sandbox, scoring, outputs.

Each submission is graded in its own try-block: a corrupt, hostile or incomplete one gets a zero
with the reason, and the others go on. A submission whose own code (the fixed re-run) the sandbox
stops, for a limit or for an action it refuses (a write outside its folder, a network
connection), gets status `stopped` and 0 with the sandbox's reason. Everything is written under `out`: the grades, and the
working folder `out/.work` (checkouts and re-runs, removed at the end unless keep_work).

Re-runs are shared between submissions when they are the same computation: the broken and the
clean run of one (base commit, break, seed, epochs, threads), and the fixed run of one patch.
They are deterministic, so running them once per grading session changes no result.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from breaklab.metric_log import read_metrics
from breaklab.submission import parse_symptom_block
from breaklab.grader import gitrepo, intake, rubric
from breaklab.grader.integrity import keep_report
from breaklab.grader.recovery import check_recovery
from breaklab.grader.runs import DEFAULT_TIMEOUT, RunResult, RunSpec, train
from breaklab.grader.sandbox import fs_isolation_available, isolation_notes, network_isolation_available

RESERVED = {".work", "grades.csv", "results.json", "shard.json"}


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
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key_locks: dict = field(default_factory=dict)
    _runs: dict = field(default_factory=dict)
    _trees: dict = field(default_factory=dict)
    _commits: dict = field(default_factory=dict)
    _references: dict | None = None

    def __post_init__(self):
        from breaklab.solutions import SOLUTIONS_DIR

        self.repo = Path(self.repo).resolve()
        self.out = Path(self.out).resolve()
        self.solutions_root = Path(self.solutions_root or SOLUTIONS_DIR)
        self.work = self.out / ".work"

    # -- shared, cached resources ------------------------------------------------------------
    def _key_lock(self, key) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def tree(self, base: str, patch: bytes | None) -> Path:
        """A private checkout of base (with patch applied); raises GitError."""
        key = (base, hashlib.sha256(patch).hexdigest() if patch is not None else None)
        with self._key_lock(("tree", key)):
            if key in self._trees:
                if isinstance(self._trees[key], Exception):
                    raise self._trees[key]
                return self._trees[key]
            dest = self.work / "trees" / (base[:12] + (f"-{key[1][:12]}" if key[1] else "-base"))
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

    def run(self, base: str, patch: bytes | None, spec: RunSpec, out_name: str) -> RunResult:
        key = (base, hashlib.sha256(patch).hexdigest() if patch is not None else None, spec, out_name)
        with self._key_lock(("run", key)):
            if key not in self._runs:
                tree = self.tree(base, patch)
                folder = self.work / "runs" / hashlib.sha256(repr(key).encode()).hexdigest()[:16]
                if folder.exists():
                    shutil.rmtree(folder)
                self.progress(f"  re-run: {spec.command(out_name)}" + (" (patched)" if patch is not None else ""))
                self._runs[key] = train(tree, spec, folder, out_name, timeout=self.timeout)
            return self._runs[key]

    def has_commit(self, commit: str) -> bool:
        """Whether commit is in the course repository (asked once per commit)."""
        with self._key_lock(("commit", commit)):
            if commit not in self._commits:
                self._commits[commit] = gitrepo.resolve_commit(self.repo, commit) == commit
            return self._commits[commit]

    # -- one submission ------------------------------------------------------------------------
    def grade(self, tarball: Path, sub_id: str) -> dict[str, Any]:
        folder = self.out / sub_id
        folder.mkdir(parents=True, exist_ok=True)
        base_info = {"submission": sub_id, "tarball": Path(tarball).name}
        try:
            grade = self._grade(Path(tarball), sub_id, base_info)
        except Exception as e:  # a bug or an unforeseen input: this submission only
            grade = failed(base_info, "error", f"internal error while grading ({type(e).__name__}: {e}); "
                           f"grade it by hand", detail=traceback.format_exc(limit=5))
        from breaklab.grader.report import write_submission_outputs

        write_submission_outputs(folder, grade, plots=self.plots, gradescope="gradescope" in self.formats)
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

        extract_to = self.work / sub_id / "submission"
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
        if m["break"] not in solution_names(self.solutions_root):
            return failed(info, "rejected", f"unknown break {m['break']!r}: no rubric for it")
        rub = load_rubric(m["break"], self.solutions_root)
        self.progress(f"{sub_id}: {m['break']} seed {m['seed']}, {m['epochs']} epoch(s), base {m['base_commit'][:12]}")

        spec = RunSpec(m["break"], m["seed"], m["epochs"], m["threads"])
        clean_spec = RunSpec("none", m["seed"], m["epochs"], m["threads"])
        patch = sub.path("fix.patch").read_bytes()
        base = m["base_commit"]

        def attempt(fn):
            try:
                return fn(), ""
            except gitrepo.GitError as e:
                return None, str(e)

        broken, broken_err = attempt(lambda: self.run(base, None, spec, "broken"))
        clean, clean_err = attempt(lambda: self.run(base, None, clean_spec, "clean"))
        fixed, fixed_err = attempt(lambda: self.run(base, patch, spec, "fixed"))
        reruns = {label: _run_facts(res) for label, res in (("broken", broken), ("fixed", fixed), ("clean", clean))}
        if fixed is not None and fixed.sandbox.violation:
            # The fix's code hit a limit or tried what the sandbox refuses: nothing it produced is
            # graded, and neither is the rest of the submission.
            grade = failed(info, "stopped", "the fixed run (the submission's code) was stopped by the "
                           f"sandbox: {fixed.sandbox.violation}", criterion_name="sandbox")
            return {**grade, "sandbox": sandbox_facts(), "network_isolated": network_isolation_available(),
                    "reruns": reruns}

        records = {
            "sub_broken": _records(sub.path("broken/metrics.jsonl")),
            "sub_fixed": _records(sub.path("fixed/metrics.jsonl")),
            "broken": _records(broken.folder / "metrics.jsonl") if broken and broken.ok else None,
            "fixed": _records(fixed.folder / "metrics.jsonl") if fixed and fixed.ok else None,
            "clean": _records(clean.folder / "metrics.jsonl") if clean and clean.ok else None,
        }
        criteria: list[rubric.Criterion] = []

        # Reproducibility
        for label, res, err in (("broken", broken, broken_err), ("fixed", fixed, fixed_err)):
            ok = res is not None and res.ok
            sub_files = {"metrics": sub.path(f"{label}/metrics.jsonl").read_bytes(),
                         "ckpt": _first_word(sub.path(f"{label}/checkpoint.pt.sha256"))}
            criteria += rubric.reproducibility(
                label, rerun_ok=ok,
                rerun_why=err or (res.sandbox.why() if res is not None else "not run"),
                metrics_same=ok and (res.folder / "metrics.jsonl").read_bytes() == sub_files["metrics"],
                ckpt_same=ok and sub_files["ckpt"] is not None and res.checkpoint_sha() == sub_files["ckpt"],
                env_diff=rubric.env_differences(_env(sub.path(f"{label}/meta.json")), _env(res.folder / "meta.json"))
                if ok else [],
                sub_records=records[f"sub_{label}"], rerun_records=records[label])

        # Diagnostics
        report_text = sub.read_text("report.md")
        claim = parse_symptom_block(report_text)
        criteria += rubric.claim_criteria(claim, records["broken"], records["clean"], rub["symptom_metrics"])
        criteria.append(rubric.evidence_criterion({n.split("/", 1)[1]: sub.path(n).read_bytes() for n in sub.evidence},
                                                  claim, records["broken"]))
        criteria.append(rubric.metric_fields_criterion({"broken": records["sub_broken"], "fixed": records["sub_fixed"]}))

        # Fix
        if records["fixed"] is None or records["clean"] is None:
            why = ("fixed run: " + (fixed_err or (fixed.sandbox.why() if fixed else "not run"))) if records["fixed"] is None \
                else ("clean reference run: " + (clean_err or (clean.sandbox.why() if clean else "not run")))
            criteria.append(rubric.recovery_criterion(None, "no re-run to judge: " + why))
        else:
            criteria.append(rubric.recovery_criterion(check_recovery(records["fixed"], records["clean"], rub["recovery"])))
        changes = gitrepo.parse_patch(patch)
        allowed = rub["fix"]["allowed_files"]
        # Which functions a line belongs to needs the source before and after the patch; when a
        # checkout fails, the scope is not judged (rather than judged against empty files).
        old_src = new_src = None
        unread = ""
        try:
            base_tree = self.tree(base, None)
            old_src = {f: _read(base_tree / f) for f in allowed}
            patched = self.tree(base, patch)
            new_src = {f: _read(patched / f) for f in allowed}
        except gitrepo.GitError as e:
            unread = str(e)
        criteria.append(rubric.scope_criterion(changes, allowed, rub["fix"]["allowed_functions"], old_src, new_src,
                                               unread=unread))
        criteria.append(rubric.size_criterion(changes, rub["fix"]["max_changed_lines"]))

        # Explanation
        explained, integrity = self._explanation(report_text, rub["concepts"], records["broken"], records["clean"])
        criteria += explained

        totals = rubric.total(criteria)
        return {**info, "status": "graded", "reason": None, **totals,
                "criteria": [c.as_dict() for c in criteria],
                "needs_review": [f"{c.name}: {c.review}" for c in criteria if c.review],
                "integrity": integrity, "_report": report_text,
                "network_isolated": network_isolation_available(),
                "sandbox": sandbox_facts(),
                "reruns": reruns,
                "_plots": {label: str(res.folder) for label, res in
                           (("broken", broken), ("fixed", fixed)) if res is not None and res.ok}}

    # -- many submissions ----------------------------------------------------------------------
    def grade_all(self, tarballs: list[Path], jobs: int = 1, formats: tuple[str, ...] = ("json", "csv"),
                  on_done: Callable[[int, int, dict], None] = lambda i, n, g: None,
                  ids: list[str] | None = None) -> list[dict[str, Any]]:
        """Grade every tarball (ids: their folder names, when chosen for a whole class of which these
        are a shard), then run the class checks and write grades.csv."""
        from breaklab.grader.integrity import finalize

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


def _records(path: Path) -> list[dict[str, Any]] | None:
    try:
        return read_metrics(path)
    except (OSError, ValueError):
        return None


def _first_word(path: Path) -> str | None:
    try:
        words = path.read_text(errors="replace")[:200].split()
    except OSError:
        return None
    return words[0] if words else None


def _env(path: Path) -> dict[str, Any]:
    import json

    try:
        env = json.loads(path.read_text()).get("env", {})
        return env if isinstance(env, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _run_facts(res: RunResult | None) -> dict[str, Any] | None:
    if res is None:
        return None
    s = res.summary()
    return {"ok": res.ok, "why": None if res.ok else res.sandbox.why(),
            "stopped_by_sandbox": res.sandbox.violation,
            "test_acc": s.get("test_acc"), "initial_loss": s.get("initial_loss"),
            "final_loss": s.get("final_loss"), "symptoms": s.get("symptoms"),
            "checkpoint_sha256": res.checkpoint_sha()}
