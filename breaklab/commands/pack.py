"""`breaklab pack RUN_DIR`: pack a run folder into a byte-reproducible tarball (+ .sha256)."""
from __future__ import annotations

import json
from pathlib import Path

import click

RUN_FILES = ["metrics.jsonl", "checkpoint.pt", "checkpoint.pt.sha256", "meta.json", "summary.json",
             "report.png"]


@click.command(name="pack")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tarball", "tarball", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the tarball [default: run_<folder name>.tgz beside the folder's parent].")
@click.option("--command", "commands", multiple=True, help="A command that made this run (stored in command.txt).")
@click.option("--name", help="The top folder inside the tarball [default: the tarball's name without .tgz].")
def pack(run_dir: Path, tarball: Path | None, commands: tuple[str, ...], name: str | None) -> None:
    """Pack RUN_DIR (metrics, checkpoint and its SHA-256, meta.json, summary, the command) into a
    tarball that is byte-identical whenever the run is, with a .sha256 for `sha256sum -c`."""
    from breaklab.tarballs import read_folder, write_tarball

    missing = [f for f in ("metrics.jsonl", "checkpoint.pt", "meta.json") if not (run_dir / f).is_file()]
    if missing:
        raise click.UsageError(f"{run_dir} is not a finished run: {', '.join(missing)} missing")
    try:
        meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise click.ClickException(f"{run_dir / 'meta.json'} is corrupt ({e}); train the run again") from None
    _check_checkpoint(run_dir)
    if meta.get("status") == "running":
        raise click.UsageError(f"{run_dir} is still running or was interrupted (meta.json status "
                               f"'running'); resume it with --resume {run_dir}/checkpoint.pt")
    tarball = tarball or Path(f"run_{run_dir.name}.tgz")
    members = read_folder(run_dir, RUN_FILES)
    if commands:
        members["command.txt"] = ("\n".join(commands) + "\n").encode()
    top = name or tarball.name.removesuffix(".tgz")
    digest = write_tarball(tarball, members, top)
    click.echo(f"tarball:  {tarball} ({len(members)} files)")
    click.echo(f"sha256:   {digest}  (check with: sha256sum -c {tarball}.sha256)")


def _check_checkpoint(run_dir: Path) -> None:
    """Refuse to pack a checkpoint that does not match its .sha256 (a damaged run folder)."""
    import hashlib

    ckpt, sha_file = run_dir / "checkpoint.pt", run_dir / "checkpoint.pt.sha256"
    if not sha_file.is_file():
        return
    recorded = sha_file.read_text(encoding="utf-8", errors="replace").split()
    if not recorded or hashlib.sha256(ckpt.read_bytes()).hexdigest() != recorded[0]:
        raise click.ClickException(f"{ckpt} does not match {sha_file.name} (corrupt or truncated); "
                                   f"resume from an intact checkpoint or train the run again")


if __name__ == "__main__":
    pack()
