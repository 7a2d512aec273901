"""Redraw the README's figure gallery: the clean run's report.png and every break's, seed 42,
3 epochs (the defaults), each break drawn over the clean run.

    ./demo_run.sh 42 none          # the clean run first: the others are drawn over it
    for b in $(python breaklab/break_names.py --list); do ./demo_run.sh 42 $b --quiet; done
    python docs/figures/make_gallery.py            # reads runs/, writes docs/figures/report_*_42.png

The pictures are the report.png the runs wrote, reduced to a 128-colour palette so that each stays
near 100 kB in the repository (the full-colour file is about 400 kB).
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

HERE = Path(__file__).resolve().parent


def small_png(png: bytes) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    palette = image.quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    from breaklab.atomic import atomic_write_bytes
    from breaklab.break_names import break_names
    from breaklab.plots import prepare_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the runs are [runs]")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    for name in ["none", *break_names()]:
        folder = args.runs / f"{name}_{args.seed}"
        if not (folder / "metrics.jsonl").is_file():
            raise SystemExit(f"error: {folder} is missing: ./demo_run.sh {args.seed} {name} first")
        report = prepare_report(folder)
        if name != "none" and report.reference is None:
            raise SystemExit(f"error: {folder} has no clean run beside it ({report.reference_note})")
        target = HERE / f"report_{name}_{args.seed}.png"
        atomic_write_bytes(target, small_png(report.png()))
        print(f"{target.relative_to(HERE.parent.parent)}  {target.stat().st_size // 1024} kB")


if __name__ == "__main__":
    main()
