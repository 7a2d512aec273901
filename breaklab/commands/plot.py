"""`breaklab plot RUN`: draw a run's one-page figure (report.png)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="plot")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the PNG [default: RUN/report.png for a folder, "
                   "<tarball name>_report.png for a tarball].")
def plot(run: Path, out: Path | None) -> None:
    """Draw RUN's report.png: loss, accuracy, learning rate, gradient norms (global and per
    layer), zero-gradient fraction, step size, first- and last-layer activations, with the step
    where a symptom starts marked. (Every training run already writes one.)"""
    from breaklab.doctor import RunReadError
    from breaklab.plots import write_report

    if out is None:
        out = run / "report.png" if run.is_dir() else Path(run.name.removesuffix(".tgz") + "_report.png")
    try:
        path = write_report(run, out)
    except RunReadError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write {out} ({e.strerror}); choose another --out") from None
    click.echo(f"figure:   {path}")
