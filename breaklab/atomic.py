"""Atomic file writes and SHA-256 helpers, without torch.

They live here rather than in canonical_setup (which re-exports them) so that commands that only
write files, such as `breaklab pack` at the end of demo_run.sh, do not pay for importing torch.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the final name:
    an interrupted write never leaves a truncated file under the final name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_with_sha256(path: Path | str, data: bytes) -> str:
    """Write `data` and `PATH.sha256` (in `sha256sum -c` format) atomically; return the digest.

    The old `.sha256` goes first and the new one comes last: an interrupt between the two writes
    leaves a file without a `.sha256`, never one beside the wrong `.sha256`."""
    path = Path(path)
    digest = sha256_bytes(data)
    sha_path = path.with_name(path.name + ".sha256")
    try:
        os.unlink(sha_path)
    except FileNotFoundError:
        pass
    atomic_write_bytes(path, data)
    atomic_write_text(sha_path, f"{digest}  {path.name}\n")
    return digest
