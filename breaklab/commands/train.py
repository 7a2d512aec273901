"""`breaklab train` (and `python trainer.py`): one training run from the command line.

The options are built from breaklab/config.py's Config, each with its field's help, in Config's
order. Nothing here imports torch until the command runs, so `--help` starts fast.
"""
from __future__ import annotations

import os

from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from breaklab.config import Config
from breaklab.symptoms import format_summary


def build_command() -> click.Command:
    """The click command, built from Config so each option's help is its field's text."""

    def make_option(f):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"default": f.default, "help": f.metadata["help"], "show_default": True}
        if f.type in ("bool", bool):
            return click.option(flag, f.name, is_flag=True, default=False, help=f.metadata["help"])
        if "choices" in f.metadata:
            kw["type"] = click.Choice(f.metadata["choices"])
        elif f.name == "seed":
            kw["type"] = click.IntRange(0, 2**32 - 1)
        elif f.name in ("epochs", "batch_size", "threads", "hidden"):
            kw["type"] = click.IntRange(min=1)
        elif f.name in ("warmup_steps",):
            kw["type"] = click.IntRange(min=0)
        elif f.name == "stop_after":
            kw["type"] = click.IntRange(min=1)
        elif f.name in ("lr", "momentum", "weight_decay", "clip_grad", "dropout"):
            kw["type"] = click.FloatRange(min=0.0)
        elif f.name == "resume":
            kw["type"] = click.Path(dir_okay=False)
        return click.option(flag, f.name, **kw)

    @click.command(name="train", context_settings={"help_option_names": ["-h", "--help"]})
    @click.pass_context
    def command(ctx, **kwargs):
        """Train the MLP on MNIST with one break switched on (or none).

        Writes metrics.jsonl, checkpoint.pt (+ .sha256), meta.json, summary.json and report.png
        into --out.
        """
        cfg = Config(**kwargs)
        explicit = {k for k in kwargs
                    if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
        run_from_cli(cfg, explicit)

    for f in fields(Config):  # an option added to a built command goes last: keep Config's order
        command = make_option(f)(command)
    return command


def run_from_cli(cfg: Config, explicit: set[str]) -> dict[str, Any]:
    from breaklab.process_gc import imports_without_collection

    with imports_without_collection():
        import torch
        import torch._dynamo  # noqa: F401  (any torch.optim optimizer imports it, and sympy)

        from breaklab import catalogue
        from breaklab.breaks import UnknownBreak
        from breaklab.canonical_setup import SetupError
        from breaklab.run_summary import train_and_summarize
        from breaklab.trainer import config_from_checkpoint

    if not catalogue.is_known(cfg.break_name):
        raise click.UsageError(catalogue.unknown_message(cfg.break_name))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device is available here; use --device cpu")
    if cfg.data == "mnist" and not cfg.data_dir:
        raise click.UsageError("--data mnist needs --data-dir DIR (the folder that holds MNIST/raw)")
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise click.UsageError(f"cannot write to output folder {out} ({e.strerror}); choose another --out")
    try:
        if cfg.resume:
            cfg = config_from_checkpoint(cfg, explicit)
        # BREAKLAB_FIGURE=0: no report.png (the grader's re-runs, which draw their own plots from
        # the metrics; an unknown variable to older versions, which draw it as before).
        summary = train_and_summarize(cfg, warn=not cfg.quiet, figure=os.environ.get("BREAKLAB_FIGURE") != "0")
    except (SetupError, UnknownBreak) as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C: say how to continue rather than only "Aborted!"
        from breaklab.interrupted import exit_interrupted

        exit_interrupted(cfg.out)
    if not cfg.quiet:
        what = (f"break {cfg.break_name}, seed {cfg.seed}, {cfg.epochs} epochs, batch {cfg.batch_size}, "
                f"lr {cfg.lr}, {cfg.device}, {cfg.threads} thread(s), data {cfg.data}")
        click.echo(format_summary(summary, cfg.out, what))
    return summary


def main(argv: list[str] | None = None, prog_name: str = "breaklab train") -> None:
    from breaklab.process_gc import skip_final_garbage_collection

    skip_final_garbage_collection()
    build_command()(args=argv, prog_name=prog_name)
