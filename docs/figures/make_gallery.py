"""Redraw the README's figure gallery: the clean run's report.png and every catalogue entry's (bugs
and controls, in `breaklab list` order), seed 42, 3 epochs (the defaults), each entry drawn over
the clean run; then rewrite the gallery's table in README.md between its markers.

    ./demo_run.sh 42 none          # the clean run first: the others are drawn over it
    for b in $(breaklab list --json | python -c "import json,sys; print(*[e['name'] for e in json.load(sys.stdin)])"); do
        ./demo_run.sh 42 $b --quiet
    done
    python docs/figures/make_gallery.py            # reads runs/, writes docs/figures/report_*_42.png and README.md

The pictures are the report.png the runs would write (drawn again here from their metrics, so the
runs may be trained with or without a figure), at two thirds of the size and reduced to a
64-colour palette so that each stays near 60 kB in the repository: legible, with 39 of them.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCALE = 2 / 3
COLOURS = 64
COLUMNS = 4
THUMB_WIDTH = 200
BEGIN, END = "<!-- gallery: python docs/figures/make_gallery.py -->", "<!-- /gallery -->"


def small_png(png: bytes) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((round(image.width * SCALE), round(image.height * SCALE)), Image.Resampling.LANCZOS)
    palette = image.quantize(colors=COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def gallery_names() -> list[tuple[str, bool]]:
    """(name, is a control): the clean run, then the catalogue as `breaklab list` prints it."""
    from breaklab.catalogue import entries

    rows = sorted(entries(), key=lambda e: (e.control, e.category, e.name))
    return [("none", False)] + [(e.name, e.control) for e in rows]


def table(names: list[tuple[str, bool]], seed: int) -> str:
    """The README's gallery: COLUMNS pictures a row, each under its name, each a link to itself."""
    def caption(name: str, control: bool) -> str:
        return "clean run (`none`)" if name == "none" else f"`{name}`" + (" (control)" if control else "")

    def picture(name: str) -> str:
        path = f"docs/figures/report_{name}_{seed}.png"
        return f'[<img src="{path}" width="{THUMB_WIDTH}">]({path})'

    lines = ["| " + " | ".join([""] * COLUMNS) + " |", "|" + "---|" * COLUMNS]
    for start in range(0, len(names), COLUMNS):
        row = names[start:start + COLUMNS]
        pad = [""] * (COLUMNS - len(row))
        lines.append("| " + " | ".join([caption(n, c) for n, c in row] + pad) + " |")
        lines.append("| " + " | ".join([picture(n) for n, _ in row] + pad) + " |")
    return "\n".join(lines)


def replace_table(readme: str, new_table: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise SystemExit(f"error: README.md needs one {BEGIN} and one {END} line around the gallery")
    head, rest = readme.split(BEGIN + "\n", 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{new_table}\n{END}{tail}"


def main() -> None:
    from breaklab.atomic import atomic_write_bytes, atomic_write_text
    from breaklab.plots import prepare_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the runs are [runs]")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    names = gallery_names()
    for name, _ in names:
        folder = args.runs / f"{name}_{args.seed}"
        if not (folder / "metrics.jsonl").is_file():
            raise SystemExit(f"error: {folder} is missing: ./demo_run.sh {args.seed} {name} first")
    for name, _ in names:
        folder = args.runs / f"{name}_{args.seed}"
        report = prepare_report(folder)
        if name != "none" and report.reference is None:
            raise SystemExit(f"error: {folder} has no clean run beside it ({report.reference_note})")
        target = HERE / f"report_{name}_{args.seed}.png"
        atomic_write_bytes(target, small_png(report.png()))
        print(f"{target.relative_to(ROOT)}  {target.stat().st_size // 1024} kB", flush=True)
    readme = ROOT / "README.md"
    atomic_write_text(readme, replace_table(readme.read_text(), table(names, args.seed)))
    print(f"{readme.relative_to(ROOT)}: gallery of {len(names)} figures")


if __name__ == "__main__":
    main()
