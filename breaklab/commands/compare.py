"""`breaklab compare RUN_A RUN_B`: two runs side by side, as numbers and as one overlaid figure."""
from __future__ import annotations

from pathlib import Path

import click


def _fmt(v, percent: bool = False) -> str:
    if v is None:
        return "non-finite"
    if percent and isinstance(v, (int, float)):
        return f"{100 * v:.1f}%"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@click.command(name="compare")
@click.argument("run_a", type=click.Path(exists=True, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("compare.png"),
              show_default=True, help="Where to write the overlaid figure.")
def compare(run_a: Path, run_b: Path, out: Path) -> None:
    """Overlay RUN_A (thin line) and RUN_B (wide band under it), typically a broken run and its
    fix: loss, accuracy, learning rate, gradient norm, zero gradients, dead units. Prints the key
    numbers and each run's diagnosis (hidden for a mystery run).

    \b
    Example:
      breaklab compare runs/huge_lr_42 runs/none_42 --out huge_lr_vs_clean.png
    """
    from breaklab.atomic import atomic_write_bytes
    from breaklab.doctor import RunReadError, diagnose, load_run
    from breaklab.plots import Row, compare_png, compare_summary, run_name

    try:
        a, b = load_run(run_a), load_run(run_b)
    except RunReadError as e:
        raise click.ClickException(str(e)) from None
    la, lb = run_name(run_a), run_name(run_b)
    if la == lb:
        la, lb = str(run_a), str(run_b)
    from breaklab.mystery import is_mystery

    def verdict(run) -> str:  # a mystery run's verdict would be its answer: `breaklab hint` grades it
        return "hidden (mystery run)" if is_mystery(run.meta) else diagnose(run).verdict

    rows = compare_summary(a, b) + [Row("doctor's verdict", verdict(a), verdict(b))]
    cells = [(r.name, _fmt(r.a, r.percent), _fmt(r.b, r.percent)) for r in rows]
    w0 = max(len(c[0]) for c in cells)
    w1 = max(len(la), *(len(c[1]) for c in cells))
    click.echo(f"{'':<{w0}}  {la:<{w1}}  {lb}")
    for name, va, vb in cells:
        click.echo(f"{name:<{w0}}  {va:<{w1}}  {vb}")
    try:
        atomic_write_bytes(out, compare_png(a, b, la, lb))
    except OSError as e:
        raise click.ClickException(f"cannot write {out} ({e.strerror}); choose another --out") from None
    click.echo(f"figure:   {out}")
