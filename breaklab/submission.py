"""A student's submission: the report's format, and the tarball `breaklab submit` builds.

The tarball holds
    manifest.json          every other file's SHA-256, the base commit, seed, epochs, threads,
                           student id and the environment (python, torch, threads, device...)
    report.md              the student's report (reports/TEMPLATE.md filled in)
    fix.patch              `git diff` of the student's working tree against the base commit
    commands.txt           the exact commands that made both runs
    broken/                the run of the unmodified base commit  (metrics.jsonl, meta.json,
    fixed/                 the run of base commit + fix.patch      summary.json, checkpoint.pt.sha256)
    evidence/              optional files that show the symptom (a plot, a JSON snippet)
Both runs are made in a private checkout of the base commit (the fixed one with fix.patch
applied), exactly as the grader re-makes them, so what is submitted is what ran.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

MAX_WORDS = 500
MIN_WORDS = 100   # shorter reports earn part of the explanation points (docs/GRADING.md)
SECTIONS = ("Symptoms", "Root cause", "Fix", "Verification")
MAX_EVIDENCE_BYTES = 5 << 20
SUBMISSION_FORMAT, SUBMISSION_VERSION = "breaklab-submission", 1


class SubmitError(Exception):
    """Something the student can fix; the message says what."""


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```.*?```", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SYMPTOM_BLOCK = re.compile(r"```\s*symptom\s*\n(.*?)```", re.S | re.I)


def prose(text: str) -> str:
    """The report without HTML comments (the template's instructions) and fenced blocks."""
    return _FENCE.sub(" ", _COMMENT.sub(" ", text))


def word_count(text: str) -> int:
    """Words of prose: the structured block and the template's comments do not count."""
    return len(re.findall(r"\w+(?:['’.\-]\w+)*", prose(text)))


def sections_present(text: str) -> dict[str, bool]:
    """Which of the four required sections appear as markdown headings (any level, any case)."""
    headings = {m.strip().lower().rstrip(":") for m in
                re.findall(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", _COMMENT.sub("", text), re.M)}
    return {s: s.lower() in headings for s in SECTIONS}


def section_text(text: str, name: str) -> str:
    """The prose under one heading, up to the next heading."""
    body = _COMMENT.sub("", text)
    m = re.search(rf"^\s{{0,3}}#{{1,6}}\s+{re.escape(name)}\s*:?\s*#*\s*$(.*?)(?=^\s{{0,3}}#{{1,6}}\s|\Z)",
                  body, re.M | re.S | re.I)
    return m.group(1).strip() if m else ""


def parse_symptom_block(text: str) -> dict[str, Any] | None:
    """The ```symptom block: `metric: NAME`, `step: N` (or `epoch: N`), `value: X`.
    None when there is no block; the dict holds what it could read plus `errors`."""
    m = _SYMPTOM_BLOCK.search(_COMMENT.sub("", text))
    if not m:
        return None
    fields: dict[str, Any] = {}
    for line in m.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    claim: dict[str, Any] = {"errors": []}
    metric = fields.get("metric", "")
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,80}", metric):
        claim["metric"] = metric
    else:
        claim["errors"].append("metric: expected a metrics.jsonl field name such as loss or grad_norm")
    for key in ("step", "epoch"):
        if key in fields:
            try:
                claim[key] = int(fields[key])
            except ValueError:
                claim["errors"].append(f"{key}: expected an integer")
    if "step" not in claim and "epoch" not in claim:
        claim["errors"].append("step: missing (the step, or for epoch metrics the epoch, where it shows)")
    try:
        claim["value"] = float(fields.get("value", ""))
    except ValueError:
        claim["errors"].append("value: expected a number")
    return claim


def check_report(path: Path) -> tuple[str, list[str]]:
    """Read a report; raise SubmitError when it cannot be submitted, return warnings otherwise."""
    if not path.is_file():
        raise SubmitError(f"report {path} does not exist: copy reports/TEMPLATE.md, fill it in, "
                          f"and pass it with --report")
    text = path.read_text(encoding="utf-8", errors="replace")
    words = word_count(text)
    if words == 0:
        raise SubmitError(f"report {path} is empty: fill in the sections of reports/TEMPLATE.md")
    if words > MAX_WORDS:
        raise SubmitError(f"report {path} has {words} words; the limit is {MAX_WORDS}: shorten it")
    warnings = [f"the report has no '{s}' section (a '## {s}' heading); the grader looks for it"
                for s, ok in sections_present(text).items() if not ok]
    if words < MIN_WORDS:
        warnings.append(f"the report has {words} words; explanations under {MIN_WORDS} words earn part of "
                        "their points: say what caused the symptom, how, and with which numbers")
    claim = parse_symptom_block(text)
    if claim is None:
        warnings.append("the report has no ```symptom block (metric, step, value); the grader checks it")
    else:
        warnings += [f"symptom block: {e}" for e in claim["errors"]]
    return text, warnings


# ---------------------------------------------------------------------------------------------
# The tarball
# ---------------------------------------------------------------------------------------------

@dataclass
class SubmitOptions:
    seed: int
    break_name: str
    report: Path
    evidence: tuple[Path, ...] = ()
    student: str | None = None
    epochs: int = 3
    threads: int = 1
    base: str = "HEAD"
    repo: Path = Path(".")
    tarball: Path | None = None
    timeout: float = 1800


def default_name(break_name: str, seed: int, student: str | None) -> str:
    return f"submission_{break_name}_{seed}" + (f"_{student}" if student else "")


@dataclass
class BeforePacking:
    """What a submission holds once both runs' code is ready, for a review before packing
    (breaklab.presubmit: what the grader will take points off for)."""
    report_text: str
    template_text: str | None      # reports/TEMPLATE.md of the base commit
    evidence: dict[str, bytes]
    patch: bytes
    break_name: str
    broken: list[dict[str, Any]]   # the broken run's metrics records, just re-trained
    old_sources: dict[str, str]    # every file the patch changes, before and after it
    new_sources: dict[str, str]


def build_submission(opts: SubmitOptions, progress: Callable[[str], None] = lambda s: None,
                     warn: Callable[[str], None] = lambda s: None,
                     review: Callable[[BeforePacking], list[str]] | None = None) -> tuple[Path, str]:
    """Make both runs, pack the submission, write it and its .sha256; return (path, SHA-256).
    `review` (if given) sees the submission before it is packed; each line it returns is warned."""
    from breaklab import catalogue
    from breaklab.grader import gitrepo
    from breaklab.grader.intake import STUDENT
    from breaklab.grader.runs import RunSpec, train
    from breaklab.metric_log import parse_metrics
    from breaklab.tarballs import write_tarball

    if opts.break_name in catalogue.names() and opts.break_name not in catalogue.names(controls=False):
        raise SubmitError(f"{opts.break_name} is a control: it does no measurable harm, so there is no "
                          f"fix to submit; pick a bug (see `breaklab list`)")
    if opts.break_name not in catalogue.names(controls=False):
        raise SubmitError(catalogue.unknown_message(opts.break_name))
    if opts.student is not None and not STUDENT.match(opts.student):
        raise SubmitError("--student: use 1 to 64 letters, digits, '.', '_' or '-'")
    report_text, warnings = check_report(opts.report)
    for w in warnings:
        warn(w)
    evidence = _read_evidence(opts.evidence)

    repo = gitrepo.toplevel(opts.repo)
    if repo is None:
        raise SubmitError(f"{Path(opts.repo).resolve()} is not a git checkout: run submit inside "
                          f"your clone of the course repository")
    base = gitrepo.resolve_commit(repo, opts.base)
    if base is None:
        raise SubmitError(f"--base {opts.base}: no such commit in {repo}")
    patch = gitrepo.diff_against(repo, base)
    if not patch.strip():
        raise SubmitError(f"nothing was changed against the base commit {base[:12]}: fix the bug in "
                          f"your working tree first (and do not commit it, or pass --base)")
    problems = gitrepo.patch_problems(patch)
    if problems:
        raise SubmitError("the changes cannot be submitted: " + "; ".join(problems))
    untracked = [p for p in gitrepo.untracked_files(repo) if p.endswith(".py")]
    if untracked:
        warn("untracked files are not part of the patch: " + ", ".join(untracked[:5]) +
             " (use `git add -N FILE` to include a new file)")

    spec = RunSpec(opts.break_name, opts.seed, opts.epochs, opts.threads)
    name = default_name(opts.break_name, opts.seed, opts.student)
    tarball = Path(opts.tarball or f"{name}.tgz")
    with tempfile.TemporaryDirectory(prefix="breaklab-submit-") as tmp:
        tmp = Path(tmp)
        try:
            tree = gitrepo.checkout(repo, base, tmp / "tree")
        except gitrepo.GitError as e:
            raise SubmitError(str(e)) from None
        progress(f"broken run: base commit {base[:12]}, {spec.command('broken')}")
        broken = train(tree, spec, tmp / "work", "broken", timeout=opts.timeout)
        _require_ok(broken, "broken")
        changed = [c.path for c in gitrepo.parse_patch(patch)]
        old_sources = _read_sources(tree, changed)
        try:
            gitrepo.apply_patch(tree, patch)
        except gitrepo.GitError as e:
            raise SubmitError(str(e)) from None
        if review is not None:  # before packing, on this very broken run
            template = tree / "reports" / "TEMPLATE.md"
            for w in review(BeforePacking(
                    report_text=report_text, evidence=evidence, patch=patch, break_name=opts.break_name,
                    template_text=template.read_text(encoding="utf-8") if template.is_file() else None,
                    broken=parse_metrics(broken.files()["metrics.jsonl"].decode("utf-8", errors="replace"),
                                         "broken/metrics.jsonl"),
                    old_sources=old_sources, new_sources=_read_sources(tree, changed))):
                warn(w)
        progress(f"fixed run: base commit + your patch ({_patch_stat(patch)})")
        fixed = train(tree, spec, tmp / "work", "fixed", timeout=opts.timeout)
        _require_ok(fixed, "fixed")

        members: dict[str, bytes] = {"report.md": report_text.encode("utf-8"), "fix.patch": patch}
        members.update({f"broken/{k}": v for k, v in broken.files().items()})
        members.update({f"fixed/{k}": v for k, v in fixed.files().items()})
        members.update({f"evidence/{k}": v for k, v in evidence.items()})
        members["commands.txt"] = commands_text(spec, base).encode()
        env = json.loads(members["broken/meta.json"]).get("env", {})
        summary = {run: json.loads(members[f"{run}/summary.json"]) for run in ("broken", "fixed")}

    manifest = {
        "format": SUBMISSION_FORMAT, "version": SUBMISSION_VERSION,
        "break": opts.break_name, "seed": opts.seed, "epochs": opts.epochs, "threads": opts.threads,
        "student": opts.student, "base_commit": base, "env": env,
        "commands": {"broken": spec.command("broken"), "fixed": "git apply fix.patch && " + spec.command("fixed")},
        "files": {k: _sha(v) for k, v in sorted(members.items())},
    }
    members["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    digest = write_tarball(tarball, members, name)
    progress(f"broken: test accuracy {_fmt(summary['broken'].get('test_acc'))}; "
             f"fixed: test accuracy {_fmt(summary['fixed'].get('test_acc'))}")
    return tarball, digest


def commands_text(spec, base: str) -> str:
    return (f"# The broken run: the unmodified base commit {base}\n"
            f"git checkout {base}\n{spec.command('broken')}\n"
            f"# The fixed run: the same commit with fix.patch applied\n"
            f"git apply fix.patch\n{spec.command('fixed')}\n")


def _read_evidence(paths) -> dict[str, bytes]:
    from breaklab.untrusted import SAFE_PART

    out: dict[str, bytes] = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise SubmitError(f"evidence file {p} does not exist")
        if p.stat().st_size > MAX_EVIDENCE_BYTES:
            raise SubmitError(f"evidence file {p} is over {MAX_EVIDENCE_BYTES >> 20} MiB: keep the part that shows the symptom")
        name = re.sub(r"[^A-Za-z0-9._+-]", "_", p.name).lstrip("._-") or "evidence"
        if not SAFE_PART.match(name):
            name = "evidence" + p.suffix
        base, n = name, 2
        while name in out:
            name = f"{n}_{base}"
            n += 1
        out[name] = p.read_bytes()
    return out


def _read_sources(tree: Path, paths: list[str]) -> dict[str, str]:
    return {p: (tree / p).read_text(encoding="utf-8", errors="replace") for p in paths if (tree / p).is_file()}


def _require_ok(run, label: str) -> None:
    if not run.ok:
        raise SubmitError(f"the {label} run failed ({run.sandbox.why()}); run "
                          f"`python trainer.py` with the same options to see the error")


def _patch_stat(patch: bytes) -> str:
    from breaklab.grader.gitrepo import parse_patch

    files = parse_patch(patch)
    lines = sum(f.changed_lines for f in files)
    return f"{len(files)} file(s), {lines} changed line(s)"


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _fmt(v) -> str:
    return "non-finite" if v is None else f"{v:.3f}"
