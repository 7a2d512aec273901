"""The fixed plumbing of every breaklab run: seeding, determinism, data, checkpoints.

Nothing in here is ever broken on purpose. `trainer.py` imports it so that the training
loop itself stays short, and so that one seed in gives bit-identical metrics and checkpoint
out, on the same machine and thread count.

Contents, top to bottom:
  1. seeding and determinism     seed_everything, configure_determinism, rng_state
  2. data                        load_dataset (torchvision's own MNIST reader), minibatches
  3. files                       atomic writes, SHA-256, checkpoint save/load
  4. provenance                  git commit, library versions
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

# cuBLAS needs this before the first CUDA call to be deterministic.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from breaklab.atomic import (atomic_write_bytes, atomic_write_text, sha256_bytes,  # noqa: E402,F401
                             sha256_file, write_with_sha256)
from breaklab.cache import cache_candidates  # noqa: E402

ROOT = Path(__file__).resolve().parent
SAMPLE_DIR = ROOT / "data" / "sample"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# The usual MNIST normalisation constants (mean and std of the full training set).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class SetupError(Exception):
    """A problem the user can fix (missing data, corrupt file...): the message says how."""


# ============================================================================
# 1. Seeding and determinism
# ============================================================================

def seed_everything(seed: int) -> None:
    """Seed every RNG a run touches: Python, NumPy, torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def configure_determinism(threads: int) -> None:
    """Pin the thread count and ask torch for deterministic kernels.

    The thread count changes the order of floating-point reductions, so a run with 2 threads
    gives other bits than a run with 1. It is pinned and recorded in meta.json.
    """
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # may only be set once per process; harmless when already set
        pass
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def rng_state() -> dict[str, Any]:
    """Every RNG state, for the checkpoint (restored by set_rng_state on --resume)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


# ============================================================================
# 2. Data: MNIST through torchvision's own reader, held in memory as tensors
# ============================================================================

@dataclass
class Dataset:
    """The whole dataset as tensors on the training device (normalised, flattened)."""

    x_train: torch.Tensor  # float32, N x 784
    y_train: torch.Tensor  # int64, N
    x_test: torch.Tensor
    y_test: torch.Tensor
    identity: dict[str, Any] = field(default_factory=dict)  # name, sizes, SHA-256 of files


def _read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


def verify_sample() -> dict[str, str]:
    """Check the bundled .gz files against data/sample/SHA256SUMS; return name -> SHA-256."""
    sums = _read_sums(SAMPLE_DIR / "SHA256SUMS")
    raw = SAMPLE_DIR / "MNIST" / "raw"
    for name, expected in sums.items():
        path = raw / name
        if not path.is_file():
            raise SetupError(
                f"bundled data file {path} is missing; restore it with "
                f"`git checkout -- data/sample` or regenerate it with data/make_sample.py"
            )
        if sha256_file(path) != expected:
            raise SetupError(
                f"bundled data file {path} is corrupt (its SHA-256 does not match "
                f"data/sample/SHA256SUMS); restore it with `git checkout -- data/sample`"
            )
    return sums


def unpacked_sample_root(sums: dict[str, str]) -> Path:
    """Unpack the bundled .gz files once into a cache folder torchvision can read.

    torchvision 0.29 finds MNIST only when the uncompressed IDX files are in ``root/MNIST/raw``.
    The folder name carries a hash of the files, and it appears atomically (unpack into a
    temporary folder, then rename), so concurrent runs never see half a dataset.
    """
    key = hashlib.sha256("".join(sorted(sums.values())).encode()).hexdigest()[:16]
    for base in cache_candidates():
        final = base / f"mnist-sample-{key}"
        if _cache_intact(final):
            return final
        if final.exists():  # truncated or altered since it was unpacked: unpack it again
            shutil.rmtree(final, ignore_errors=True)
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=base))
        except OSError:
            continue  # cache not writable: try the next place
        try:
            raw = tmp / "MNIST" / "raw"
            raw.mkdir(parents=True)
            unpacked_sums = []
            for name in MNIST_FILES:
                with gzip.open(SAMPLE_DIR / "MNIST" / "raw" / f"{name}.gz", "rb") as src:
                    content = src.read()
                (raw / name).write_bytes(content)
                unpacked_sums.append(f"{sha256_bytes(content)}  {name}\n")
            (tmp / "SHA256SUMS").write_text("".join(unpacked_sums))
            try:
                os.rename(tmp, final)
            except OSError:  # another run got there first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if _cache_intact(final):
            return final
    raise SetupError("cannot unpack the bundled MNIST sample: no writable cache folder "
                     "(set BREAKLAB_CACHE to a writable directory)")


def mnist_sample_root() -> str:
    """The folder to give ``torchvision.datasets.MNIST(root, ...)`` for the bundled sample: the
    files are checked against their SHA-256 and unpacked once into the cache. Scripts written
    outside breaklab (the exercises' train.py) call this and read the data themselves."""
    return str(unpacked_sample_root(verify_sample()))


def _cache_intact(folder: Path) -> bool:
    """The unpacked files are there and match the SHA-256 recorded when they were unpacked
    (about 4 MB to hash: milliseconds)."""
    try:
        recorded = _read_sums(folder / "SHA256SUMS")
        return sorted(recorded) == sorted(MNIST_FILES) and all(
            sha256_file(folder / "MNIST" / "raw" / name) == digest for name, digest in recorded.items())
    except (OSError, ValueError):
        return False


def _to_tensors(ds, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # .data / .targets load the whole split at once: no per-sample PIL transform.
    x = ds.data.to(torch.float32).div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
    return x.reshape(len(x), -1).to(device), ds.targets.to(torch.int64).to(device)


def load_dataset(name: str = "sample", data_dir: str | None = None, download: bool = False,
                 device: str | torch.device = "cpu") -> Dataset:
    """Load MNIST with ``torchvision.datasets.MNIST(root, download=...)``.

    name="sample": the bundled real 4,000/1,000 sample (checked against its SHA-256 first).
    name="mnist":  full MNIST; ``data_dir`` is torchvision's root (files in DIR/MNIST/raw).
    """
    from torchvision.datasets import MNIST

    if name == "sample":
        sums = verify_sample()
        root = unpacked_sample_root(sums)
        identity = {"name": "mnist-sample", "files": dict(sorted(sums.items()))}
    elif name == "mnist":
        if not data_dir:
            raise SetupError("--data mnist needs --data-dir DIR (the folder that holds MNIST/raw)")
        root = Path(data_dir)
        identity = {"name": "mnist"}
    else:
        raise SetupError(f"unknown dataset {name!r}: use 'sample' or 'mnist'")

    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except RuntimeError as e:
        if "not found" in str(e).lower():
            raise SetupError(
                f"MNIST not found under {root / 'MNIST' / 'raw'}: put the four uncompressed IDX "
                f"files there, or add --download (needs a network), or use --data sample"
            ) from None
        raise SetupError(
            f"MNIST files under {root / 'MNIST' / 'raw'} are corrupt or truncated ({e}); "
            f"replace them (or use --data sample)"
        ) from None
    except Exception as e:  # truncated or corrupt IDX files surface as assorted errors
        raise SetupError(
            f"MNIST files under {root / 'MNIST' / 'raw'} are corrupt or truncated ({type(e).__name__}: {e}); "
            f"replace them (or use --data sample)"
        ) from None

    if name == "mnist":
        raw = root / "MNIST" / "raw"
        identity["files"] = {f: sha256_file(raw / f) for f in MNIST_FILES if (raw / f).is_file()}

    dev = torch.device(device)
    x_train, y_train = _to_tensors(train, dev)
    x_test, y_test = _to_tensors(test, dev)
    identity.update(train_size=len(y_train), test_size=len(y_test))
    return Dataset(x_train, y_train, x_test, y_test, identity)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that orders one epoch. It depends only on (seed, epoch), so a resumed run
    sees exactly the batches an uninterrupted run would, without saving iterator state."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def minibatches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """Deterministic minibatches of indices: a seeded permutation, split in batch_size chunks."""
    order = torch.randperm(n, generator=epoch_generator(seed, epoch))
    yield from order.split(batch_size)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


# ============================================================================
# 3. Files: atomic writes, hashes, checkpoints
# ============================================================================

# atomic_write_bytes, atomic_write_text, sha256_bytes and sha256_file live in breaklab/atomic.py
# (torch-free, for the commands that only write files) and are imported above.


def _canonical(obj: Any) -> Any:
    """Fresh containers and interned strings. Pickle's memo records which objects are shared, so a
    key that is the same str object in two places (as after a fresh start) pickles to other
    bytes than two equal copies (as after loading a checkpoint). Canonical objects make the
    bytes depend on the content alone: resumed and uninterrupted runs then match."""
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    if isinstance(obj, str):
        return sys.intern(obj)
    return obj


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> str:
    """Save a checkpoint and its ``.sha256`` atomically; return the SHA-256.

    torch.save is serialised into memory first: saved straight to a file, the archive's inner
    names carry that file's name, so a temp-file-then-rename would change the bytes.
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(_canonical(state), buf)
    return write_with_sha256(path, buf.getvalue())


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint, checking it against its ``.sha256`` when one sits beside it."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    sha_file = path.with_name(path.name + ".sha256")
    if sha_file.is_file():
        expected = sha_file.read_text().split()[0] if sha_file.read_text().split() else ""
        if sha256_bytes(data) != expected:
            raise SetupError(f"checkpoint {path} does not match {sha_file.name} (corrupt or "
                             f"truncated): use another checkpoint or start the run again")
    try:
        # weights_only=False: the checkpoint holds RNG states (tuples, numpy arrays). Only load
        # checkpoints you made; the grader never loads a submitted checkpoint this way.
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as e:
        raise SetupError(f"checkpoint {path} cannot be read ({type(e).__name__}): it is corrupt "
                         f"or not a breaklab checkpoint") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise SetupError(f"checkpoint {path} is not a breaklab checkpoint (no model/config)")
    return state


# ============================================================================
# 4. Provenance
# ============================================================================

def git_commit(path: Path | str = ROOT) -> dict[str, Any]:
    """The commit of the code that ran, and whether the tree had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": "nogit", "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=path, capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "nogit", "dirty": None}


def environment_info(device: str, threads: int) -> dict[str, Any]:
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": device,
        "cuda_device": torch.cuda.get_device_name() if device == "cuda" else None,
        "threads": threads,
    }
