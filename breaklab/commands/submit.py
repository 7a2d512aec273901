"""`breaklab submit`: pack the broken run, the fixed run, the fix and the report into one tarball."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="submit")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="The seed you were given.")
@click.option("--break", "break_name", help="The break you fixed (see `breaklab list`).")
@click.option("--exercise", "exercise", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Instead of a break: the exercise folder (from `breaklab exercise new`) whose train.py you "
                   "fixed; packs train.py as edited, its run and the report.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Your report: reports/TEMPLATE.md filled in (at most 500 words).")
@click.option("--evidence", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="A file that shows the symptom (a plot, a JSON snippet of metrics.jsonl). Repeatable.")
@click.option("--student", help="Your student id (letters, digits, '.', '_', '-').")
@click.option("--epochs", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Epochs of both runs (keep the default unless told otherwise).")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="torch CPU threads of both runs (the thread count changes the bits).")
@click.option("--base", default="HEAD", show_default=True,
              help="The unmodified course commit your fix is against (if you committed your fix, the commit before it).")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              help="Your clone of the course repository [default: the current folder].")
@click.option("--tarball", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it [default: submission_BREAK_SEED[_STUDENT].tgz].")
def submit(seed, break_name, exercise, report, evidence, student, epochs, threads, base, repo, tarball) -> None:
    """Build your submission tarball (+ .sha256).

    It trains the broken run from the unmodified base commit and the fixed run from the same commit
    with your changes (`git diff` of your working tree against it) applied, in a private checkout,
    and packs both runs, the patch, the report, the evidence and the exact commands with a manifest
    of SHA-256s. The same tree and seed give the same bytes.

    Before packing it warns about what the grader will take points off for, measured on the
    broken run it has just trained: a symptom block left as the template's placeholder or not
    matching the broken run, no evidence, a change outside the break's own hook.

    With --exercise DIR it packs an exercise instead: DIR/train.py as you edited it, the run it
    makes (trained here, in a private copy), the report and the evidence, with a manifest of
    SHA-256s. The grader re-runs it and judges each bug with the instructor's key.

    \b
    Examples:
      breaklab submit --seed 42 --break missing_zero_grad --report my_report.md \\
          --evidence broken_report.png --student alice
      breaklab submit --exercise ex --report my_report.md --student alice
    """
    if exercise is not None:
        if seed is not None or break_name is not None:
            raise click.UsageError("--exercise packs an exercise: leave out --seed and --break")
        _submit_exercise(exercise, report, evidence, student, tarball)
        return
    if seed is None or break_name is None:
        raise click.UsageError("give --seed and --break (a break submission), or --exercise DIR")
    from breaklab.presubmit import presubmit_warnings
    from breaklab.submission import SubmitError, SubmitOptions, build_submission

    opts = SubmitOptions(seed=seed, break_name=break_name, report=report, evidence=tuple(evidence),
                         student=student, epochs=epochs, threads=threads, base=base, repo=repo,
                         tarball=tarball)
    try:
        path, digest = build_submission(opts, progress=lambda s: click.echo(s, err=True),
                                        warn=lambda s: click.echo(f"warning: {s}", err=True),
                                        review=presubmit_warnings)
    except SubmitError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"submission: {path}")
    click.echo(f"sha256:     {digest}  (check with: sha256sum -c {path}.sha256)")


def _submit_exercise(folder: Path, report: Path, evidence, student, tarball) -> None:
    from breaklab.exercises.submit import build_exercise_submission
    from breaklab.submission import SubmitError

    if not folder.is_dir():
        raise click.UsageError(f"--exercise {folder}: no such folder")
    try:
        path, digest = build_exercise_submission(folder, report, tuple(evidence), student, tarball,
                                                 progress=lambda s: click.echo(s, err=True),
                                                 warn=lambda s: click.echo(f"warning: {s}", err=True))
    except SubmitError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"submission: {path}")
    click.echo(f"sha256:     {digest}  (check with: sha256sum -c {path}.sha256)")
