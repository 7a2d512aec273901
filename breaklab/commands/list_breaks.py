"""`breaklab list`: the catalogue, with each entry's category and what it changes."""
from __future__ import annotations

import json

import click


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True,
              help="Print the catalogue as JSON: one object per entry (name, category, control, ...).")
@click.option("-v", "--verbose", is_flag=True, help="Also show each entry's symptom and metric.")
def list_breaks(as_json: bool, verbose: bool) -> None:
    """List the breaks: name, category, and what each one changes.

    Entries marked "control" look like classic bugs but do no measurable harm in this setup
    (each write-up says what was measured). Read from the breaks' source, without torch.

    \b
    Example:
      breaklab list -v
      ./demo_run.sh 42 huge_lr
    """
    from breaklab.catalogue import entries

    rows = sorted(entries(), key=lambda e: (e.control, e.category, e.name))
    if as_json:
        click.echo(json.dumps([{"name": b.name, "category": b.category, "control": b.control,
                                "description": b.description, "symptom": b.symptom, "metric": b.metric,
                                "hook": b.hook} for b in rows], indent=2))
        return
    width = max(len(b.name) for b in rows)
    click.echo(f"{'break':<{width}}  {'category':<12}  {'kind':<7}  description")
    for b in rows:
        click.echo(f"{b.name:<{width}}  {b.category:<12}  {'control' if b.control else 'bug':<7}  {b.description}")
        if verbose:
            click.echo(f"{'':<{width}}  {'':<12}  {'':<7}  symptom: {b.symptom} (metric: {b.metric})")
    faults = sum(not b.control for b in rows)
    click.echo(f"\n{faults} bugs and {len(rows) - faults} controls (a control looks like a bug and "
               f"does no measurable harm here)")
