"""`breaklab reveal RUN --guess NAME`: was the guess right? Then the reference write-up."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="reveal")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--guess", required=True, metavar="NAME",
              help="Your diagnosis: a break's name (see `breaklab list`) or none.")
def reveal(run: Path, guess: str) -> None:
    """Say whether GUESS names the break of RUN (a mystery run, or any run) and show the
    reference write-up of the real one. Exits 0 when the guess is right, 1 when it is wrong."""
    from breaklab.doctor import RunReadError, read_run_files
    from breaklab.mystery import RevealError
    from breaklab.mystery import reveal as do_reveal
    import json

    try:
        files = read_run_files(run)
        meta = json.loads(files["meta.json"]) if "meta.json" in files else None
        result = do_reveal(meta if isinstance(meta, dict) else None, guess)
    except (RunReadError, RevealError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    verdict = "right" if result.right else "wrong"
    click.echo(f"guess:    {result.guess} ... {verdict}")
    click.echo(f"answer:   {result.actual}" + (" (picked from the seed in mystery mode)" if result.was_mystery else ""))
    click.echo(f"write-up: {result.writeup_source}")
    click.echo("")
    click.echo(result.writeup.rstrip())
    if not result.right:
        raise SystemExit(1)
