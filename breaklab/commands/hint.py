"""`breaklab hint RUN [--level 1|2|3]`: graded hints for a run, a mystery run above all."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="hint")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--level", type=click.IntRange(1, 3), default=1, show_default=True,
              help="1: which measurement to look at; 2: also the fault's category; 3: also the answer.")
@click.option("--secret", metavar="TEXT",
              help="The secret the mystery run was made with [default: $BREAKLAB_SECRET, else this install's].")
def hint(run: Path, level: int, secret: str | None) -> None:
    """Graded hints for RUN (a run folder or tarball), from the doctor's measurements: level 1
    names the measurement to look at, level 2 the category of the fault, level 3 the answer.
    `breaklab reveal` counts the hint levels you used.

    \b
    Example:
      ./demo_run.sh 5 mystery
      breaklab hint runs/mystery_5            # level 1
      breaklab hint runs/mystery_5 --level 2
    """
    from breaklab.doctor import RunReadError, load_run
    from breaklab.hints import hints
    from breaklab.mystery import is_mystery, record_hint

    try:
        loaded = load_run(run)
    except RunReadError as e:
        raise click.ClickException(str(e)) from None
    result = hints(loaded, level, secret)
    if result.note:
        click.echo(f"note:     {result.note}")
    for i, text in enumerate(result.levels, 1):
        click.echo(f"hint {i}:   {text}")
    if level == 3:
        click.echo(f"confirm:  breaklab reveal {run} --guess {result.answer}")
    elif level < 3:
        click.echo(f"more:     breaklab hint {run} --level {level + 1}")
    if is_mystery(loaded.meta):
        record_hint(loaded.meta, level)
