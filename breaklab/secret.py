"""The secret that salts mystery mode, so that the seed alone does not say which break a run has.

A mystery run's break is picked by HMAC-SHA256(secret, seed): the same seed and secret give the
same break on every machine, and without the secret the seed tells nothing. The secret is, first
found first used:
  1. `--secret` on the command (reveal, hint, doctor/triage --spoil),
  2. the environment variable BREAKLAB_SECRET (an instructor sets it when making the runs a class
     gets, and keeps it),
  3. a random secret made once per install in the cache folder (`$BREAKLAB_CACHE` or
     ~/.cache/breaklab, file `mystery-secret`, mode 0600).
The per-install secret stops a guess from the published code and the seed; a learner who reads
their own cache can still find it. Runs made with an instructor's secret cannot be opened
without it.

A run records only a commitment, HMAC(secret, seed and break): with the secret, `reveal` and
`hint` find which option it was; without it, it says nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from breaklab.cache import cache_candidates

SECRET_ENV = "BREAKLAB_SECRET"
SECRET_FILE = "mystery-secret"


class SecretError(Exception):
    """No secret can be read or made (the message says what to set)."""


def resolve(explicit: str | None = None) -> bytes:
    """The secret to use: --secret, else $BREAKLAB_SECRET, else the per-install one."""
    if explicit:
        return explicit.encode()
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV].encode()
    return install_secret()


def install_secret() -> bytes:
    """The per-install secret: read it, or make it once. A new secret is written to a temporary
    file with mode 0600 and linked to its final name, which fails if another process got there
    first; then everybody reads the one that won. So it appears whole, once."""
    for base in cache_candidates():
        value = _read(base / SECRET_FILE)
        if value:
            return value
    for base in cache_candidates():
        path = base / SECRET_FILE
        try:
            base.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{SECRET_FILE}.", dir=base)
        except OSError:
            continue
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        except OSError:
            continue
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        value = _read(path)
        if value:
            return value
    raise SecretError(f"cannot keep the mystery secret in a cache folder ({cache_candidates()[0]} is not "
                      f"writable): set {SECRET_ENV} or BREAKLAB_CACHE")


def _read(path: Path) -> bytes | None:
    try:
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value.encode() if value else None


def pick(seed: int, options: list[str], secret: bytes) -> str:
    """One of options, from the seed and the secret."""
    digest = hmac.new(secret, f"breaklab-mystery:{seed}".encode(), hashlib.sha256).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def commitment(seed: int, choice: str, secret: bytes) -> str:
    """What a run records about its choice: opens only with the secret."""
    return hmac.new(secret, f"breaklab-mystery-commitment:{seed}:{choice}".encode(), hashlib.sha256).hexdigest()


def open_commitment(seed: int, recorded: str, options: list[str], secret: bytes) -> str | None:
    """The option whose commitment under this secret is the recorded one; None when none is (the
    run was made with another secret)."""
    for option in options:
        if hmac.compare_digest(commitment(seed, option, secret), recorded):
            return option
    return None
