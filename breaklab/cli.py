"""The `breaklab` command: one click group, each subcommand in its own module."""
from __future__ import annotations

import click

from breaklab import __version__


TRAIN_SHORT_HELP = "Train the MLP on MNIST with one break switched on (or none)."


class _Group(click.Group):
    """`train` is built from breaklab.trainer.py's Config, and trainer.py imports torch (seconds): it
    is loaded only when asked for, so that pack, doctor, compare... and `breaklab --help` start
    without torch."""

    _listing = False  # True while `--help` lists the commands: `train` is then named, not built

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "train"})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "train" and name not in self.commands:
            if self._listing:
                return click.Command("train", short_help=TRAIN_SHORT_HELP)
            from breaklab.trainer import build_command

            self.add_command(build_command(), "train")
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:  # torch & co. are imported by the commands that need them
            if (e.name or "breaklab").split(".")[0] == "breaklab":
                raise
            raise click.ClickException(f"{e.name} is not installed for this Python: activate the "
                                       f"environment (. .venv/bin/activate) or install it "
                                       f"(pip install -e .)") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="breaklab")
def cli() -> None:
    """breaklab: cause a silent ML training bug on purpose, watch its symptom, diagnose it,
    fix it, and prove the fix.

    \b
    Quick start:
      ./demo_run.sh 42 huge_lr      train with the learning rate x100, pack the run
      breaklab list                 the breaks you can switch on
      breaklab train --break NAME   train with one break (same as python trainer.py)
      breaklab doctor RUN           diagnose a finished run from its measurements
      breaklab triage --break NAME  the ordered debugging procedure, as short experiments
    """


def _register() -> None:
    from breaklab.commands.compare import compare
    from breaklab.commands.doctor import doctor
    from breaklab.commands.grade import grade
    from breaklab.commands.kit import kit
    from breaklab.commands.list_breaks import list_breaks
    from breaklab.commands.pack import pack
    from breaklab.commands.plot import plot
    from breaklab.commands.reveal import reveal
    from breaklab.commands.submit import submit
    from breaklab.commands.triage import triage

    cli.add_command(list_breaks)  # `train` is added by _Group on first use
    cli.add_command(pack)
    cli.add_command(doctor)
    cli.add_command(triage)
    cli.add_command(compare)
    cli.add_command(plot)
    cli.add_command(reveal)
    cli.add_command(submit)
    cli.add_command(grade)
    cli.add_command(kit)


_register()
