"""What the grader writes: per submission grade.json, grade.md (with the broken and fixed runs'
plots side by side when breaklab.plots is available) and, on request, Gradescope's results.json;
for the class grades.csv. Every file is written atomically under the output folder."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from breaklab.atomic import atomic_write_bytes, atomic_write_text
from breaklab.grader.rubric import WEIGHTS

CSV_COLUMNS = ["submission", "student", "break", "seed", "status", "score",
               *WEIGHTS, "needs_review", "integrity", "review", "reason", "tarball_sha256", "sandbox_notes"]


def public(grade: dict[str, Any]) -> dict[str, Any]:
    """The grade without the internal keys (paths of the working folder)."""
    return {k: v for k, v in grade.items() if not k.startswith("_") and k != "detail"}


def write_submission_outputs(folder: Path, grade: dict[str, Any], plots: bool = True,
                             gradescope: bool = False) -> None:
    """grade.json and grade.md always (they are the record of the grade); results.json on request."""
    atomic_write_text(folder / "grade.json", json.dumps(public(grade), indent=2, sort_keys=False) + "\n")
    plots = (make_plots(folder, grade.get("_plots") or {}, grade.get("submission"))
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
            w.writerow({"submission": g["submission"], "student": g.get("student") or "",
                        "break": g.get("break_name") or "", "seed": g.get("seed", ""),
                        "status": g["status"], "score": g["score"],
                        **{k: groups.get(k, {}).get("points", 0) for k in WEIGHTS},
                        "needs_review": "yes" if g.get("needs_review") else "no",
                        "integrity": " | ".join(integrity_findings(g)),
                        "review": " | ".join(g.get("needs_review", [])),
                        "reason": g.get("reason") or "", "tarball_sha256": g.get("tarball_sha256", ""),
                        "sandbox_notes": "; ".join((g.get("sandbox") or {}).get("notes") or [])})
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
              "output": c["reason"] + (f" [review: {c['review']}]" if c.get("review") else ""),
              "visibility": "visible"} for c in grade["criteria"]]
    head = f"{grade['status']}: {grade['score']}/{grade['max']}"
    if grade.get("reason"):
        head += f" ({grade['reason']})"
    for note in (grade.get("sandbox") or {}).get("notes") or []:
        head += f"\nNote: {note}."
    return {"score": grade["score"], "output": head, "visibility": "visible", "tests": tests}


# ---------------------------------------------------------------------------------------------
# Plots (breaklab.plots is optional: without it grade.md says so)
# ---------------------------------------------------------------------------------------------

def make_plots(folder: Path, runs: dict[str, str], submission: str | None = None) -> dict[str, str] | str:
    """broken.png and fixed.png (breaklab.plots' one-page report of each re-run, shown side by side)
    and compare.png (both on the same axes). Returns {label: file name}, or why there are none.
    Each figure is titled with the submission and the run it shows, never with a working folder's
    name."""
    if not runs:
        return "no re-run to plot"
    try:
        from breaklab import plots
        from breaklab.doctor import load_run
    except Exception as e:  # the plots are a convenience: grading never depends on them
        return f"plots unavailable ({type(e).__name__}: breaklab.plots cannot be imported)"
    made: dict[str, str] = {}
    runs = {label: _plain_copy(Path(d)) for label, d in runs.items()}
    try:
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


def _plain_copy(run_dir: Path) -> Path:
    """The run's text files only: the plots never open a checkpoint a student's code wrote."""
    import shutil

    copy = run_dir.parent / f"{run_dir.name}-plot"
    copy.mkdir(exist_ok=True)
    for name in ("metrics.jsonl", "meta.json", "summary.json"):
        if (run_dir / name).is_file() and not (run_dir / name).is_symlink():
            shutil.copyfile(run_dir / name, copy / name)
    return copy


def grade_markdown(grade: dict[str, Any], plots: dict[str, str] | str) -> str:
    lines = [f"# Grade: {grade['submission']}", ""]
    who = ", ".join(f"{k} {grade[k]}" for k in ("student", "break_name", "seed", "epochs", "threads")
                    if grade.get(k) is not None)
    if who:
        lines += [who.replace("break_name", "break"), ""]
    lines += [f"**{grade['score']} / {grade['max']}** ({grade['status']})", ""]
    if grade.get("reason"):
        lines += [f"Reason: {grade['reason']}", ""]
    lines += ["| group | points | max |", "|---|---|---|"]
    for g, v in grade.get("groups", {}).items():
        lines.append(f"| {g} | {v['points']} | {v['max']} |")
    lines += ["", "| criterion | points | max | reason |", "|---|---|---|---|"]
    for c in grade["criteria"]:
        reason = c["reason"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {c['group']}: {c['name']} | {c['points']} | {c['max']} | {reason} |")
    if integrity_findings(grade):
        lines += ["", "## Integrity", ""] + [f"- {r}" for r in integrity_findings(grade)]
    if grade.get("needs_review"):
        lines += ["", "## For a person to review", ""] + [f"- {r}" for r in grade["needs_review"]]
    if grade.get("reruns"):
        lines += ["", "## Re-runs", "", "| run | ok | test accuracy | loss start -> end | symptoms seen |",
                  "|---|---|---|---|---|"]
        for label, r in grade["reruns"].items():
            if r is None:
                continue
            syms = "; ".join(r.get("symptoms") or []) or "none"
            lines.append(f"| {label} | {r['ok']} | {_f(r.get('test_acc'))} | {_f(r.get('initial_loss'))} -> "
                         f"{_f(r.get('final_loss'))} | {syms.replace('|', '/')} |")
    if grade["status"] == "graded":
        lines += ["", "## Broken and fixed runs", ""]
        if isinstance(plots, dict):
            lines += ["| broken | fixed |", "|---|---|",
                      "| " + " | ".join(f"![{k}]({plots[k]})" if k in plots else "-" for k in ("broken", "fixed")) + " |"]
            if "compare" in plots:
                lines += ["", "Both runs on the same axes:", "", f"![compare]({plots['compare']})"]
        else:
            lines.append(plots)
    notes = (grade.get("sandbox") or {}).get("notes")
    if notes:
        lines += ["", "## Sandbox", ""] + [f"- Note: {n}." for n in notes]
    elif grade.get("network_isolated") is False and "sandbox" not in grade:
        lines += ["", "Note: the re-runs were not cut off from the network (`unshare -rn` unavailable)."]
    return "\n".join(lines) + "\n"


def _f(v) -> str:
    return "-" if v is None else f"{v:.4g}"
