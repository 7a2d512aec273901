"""Scoring: every criterion is a `Criterion(points, max, reason)`, in four groups.

    reproducibility 35   the re-runs give the submitted metrics and checkpoint, byte for byte (or
                         within the cross-CPU tolerance in another environment); a tampered run
                         costs all 35
    diagnostics     30   the claimed symptom is in the re-run metrics, evidence, metric fields
    fix             20   the fixed run recovers as the grader measures it (grader/fixcheck.py),
                         and the patch is minimal
    explanation     15   <= 500 words, four sections, the root cause named with the concepts

The points of each criterion and the tolerances are documented in docs/GRADING.md; this module
only turns measured facts (from breaklab.grader.grade) into points, so each rule can be tested alone.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from breaklab.submission import MAX_WORDS, SECTIONS, prose, sections_present, word_count
from breaklab.grader.gitrepo import FileChange
from breaklab.grader.recovery import Recovery

WEIGHTS = {"reproducibility": 35, "diagnostics": 30, "fix": 20, "explanation": 15}

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

CLAIM_RTOL, CLAIM_ATOL = 0.05, 5e-3   # a claimed value may be rounded to 2 significant digits
SYMPTOM_RTOL, SYMPTOM_ATOL = 0.1, 1e-2
REQUIRED_STEP_FIELDS = ("loss", "grad_mean", "act_first_mean", "act_first_var", "act_last_mean",
                        "act_last_var")
EPOCH_FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc")


@dataclass
class Criterion:
    group: str
    name: str
    points: float
    max: float
    reason: str
    review: str | None = None   # what a person should look at, when set

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["review"] is None:
            del d["review"]
        return d


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


def reproducibility(run: str, max_metrics: float, max_ckpt: float, check: RunCheck,
                    void: str | None = None) -> list[Criterion]:
    """The two criteria of one run. `void`: why the run earns nothing whatever its bytes (a fixed
    run whose fix is a no-op, out of scope or faked)."""
    g = "reproducibility"
    names = ((f"{run}_metrics", max_metrics), (f"{run}_checkpoint", max_ckpt))
    if void:
        return [Criterion(g, n, 0, m, void) for n, m in names]
    if check.status in ("identical", "verified"):
        return [Criterion(g, n, m, m, check.detail) for n, m in names]
    review = ("the submitted run disagrees with the re-run in another environment: a different torch or "
              "Python can explain it, an edit too") if check.status == "mismatch" else None
    return [Criterion(g, n, 0, m, check.detail, review=review) for n, m in names]


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------

def lookup(record: dict[str, Any], metric: str) -> tuple[bool, Any]:
    """A metric of a record, by name or dotted path into a per-layer dict (grad_mean.fc1.weight)."""
    if metric in record:
        return True, record[metric]
    for key, val in record.items():
        if isinstance(val, dict) and metric.startswith(key + "."):
            sub = metric[len(key) + 1:]
            if sub in val:
                return True, val[sub]
    return False, None


def claimed_record(records: list[dict], claim: dict[str, Any]) -> dict | None:
    metric = claim.get("metric", "")
    if metric.split(".")[0] in EPOCH_FIELDS:
        for r in records:
            if r.get("type") == "epoch" and (
                    r.get("epoch") == claim["epoch"] if "epoch" in claim else r.get("step") == claim.get("step")):
                return r
        return None
    for r in records:
        if r.get("type") == "step" and r.get("step") == claim.get("step"):
            return r
    return None


def _close(a: float | None, b: float | None, rtol: float, atol: float) -> bool:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
        return (a is None or not math.isfinite(a)) and (b is None or not math.isfinite(b))
    return abs(a - b) <= max(rtol * abs(b), atol)


def claim_criteria(claim: dict[str, Any] | None, broken: list[dict] | None, clean: list[dict] | None,
                   symptom_metrics: list[str]) -> list[Criterion]:
    g = "diagnostics"
    if claim is None:
        why = "the report has no ```symptom block (metric, step, value)"
        return [Criterion(g, "claim_matches", 0, 12, why), Criterion(g, "claim_shows_symptom", 0, 6, why)]
    if claim["errors"] or "metric" not in claim or "value" not in claim:
        why = "the symptom block cannot be read: " + "; ".join(claim["errors"] or ["incomplete"])
        return [Criterion(g, "claim_matches", 0, 12, why), Criterion(g, "claim_shows_symptom", 0, 6, why)]
    if broken is None:
        why = "no re-run of the broken run to check the claim against"
        return [Criterion(g, "claim_matches", 0, 12, why), Criterion(g, "claim_shows_symptom", 0, 6, why)]
    metric, where = claim["metric"], (f"epoch {claim['epoch']}" if "epoch" in claim else f"step {claim.get('step')}")
    rec = claimed_record(broken, claim)
    found, actual = lookup(rec, metric) if rec else (False, None)
    if not found or isinstance(actual, (dict, list, bool)):
        why = f"the re-run broken metrics have no numeric {metric} at {where}"
        return [Criterion(g, "claim_matches", 0, 12, why), Criterion(g, "claim_shows_symptom", 0, 6, why)]
    value = claim["value"]
    if _close(value, actual, CLAIM_RTOL, CLAIM_ATOL):
        match = Criterion(g, "claim_matches", 12, 12, f"claimed {metric} = {value:g} at {where}; re-run: {_num(actual)}")
    else:
        match = Criterion(g, "claim_matches", 0, 12, f"claimed {metric} = {value:g} at {where}, but the re-run "
                          f"broken run has {_num(actual)} (tolerance {CLAIM_RTOL:.0%} or {CLAIM_ATOL})")
    head = metric.split(".")[0]
    relevant = head in symptom_metrics or metric in symptom_metrics
    crec = claimed_record(clean, claim) if clean else None
    cfound, cval = lookup(crec, metric) if crec else (False, None)
    differs = cfound and not _close(actual, cval, SYMPTOM_RTOL, SYMPTOM_ATOL)
    pts = (3 if relevant else 0) + (3 if differs else 0)
    parts = [f"{metric} {'is' if relevant else 'is not'} a metric this break shows in",
             (f"the broken run's {_num(actual)} differs from the clean run's {_num(cval)} at {where}" if differs
              else f"the clean run has {_num(cval)} there too: not a symptom" if cfound
              else "no clean-run value to compare")]
    return [match, Criterion(g, "claim_shows_symptom", pts, 6, "; ".join(parts))]


def evidence_criterion(files: dict[str, bytes], claim: dict[str, Any] | None) -> Criterion:
    g, name = "diagnostics", "evidence"
    if not files:
        return Criterion(g, name, 0, 6, "no evidence file (pass --evidence FILE to breaklab submit)")
    readable, mentions, pictures = [], False, []
    metric = (claim or {}).get("metric", "") or ""
    head = metric.split(".")[0]
    for fname, data in files.items():
        if data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"%PDF") or data[:4] == b"<svg":
            readable.append(fname)
            pictures.append(fname)
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if fname.endswith(".json"):
            try:
                json.loads(text)
            except ValueError:
                try:  # a JSON-lines snippet of metrics.jsonl
                    [json.loads(line) for line in text.splitlines() if line.strip()]
                except ValueError:
                    continue
        readable.append(fname)
        if head and head in text:
            mentions = True
    if not readable:
        return Criterion(g, name, 0, 6, f"evidence files cannot be read: {', '.join(files)}")
    if mentions:
        return Criterion(g, name, 6, 6, f"evidence {', '.join(readable)} shows the claimed metric {head}")
    if pictures:
        return Criterion(g, name, 6, 6, f"evidence {', '.join(readable)} present (image)",
                         review=f"check that {', '.join(pictures)} shows the claimed symptom")
    return Criterion(g, name, 4, 6, f"evidence {', '.join(readable)} present but does not mention the "
                     f"claimed metric {head or '(none claimed)'}")


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
    maximum = 6
    if not missing:
        return Criterion("diagnostics", "metric_fields", maximum, maximum,
                         "every step record carries " + ", ".join(REQUIRED_STEP_FIELDS))
    pts = max(0, maximum - len(missing))
    return Criterion("diagnostics", "metric_fields", pts, maximum, "missing: " + ", ".join(sorted(missing)))


# ---------------------------------------------------------------------------------------------
# Fix
# ---------------------------------------------------------------------------------------------

def recovery_criterion(rec: Recovery | None, why_not: str = "") -> Criterion:
    if rec is None:
        return Criterion("fix", "recovers", 0, 12, why_not or "no fixed re-run")
    if rec.passed:
        return Criterion("fix", "recovers", 12, 12, "the fixed run recovers: " + "; ".join(rec.reasons))
    return Criterion("fix", "recovers", 0, 12, "the fixed run does not recover: " + "; ".join(rec.reasons))


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
    g, maximum = "fix", 6
    if not changes:
        return Criterion(g, "minimal_scope", 0, maximum, "the patch changes nothing")
    forbidden = sorted({c.path for c in changes if c.path.startswith(FORBIDDEN_PREFIXES)})
    if forbidden:
        return Criterion(g, "minimal_scope", 0, maximum, "the patch touches what a fix must not: " +
                         ", ".join(forbidden), review="a patch that edits tests, grader, data or the registry")
    outside = sorted({c.path for c in changes if c.path not in allowed_files})
    if outside:
        return Criterion(g, "minimal_scope", 0, maximum, f"the patch changes {', '.join(outside)}; a minimal fix "
                         f"for this break changes only {', '.join(allowed_functions)} in {', '.join(allowed_files)}")
    if old_sources is None or new_sources is None:
        return Criterion(g, "minimal_scope", 0, maximum, "not judged: the source before and after the patch "
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
        return Criterion(g, "minimal_scope", 0, maximum, f"lines changed outside {', '.join(allowed_functions)}: "
                         + ", ".join(stray[:6]))
    return Criterion(g, "minimal_scope", maximum, maximum,
                     f"changes only {', '.join(allowed_functions)} in {', '.join(allowed_files)}")


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
        return Criterion("fix", "minimal_size", 2, 2, f"{n} changed line(s) (at most {max_lines})")
    return Criterion("fix", "minimal_size", 0, 2, f"{n} changed lines; a minimal fix changes at most {max_lines}")


# ---------------------------------------------------------------------------------------------
# Explanation
# ---------------------------------------------------------------------------------------------

def explanation_criteria(report: str, concepts: list[dict[str, Any]]) -> list[Criterion]:
    g = "explanation"
    words = word_count(report)
    out = [Criterion(g, "length", 3 if 0 < words <= MAX_WORDS else 0, 3,
                     f"{words} words (limit {MAX_WORDS})")]
    present = sections_present(report)
    missing = [s for s, ok in present.items() if not ok]
    out.append(Criterion(g, "sections", len(SECTIONS) - len(missing), len(SECTIONS),
                         "all four sections present" if not missing else "missing section(s): " + ", ".join(missing)))
    text = prose(report).lower()
    named = [c["name"] for c in concepts if any(re.search(p, text) for p in c["patterns"])]
    absent = [c["name"] for c in concepts if c["name"] not in named]
    pts = scaled(len(named) / len(concepts), 8) if concepts else 8
    reason = ("names " + ", ".join(named) if named else "names none of the expected concepts")
    if absent:
        reason += "; does not name: " + ", ".join(absent)
    out.append(Criterion(g, "concepts", pts, 8, reason,
                         review="whether the explanation is correct and clear is for a person to judge"
                         + (" (expected concepts missing: a different wording may still be right)" if absent else "")))
    return out


def _num(v: Any) -> str:
    return "non-finite (null)" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def total(criteria: list[Criterion]) -> dict[str, Any]:
    groups = {g: {"points": 0.0, "max": float(w)} for g, w in WEIGHTS.items()}
    for c in criteria:
        groups[c.group]["points"] += c.points
    for g in groups.values():
        g["points"] = round(g["points"], 1)
    return {"score": round(sum(g["points"] for g in groups.values()), 1), "max": 100.0, "groups": groups}
