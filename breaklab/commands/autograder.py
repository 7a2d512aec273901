"""`breaklab autograder`: a Gradescope autograder zip that grades each submission with breaklab."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="autograder")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("autograder.zip"),
              show_default=True, help="The zip to upload to Gradescope (Programming assignment, "
                                      "Configure Autograder, zip file upload).")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The course repository the students cloned, e.g. the kit from `breaklab kit` "
                   "[default: the checkout breaklab runs from].")
def autograder(out, repo) -> None:
    """Build a Gradescope autograder bundle: setup.sh installs the grading environment (the
    torch version pinned to this one), run_autograder grades the student's one uploaded tarball
    with `breaklab grade` and writes /autograder/results/results.json.

    Build it from the instructor's checkout (it packs solutions/ for the rubrics); students upload
    the submission_*.tgz that `breaklab submit` made.

    \b
    Example:
      breaklab kit --out ../course-kit
      breaklab autograder --repo ../course-kit --out autograder.zip
    """
    from breaklab.commands.grade import course_repository
    from breaklab.grader import gitrepo
    from breaklab.grader.autograder import BundleError, build_bundle

    course = course_repository(repo)
    checkout = gitrepo.toplevel(Path(__file__).resolve().parent)
    if checkout is None:
        raise click.ClickException("breaklab is not running from a git checkout: build the bundle from the "
                                   "instructor's clone of the course repository")
    try:
        info = build_bundle(out, course, checkout)
    except (BundleError, gitrepo.GitError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write {out} ({e.strerror or e})") from None
    click.echo(f"autograder: {out} ({info['files']} files, {info['bytes'] / 1e6:.1f} MB)")
    click.echo(f"course:     {course} at {str(info['course_head'])[:12]} (every commit of it is in the bundle)")
    click.echo(f"grading:    {' '.join(info['requirements'])}")
    click.echo("upload it to Gradescope as the assignment's autograder; students upload their submission_*.tgz")
