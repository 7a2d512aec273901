"""Check a learner's edited train.py against the exercise's key: how many bugs are fixed.

A bug counts as fixed when both hold:

* local: the code of the bug was changed. The learner's script is aligned line by line with the
  script as handed out (comments and spacing ignored); the bug's region (its line, or for a
  deleted line the block it was deleted from) must differ. Any change there counts: a fix
  written differently from the reference is judged by its behaviour;
* behavioural: a run with the learner's change has no symptom and matches the clean script: the
  doctor calls it healthy and its test accuracy is within the measured tolerance of the clean
  script's (breaklab/exercises/calibration.json: the spread over 3 other seeds, plus 0.01).

The runs happen in the grader's sandbox (breaklab/grader/sandbox.py), in one process. The first
run is the learner's script with every bug they have not touched put back to its clean code, so
those bugs cannot hide the others' symptoms; when it matches the clean script, every touched bug
is fixed. Otherwise each touched bug gets a run of its own, with the other bugs' code put back,
and is judged alone.
"""
from __future__ import annotations

import difflib
import io
import re
import shutil
import tempfile
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breaklab.exercises.generate import (SCRIPT_NAME, ExerciseError, load_calibration, read_key,
                                         reference)
from breaklab.exercises.variants import Variant

DEFAULT_TIMEOUT = 600  # seconds for one sandboxed process (all its trainings); an idle run takes ~15 s
RATINGS = ((1.0, "all fixed"), (2 / 3, "most"), (0.5, "half"), (0.0, "few"))


# ============================================================================
# Reading the learner's script against the handed-out one
# ============================================================================

def code_lines(text: str) -> list[str]:
    """Each line's code tokens joined by one space: comments, spacing and blank-line differences
    in a line do not count as a change. A file Python cannot tokenise falls back to the stripped
    lines (its run will fail anyway)."""
    lines = text.splitlines()
    tokens: dict[int, list[str]] = {}
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, tokenize.ENCODING}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in skip:
                tokens.setdefault(tok.start[0] - 1, []).append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [" ".join(line.split("#", 1)[0].split()) for line in lines]
    return [" ".join(tokens.get(i, [])) for i in range(len(lines))]


class Alignment:
    """The learner's lines matched to the handed-out script's (difflib on code_lines)."""

    def __init__(self, handed_out: str, learner: str):
        self.old = code_lines(handed_out)
        self.new = code_lines(learner)
        matcher = difflib.SequenceMatcher(None, self.old, self.new, autojunk=False)
        self.opcodes = matcher.get_opcodes()

    def _relevant(self, start: int, end: int) -> list[tuple[str, int, int, int, int]]:
        """Opcodes that overlap [start, end) of the old script, or insert at its edges."""
        found = []
        for op in self.opcodes:
            tag, i1, i2, j1, j2 = op
            if tag == "insert":
                if start <= i1 <= end:
                    found.append(op)
            elif i1 < end and i2 > start:
                found.append(op)
            elif start == end and tag != "equal" and i1 <= start < i2:
                found.append(op)
        return found

    def changed(self, start: int, end: int) -> bool:
        return any(tag != "equal" for tag, *_ in self._relevant(start, end))

    def first_change(self, start: int, end: int) -> int | None:
        """The learner's first changed line in [start, end) (0-based), or None."""
        for tag, i1, i2, j1, j2 in self._relevant(start, end):
            if tag != "equal":
                return j1 if j2 > j1 else max(0, j1 - 1)
        return None

    def learner_span(self, start: int, end: int) -> tuple[int, int] | None:
        """The learner's lines that stand for [start, end) of the old script, or None when a
        change there reaches beyond it (the region cannot be swapped out on its own)."""
        lo, hi = None, None
        for tag, i1, i2, j1, j2 in self._relevant(start, end):
            if tag == "equal":
                a, b = j1 + max(start, i1) - i1, j1 + min(end, i2) - i1
            else:
                if i1 < start or i2 > end:
                    return None
                a, b = j1, j2
            lo, hi = (a, b) if lo is None else (min(lo, a), max(hi, b))
        if lo is None:  # an empty region nobody touched: where it sits in the learner's file
            for tag, i1, i2, j1, j2 in self.opcodes:
                if tag == "equal" and i1 <= start <= i2:
                    return j1 + start - i1, j1 + start - i1
            return None
        return lo, hi


# ============================================================================
# The runs
# ============================================================================

@dataclass
class BugResult:
    name: str
    line: int                 # in the handed-out script (1-based)
    changed: bool
    fixed: bool
    learner_line: int | None  # where the learner's version of it starts (1-based)
    key: dict[str, Any]


@dataclass
class CheckResult:
    folder: Path
    key_path: Path
    bugs: list[BugResult]
    seconds_since_new: float
    check_seconds: float
    trainings: int
    notes: list[str] = field(default_factory=list)

    @property
    def fixed(self) -> int:
        return sum(b.fixed for b in self.bugs)

    @property
    def total(self) -> int:
        return len(self.bugs)

    @property
    def rating(self) -> str:
        share = self.fixed / self.total if self.total else 1.0
        return next(word for floor, word in RATINGS if share >= floor - 1e-9)

    def to_json(self, reveal: bool = False) -> dict[str, Any]:
        bugs = []
        for b in _report_order(self.bugs, reveal):
            entry: dict[str, Any] = {"fixed": b.fixed}
            if b.fixed:
                entry["your_line"] = b.learner_line
            if reveal:
                entry.update(name=b.name, line=b.line, buggy_lines=b.key["buggy_lines"],
                             clean_lines=b.key["clean_lines"], fix=b.key["fix"], questions=b.key["questions"])
            bugs.append(entry)
        return {"fixed": self.fixed, "total": self.total, "rating": self.rating, "bugs": bugs,
                "seconds": round(self.seconds_since_new, 1), "check_seconds": round(self.check_seconds, 1),
                "trainings": self.trainings, "notes": self.notes}


def _report_order(bugs: list[BugResult], reveal: bool) -> list[BugResult]:
    """With --reveal, in the script's order; without, the fixed ones first and nothing that says
    where the others are."""
    if reveal:
        return sorted(bugs, key=lambda b: b.line)
    return sorted(bugs, key=lambda b: (not b.fixed, b.learner_line or 0))


def _with_regions_put_back(learner: list[str], alignment: Alignment, key_bugs: list[dict],
                           put_back: list[str]) -> str:
    """The learner's script with the regions of the named bugs replaced by their clean code."""
    lines = list(learner)
    spans = []
    for bug in key_bugs:
        if bug["name"] in put_back:
            span = alignment.learner_span(*bug["region"])
            if span is not None:
                spans.append((span, bug["region_clean_lines"]))
    for (start, end), clean in sorted(spans, key=lambda s: s[0], reverse=True):
        lines[start:end] = clean
    return "\n".join(lines) + "\n"


# Names a fix of one of the exercise's lines never needs; a region that uses one is not run when
# the grader judges it (it could reach past the line to the measurements).
UNNEEDED = {"import", "exec", "eval", "compile", "open", "globals", "locals", "vars", "setattr", "getattr",
            "delattr", "breakpoint", "input", "breaklab", "sys", "os", "builtins", "subprocess", "Monitor",
            "monitor"}


def _learner_regions(learner: list[str], alignment: Alignment, key_bugs: list[dict], touched: list[str],
                     notes: list[str]) -> dict[str, list[str]]:
    """The learner's lines of each touched bug's region, less the ones that cannot be judged alone
    (the change spills over the region's edges, or uses a name in UNNEEDED); notes say why."""
    regions = {}
    for bug in key_bugs:
        if bug["name"] not in touched:
            continue
        span = alignment.learner_span(*bug["region"])
        if span is None:
            notes.append(f"the change near line {bug['line']} reaches past the lines it replaces: judged as not fixed")
            continue
        code = learner[span[0]:span[1]]
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(code_lines("\n".join(code) + "\n"))))
        used = sorted(w for w in words if w in UNNEEDED or w.startswith("__"))
        if used:
            notes.append(f"the change at line {span[0] + 1} uses {', '.join(used)}, which no fix of that line needs: "
                         f"not run, judged as not fixed")
            continue
        regions[bug["name"]] = code
    return regions


def _compose(handed_out: str, key_bugs: list[dict], mine: dict[str, list[str]]) -> str:
    """The handed-out script with the learner's code in the regions of `mine` and the clean code in
    every other bug's region."""
    lines = handed_out.splitlines()
    for bug in sorted(key_bugs, key=lambda b: b["region"][0], reverse=True):
        start, end = bug["region"]
        lines[start:end] = mine.get(bug["name"], bug["region_clean_lines"])
    return "\n".join(lines) + "\n"


def matches_clean(outcome, ref: float, tolerance: float) -> bool:
    return (outcome.ok and outcome.verdict == "healthy" and outcome.test_acc is not None
            and outcome.test_acc >= ref - tolerance)


@dataclass
class Judgement:
    """What the sandboxed runs said about a learner's script, bug by bug."""

    changed: dict[str, bool]
    fixed: dict[str, bool]
    outcomes: dict[str, Any]      # job name -> Outcome (the extra jobs' included)
    notes: list[str]
    trainings: int
    alignment: Alignment
    violations: list[str] = field(default_factory=list)  # what the sandbox stopped, if anything


def judge(key: dict, learner_text: str, work: Path, timeout: float,
          reference: tuple[float, float], transplant: bool = False) -> Judgement:
    """Judge each bug of `key` in the learner's script by behaviour (the module's docstring says
    how), running in the sandbox under `work`; `reference`: the clean accuracy and the tolerance
    a fixed run is held to.

    transplant (the grader's way): the judged scripts are the handed-out script with only the
    learner's code of each bug's region put in, so no change elsewhere runs (it could fake the
    measurements), and a region whose new code reaches for what no fix of a line needs (an import,
    exec, a dunder...) is not run and not fixed."""
    from breaklab.exercises.runner import run_in_sandbox

    alignment = Alignment(key["script"], learner_text)
    learner = learner_text.splitlines()
    key_bugs = key["bugs"]
    changed = {b["name"]: alignment.changed(*b["region"]) for b in key_bugs}
    touched = [name for name, c in changed.items() if c]
    fixed: dict[str, bool] = {name: False for name in changed}
    notes: list[str] = []
    if transplant:
        regions = _learner_regions(learner, alignment, key_bugs, touched, notes)
        touched = [name for name in touched if name in regions]
        compose = lambda mine: _compose(key["script"], key_bugs, {n: regions[n] for n in mine})
    else:
        compose = lambda mine: _with_regions_put_back(learner, alignment, key_bugs,
                                                      [b for b in changed if b not in mine])
    if not touched:
        if not notes:
            notes.append("none of the lines that hold a bug has changed yet: nothing was run")
        return Judgement(changed, fixed, {}, notes, 0, alignment)
    jobs = {"together": compose(touched)}
    outcomes, sandbox = run_in_sandbox(work / "first", jobs, timeout)
    trainings = len(jobs)
    violations = [sandbox.violation] if sandbox.violation else []
    if sandbox.violation:
        notes.append(f"the sandbox stopped the run: {sandbox.violation}")
    ref, tolerance = reference
    together = outcomes["together"]
    if matches_clean(together, ref, tolerance):
        fixed.update({name: True for name in touched})
    elif len(touched) > 1:
        alone = {name: compose([name]) for name in touched}
        alone_outcomes, alone_sandbox = run_in_sandbox(work / "alone", alone, timeout)
        trainings += len(alone)
        outcomes.update({f"alone:{name}": o for name, o in alone_outcomes.items()})
        for name in touched:
            fixed[name] = matches_clean(alone_outcomes[name], ref, tolerance)
        if alone_sandbox.violation:
            violations.append(alone_sandbox.violation)
            notes.append(f"the sandbox stopped the run: {alone_sandbox.violation}")
    if not together.ok:
        notes.append(f"your script stopped before the end: {together.error}")
    return Judgement(changed, fixed, outcomes, notes, trainings, alignment, violations)


def check(folder: Path, key_path: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
          now: float | None = None) -> CheckResult:
    started = time.perf_counter()
    key, key_path = read_key(folder, key_path)
    script = folder / SCRIPT_NAME
    try:
        learner_text = script.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ExerciseError(f"cannot read {script} ({e}); the exercise's script must be there") from None
    variant = Variant.parse(key["variant"])
    calibrated = reference(load_calibration(), variant)
    work = Path(tempfile.mkdtemp(prefix="breaklab-exercise-check-"))
    try:
        judged = judge(key, learner_text, work, timeout, calibrated)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = []
    for bug in key["bugs"]:
        first = judged.alignment.first_change(*bug["region"])
        results.append(BugResult(bug["name"], bug["line"], judged.changed[bug["name"]], judged.fixed[bug["name"]],
                                 None if first is None else first + 1, bug))
    created = key.get("created") or 0
    return CheckResult(folder, key_path, results, max(0.0, (time.time() if now is None else now) - created),
                       time.perf_counter() - started, judged.trainings, judged.notes)


# ============================================================================
# Output
# ============================================================================

def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days {seconds % 86400 // 3600} h"


def format_result(result: CheckResult, reveal: bool = False) -> str:
    w = 10
    n = result.total
    lines = [f"{'exercise:':<{w}}{result.folder} ({n} bug{'s' if n != 1 else ''})",
             f"{'time:':<{w}}{duration(result.seconds_since_new)} since `breaklab exercise new`",
             f"{'result:':<{w}}{result.fixed} of {n} bug{'s' if n != 1 else ''} fixed (rating: {result.rating})"]
    if not reveal:
        for b in _report_order(result.bugs, False):
            if b.fixed:
                lines.append(f"{'':<{w}}- fixed: your change at line {b.learner_line}")
    for note in result.notes:
        lines.append(f"{'note:':<{w}}{note}")
    lines.append(f"{'checked:':<{w}}{result.trainings} training run(s) in the sandbox, {result.check_seconds:.1f} s")
    if reveal:
        lines.append("")
        lines.append("the bugs:")
        for i, b in enumerate(_report_order(result.bugs, True), 1):
            status = "fixed" if b.fixed else ("changed, but the run still shows it" if b.changed else "not fixed")
            lines.append(f"  {i}. line {b.line}: {b.name} ({status})")
            wrote, clean = b.key["buggy_lines"], b.key["clean_lines"]
            added = [line.strip() for line in wrote if line not in clean]
            removed = [line.strip() for line in clean if line not in wrote]
            lines.append(f"     handed out: {' / '.join(added) or '(a line was missing here)'}")
            lines.append(f"     clean:      {' / '.join(removed) or '(without the line(s) above)'}")
            lines.append(f"     fix:        {b.key['fix']}")
            lines.append("     ask:")
            lines += [f"       - {q}" for q in b.key["questions"]]
    elif result.fixed < n:
        lines.append(f"{'':<{w}}(`--reveal` names every bug with its fix)")
    return "\n".join(lines)
