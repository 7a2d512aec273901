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


class _GradeWithMerge(click.Command):
    """`breaklab grade merge ...` runs the merge command; anything else grades. (A submissions
    folder literally named `merge` is passed as ./merge.)"""

    def make_context(self, info_name, args, parent=None, **extra):
        if args and args[0] == "merge":
            return merge.make_context(f"{info_name} merge", list(args[1:]), parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)

    def format_epilog(self, ctx, formatter):
        super().format_epilog(ctx, formatter)
        with formatter.section("Merging shards"):
            formatter.write_text("breaklab grade merge SHARD_DIR... --out OUT  (see breaklab grade merge --help)")


@click.command(name="grade", cls=_GradeWithMerge)
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
@click.option("--shard", default=None, metavar="K/N",
              help="Grade only the K-th of N shares of the class (K from 1 to N), for a batch "
                   "scheduler; then `breaklab grade merge` the N output folders.")
@click.option("--no-isolation", is_flag=True,
              help="Run the students' code even where this machine cannot isolate it (no user or mount "
                   "namespaces): it could then read other submissions and the answers. Prefer a container "
                   "or VM where namespaces work.")
@click.option("--exercise-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Grade exercise submissions (`breaklab submit --exercise`) with this key: the file "
                   "`breaklab exercise new` wrote (--key), for one exercise or a --class. Never taken from "
                   "a submission.")
def grade(submissions, out, jobs, formats, repo, timeout, keep_work, plots, shard, no_isolation,
          exercise_key) -> None:
    """Grade SUBMISSIONS (tarballs, or folders holding *.tgz).

    Each tarball is opened defensively, its broken and fixed runs are re-run in a sandbox from a
    private copy of the course repository at its base commit, the fix is measured with the
    grader's own code, and it is scored out of 100 (reproducibility 35, diagnostics 30, fix 20,
    explanation 15; see docs/GRADING.md). A
    submission that cannot be graded gets 0 with the reason; the others go on, and the command
    exits with status 1 at the end.

    With --exercise-key KEY the submissions are exercises: each one's train.py is re-run, and the
    handed-out and clean scripts are run beside it, in the sandbox; the same four groups, the fix
    points per bug fixed (docs/GRADING.md).

    \b
    Examples:
      breaklab grade inbox/ --repo ../course-kit --out grades --jobs 2
      breaklab grade exercises-inbox/ --exercise-key class.key --out grades
      breaklab grade inbox/ --repo ../course-kit --shard 3/8 --out grades/shard-3
      breaklab grade merge grades/shard-* --out grades/class
    """
    if not answers_available():
        raise click.ClickException("this copy of breaklab has no solutions/ (a course kit has none): grade "
                                   "from the instructor's checkout, with --repo set to the kit")
    from breaklab.grader.grade import Grader, IsolationUnavailable

    if exercise_key is not None and repo is not None:
        raise click.UsageError("--exercise-key grades exercises, which need no --repo: leave it out")
    # An exercise needs no course repository (the key holds the scripts): the Grader's repo is unused.
    repo = course_repository(repo) if exercise_key is None else out
    tarballs: list[Path] = []
    for s in submissions:
        if s.is_dir() and not s.is_symlink():
            tarballs += sorted(p for p in s.iterdir() if p.name.endswith((".tgz", ".tar.gz")))
        else:
            tarballs.append(s)
    if not tarballs:
        raise click.UsageError("no submission tarballs (*.tgz) found in the given folders")
    tarballs, ids, shard_of = shard_selection(tarballs, shard)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.UsageError(f"cannot create --out {out} ({e.strerror})")

    settings = dict(repo=repo, out=out, timeout=timeout, keep_work=keep_work, plots=plots,
                    progress=lambda s: click.echo(s, err=True), no_isolation=no_isolation)
    if exercise_key is not None:
        from breaklab.grader.exercise import ExerciseGrader, ExerciseKeyError, load_keys

        try:
            load_keys(exercise_key)  # a bad key is the instructor's error: say so before grading anyone
        except ExerciseKeyError as e:
            raise click.ClickException(str(e)) from None
        grader = ExerciseGrader(**settings, key_path=exercise_key)
    else:
        grader = Grader(**settings)
    try:
        grader.check_isolation()
    except IsolationUnavailable as e:
        raise click.ClickException(f"refusing to run the students' code: {e}") from None
    against = f"the exercise key {exercise_key}" if exercise_key is not None else grader.repo
    click.echo(f"grading {len(tarballs)} submission(s) against {against} with {jobs} job(s)", err=True)

    def done(i, n, g):
        extra = f" ({g['reason']})" if g.get("reason") else ""
        click.echo(f"[{i}/{n}] {g['submission']}: {g['score']}/{g['max']} {g['status']}{extra}", err=True)

    grades = grader.grade_all(tarballs, jobs=jobs, formats=formats, on_done=done, ids=ids)
    if shard_of is not None:
        from breaklab.grader.shards import write_manifest

        write_manifest(out, *shard_of, formats=formats, mine=ids)
    close(grades, out, formats)


def answers_available() -> bool:
    """Whether this copy of breaklab holds the reference solutions (the rubrics the grader scores
    against): beside its trainer in a checkout, inside the package when installed. A solutions
    package found elsewhere (another checkout's editable install) belongs to another copy."""
    import breaklab

    try:
        from breaklab import solutions
    except ImportError:
        return False
    package = Path(breaklab.__file__).resolve().parent
    found = Path(solutions.__file__).resolve().parent
    if found not in (package / "solutions", package.parent / "solutions"):
        return False
    try:
        return bool(solutions.names())
    except OSError:
        return False


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


# ---------------------------------------------------------------------------------------------
# Shards, the closing line and the exit status
# ---------------------------------------------------------------------------------------------

NOT_GRADED = ("rejected", "error")


def shard_selection(tarballs: list[Path], shard: str | None):
    """(this shard's tarballs, their folder names, (K, N, class list) or None). The names are
    chosen over the whole sorted class, so they do not depend on the split."""
    from breaklab.grader.grade import submission_ids
    from breaklab.grader.shards import ShardError, parse_shard, select

    tarballs = sorted(tarballs, key=lambda p: (p.name, str(p)))
    ids = submission_ids(tarballs)
    if shard is None:
        return tarballs, ids, None
    try:
        k, n = parse_shard(shard)
    except ShardError as e:
        raise click.UsageError(str(e)) from None
    mine = select(tarballs, k, n)
    class_list = [(i, t.name) for i, t in zip(ids, tarballs)]
    return [tarballs[i] for i in mine], [ids[i] for i in mine], (k, n, class_list)


def close(grades: list[dict], out: Path, formats: tuple[str, ...]) -> None:
    """The closing line, counting what could not be graded; exit status 1 when anything could not."""
    count = lambda *statuses: sum(g["status"] in statuses for g in grades)
    review = sum(1 for g in grades if g.get("needs_review"))
    not_graded = count(*NOT_GRADED)
    click.echo(f"graded {count('graded')}, stopped by the sandbox {count('stopped')}, "
               f"rejected {count('rejected')}, errors {count('error')}; {review} with items to review; "
               f"could not grade {not_graded} of {len(grades)}")
    click.echo(f"grades: {out}/" + ("grades.csv" if "csv" in formats else "<submission>/grade.json"))
    if not_graded:
        click.get_current_context().exit(1)


@click.command(name="merge")
@click.argument("shards", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the whole class's grades (may be one of the shard folders' parent).")
def merge(shards, out) -> None:
    """Merge the output folders of `breaklab grade --shard K/N` (all N of them) into OUT: the
    submission folders, the class checks (near-duplicate reports, duplicate student ids,
    re-submissions) over the whole class, and grades.csv, as one run over the class gives.

    \b
    Example:
      for k in 1 2 3 4; do breaklab grade inbox/ --shard $k/4 --out grades/shard-$k & done; wait
      breaklab grade merge grades/shard-* --out grades/class
    """
    from breaklab.grader.integrity import finalize
    from breaklab.grader.shards import ShardError
    from breaklab.grader.shards import merge as merge_shards

    try:
        grades, formats = merge_shards(list(shards), out)
    except ShardError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write --out {out} ({e.strerror or e})") from None
    finalize(out, grades, formats)
    click.echo(f"merged {len(shards)} shard(s), {len(grades)} submission(s) into {out}", err=True)
    close(grades, out, formats)
