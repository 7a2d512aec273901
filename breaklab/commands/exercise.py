"""`breaklab exercise new|check`: a plain training script with bugs woven in, and its check."""
from __future__ import annotations

from pathlib import Path

import click


@click.group(name="exercise")
def exercise() -> None:
    """Practise like an interview: a plain PyTorch training script with silent bugs to find.

    \b
      breaklab exercise new --seed 1234 --bugs 3 --out ex --key ex.key
      cd ex && python train.py && cd ..    # it runs; something is off
      breaklab exercise check ex --key ex.key
      breaklab exercise check ex --key ex.key --reveal
    """


@exercise.command(name="new")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), required=True,
              help="Picks the script's shape and its bugs: same seed, same script.")
@click.option("--bugs", "n_bugs", type=click.IntRange(1, 4), default=1, show_default=True,
              help="How many bugs (1-4). Combinations whose symptoms cancel out are never chosen.")
@click.option("--level", type=click.Choice(["easy", "medium", "hard"]), default="medium", show_default=True,
              help="easy: every bug shows in the accuracy; hard: only the measurements show them; medium: any.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The exercise folder (train.py and TASK.md go there); with --class, the class folder.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the key goes (outside --out) [default: the user cache, $BREAKLAB_CACHE or "
                   "~/.cache/breaklab].")
@click.option("--clean", is_flag=True,
              help="Write the same exercise's script without its bugs (for instructors), and no key.")
@click.option("--class", "roster", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A roster (one student name per line): one exercise per student in OUT/NAME/, "
                   "all keys in one instructor key file.")
def new(seed: int, n_bugs: int, level: str, out: Path, key_path: Path | None, clean: bool,
        roster: Path | None) -> None:
    """Write OUT/train.py: a standalone PyTorch training script on the bundled MNIST sample, with
    bugs inlined as ordinary code, and TASK.md. The key (the bugs, their lines and fixes, and
    questions to ask) goes to --key, never into OUT.

    \b
    Examples:
      breaklab exercise new --seed 1234 --bugs 3 --out ex --key ex.key
      breaklab exercise new --seed 1234 --bugs 3 --out ex-clean --clean
      breaklab exercise new --class roster.txt --seed 7 --bugs 2 --out class --key class.key
    """
    from breaklab.exercises.generate import ExerciseError, write_class, write_exercise

    try:
        if roster is not None:
            if clean:
                raise click.UsageError("--clean writes one script; leave it out with --class")
            path, written = write_class(out, roster, seed, n_bugs, level, key_path)
            for name, w in written.items():
                click.echo(f"{name:<16} {w.folder / 'train.py'}")
            click.echo(f"key:     {path} (one file for the class: keep it away from the students)")
            click.echo(f"check:   breaklab exercise check {out}/NAME --key {path}")
            return
        w = write_exercise(out, seed, n_bugs, level, key_path, clean)
    except ExerciseError as e:
        raise click.ClickException(str(e)) from None
    if clean:
        click.echo(f"script:  {w.folder / 'train.py'} (exercise {seed} without its bugs)")
        return
    click.echo(f"script:  {w.folder / 'train.py'} ({n_bugs} bug{'s' if n_bugs > 1 else ''}, level {level})")
    click.echo(f"task:    {w.folder / 'TASK.md'}")
    click.echo(f"key:     {w.key_path} (keep it away from the learner)")
    key_flag = f" --key {key_path}" if key_path else ""
    click.echo(f"check:   breaklab exercise check {out}{key_flag}")


@exercise.command(name="check")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The key `exercise new` wrote [default: found in the user cache].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--reveal", is_flag=True, help="Name every bug with its line, the fix and the probing questions.")
@click.option("--timeout", type=click.IntRange(10, 3600), default=600, show_default=True,
              help="Seconds the sandboxed trainings may take in all, per process.")
def check(folder: Path, key_path: Path | None, as_json: bool, reveal: bool, timeout: int) -> None:
    """Run FOLDER/train.py as edited in the grader's sandbox and say how many bugs are fixed,
    without naming the others. A bug is fixed when its code was changed and a run with the change
    shows no symptom and matches the clean script.

    \b
    Examples:
      breaklab exercise check ex --key ex.key
      breaklab exercise check ex --key ex.key --reveal
      breaklab exercise check class/alice --key class.key --json
    """
    import json

    from breaklab.exercises.check import check as run_check
    from breaklab.exercises.check import format_result
    from breaklab.exercises.generate import ExerciseError

    try:
        result = run_check(folder, key_path, timeout)
    except ExerciseError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(reveal), indent=2))
    else:
        click.echo(format_result(result, reveal))
