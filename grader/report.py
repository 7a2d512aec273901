"""What the grader writes: per submission grade.json, grade.md (with the broken and fixed runs'
plots side by side when breaklab.plots is available) and, on request, Gradescope's results.json;
for the class grades.csv. Every file is written atomically under the output folder.

Much of what a grade says comes from the submission: its id, its reasons' quoted errors, paths its
code tried. Every such value is escaped where it lands: in grade.md one line, markdown and HTML
characters backslash-escaped (no injected headings, links, images or table cells); in grades.csv
one line, and a cell that a spreadsheet would read as a formula (=, +, -, @ first) starts
with a quote (tabs and line breaks become spaces); in Gradescope's output, control characters removed. grade.json is JSON."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from breaklab.atomic import atomic_write_bytes, atomic_write_text
from breaklab.grader.rubric import WEIGHTS

CSV_COLUMNS = ["submission", "student", "break", "seed", "status", "score",
               *WEIGHTS, "needs_review", "integrity", "review", "reason", "tarball_sha256", "sandbox_notes"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u0085]")
# Mid-line (values never start a line), only these can make markup: emphasis, code, links and
# images, HTML, table cells, strikethrough, entities.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&])")


def one_line(text: Any, limit: int = 2000) -> str:
    """Text on one line: newlines and other control characters become spaces."""
    flat = _CONTROL.sub(" ", str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " "))
    return flat if len(flat) <= limit else flat[:limit] + "..."


def md(text: Any, limit: int = 2000) -> str:
    """A value for grade.md: one line, every markdown and HTML character escaped."""
    return _MARKDOWN.sub(r"\\\1", one_line(text, limit))


def csv_cell(value: Any) -> Any:
    """A value for grades.csv: numbers as they are; text on one line, and never a formula."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = one_line(value).replace("\t", " ")
    return "'" + text if text.lstrip()[:1] in ("=", "+", "-", "@") else text


def public(grade: dict[str, Any]) -> dict[str, Any]:
    """The grade without the internal keys (paths of the working folder)."""
    return {k: v for k, v in grade.items() if not k.startswith("_") and k != "detail"}


def write_submission_outputs(folder: Path, grade: dict[str, Any], plots: bool = True,
                             gradescope: bool = False, scratch: Path | None = None) -> None:
    """grade.json and grade.md always (they are the record of the grade); results.json on request.
    scratch: a folder of the grader's (that does not exist yet) for the plots' copies."""
    atomic_write_text(folder / "grade.json", json.dumps(public(grade), indent=2, sort_keys=False) + "\n")
    plots = (make_plots(folder, grade.get("_plots") or {}, grade.get("submission"), scratch)
             if plots else "plots not drawn (--no-plots)")
    grade["plots"] = plots
    rewrite_submission_outputs(folder, grade, gradescope)


def rewrite_submission_outputs(folder: Path, grade: dict[str, Any], gradescope: bool = False) -> None:
    """grade.json, grade.md (with the plots already drawn) and results.json from the grade alone:
    the class checks rewrite them without re-drawing anything."""
    atomic_write_text(folder / "grade.json", json.dumps(public(grade), indent=2, sort_keys=False) + "\n")
    atomic_write_text(folder / "grade.md", grade_markdown(grade, grade.get("plots") or "no plots"))
    if gradescope:
        atomic_write_text(folder / "results.json", json.dumps(gradescope_results(grade), indent=2) + "\n")


def write_class_outputs(out: Path, grades: list[dict[str, Any]], formats: tuple[str, ...]) -> None:
    if "csv" in formats:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for g in sorted(grades, key=lambda g: g["submission"]):
            groups = g.get("groups", {})
            row = {"submission": g["submission"], "student": g.get("student") or "",
                   "break": g.get("break_name") or "", "seed": g.get("seed", ""),
                   "status": g["status"], "score": g["score"],
                   **{k: groups.get(k, {}).get("points", 0) for k in WEIGHTS},
                   "needs_review": "yes" if g.get("needs_review") else "no",
                   "integrity": " | ".join(integrity_findings(g)),
                   "review": " | ".join(g.get("needs_review", [])),
                   "reason": g.get("reason") or "", "tarball_sha256": g.get("tarball_sha256", ""),
                   "sandbox_notes": "; ".join((g.get("sandbox") or {}).get("notes") or [])}
            w.writerow({k: csv_cell(v) for k, v in row.items()})
        atomic_write_text(out / "grades.csv", buf.getvalue())
    if "gradescope" in formats and len(grades) == 1:
        # Gradescope grades one submission per container: its results.json at the top.
        atomic_write_text(out / "results.json", json.dumps(gradescope_results(grades[0]), indent=2) + "\n")


def integrity_findings(grade: dict[str, Any]) -> list[str]:
    """The submission's own findings (a copied write-up) and the class flags, one line each."""
    return list(grade.get("integrity") or []) + [f["detail"] for f in grade.get("class_flags") or []]


def gradescope_results(grade: dict[str, Any]) -> dict[str, Any]:
    """Gradescope autograder results: top-level score and one test per criterion."""
    tests = [{"name": f"{c['group']}: {c['name']}", "score": c["points"], "max_score": c["max"],
              "status": "passed" if c["points"] >= c["max"] else "failed",
              "output": one_line(c["reason"] + (f" [review: {c['review']}]" if c.get("review") else "")),
              "visibility": "visible"} for c in grade["criteria"]]
    head = f"{grade['status']}: {grade['score']}/{grade['max']}"
    if grade.get("reason"):
        head += f" ({one_line(grade['reason'])})"
    for flag in grade.get("integrity") or []:
        head += f"\nIntegrity: {one_line(flag)}."
    for note in (grade.get("sandbox") or {}).get("notes") or []:
        head += f"\nNote: {one_line(note)}."
    return {"score": grade["score"], "output": head, "visibility": "visible", "tests": tests}


# ---------------------------------------------------------------------------------------------
# Plots (breaklab.plots is optional: without it grade.md says so)
# ---------------------------------------------------------------------------------------------

def make_plots(folder: Path, runs: dict[str, str], submission: str | None = None,
               scratch: Path | None = None) -> dict[str, str] | str:
    """broken.png and fixed.png (breaklab.plots' one-page report of each re-run, shown side by side)
    and compare.png (both on the same axes). `runs` are the grader's copies of the runs' files;
    the plots read fresh copies of their text files only, in `scratch` (a folder that does not
    exist yet), and never a checkpoint a student's code wrote. Returns {label: file name}, or why
    there are none. Each figure is titled with the submission and the run it shows, never with a
    working folder's name."""
    if not runs:
        return "no re-run to plot"
    if scratch is None:  # a folder of our own, gone when the figures are drawn
        import tempfile
        with tempfile.TemporaryDirectory(prefix="breaklab-plots-") as own:
            return make_plots(folder, runs, submission, Path(own) / "copies")
    try:
        from breaklab import plots
        from breaklab.doctor import load_run
    except Exception as e:  # the plots are a convenience: grading never depends on them
        return f"plots unavailable ({type(e).__name__}: breaklab.plots cannot be imported)"
    made: dict[str, str] = {}
    try:
        runs = {label: _plain_copy(Path(d), scratch, label) for label, d in runs.items()}
        for label, run_dir in sorted(runs.items()):
            name = f"{submission + ': ' if submission else ''}{label} run (re-run by the grader)"
            plots.write_report(Path(run_dir), folder / f"{label}.png", reference=False, name=name)
            made[label] = f"{label}.png"
        if set(runs) >= {"broken", "fixed"} and hasattr(plots, "compare_png"):
            png = plots.compare_png(load_run(Path(runs["broken"])), load_run(Path(runs["fixed"])),
                                    "broken", "fixed")
            atomic_write_bytes(folder / "compare.png", png)
            made["compare"] = "compare.png"
    except Exception as e:
        return f"plots failed ({type(e).__name__}: {e})"
    return made


def _plain_copy(run_dir: Path, scratch: Path, label: str) -> Path:
    """The run's text files only, read without following links and written into a fresh folder."""
    import tempfile

    from breaklab.untrusted import read_folder_files, write_fresh

    files, _ = read_folder_files(run_dir, {"metrics.jsonl": 64 << 20, "meta.json": 1 << 20,
                                           "summary.json": 1 << 20})
    scratch.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=scratch)) / label
    return write_fresh(dest, files)


def grade_markdown(grade: dict[str, Any], plots: dict[str, str] | str) -> str:
    lines = [f"# Grade: {md(grade['submission'])}", ""]
    who = ", ".join(f"{k.replace('break_name', 'break')} {md(grade[k])}"
                    for k in ("student", "break_name", "seed", "epochs", "threads") if grade.get(k) is not None)
    if who:
        lines += [who, ""]
    lines += [f"**{grade['score']} / {grade['max']}** ({md(grade['status'])})", ""]
    if grade.get("reason"):
        lines += [f"Reason: {md(grade['reason'])}", ""]
    for flag in grade.get("integrity") or []:
        lines += [f"**Integrity:** {md(flag)}", ""]
    lines += ["| group | points | max |", "|---|---|---|"]
    for g, v in grade.get("groups", {}).items():
        lines.append(f"| {md(g)} | {v['points']} | {v['max']} |")
    lines += ["", "| criterion | points | max | reason |", "|---|---|---|---|"]
    for c in grade["criteria"]:
        lines.append(f"| {md(c['group'])}: {md(c['name'])} | {c['points']} | {c['max']} | {md(c['reason'])} |")
    if integrity_findings(grade):
        lines += ["", "## Integrity", ""] + [f"- {md(r)}" for r in integrity_findings(grade)]
    if grade.get("fix_verdict"):
        v = grade["fix_verdict"]
        lines += ["", "## The fix, as the grader measured it", "", f"Verdict: {md(v['kind'])}"]
        lines += [f"- {md(r)}" for r in v.get("reasons") or []]
    if grade.get("notes"):
        lines += [""] + [f"Note: {md(n)}" for n in grade["notes"]]
    if grade.get("needs_review"):
        lines += ["", "## For a person to review", ""] + [f"- {md(r)}" for r in grade["needs_review"]]
    if grade.get("reruns"):
        lines += ["", "## Re-runs", "", "| run | ok | test accuracy | loss start -> end | symptoms seen |",
                  "|---|---|---|---|---|"]
        for label, r in grade["reruns"].items():
            if r is None:
                continue
            syms = "; ".join(r.get("symptoms") or []) or "none"
            acc = _f(r.get("test_acc"))
            if r.get("trusted_test_acc") is not None:
                acc += f" (checkpoint, the grader's evaluation: {_f(r['trusted_test_acc'])})"
            lines.append(f"| {md(label)} | {md(r.get('ok'))} | {acc} | {_f(r.get('initial_loss'))} -> "
                         f"{_f(r.get('final_loss'))} | {md(syms)} |")
    if grade["status"] == "graded":
        lines += ["", "## Broken and fixed runs", ""]
        if isinstance(plots, dict):
            lines += ["| broken | fixed |", "|---|---|",
                      "| " + " | ".join(f"![{k}]({plots[k]})" if k in plots else "-" for k in ("broken", "fixed")) + " |"]
            if "compare" in plots:
                lines += ["", "Both runs on the same axes:", "", f"![compare]({plots['compare']})"]
        else:
            lines.append(md(plots))
    notes = (grade.get("sandbox") or {}).get("notes")
    if notes:
        lines += ["", "## Sandbox", ""] + [f"- Note: {md(n)}." for n in notes]
    elif grade.get("network_isolated") is False and "sandbox" not in grade:
        lines += ["", "Note: the re-runs were not cut off from the network (`unshare -rn` unavailable)."]
    return "\n".join(lines) + "\n"


def _f(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"
