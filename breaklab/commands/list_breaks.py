"""`breaklab list`: the breaks with their category and description (read without torch)."""
from __future__ import annotations

import json
from dataclasses import asdict

import click


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per entry (name, category, control, ...).")
@click.option("-v", "--verbose", is_flag=True, help="Also show each break's symptom and metric.")
def list_breaks(as_json: bool, verbose: bool) -> None:
    """List the breaks: name, category, and what each one changes. Controls (changes that look
    suspicious and do no harm here) are marked.

    \b
    Example:
      breaklab list -v
      ./demo_run.sh 42 huge_lr
    """
    from breaklab.catalogue import entries

    rows = sorted(entries(), key=lambda e: (e.control, e.category, e.name))
    if as_json:
        click.echo(json.dumps([asdict(e) for e in rows], indent=2))
        return
    width = max(len(e.name) for e in rows)
    click.echo(f"{'break':<{width}}  {'category':<12}  description")
    for e in rows:
        mark = "  (control: does no harm here)" if e.control else ""
        click.echo(f"{e.name:<{width}}  {e.category:<12}  {e.description}{mark}")
        if verbose:
            click.echo(f"{'':<{width}}  {'':<12}  symptom: {e.symptom} (metric: {e.metric})")
