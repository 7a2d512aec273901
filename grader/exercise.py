"""Grade exercise submissions (`breaklab submit --exercise`) with the instructor's key.

The same four groups and weights as a break submission (grader/rubric.py, EXERCISE_CRITERIA):

    reproducibility 35   the submitted train.py runs in the grader's sandbox (10), and its
                         metrics.jsonl is the submitted one (25; made in another environment:
                         within the cross-CPU tolerance)
    diagnostics     30   the report's symptom block holds a value of the grader's own run of the
                         script as handed out, in a metric that differs from the clean script's
                         (12 + 6); each bug's code was changed, scaled by the share of the
                         learner's changes that touch a bug (12)
    fix             20   per bug fixed, as `breaklab exercise check` judges it (each bug's change,
                         with the untouched bugs put back, runs without a symptom and matches the
                         clean script), run by the grader in its sandbox
    explanation     15   reasoning about the run (breaklab.grader.explanation), with the concepts of
                         the exercise's bugs (solutions/<bug>/rubric.json)

Nothing the student ran is trusted: the key comes from the instructor (--exercise-key: one
exercise's key, or a class key with an entry per exercise folder), never from the submission;
the grader runs the learner's train.py, the handed-out script and the clean script itself, in
separate sandboxed processes (the learner's code never runs beside a reference), and reads their
files without following links. The fixes are judged on the handed-out script with only the
learner's code of each bug's region put in (breaklab.exercises.check.judge, transplant): a change
elsewhere cannot reach the measurements. The clean script's run,
made here, is the reference a fixed run is held to (with the calibration's tolerance), so a
shortened exercise (fewer epochs) is graded on its own terms.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breaklab.exercises.submit import FORMAT, NAME, REQUIRED_FILES, RUN_FOLDER, VERSION
from breaklab.grader import intake, rubric
from breaklab.grader.grade import Grader, failed, sandbox_facts
from breaklab.grader.intake import Rejected
from breaklab.grader.runs import parse_records
from breaklab.submission import parse_symptom_block

# The jobs' names: the learner's script as submitted, and the grader's two references.
SUBMITTED, HANDED_OUT, CLEAN = "submitted", "handed_out", "clean"
# The calibration's tolerance when the variant was never measured (it always is; see generate.py).
DEFAULT_TOLERANCE = 0.02


class ExerciseKeyError(Exception):
    """The instructor's key cannot be used; str(e) says why."""


def validate_manifest(m: Any) -> None:
    """An exercise submission's manifest: its shape and value ranges (Rejected names the field)."""
    if not isinstance(m, dict):
        raise Rejected("manifest.json is not a JSON object")
    if m.get("format") != FORMAT or m.get("version") != VERSION:
        raise Rejected(f"manifest.json is not a {FORMAT} version {VERSION} manifest (an exercise submission "
                       f"is made by `breaklab submit --exercise DIR`)")

    need = intake.field_check(m)
    need("exercise", lambda v: isinstance(v, str) and NAME.match(v), "the exercise folder's name")
    intake.check_shared_fields(m)


def load_keys(path: Path) -> dict[str, dict]:
    """The instructor's key file: exercise name -> key. A class key names its exercises; a single
    exercise's key stands for any name (one exercise handed to everyone)."""
    from breaklab.exercises.generate import CLASS_KEY_FORMAT, KEY_FORMAT, KEY_VERSION, _key_is_whole

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ExerciseKeyError(f"--exercise-key {path}: not a readable key ({e}); pass the key `breaklab exercise new` "
                        f"wrote") from None
    if isinstance(data, dict) and data.get("format") == CLASS_KEY_FORMAT:
        entries = data.get("exercises") if isinstance(data.get("exercises"), dict) else {}
    elif isinstance(data, dict) and data.get("format") == KEY_FORMAT:
        entries = {"*": data}
    else:
        raise ExerciseKeyError(f"--exercise-key {path}: not an exercise key (format {KEY_FORMAT} or {CLASS_KEY_FORMAT})")
    for name, key in entries.items():
        if not isinstance(key, dict) or key.get("version") != KEY_VERSION or not _key_is_whole(key):
            raise ExerciseKeyError(f"--exercise-key {path}: the key of {name!r} is damaged; use the key `breaklab "
                            f"exercise new` wrote")
    if not entries:
        raise ExerciseKeyError(f"--exercise-key {path}: the class key holds no exercise")
    return entries


def located_share(alignment, key_bugs: list[dict], changed: dict[str, bool]) -> tuple[float, str]:
    """The share of bugs whose code changed, times the share of the learner's changes that touch
    a bug's region: rewriting everything finds every bug and earns little."""
    hunks = [op for op in alignment.opcodes if op[0] != "equal"]
    on_target = sum(any(_touches(op, b["region"]) for b in key_bugs) for op in hunks)
    found = sum(changed.values())
    precision = on_target / len(hunks) if hunks else 0.0
    share = (found / len(key_bugs)) * precision if key_bugs else 0.0
    return share, (f"changed the code of {found} of {len(key_bugs)} bug(s); {on_target} of {len(hunks)} changed "
                   f"passage(s) touch a bug")


def _touches(op, region) -> bool:
    tag, i1, i2, _, _ = op
    start, end = region
    if tag == "insert":
        return start <= i1 <= end
    return i1 < end and i2 > start or (start == end and i1 <= start < i2)


@dataclass
class ExerciseGrader(Grader):
    """A Grader (outputs, class checks, isolation) whose submissions are exercises."""

    key_path: Path | None = None
    _keys: dict | None = None

    def check_isolation(self) -> None:
        """As a Grader's, without a course repository: the key holds every script that runs."""
        from breaklab.grader.grade import ISOLATION_HELP, IsolationUnavailable
        from breaklab.grader.sandbox import exposed, fs_isolation_available

        if not fs_isolation_available() and not self.no_isolation:
            raise IsolationUnavailable(ISOLATION_HELP)
        for what, path in (("--out", self.out), ("the solutions", self.solutions_root),
                           ("--exercise-key", Path(self.key_path).resolve())):
            if exposed(path):
                raise IsolationUnavailable(f"{what} {path} lies inside the system or Python folders every re-run "
                                           "can read; choose a folder elsewhere")

    def keys(self) -> dict[str, dict]:
        with self._lock:
            if self._keys is None:
                self._keys = load_keys(self.key_path)
            return self._keys

    def _grade(self, tarball: Path, sub_id: str, info: dict[str, Any]) -> dict[str, Any]:
        from breaklab.exercises.check import judge
        from breaklab.exercises.generate import load_calibration, reference
        from breaklab.exercises.variants import Variant

        extract_to = self.work / "submissions" / sub_id
        if extract_to.exists():
            shutil.rmtree(extract_to)
        extract_to.parent.mkdir(parents=True, exist_ok=True)
        try:
            sub = intake.open_submission(tarball, extract_to, validate_manifest, REQUIRED_FILES)
        except Rejected as e:
            return failed(info, "rejected", str(e))
        m = sub.manifest
        keys = self.keys()
        key = keys.get(m["exercise"]) or keys.get("*")
        info.update(tarball_sha256=sub.tarball_sha256, student=m["student"], break_name="exercise",
                    exercise=m["exercise"], seed=key.get("seed") if key else None)
        if key is None:
            return failed(info, "rejected", f"the key has no exercise named {m['exercise']!r} (it has: "
                          f"{', '.join(sorted(keys))[:300]})")
        try:
            script = sub.read_bytes("train.py").decode("utf-8")
        except UnicodeDecodeError:
            return failed(info, "rejected", "train.py is not UTF-8 text")
        info["bugs"] = len(key["bugs"])
        self.progress(f"{sub_id}: exercise {m['exercise']} ({len(key['bugs'])} bug(s), {key['variant']})")

        # Three sandboxed processes, so that no code of the learner's runs beside the grader's
        # references: the handed-out and the clean script (the instructor's, from the key); the
        # learner's train.py as submitted; and the learner's fixes, judged bug by bug.
        from breaklab.exercises.runner import run_in_sandbox
        from breaklab.exercises.generate import ExerciseError

        try:
            tolerance = reference(load_calibration(), Variant.parse(key["variant"]))[1]
        except (ExerciseError, KeyError, ValueError):  # a variant the calibration does not hold
            tolerance = DEFAULT_TOLERANCE
        work = self.work / "exercises" / sub_id
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        refs, refs_folder = self._reference_runs(key)
        bad = next((job for job in (CLEAN, HANDED_OUT) if not refs[job].ok), None)
        if bad is not None:
            return failed(info, "error", f"the grader's own run of the {bad.replace('_', '-')} script failed "
                          f"({refs[bad].error}); check the key and this machine")
        mine, mine_sandbox = run_in_sandbox(work / "submitted", {SUBMITTED: script}, self.timeout)
        if mine_sandbox.violation:
            return self._stopped(info, f"the submitted train.py was stopped by the sandbox: {mine_sandbox.violation}",
                                 {SUBMITTED: mine[SUBMITTED].to_json()})
        clean_acc = refs[CLEAN].test_acc
        judged = judge(key, script, work / "judge", self.timeout, (clean_acc, tolerance), transplant=True)
        if judged.violations:
            return self._stopped(info, f"the learner's fix was stopped by the sandbox: {judged.violations[0]}",
                                 {job: o.to_json() for job, o in judged.outcomes.items()})
        outcomes = {**refs, **mine, **judged.outcomes}
        metrics = {HANDED_OUT: self._metrics(refs_folder, HANDED_OUT),
                   CLEAN: self._metrics(refs_folder, CLEAN),
                   SUBMITTED: self._metrics(work / "submitted", SUBMITTED)}
        records = {job: parse_records(data) for job, data in metrics.items()}

        criteria = self._reproducibility(sub, outcomes[SUBMITTED], metrics[SUBMITTED])
        report_text = sub.read_text("report.md")
        claim = parse_symptom_block(report_text)
        symptom_metrics, concepts = self._bug_rubrics(key)
        criteria += rubric.claim_criteria(claim, records[HANDED_OUT], records[CLEAN], symptom_metrics)
        share, why = located_share(judged.alignment, key["bugs"], judged.changed)
        criteria.append(rubric.award_share("bugs_located", share, why))
        n_fixed, n = sum(judged.fixed.values()), len(key["bugs"])
        fixed_reason = (f"{n_fixed} of {n} bug(s) fixed, judged by the grader's runs in its sandbox "
                        f"({judged.trainings} training(s); a fix must run without a symptom and reach the clean "
                        f"script's test accuracy {clean_acc:.3f} within {tolerance:.3f})")
        criteria.append(rubric.award_share("bugs_fixed", n_fixed / n if n else 0.0,
                                           fixed_reason + "".join(f"; {note}" for note in judged.notes)))
        explained, copied = self._explanation(report_text, concepts, records[HANDED_OUT], records[CLEAN])
        criteria += explained
        review = []
        if "*" not in keys and m["student"] is not None and m["student"] != m["exercise"]:
            review.append(f"exercise: student {m['student']} submitted the exercise of {m['exercise']}: decide "
                          f"whether it was theirs")

        totals = rubric.total(criteria)
        return {**info, "status": "graded", "reason": None, **totals,
                "criteria": [c.as_dict() for c in criteria],
                "needs_review": [f"{c.name}: {c.review}" for c in criteria if c.review] + review,
                "integrity": copied, "_report": report_text,
                "bugs_fixed": {"fixed": n_fixed, "total": n},
                "notes": judged.notes, "sandbox": sandbox_facts(),
                "reruns": {job: o.to_json() for job, o in outcomes.items()},
                "_plots": {label: str(folder / job / RUN_FOLDER) for label, folder, job in
                           (("broken", refs_folder, HANDED_OUT), ("fixed", work / "submitted", SUBMITTED))
                           if outcomes[job].ok}}

    def _reference_runs(self, key: dict) -> tuple[dict[str, Any], Path]:
        """The grader's runs of the handed-out and the clean script (outcomes, folder): made once
        per pair of scripts in a grading session (one key for a whole class shares them)."""
        from breaklab.exercises.runner import run_in_sandbox

        ident = hashlib.sha256(f"{key['script']}\0{key['clean_script']}".encode()).hexdigest()[:16]
        with self._key_lock(("exercise-references", ident)):
            if ("exercise-references", ident) not in self._runs:
                folder = self.work / "references" / ident
                outcomes, _ = run_in_sandbox(folder, {HANDED_OUT: key["script"], CLEAN: key["clean_script"]},
                                             self.timeout)
                self._runs[("exercise-references", ident)] = (outcomes, folder)
            return self._runs[("exercise-references", ident)]

    def _metrics(self, folder: Path, job: str) -> bytes | None:
        """A job's metrics.jsonl, read without following links (the learner's script wrote there)."""
        from breaklab import untrusted

        files, problems = untrusted.read_folder_files(folder / job / RUN_FOLDER,
                                                      {"metrics.jsonl": untrusted.MAX_MEMBER})
        return None if problems else files.get("metrics.jsonl")

    def _reproducibility(self, sub, outcome, rerun_bytes: bytes | None) -> list[rubric.Criterion]:
        if not outcome.ok:
            why = f"the re-run of the submitted train.py did not finish: {outcome.error}"
            return [rubric.award("script_reruns", 0, why), rubric.award("script_metrics", 0, why)]
        out = [rubric.award_share("script_reruns", 1, f"the submitted train.py ran to the end "
                                  f"({outcome.steps} steps, test accuracy {outcome.test_acc:.3f})")]
        submitted_bytes = sub.read_bytes(f"{RUN_FOLDER}/metrics.jsonl")
        if rerun_bytes is None:
            return out + [rubric.award("script_metrics", 0, "the re-run left no readable metrics.jsonl")]
        if rerun_bytes == submitted_bytes:
            return out + [rubric.award_share("script_metrics", 1, "the re-run's metrics.jsonl is the submitted "
                                             "one, byte for byte")]
        from breaklab.exercises.submit import environment

        differences = rubric.env_differences(sub.manifest["env"], environment())
        submitted = parse_records(submitted_bytes)
        if not differences:
            return out + [rubric.award("script_metrics", 0, "the re-run's metrics.jsonl differs from the submitted "
                                       "one in the same environment: the run is not this script's")]
        ok, detail = rubric.metrics_within_tolerance(submitted or [], parse_records(rerun_bytes) or [])
        if ok:
            return out + [rubric.award_share("script_metrics", 1, f"made in another environment "
                                             f"({'; '.join(differences[:3])}): {detail}")]
        return out + [rubric.award("script_metrics", 0, f"made in another environment ({'; '.join(differences[:3])}),"
                                   f" and not within the tolerance: {detail}")]

    def _bug_rubrics(self, key: dict) -> tuple[list[str], list[dict]]:
        """The symptom metrics and the concepts of the exercise's bugs (their rubric.json)."""
        from breaklab.solutions import rubric as load_rubric

        metrics: list[str] = []
        concepts: list[dict] = []
        for bug in key["bugs"]:
            try:
                rub = load_rubric(bug["name"], self.solutions_root)
            except (OSError, ValueError):
                continue
            metrics += [m for m in rub.get("symptom_metrics", []) if m not in metrics]
            concepts += rub.get("concepts", [])
        return metrics, concepts
