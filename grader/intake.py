"""Open a submission tarball without trusting it.

Order of checks, each a rejection with a reason (never an exception that escapes):
  1. the file: a regular file, not a link, at most MAX_TARBALL bytes, gzip magic, read once;
  2. breaklab.untrusted's pre-scan of the raw tar headers, before `tarfile` sees anything: caps on
     the decompressed size, the member count, each member's size, PAX header sizes; only regular
     files and folders (no links, devices, FIFOs); safe relative names under one top folder;
     then the members' bytes, read into memory (the same reader, with the same limits, opens the
     doctor's run tarballs);
  3. the manifest: valid JSON of the expected shape, listing exactly the files that are there,
     each with its SHA-256;
  4. a copy on disk for people to look at: written into a fresh folder of the grader's, each file
     O_CREAT|O_EXCL|O_NOFOLLOW. The grader itself reads the bytes in memory.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from breaklab import untrusted
from breaklab.untrusted import MAX_MEMBERS, Untrusted

MAX_TARBALL = untrusted.MAX_COMPRESSED
MAX_TOTAL = untrusted.MAX_TOTAL
MAX_MEMBER = untrusted.MAX_MEMBER
MAX_MANIFEST = 1 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
STUDENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

FORMAT = "breaklab-submission"
VERSION = 1
RUN_FILES = ("metrics.jsonl", "meta.json", "summary.json", "checkpoint.pt.sha256")
REQUIRED_FILES = ("report.md", "fix.patch", "commands.txt",
                  *(f"{run}/{f}" for run in ("broken", "fixed") for f in RUN_FILES))


class Rejected(Exception):
    """The submission cannot be graded; str(e) says why."""


@dataclass
class Submission:
    tarball: Path
    tarball_sha256: str
    root: Path                  # the copy on disk, for people (the grader reads `files`)
    manifest: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # relative name -> bytes

    def path(self, name: str) -> Path:
        return self.root / name

    def read_bytes(self, name: str) -> bytes:
        return self.files[name]

    def read_text(self, name: str) -> str:
        return self.files[name].decode("utf-8", errors="replace")

    @property
    def evidence(self) -> list[str]:
        return sorted(n for n in self.manifest["files"] if n.startswith("evidence/"))


def open_submission(tarball: Path, dest: Path, validate: Callable[[Any], None] | None = None,
                    required: tuple[str, ...] = REQUIRED_FILES) -> Submission:
    """Check tarball, read its members, and copy them into dest (a fresh folder); raise Rejected
    with the reason. `validate` and `required`: another kind of submission's manifest check and
    required files (an exercise's: breaklab/grader/exercise.py)."""
    tarball = Path(tarball)
    try:
        raw, gzipped = untrusted.read_tarball_bytes(tarball)
        if not gzipped:
            raise Rejected("not a gzip-compressed tarball (.tgz)")
        digest = hashlib.sha256(raw).hexdigest()
        _check_sha_file(tarball, digest)
        names = untrusted.prescan(raw, gzipped)
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1:
            raise Rejected(f"expected one top folder, found {len(tops)}")
        top = tops.pop()
        if top + "/" not in names and not any(n.startswith(top + "/") and n != top + "/" for n in names):
            raise Rejected("the top entry is not a folder")
        members = untrusted.read_tar_bytes(raw, gzipped)
    except Untrusted as e:
        raise Rejected(str(e)) from None
    if top in members:
        raise Rejected("the top entry is not a folder")
    files = {name.split("/", 1)[1]: data for name, data in members.items()}
    manifest = _check_manifest(files, validate or validate_manifest, required)
    try:
        dest.mkdir(parents=True, exist_ok=False)
        untrusted.write_fresh(dest / top, files)
    except (OSError, Untrusted) as e:
        raise Rejected(f"cannot copy the files out ({e})") from None
    return Submission(tarball, digest, dest / top, manifest, files)


def check_name(name: str) -> str:
    try:
        return untrusted.check_name(name)
    except Untrusted as e:
        raise Rejected(str(e)) from None


# ---------------------------------------------------------------------------------------------
# 4. Manifest
# ---------------------------------------------------------------------------------------------

def _check_manifest(files: dict[str, bytes], validate: Callable[[Any], None],
                    required: tuple[str, ...]) -> dict[str, Any]:
    raw = files.get("manifest.json")
    if raw is None:
        raise Rejected("manifest.json is missing")
    if len(raw) > MAX_MANIFEST:
        raise Rejected("manifest.json is too large")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise Rejected(f"manifest.json is not valid JSON ({e})") from None
    validate(manifest)
    listed = set(manifest["files"])
    present = set(files) - {"manifest.json"}
    if present - listed:
        raise Rejected("files not listed in the manifest: " + ", ".join(sorted(present - listed)[:5]))
    if listed - present:
        raise Rejected("files listed in the manifest are missing: " + ", ".join(sorted(listed - present)[:5]))
    for name, expected in sorted(manifest["files"].items()):
        if hashlib.sha256(files[name]).hexdigest() != expected:
            raise Rejected(f"{name} does not match its SHA-256 in the manifest")
    missing = [f for f in required if f not in listed]
    if missing:
        raise Rejected("required files missing: " + ", ".join(missing))
    return manifest


def validate_manifest(m: Any) -> None:
    """The manifest's shape and value ranges; raise Rejected naming the first bad field."""
    if not isinstance(m, dict):
        raise Rejected("manifest.json is not a JSON object")
    if m.get("format") != FORMAT or m.get("version") != VERSION:
        raise Rejected(f"manifest.json is not a {FORMAT} version {VERSION} manifest")

    need = field_check(m)

    def is_int(lo, hi):
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    need("break", lambda v: isinstance(v, str) and re.fullmatch(r"[a-z_]{1,40}", v), "a break name")
    need("seed", is_int(0, 2**32 - 1), "an integer seed")
    need("epochs", is_int(1, 20), "an integer from 1 to 20")
    need("threads", is_int(1, 64), "an integer from 1 to 64")
    need("base_commit", lambda v: isinstance(v, str) and COMMIT.match(v), "a full 40-hex commit id")
    check_shared_fields(m)


def field_check(m: dict) -> Callable[[str, Callable[[Any], Any], str], None]:
    """need(key, ok, what): raise Rejected naming the field unless m[key] exists and ok(m[key])."""
    def need(key, ok, what):
        if key not in m or not ok(m[key]):
            raise Rejected(f"manifest.json: {key!r} must be {what}")
    return need


def check_shared_fields(m: dict) -> None:
    """The fields every submission's manifest has (a break's and an exercise's): student, env and
    the files with their SHA-256, each file's name checked."""
    need = field_check(m)
    need("student", lambda v: v is None or (isinstance(v, str) and STUDENT.match(v)), "null or a short id")
    need("env", lambda v: isinstance(v, dict), "an object")
    need("files", lambda v: isinstance(v, dict) and len(v) <= MAX_MEMBERS and all(
        isinstance(k, str) and isinstance(s, str) and SHA256.match(s) for k, s in v.items()),
        "an object of file name -> SHA-256")
    for name in m["files"]:
        check_name(name)


def _check_sha_file(tarball: Path, digest: str) -> None:
    side = tarball.with_name(tarball.name + ".sha256")
    try:
        words = untrusted.read_file(side, 4096).decode("utf-8", "replace")[:200].split()
    except Untrusted:
        return  # absent or not a plain file: nothing to compare
    if words and words[0].lower() != digest:
        raise Rejected(f"tarball does not match {side.name} (corrupt or changed after submitting)")
