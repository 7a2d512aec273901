"""`breaklab reveal RUN --guess NAME`: right or wrong; the answer only after a right guess or --give-up."""
from __future__ import annotations

from pathlib import Path

import click


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


@click.command(name="reveal")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--guess", metavar="NAME", help="Your diagnosis: a break's name (see `breaklab list`) or none.")
@click.option("--give-up", is_flag=True, help="Show the answer and the reference write-up without a right guess.")
@click.option("--secret", metavar="TEXT",
              help="The secret the mystery run was made with [default: $BREAKLAB_SECRET, else this install's].")
def reveal(run: Path, guess: str | None, give_up: bool, secret: str | None) -> None:
    """Say whether GUESS names the break of RUN (a mystery run, or any run). A wrong guess only
    says "wrong"; the answer and the reference write-up come after a right guess or --give-up,
    with the number of guesses it took (kept per run in the cache folder).
    Exits 0 when the guess is right or you give up, 1 when it is wrong.

    \b
    Example:
      ./demo_run.sh 5 mystery
      breaklab hint runs/mystery_5 --level 1
      breaklab reveal runs/mystery_5 --guess huge_lr
      breaklab reveal runs/mystery_5 --give-up
    """
    from breaklab.doctor import RunReadError, read_run_files
    from breaklab.mystery import RevealError, writeup
    from breaklab.mystery import reveal as do_reveal
    import json

    try:
        files = read_run_files(run)
        meta = json.loads(files["meta.json"]) if "meta.json" in files else None
        result = do_reveal(meta if isinstance(meta, dict) else None, guess, give_up, secret)
    except (RunReadError, RevealError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    tries = result.attempts
    hints = f", with hints up to level {tries.hint_level}" if tries.hint_level else ""
    if result.guess is not None:
        n = len(tries.guesses)
        if not result.right:
            click.echo(f"guess:    {result.guess} ... wrong (guess {n} on this run)")
        elif tries.solved_after == n:
            click.echo(f"guess:    {result.guess} ... right, found in {_plural(n, 'guess')}{hints}")
        else:
            click.echo(f"guess:    {result.guess} ... right (first found in "
                       f"{_plural(tries.solved_after or n, 'guess')})")
    if give_up and tries.solved_after is None:
        click.echo(f"gave up:  after {_plural(tries.gave_up_after or 0, 'wrong guess')}{hints}")
    if not result.recorded:
        click.echo("note:     no cache folder is writable: guesses are not counted (set BREAKLAB_CACHE)")
    if not result.shown:
        click.echo(f"next:     guess again, ask for a hint (breaklab hint {run} --level "
                   f"{min(3, tries.hint_level + 1)}), or see the answer with --give-up")
        raise SystemExit(1)
    how = " (picked from the seed and the secret in mystery mode)" if result.was_mystery else ""
    click.echo(f"answer:   {result.actual}{how}")
    text, source = writeup(result.actual)
    click.echo(f"write-up: {source}")
    if text:
        click.echo("")
        click.echo(text.rstrip())
