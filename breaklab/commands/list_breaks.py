"""`breaklab list`: the breaks with their category and description."""
from __future__ import annotations

import json

import click


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Also show each break's symptom and metric.")
def list_breaks(as_json: bool, verbose: bool) -> None:
    """List the breaks: name, category, and what each one changes."""
    from breaklab.breaks import BREAK_NAMES, REGISTRY

    rows = [REGISTRY[n] for n in BREAK_NAMES]
    if as_json:
        click.echo(json.dumps([{"name": b.name, "category": b.category, "description": b.description,
                                "symptom": b.symptom, "metric": b.metric, "hook": b.hook}
                               for b in rows], indent=2))
        return
    width = max(len(b.name) for b in rows)
    click.echo(f"{'break':<{width}}  {'category':<12}  description")
    for b in rows:
        click.echo(f"{b.name:<{width}}  {b.category:<12}  {b.description}")
        if verbose:
            click.echo(f"{'':<{width}}  {'':<12}  symptom: {b.symptom} (metric: {b.metric})")
