"""Scoring: one typed model. Every criterion's maximum is declared once, in CRITERIA, and the
maxima of each group are checked (at import) to add up to the group's weight:

    reproducibility 35   the re-runs give the submitted metrics and checkpoint, byte for byte (or
                         within the cross-CPU tolerance in another environment); a tampered run
                         costs all 35
    diagnostics     30   the claimed symptom is in the re-run metrics, evidence, metric fields
    fix             20   the fixed run recovers as the grader measures it (grader/fixcheck.py),
                         and the patch is minimal
    explanation     15   reasoning about the run (breaklab.grader.explanation), not keywords

A `Criterion` is made with `award(name, points, reason)`: its group and maximum come from the
table, and points outside 0..max are refused. `Grade` holds a submission's criteria and checks that
they are exactly the declared ones before it adds them up.

The points of each criterion and the tolerances are documented in docs/GRADING.md; this module
only turns measured facts (from breaklab.grader.grade) into points, so each rule can be tested alone.
"""
from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from breaklab.submission import MAX_WORDS, SECTIONS
from breaklab.grader import evidence as evidence_files
from breaklab.grader.claims import CLAIM_ATOL, CLAIM_RTOL, _close, claimed_record, lookup
from breaklab.grader import explanation as explaining
from breaklab.grader.gitrepo import FileChange
from breaklab.grader.recovery import Recovery

WEIGHTS = {"reproducibility": 35, "diagnostics": 30, "fix": 20, "explanation": 15}


@dataclass(frozen=True)
class Spec:
    group: str
    max: float
    rule: str


# Every criterion, its group, its maximum and its rule in one line (docs/GRADING.md has the details).
CRITERIA: dict[str, Spec] = {
    "broken_metrics": Spec("reproducibility", 9, "the broken re-run's metrics.jsonl is the submitted one"),
    "broken_checkpoint": Spec("reproducibility", 8, "the broken re-run's checkpoint SHA-256 is the submitted one"),
    "fixed_metrics": Spec("reproducibility", 9, "the fixed re-run's metrics.jsonl is the submitted one"),
    "fixed_checkpoint": Spec("reproducibility", 9, "the fixed re-run's checkpoint SHA-256 is the submitted one"),
    "claim_matches": Spec("diagnostics", 12, "the symptom block's value is in the broken re-run"),
    "claim_shows_symptom": Spec("diagnostics", 6, "the claimed metric shows this break and differs from clean"),
    "evidence": Spec("diagnostics", 6, "a decodable figure, or a metrics excerpt showing the claimed value"),
    "metric_fields": Spec("diagnostics", 6, "every submitted step record carries the required fields"),
    "recovers": Spec("fix", 12, "the fixed re-run recovers"),
    "minimal_scope": Spec("fix", 6, "the patch changes only the break's hook"),
    "minimal_size": Spec("fix", 2, "the patch is small"),
    "length": Spec("explanation", 2, f"{explaining.MIN_WORDS} to {MAX_WORDS} words of prose"),
    "sections": Spec("explanation", 2, "the four sections each have something written"),
    "causal_chain": Spec("explanation", 8, "the rubric's concepts, named in sentences of a causal chain"),
    "measured": Spec("explanation", 3, "a number in a sentence matches the broken re-run"),
}


def check_weights(criteria: dict[str, Spec] = CRITERIA, weights: dict[str, int] = WEIGHTS) -> None:
    """Raise ValueError unless each group's maxima add up to its weight (and the weights to 100)."""
    sums = {g: 0.0 for g in weights}
    for name, spec in criteria.items():
        if spec.group not in sums:
            raise ValueError(f"criterion {name}: unknown group {spec.group!r}")
        sums[spec.group] += spec.max
    wrong = [f"{g}: criteria add up to {s:g}, weight {weights[g]}" for g, s in sums.items()
             if not math.isclose(s, weights[g])]
    if wrong or sum(weights.values()) != 100:
        raise ValueError("rubric maxima do not match the weights: " + "; ".join(wrong or ["weights do not add up to 100"]))


check_weights()

# The criteria of an exercise submission (`breaklab submit --exercise`, graded by
# breaklab/grader/exercise.py): the same four groups and weights. The symptom claim and the
# explanation are judged as a break submission's are, against the grader's own runs of the script
# as handed out and of the clean script; the fix points go per bug fixed.
EXERCISE_CRITERIA: dict[str, Spec] = {
    "script_reruns": Spec("reproducibility", 10, "the submitted train.py runs to the end in the grader's sandbox"),
    "script_metrics": Spec("reproducibility", 25, "the re-run's metrics.jsonl is the submitted one (another "
                                                  "environment: within the cross-CPU tolerance)"),
    "claim_matches": CRITERIA["claim_matches"],
    "claim_shows_symptom": CRITERIA["claim_shows_symptom"],
    "bugs_located": Spec("diagnostics", 12, "per bug, its code was changed; scaled by the share of the changes "
                                            "that touch a bug"),
    "bugs_fixed": Spec("fix", 20, "per bug, the grader's run with the learner's change shows no symptom and "
                                  "matches the clean script"),
    **{name: CRITERIA[name] for name in ("length", "sections", "causal_chain", "measured")},
}
check_weights(EXERCISE_CRITERIA)
SPECS = {**CRITERIA, **EXERCISE_CRITERIA}  # one name, one spec: the shared ones are the same objects

# Where a patch must never reach, whatever the break: the tests, the grader, the answers, the data
# and the registry of breaks (deleting a break from it is not fixing it).
FORBIDDEN_PREFIXES = ("tests/", "grader/", "solutions/", "data/", "breaks/__init__.py",
                      "breaks/base.py", ".github/", "pyproject.toml")

# Environment fields that, when they differ, explain different bits (docs/GRADING.md).
ENV_KEYS = ("python", "torch", "torchvision", "numpy", "platform", "machine", "cpu_capability",
            "device", "threads")
# Tolerance between a submitted run and its re-run in another environment, measured across the CPU
# capabilities of one machine (ATEN_CPU_CAPABILITY=default|avx2|avx512, every break, the clean
# run with and without AMP, seeds 0 and 1, 1 and 3 epochs: `python -m solutions.measure_cpu`,
# solutions/MEASUREMENTS.md): the first 5 losses moved by at most 7.4e-6 (relative), the final
# test accuracy of a run that does not diverge by at most 0.002 (diverging runs: up to 0.13).
ENV_LOSS_RTOL = 1e-3        # relative, each of the first ENV_LOSS_STEPS steps' loss
ENV_LOSS_STEPS = 5
ENV_ACC_TOL = 0.02          # absolute, final test accuracy (runs that do not diverge)

SYMPTOM_RTOL, SYMPTOM_ATOL = 0.1, 1e-2
REQUIRED_STEP_FIELDS = ("loss", "grad_mean", "act_first_mean", "act_first_var", "act_last_mean",
                        "act_last_var")
@dataclass
class Criterion:
    group: str
    name: str
    points: float
    max: float
    reason: str
    review: str | None = None   # what a person should decide, when set

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["review"] is None:
            del d["review"]
        return d


def award(name: str, points: float, reason: str, review: str | None = None) -> Criterion:
    """The criterion `name` with its declared group and maximum; points are rounded to 0.1."""
    spec = SPECS[name]
    points = round(points, 1)
    if not 0 <= points <= spec.max:
        raise ValueError(f"{name}: {points} points outside 0..{spec.max:g}")
    return Criterion(spec.group, name, points, spec.max, reason, review)


def award_share(name: str, share: float, reason: str, review: str | None = None) -> Criterion:
    """A share (0..1) of the criterion's maximum."""
    return award(name, scaled(share, SPECS[name].max), reason, review)


def whole_group(group: str, name: str, reason: str) -> Criterion:
    """A zero for a whole group (a submission that could not be graded), its maximum the weight."""
    return Criterion(group, name, 0, WEIGHTS[group], reason)


def scaled(share: float, maximum: float) -> float:
    return round(max(0.0, min(1.0, share)) * maximum, 1)


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------

def env_differences(submitted: dict[str, Any], rerun: dict[str, Any]) -> list[str]:
    return [f"{k} {submitted.get(k)!r} vs {rerun.get(k)!r}" for k in ENV_KEYS
            if submitted.get(k) != rerun.get(k)]


def metrics_within_tolerance(sub: list[dict], rerun: list[dict], alt: list[dict] | None = None
                             ) -> tuple[bool, str]:
    """Whether a run made in another environment agrees with its re-run (the bytes cannot).

    The same number of steps; the first ENV_LOSS_STEPS losses within ENV_LOSS_RTOL (before the
    last bits that another CPU's kernels change have been amplified); and the final test accuracy
    within ENV_ACC_TOL, where the run is stable: `alt`, a second re-run under another CPU
    capability, reaches the same final accuracy as `rerun`. A run that diverges (huge_lr,
    loss_sum) ends at an accuracy that moves with the last bits (by up to 0.08, measured), so
    there only its beginning can be checked."""
    s1 = [r for r in sub if r.get("type") == "step"]
    s2 = [r for r in rerun if r.get("type") == "step"]
    if len(s1) != len(s2) or not s1:
        return False, f"{len(s1)} steps submitted, {len(s2)} re-run"
    for a, b in zip(s1[:ENV_LOSS_STEPS], s2[:ENV_LOSS_STEPS]):
        la, lb = a.get("loss"), b.get("loss")
        if la is None or lb is None:
            if la is not lb:
                return False, f"step {b.get('step')}: loss {la} vs {lb}"
            continue
        if abs(la - lb) > ENV_LOSS_RTOL * max(abs(lb), 1e-12):
            return False, f"step {b.get('step')}: loss {la:.6g} submitted, {lb:.6g} re-run"
    acc = lambda records: ([r for r in records if r.get("type") == "epoch"] or [{}])[-1].get("test_acc")
    a1, a2 = acc(sub), acc(rerun)
    stable = alt is None or acc(alt) == a2
    detail = f"the first {ENV_LOSS_STEPS} losses within {ENV_LOSS_RTOL:g} (relative)"
    if not stable:
        return True, detail + (f"; the final accuracy is not compared: this run ends at another accuracy under "
                               f"another CPU capability ({a2} vs {acc(alt)}), as diverging runs do")
    if a1 is None or a2 is None or abs(a1 - a2) > ENV_ACC_TOL:
        return False, f"final test accuracy {a1} submitted, {a2} re-run"
    return True, detail + f", the final test accuracy within {ENV_ACC_TOL}"


@dataclass
class RunCheck:
    """How a submitted run compares with its re-run.

    status: identical (the same bytes), verified (another environment, within the cross-CPU
    tolerance), tampered (the same environment, other bytes: the code is deterministic, so the file
    was edited or made by other code), mismatch (another environment, outside the tolerance: a
    person decides), not_comparable (the submitted run ran code the grader did not), not_rerun."""

    status: str
    detail: str

    @property
    def trusted(self) -> bool:
        """The submitted metrics are the run's own numbers (byte-identical or verified)."""
        return self.status in ("identical", "verified")


def check_run(run: str, *, rerun_ok: bool, rerun_why: str, metrics_same: bool, ckpt_same: bool,
              env_diff: list[str], sub_records: list[dict] | None, rerun_records: list[dict] | None,
              not_rerun_code: str = "", alt_records: list[dict] | None = None, alt_same: bool = False,
              alt_capability: str = "") -> RunCheck:
    """not_rerun_code: code the submitted run ran and the re-run did not (a patch's changes
    outside the break's files); then differing bytes prove nothing either way. alt_*: a second
    re-run under another CPU capability (alt_capability, the submission's own where this CPU has
    it); alt_same: the submitted bytes equal that re-run's."""
    if not rerun_ok:
        return RunCheck("not_rerun", f"the {run} run could not be re-run: {rerun_why}")
    if metrics_same and ckpt_same:
        return RunCheck("identical", "metrics.jsonl and checkpoint SHA-256 byte-identical to the re-run")
    what = " and ".join(w for w, same in (("metrics.jsonl", metrics_same), ("checkpoint SHA-256", ckpt_same))
                        if not same)
    if not_rerun_code:
        return RunCheck("not_comparable", f"the submitted {run} {what} differs from the re-run, which ran without "
                                          f"{not_rerun_code} (out of scope, not run): the bytes cannot be compared")
    if env_diff and alt_same:
        return RunCheck("verified", f"another environment ({'; '.join(env_diff)}); re-run with "
                                    f"ATEN_CPU_CAPABILITY={alt_capability} (the submission's CPU capability), the "
                                    f"metrics.jsonl and checkpoint SHA-256 are byte-identical")
    close, detail = (False, "submitted metrics unreadable")
    if sub_records is not None and rerun_records is not None:
        close, detail = metrics_within_tolerance(sub_records, rerun_records, alt_records if env_diff else None)
    if not env_diff:
        return RunCheck("tampered", f"the submitted {run} {what} differs from the re-run in the same environment "
                                    f"(python, torch, CPU capability, threads all equal): the file was edited or not "
                                    f"made by this code ({detail})")
    if close:
        return RunCheck("verified", f"another environment ({'; '.join(env_diff)}), so the bytes cannot match; "
                                    f"the metrics agree with the re-run within the cross-CPU tolerance ({detail})")
    return RunCheck("mismatch", f"the submitted {run} {what} differs from the re-run beyond the cross-CPU tolerance "
                                f"({detail}), in another environment ({'; '.join(env_diff)})")


def reproducibility(run: str, check: RunCheck, void: str | None = None) -> list[Criterion]:
    """{run}_metrics and {run}_checkpoint, run being "broken" or "fixed" (maxima from CRITERIA).
    `void`: why the run earns nothing whatever its bytes (a fixed run whose fix is a no-op, out of
    scope or faked)."""
    names = (f"{run}_metrics", f"{run}_checkpoint")
    if void:
        return [award(n, 0, void) for n in names]
    if check.trusted:
        return [award_share(n, 1, check.detail) for n in names]
    review = ("the submitted run disagrees with the re-run in another environment: a different torch or "
              "Python can explain it, an edit too") if check.status == "mismatch" else None
    return [award(n, 0, check.detail, review=review) for n in names]


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------

def claim_criteria(claim: dict[str, Any] | None, broken: list[dict] | None, clean: list[dict] | None,
                   symptom_metrics: list[str]) -> list[Criterion]:
    def both_zero(why: str) -> list[Criterion]:
        return [award("claim_matches", 0, why), award("claim_shows_symptom", 0, why)]

    if claim is None:
        return both_zero("the report has no ```symptom block (metric, step, value)")
    if claim["errors"] or "metric" not in claim or "value" not in claim:
        return both_zero("the symptom block cannot be read: " + "; ".join(claim["errors"] or ["incomplete"]))
    if broken is None:
        return both_zero("no re-run of the broken run to check the claim against")
    metric, where = claim["metric"], (f"epoch {claim['epoch']}" if "epoch" in claim else f"step {claim.get('step')}")
    rec = claimed_record(broken, claim)
    found, actual = lookup(rec, metric) if rec else (False, None)
    if not found or isinstance(actual, (dict, list, bool)):
        return both_zero(f"the re-run broken metrics have no numeric {metric} at {where}")
    value = claim["value"]
    if _close(value, actual, CLAIM_RTOL, CLAIM_ATOL):
        match = award_share("claim_matches", 1, f"claimed {metric} = {value:g} at {where}; re-run: {_num(actual)}")
    else:
        match = award("claim_matches", 0, f"claimed {metric} = {value:g} at {where}, but the re-run "
                      f"broken run has {_num(actual)} (tolerance {CLAIM_RTOL:.0%} or {CLAIM_ATOL})")
    head = metric.split(".")[0]
    relevant = head in symptom_metrics or metric in symptom_metrics
    crec = claimed_record(clean, claim) if clean else None
    cfound, cval = lookup(crec, metric) if crec else (False, None)
    differs = cfound and not _close(actual, cval, SYMPTOM_RTOL, SYMPTOM_ATOL)
    parts = [f"{metric} {'is' if relevant else 'is not'} a metric this break shows in",
             (f"the broken run's {_num(actual)} differs from the clean run's {_num(cval)} at {where}" if differs
              else f"the clean run has {_num(cval)} there too: not a symptom" if cfound
              else "no clean-run value to compare")]
    return [match, award_share("claim_shows_symptom", (relevant + bool(differs)) / 2, "; ".join(parts))]


def evidence_criterion(files: dict[str, bytes], claim: dict[str, Any] | None,
                       broken: list[dict] | None = None) -> Criterion:
    """The best of the evidence files (breaklab.grader.evidence judges each one)."""
    if not files:
        return award("evidence", 0, "no evidence file (pass --evidence FILE to breaklab submit)")
    verdicts = [evidence_files.judge(name, data, claim, broken) for name, data in sorted(files.items())]
    best = max(verdicts, key=lambda v: v.share)
    others = [v.reason for v in verdicts if v is not best]
    reason = best.reason + (f" (other files: {'; '.join(others)})" if others and best.share < 1 else "")
    return award_share("evidence", best.share, reason)


def metric_fields_criterion(runs: dict[str, list[dict] | None]) -> Criterion:
    missing: set[str] = set()
    for label, records in runs.items():
        steps = [r for r in records or [] if r.get("type") == "step"]
        if not steps:
            missing.add(f"{label}: no step records")
            continue
        for f in REQUIRED_STEP_FIELDS:
            if any(f not in r for r in steps):
                missing.add(f"{label}: {f}")
    if not missing:
        return award_share("metric_fields", 1, "every step record carries " + ", ".join(REQUIRED_STEP_FIELDS))
    return award("metric_fields", max(0, CRITERIA["metric_fields"].max - len(missing)),
                 "missing: " + ", ".join(sorted(missing)))


# ---------------------------------------------------------------------------------------------
# Fix
# ---------------------------------------------------------------------------------------------

def recovery_criterion(rec: Recovery | None, why_not: str = "") -> Criterion:
    if rec is None:
        return award("recovers", 0, why_not or "no fixed re-run")
    if rec.passed:
        return award_share("recovers", 1, "the fixed run recovers: " + "; ".join(rec.reasons))
    return award("recovers", 0, "the fixed run does not recover: " + "; ".join(rec.reasons))


def function_spans(source: str) -> dict[str, tuple[int, int]]:
    """'Class.method' / 'function' -> (first line incl. decorators, last line)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    spans: dict[str, tuple[int, int]] = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                spans[name] = (start, child.end_lineno or child.lineno)
                visit(child, name + ".")
    visit(tree, "")
    return spans


def scope_criterion(changes: list[FileChange], allowed_files: list[str], allowed_functions: list[str],
                    old_sources: dict[str, str] | None, new_sources: dict[str, str] | None,
                    unread: str = "") -> Criterion:
    """Whether the patch changes only the allowed functions. old_sources/new_sources are the
    allowed files before and after the patch; None when they could not be read (unread says why):
    then the lines are not judged at all, and the criterion goes to review."""
    if not changes:
        return award("minimal_scope", 0, "the patch changes nothing")
    forbidden = sorted({c.path for c in changes if c.path.startswith(FORBIDDEN_PREFIXES)})
    if forbidden:
        return award("minimal_scope", 0, "the patch touches what a fix must not: " + ", ".join(forbidden),
                     review="a patch that edits tests, grader, data or the registry")
    outside = sorted({c.path for c in changes if c.path not in allowed_files})
    if outside:
        return award("minimal_scope", 0, f"the patch changes {', '.join(outside)}; a minimal fix "
                     f"for this break changes only {', '.join(allowed_functions)} in {', '.join(allowed_files)}")
    if old_sources is None or new_sources is None:
        return award("minimal_scope", 0, "not judged: the source before and after the patch "
                     f"could not be read ({unread or 'no checkout'})",
                     review="check by hand which functions the patch changes")
    stray = []
    for c in changes:
        if c.binary or c.mode:
            stray.append(f"{c.path} (mode or binary change)")
            continue
        old_spans = _spans_for(old_sources.get(c.path, ""), allowed_functions)
        new_spans = _spans_for(new_sources.get(c.path, ""), allowed_functions)
        stray += [f"{c.path}:{n} (removed)" for n in c.removed if not _inside(n, old_spans)]
        stray += [f"{c.path}:{n}" for n in c.added if not _inside(n, new_spans)]
    if stray:
        return award("minimal_scope", 0, f"lines changed outside {', '.join(allowed_functions)}: "
                     + ", ".join(stray[:6]))
    return award_share("minimal_scope", 1, f"changes only {', '.join(allowed_functions)} in {', '.join(allowed_files)}")


def _spans_for(source: str, functions: list[str]) -> list[tuple[int, int]]:
    spans = function_spans(source)
    out = []
    for f in functions:
        if f in spans:
            start, end = spans[f]
            # The def line's own `def` is part of the function; so is its body.
            out.append((start, end))
    return out


def _inside(line: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= line <= b for a, b in spans)


def size_criterion(changes: list[FileChange], max_lines: int) -> Criterion:
    n = sum(c.changed_lines for c in changes)
    if 0 < n <= max_lines:
        return award_share("minimal_size", 1, f"{n} changed line(s) (at most {max_lines})")
    return award("minimal_size", 0, f"{n} changed lines; a minimal fix changes at most {max_lines}")


# ---------------------------------------------------------------------------------------------
# Explanation
# ---------------------------------------------------------------------------------------------

def explanation_criteria(report: str, concepts: list[dict[str, Any]], broken: list[dict] | None = None,
                         references: dict[str, str] | None = None,
                         clean: list[dict] | None = None) -> tuple[list[Criterion], list[str]]:
    """The four explanation criteria (breaklab.grader.explanation says what counts), and the
    integrity findings: a report that is mostly a reference write-up scores 0 and is flagged."""
    ex = explaining.examine(report, concepts, broken, references, clean)
    if ex.copied_from:
        why = (f"the report copies the reference write-up {ex.copied_from} ({ex.copied_share:.0%} of its "
               f"word sequences are the write-up's): no explanation points")
        review = "the report copies a reference write-up: decide whether this is misconduct"
        crits = [award(name, 0, why, review=review if name == "causal_chain" else None)
                 for name in ("length", "sections", "causal_chain", "measured")]
        return crits, [f"copies the reference write-up {ex.copied_from} ({ex.copied_share:.0%})"]
    factor = ex.length_factor
    words = ex.words
    if words > MAX_WORDS:
        length = award("length", 0, f"{words} words (limit {MAX_WORDS})")
    else:
        length = award_share("length", factor, f"{words} words (limit {MAX_WORDS}; at least "
                             f"{explaining.MIN_WORDS} for full credit)")
    empty = [s for s, ok in ex.sections_written.items() if not ok]
    sections = award_share("sections", (len(SECTIONS) - len(empty)) / len(SECTIONS),
                           "all four sections have something written" if not empty else
                           "missing or empty section(s) (under " f"{explaining.MIN_SECTION_WORDS} words): "
                           + ", ".join(empty))
    short = f"; scaled by {factor:.2f} for a report of {words} words (under {explaining.MIN_WORDS})" if factor < 1 else ""
    copied = f"; {ex.copied_sentences} sentence(s) copied from a write-up count for nothing" if ex.copied_sentences else ""
    share = len(ex.concepts_in_chain) / len(concepts) if concepts else 1.0
    parts = ([f"reasons with {', '.join(ex.concepts_in_chain)}"] if ex.concepts_in_chain
             else [f"no concept of this break named in a causal chain ({ex.chain_sentences} chain sentence(s))"])
    if ex.concepts_elsewhere:
        parts.append("named outside any causal sentence (no credit): " + ", ".join(ex.concepts_elsewhere))
    if ex.concepts_missing:
        parts.append("not named: " + ", ".join(ex.concepts_missing))
    chain = award_share("causal_chain", share * factor, "; ".join(parts) + short + copied)
    if broken is None:
        measured = award("measured", 0, "no re-run of the broken run to check the report's numbers against")
    elif ex.measured:
        shown = ", ".join(f"{n} ({where})" for n, where in ex.measured[:4])
        measured = award_share("measured", factor, f"numbers from the broken re-run: {shown}" + short)
    else:
        measured = award("measured", 0, "no number in the report's sentences is a value of the broken re-run "
                         "that the clean run does not have too (a metric named in the sentence, at least two "
                         "significant digits, as measured)")
    return [length, sections, chain, measured], []


def _num(v: Any) -> str:
    return "non-finite (null)" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


@dataclass
class Grade:
    """A submission's criteria. Before adding them up it checks that each group's maxima are the
    group's weight: a criterion missing, doubled or with another maximum is a bug of the grader,
    never a silent change of the scale."""
    criteria: list[Criterion] = field(default_factory=list)

    def check(self) -> None:
        sums = {g: 0.0 for g in WEIGHTS}
        for c in self.criteria:
            sums[c.group] += c.max
            if not 0 <= c.points <= c.max:
                raise ValueError(f"{c.name}: {c.points} points outside 0..{c.max:g}")
        wrong = [f"{g} {s:g} of {WEIGHTS[g]}" for g, s in sums.items() if not math.isclose(s, WEIGHTS[g])]
        if wrong:
            raise ValueError("criteria maxima do not add up to the weights: " + ", ".join(wrong))

    def totals(self) -> dict[str, Any]:
        self.check()
        groups = {g: {"points": 0.0, "max": float(w)} for g, w in WEIGHTS.items()}
        for c in self.criteria:
            groups[c.group]["points"] += c.points
        for g in groups.values():
            g["points"] = round(g["points"], 1)
        return {"score": round(sum(g["points"] for g in groups.values()), 1), "max": 100.0, "groups": groups}


def total(criteria: list[Criterion]) -> dict[str, Any]:
    return Grade(list(criteria)).totals()
