"""The fixed plumbing of every breaklab run: seeding, determinism, data, checkpoints.

Nothing in here is ever broken on purpose. `trainer.py` imports it so that the training
loop itself stays short, and so that one seed in gives bit-identical metrics and checkpoint
out, on the same machine and thread count.

Contents, top to bottom:
  1. seeding and determinism     seed_everything, configure_determinism, rng_state
  2. data                        load_dataset (MNIST's IDX files, as torchvision reads them), minibatches
  3. files                       atomic writes, SHA-256, checkpoint save/load
  4. provenance                  git commit, library versions
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
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
# 2. Data: MNIST's IDX files (torchvision's layout and reading rules), held in memory as tensors
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


def _cache_root() -> Path:
    base = os.environ.get("BREAKLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "breaklab"
    )
    return Path(base)


def unpacked_sample_root(sums: dict[str, str]) -> Path:
    """Unpack the bundled .gz files once into a cache folder torchvision can read.

    torchvision 0.29 finds MNIST only when the uncompressed IDX files are in ``root/MNIST/raw``.
    The folder name carries a hash of the files, and it appears atomically (unpack into a
    temporary folder, then rename), so concurrent runs never see half a dataset.
    """
    key = hashlib.sha256("".join(sorted(sums.values())).encode()).hexdigest()[:16]
    for base in (_cache_root(), Path(tempfile.gettempdir()) / "breaklab-cache"):
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


def _cache_intact(folder: Path) -> bool:
    """The unpacked files are there and match the SHA-256 recorded when they were unpacked
    (about 4 MB to hash: milliseconds)."""
    try:
        recorded = _read_sums(folder / "SHA256SUMS")
        return sorted(recorded) == sorted(MNIST_FILES) and all(
            sha256_file(folder / "MNIST" / "raw" / name) == digest for name, digest in recorded.items())
    except (OSError, ValueError):
        return False


class IdxError(ValueError):
    """An IDX file that is truncated or not an MNIST file; the message says what is wrong."""


# IDX header: magic (0, 0, type, number of dimensions), then one big-endian uint32 per dimension.
_IDX_UBYTE = 0x08


def decode_idx(data: bytes | bytearray, ndim: int) -> torch.Tensor:
    """An MNIST IDX file's bytes as a uint8 tensor of `ndim` dimensions.

    The rules are those of torchvision.datasets.MNIST's reader (read_sn3_pascalvincent_tensor,
    read_image_file, read_label_file), which tests/test_data.py checks gives equal tensors, plus
    one it leaves to a later reshape: the body must hold exactly the items the header
    announces. Reading the files here rather than through torchvision keeps `import torchvision`
    out of every run (0.13-0.18 s of CPU time beyond what torch.optim imports anyway).
    """
    if not isinstance(data, bytearray):  # torch.frombuffer wants a writable buffer
        data = bytearray(data)
    if len(data) < 4:
        raise IdxError(f"{len(data)} bytes, shorter than an IDX header")
    zero, kind, dims = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0 or kind != _IDX_UBYTE or dims != ndim:
        raise IdxError(f"header {bytes(data[:4]).hex()} is not that of a {ndim}-dimensional "
                       f"unsigned-byte IDX file (0000080{ndim})")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise IdxError(f"{len(data)} bytes, shorter than its {offset}-byte header")
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = offset + math.prod(shape)
    if len(data) != expected:
        raise IdxError(f"{len(data)} bytes where its header {tuple(shape)} needs {expected}")
    return torch.frombuffer(data, dtype=torch.uint8, offset=offset, count=expected - offset).view(shape)


def _read_split(raw: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """(images as uint8 N x 28 x 28, labels as int64, {file name: SHA-256}) of one split, each
    file read once: the SHA-256 recorded is that of the very bytes that are decoded."""
    tensors, sums = [], {}
    for name, ndim in ((f"{prefix}-images-idx3-ubyte", 3), (f"{prefix}-labels-idx1-ubyte", 1)):
        with open(raw / name, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)  # read into place: no copy of 47 MB
            del data[f.readinto(data):]
        try:
            tensors.append(decode_idx(data, ndim))
        except IdxError as e:
            raise IdxError(f"{name}: {e}") from None
        sums[name] = sha256_bytes(data)
    images, labels = tensors
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
        raise IdxError(f"{prefix}: {tuple(images.shape)} images of 28 x 28 pixels do not match "
                       f"{len(labels)} labels")
    return images, labels.to(torch.int64), sums


def _normalised(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = images.to(torch.float32).div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
    return x.reshape(len(x), -1).to(device)


def _download(root: Path) -> None:
    """Fetch MNIST into root/MNIST/raw with torchvision's downloader (needs a network)."""
    from torchvision.datasets import MNIST

    MNIST(str(root), train=True, download=True)


def load_dataset(name: str = "sample", data_dir: str | None = None, download: bool = False,
                 device: str | torch.device = "cpu") -> Dataset:
    """Load MNIST from torchvision's layout: the four uncompressed IDX files in root/MNIST/raw.

    name="sample": the bundled real 4,000/1,000 sample (checked against its SHA-256 first).
    name="mnist":  full MNIST; ``data_dir`` is torchvision's root (files in DIR/MNIST/raw).
    The tensors are those torchvision.datasets.MNIST(root).data / .targets give.
    """
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

    raw = root / "MNIST" / "raw"
    if download and not all((raw / f).is_file() for f in MNIST_FILES):
        try:
            _download(root)
        except Exception as e:  # no network, a proxy, a full disk...
            raise SetupError(f"could not download MNIST into {raw} ({type(e).__name__}: {e}); "
                             f"put the four uncompressed IDX files there yourself") from None
    if not all((raw / f).is_file() for f in MNIST_FILES):
        raise SetupError(
            f"MNIST not found under {raw}: put the four uncompressed IDX "
            f"files there, or add --download (needs a network), or use --data sample"
        )
    try:
        train_images, y_train, train_sums = _read_split(raw, "train")
        test_images, y_test, test_sums = _read_split(raw, "t10k")
    except (IdxError, OSError) as e:
        raise SetupError(
            f"MNIST files under {raw} are corrupt or truncated ({e}); "
            f"replace them (or use --data sample)"
        ) from None
    if name == "mnist":
        sums = {**train_sums, **test_sums}
        identity["files"] = {f: sums[f] for f in MNIST_FILES}

    dev = torch.device(device)
    x_train, x_test = _normalised(train_images, dev), _normalised(test_images, dev)
    y_train, y_test = y_train.to(dev), y_test.to(dev)
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


def torchvision_version() -> str:
    """torchvision.__version__ (e.g. '0.29.1+cpu', with the build's suffix that the package
    metadata lacks), read from torchvision/version.py: a run does not otherwise import
    torchvision, whose import costs more than the whole data loading."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.origin:
        try:
            text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
            found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
            if found:
                return found.group(1)
        except OSError:
            pass
    import torchvision  # an unusual installation: ask the package itself

    return torchvision.__version__


def environment_info(device: str, threads: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": device,
        "cuda_device": torch.cuda.get_device_name() if device == "cuda" else None,
        "threads": threads,
    }
