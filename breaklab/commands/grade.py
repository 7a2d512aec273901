"""`breaklab grade`: grade submission tarballs (or folders of them) into an output folder."""
from __future__ import annotations

from pathlib import Path

import click

FORMATS = ("json", "csv", "gradescope")


def _formats(ctx, param, value: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in chosen if v not in FORMATS]
    if bad or not chosen:
        raise click.BadParameter(f"use a comma-separated list of {', '.join(FORMATS)}")
    return chosen


@click.command(name="grade")
@click.argument("submissions", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the grades; the grader writes nothing outside it.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Submissions graded at once (each re-run uses its recorded thread count).")
@click.option("--format", "formats", default="json,csv", show_default=True, callback=_formats,
              help="Outputs: json (grade.json + grade.md per submission; always written), csv "
                   "(grades.csv), gradescope (results.json per submission, and at the top of OUT "
                   "when grading one).")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The course repository the students cloned [default: the one breaklab runs from].")
@click.option("--timeout", type=click.IntRange(10, 24 * 3600), default=600, show_default=True,
              help="Wall-clock seconds allowed for each re-run.")
@click.option("--keep-work", is_flag=True, help="Keep the checkouts and re-runs in OUT/.work.")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Draw the broken and fixed runs' plots into each grade.md.")
@click.option("--no-isolation", is_flag=True,
              help="Run the students' code even where this machine cannot isolate it (no user or mount "
                   "namespaces): it could then read other submissions and the answers. Prefer a container "
                   "or VM where namespaces work.")
@click.pass_context
def grade(ctx, submissions, out, jobs, formats, repo, timeout, keep_work, plots, no_isolation) -> None:
    """Grade SUBMISSIONS (tarballs, or folders holding *.tgz).

    Each tarball is opened defensively, its broken and fixed runs are re-run in a sandbox from a
    private copy of the course repository at its base commit, the fix is measured with the
    grader's own code, and it is scored out of 100 (reproducibility 35, diagnostics 30, fix 20,
    explanation 15; see docs/GRADING.md). A submission that cannot be graded gets 0 with the
    reason; the others go on, and the command then exits with status 1.

    Example:

        breaklab grade inbox/ --repo ../course-kit --out grades --jobs 2
    """
    from breaklab.grader.grade import Grader, IsolationUnavailable

    repo = course_repository(repo)
    tarballs: list[Path] = []
    for s in submissions:
        if s.is_dir() and not s.is_symlink():
            tarballs += sorted(p for p in s.iterdir() if p.name.endswith((".tgz", ".tar.gz")))
        else:
            tarballs.append(s)
    if not tarballs:
        raise click.UsageError("no submission tarballs (*.tgz) found in the given folders")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.UsageError(f"cannot create --out {out} ({e.strerror})")

    grader = Grader(repo=repo, out=out, timeout=timeout, keep_work=keep_work, plots=plots,
                    progress=lambda s: click.echo(s, err=True), no_isolation=no_isolation)
    try:
        grader.check_isolation()
    except IsolationUnavailable as e:
        raise click.ClickException(f"refusing to run the students' code: {e}") from None
    click.echo(f"grading {len(tarballs)} submission(s) against {grader.repo} with {jobs} job(s)", err=True)

    def done(i, n, g):
        extra = f" ({g['reason']})" if g.get("reason") else ""
        click.echo(f"[{i}/{n}] {g['submission']}: {g['score']}/{g['max']} {g['status']}{extra}", err=True)

    grades = grader.grade_all(tarballs, jobs=jobs, formats=formats, on_done=done)
    graded = [g for g in grades if g["status"] == "graded"]
    not_graded = len(grades) - len(graded)
    review = sum(1 for g in grades if g.get("needs_review"))
    flagged = sum(1 for g in grades if g.get("integrity"))
    click.echo(f"grades: {out}/" + ("grades.csv" if "csv" in formats else "<submission>/grade.json"))
    click.echo(f"graded {len(graded)}, not graded {not_graded} (stopped by the sandbox "
               f"{sum(g['status'] == 'stopped' for g in grades)}, rejected {sum(g['status'] == 'rejected' for g in grades)}, "
               f"errors {sum(g['status'] == 'error' for g in grades)}); {flagged} with integrity flags, "
               f"{review} with items to review")
    if not_graded:
        ctx.exit(1)


def course_repository(repo: Path | None) -> Path:
    """The root of the course repository to re-run from: --repo, or the checkout breaklab runs
    from. A path that is no git repository is a usage error, in one line."""
    from breaklab.grader import gitrepo

    where = repo or Path(__file__).resolve().parent
    try:
        top = gitrepo.toplevel(where)
    except gitrepo.GitError as e:
        raise click.UsageError(f"cannot read --repo {where}: {e}") from None
    if top is None:
        if repo is None:
            raise click.UsageError("breaklab is not running from a git checkout: pass --repo COURSE_REPO")
        raise click.UsageError(f"--repo {repo} is not a git repository: pass the course repository "
                               "the students cloned")
    if repo is not None and top.resolve() != repo.resolve():
        raise click.UsageError(f"--repo {repo} is a folder inside the git repository {top}: pass the "
                               "repository's top folder")
    return top
