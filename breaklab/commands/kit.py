"""`breaklab kit`: the student hand-out, without the answers."""
from __future__ import annotations

import re
from pathlib import Path

import click

# What stays with the instructor: the reference fixes, write-ups and rubrics, and every test file
# that needs them, so the kit's own `pytest -q` passes without solutions/:
#   tests/test_solutions.py      checks the reference fixes and write-ups themselves;
#   tests/test_grader.py         grades the reference submissions (the grader reads the rubrics);
#   tests/test_sandbox.py        grades hostile copies of a reference submission;
#   tests/test_grader_security.py grades attacks built on a reference submission;
#   tests/submission_fixtures.py builds those submissions from the reference fixes and write-ups;
#   tests/test_kit.py            checks a kit against the reference fixes;
#   tests/report_corpus.py       honest student reports (they explain every break);
#   tests/test_scoring.py, tests/test_grading_scale.py, tests/calibrate_similarity.py and
#   tests/fixtures/              score those reports against the rubrics and recorded runs;
#   docs/GRADING.md              the instructor's guide to the rubric and the answers;
#   tests/test_exercises.py      generate exercises, which needs the clean script and the
#   tests/test_exercise_grading.py  mutations (solutions/exercise_*.py);
#   docs/EXERCISES.md            every mutation's clean and buggy line, and where it goes.
# Files that merely mention solutions/ and cope with its absence (breaklab/mystery.py) stay.
PRIVATE = ("solutions/", "tests/test_solutions.py", "tests/test_grader.py", "tests/test_sandbox.py",
           "tests/test_grader_security.py", "tests/submission_fixtures.py", "tests/test_kit.py", "docs/GRADING.md", "tests/test_scoring.py",
           "tests/test_grading_scale.py", "tests/report_corpus.py", "tests/calibrate_similarity.py",
           "tests/fixtures/", "tests/test_exercises.py", "tests/test_exercise_grading.py", "docs/EXERCISES.md")
KIT_AUTHOR = ("breaklab course", "course@breaklab.invalid", "2000-01-01T00:00:00+0000")
# Passages of the documentation that speak of the answers (solutions/, grading) are fenced with
# these comments; the kit's copy of every .md file leaves them out.
INSTRUCTOR_ONLY = re.compile(r"^<!-- instructor-only -->\n.*?^<!-- /instructor-only -->\n", re.S | re.M)


def is_private(path: str) -> bool:
    return any(path == p or path.startswith(p) for p in PRIVATE)


def student_copy(name: str, text: str) -> str:
    """A documentation file as the kit has it: without its instructor-only passages. A marker
    left unpaired is an error, rather than a passage handed out by mistake."""
    kept = INSTRUCTOR_ONLY.sub("", text)
    if "instructor-only -->" in kept:
        raise KitError(f"{name}: an <!-- instructor-only --> marker without its pair; fix the markers")
    return kept


def student_pyproject(text: str) -> str:
    """pyproject.toml without the solutions package, which the kit does not have (setuptools
    refuses a package directory that does not exist: `pip install -e .` would fail)."""
    kept = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith('"breaklab.solutions" ='))
    kept = re.sub(r'"breaklab\.solutions",\s*', "", kept)
    if "solutions" in kept:
        raise KitError("pyproject.toml: cannot remove every mention of the solutions package; update "
                       "student_pyproject in breaklab/commands/kit.py")
    return kept


@click.command(name="kit")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="An empty (or new) folder for the hand-out.")
@click.option("--rev", default="HEAD", show_default=True, help="The commit of the course repository to hand out.")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The course repository [default: the one breaklab runs from].")
@click.option("--git/--no-git", "make_git", default=True, show_default=True,
              help="Make the hand-out a git repository with one commit (students need one to submit).")
def kit(out, rev, repo, make_git) -> None:
    """Write the student hand-out into OUT: the repository at REV without solutions/, the
    tests that read them and the instructor's grading guide, and with every .md file's
    instructor-only passages left out.

    With --git (the default) OUT becomes a git repository with one commit whose id depends only on
    the files: give students this repository, and grade against it (`breaklab grade --repo OUT`).

    \b
    Example:
      breaklab kit --out ../course-kit
    """
    try:
        commit, n = make_kit(out, rev=rev, repo=repo, make_git=make_git)
    except (KitError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"kit: {out} ({n} files, without {', '.join(PRIVATE)})")
    if commit:
        click.echo(f"commit: {commit}  (grade with: breaklab grade SUBMISSIONS --repo {out} --out grades)")


class KitError(Exception):
    pass


def make_kit(out: Path, rev: str = "HEAD", repo: Path | None = None, make_git: bool = True) -> tuple[str | None, int]:
    """Export the committed files of rev (minus PRIVATE) into out; return (kit commit, file count)."""
    import io
    import os
    import tarfile

    from breaklab.grader import gitrepo

    try:
        repo = gitrepo.toplevel(repo or Path(__file__).resolve().parent)
    except gitrepo.GitError as e:
        raise KitError(f"cannot read the course repository: {e}") from None
    if repo is None:
        raise KitError("not a git checkout of the course repository: pass --repo")
    commit = gitrepo.resolve_commit(repo, rev)
    if commit is None:
        raise KitError(f"--rev {rev}: no such commit in {repo}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise KitError(f"{out} is not empty: choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    archive = gitrepo.git(["archive", "--format=tar", commit], repo).stdout
    n = 0
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # our own repository's archive
        for m in tar:
            if not m.isfile() or is_private(m.name):
                continue
            target = out / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(m).read()
            if m.name.endswith(".md"):
                data = student_copy(m.name, data.decode("utf-8")).encode("utf-8")
            elif m.name == "pyproject.toml":
                data = student_pyproject(data.decode("utf-8")).encode("utf-8")
            target.write_bytes(data)
            os.chmod(target, 0o755 if m.mode & 0o111 else 0o644)
            n += 1
    if not make_git:
        return None, n
    name, email, date = KIT_AUTHOR
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
           "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}
    _git(["init", "--quiet", "--initial-branch=main"], out, env)
    _git(["add", "--all"], out, env)
    _git(["-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-m",
          f"breaklab student kit (from {commit[:12]})"], out, env)
    return gitrepo.resolve_commit(out, "HEAD"), n


def _git(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    import os
    import subprocess

    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, env={**os.environ, **env})
    if proc.returncode != 0:
        raise KitError(f"git {args[0]} failed in {cwd}: {proc.stderr.decode(errors='replace').strip()}")
