"""Every option of a training run: one dataclass, a line of help per field.

trainer.py trains with it and breaklab/commands/train.py builds the command line from it (the
options' help is the fields' text, in this order). It imports nothing heavy, so that
`breaklab train --help` starts without torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    seed: int = _opt(42, "Seeds every RNG (Python, NumPy, torch): same seed, same bits.")
    break_name: str = _opt("none", "The bug to switch on (see `breaklab list`), 'none', or 'mystery' "
                           "(one picked from the seed, name hidden).", flag="--break")
    epochs: int = _opt(3, "Total epochs of the schedule (the cosine decay spans all of them).")
    batch_size: int = _opt(64, "Examples per step.")
    lr: float = _opt(0.1, "Peak learning rate of SGD (reached after the warmup).")
    momentum: float = _opt(0.9, "SGD momentum.")
    weight_decay: float = _opt(0.0, "L2 weight decay.")
    warmup_steps: int = _opt(10, "Steps of linear warmup before the cosine decay.")
    clip_grad: float = _opt(0.0, "Clip the global gradient norm to this value (0: no clipping).")
    hidden: int = _opt(256, "Width of the hidden layer.")
    dropout: float = _opt(0.1, "Dropout probability after the hidden layer.")
    device: str = _opt("cpu", "cpu or cuda.", choices=("cpu", "cuda"))
    threads: int = _opt(1, "torch CPU threads. Pinned because the thread count changes the bits.")
    amp: bool = _opt(False, "Mixed precision: float16 autocast with a GradScaler (CPU or CUDA).")
    data: str = _opt("sample", "'sample' (bundled 4,000/1,000 real MNIST digits) or 'mnist' (full set).",
                     choices=("sample", "mnist"))
    data_dir: str | None = _opt(None, "With --data mnist: torchvision's root (files in DIR/MNIST/raw).")
    download: bool = _opt(False, "With --data mnist: download MNIST if missing (needs a network).")
    out: str = _opt("runs/latest", "Folder for metrics.jsonl, checkpoint.pt, meta.json, summary.json, report.png.")
    resume: str | None = _opt(None, "Continue the run saved in this checkpoint.pt (same config, same bits).")
    stop_after: int | None = _opt(None, "Stop after this many epochs of this invocation (resume later).")
    quiet: bool = _opt(False, "No progress bar and no summary.")
    dry_run: bool = _opt(False, "Run two steps and one evaluation only: a quick smoke test.")


# The fields that define the training itself: saved in the checkpoint, and fixed on --resume.
TRAINING_FIELDS = ("seed", "break_name", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                   "warmup_steps", "clip_grad", "hidden", "dropout", "device", "threads", "amp",
                   "data", "dry_run")
