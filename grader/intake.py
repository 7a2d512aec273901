"""Open a submission tarball without trusting it.

Order of checks, each a rejection with a reason (never an exception that escapes):
  1. the file: a regular file, at most MAX_TARBALL bytes, gzip magic;
  2. a streaming pre-scan of the raw tar headers, before `tarfile` sees anything: caps on the
     decompressed size, the member count, each member's size, PAX header sizes; only regular
     files and folders (no links, devices, FIFOs); safe relative names under one top folder;
  3. extraction by hand into a fresh folder: each file opened with O_CREAT|O_EXCL|O_NOFOLLOW
     under a path built from validated components, with `tarfile.data_filter` as a second
     opinion where this Python has it (PEP 706);
  4. the manifest: valid JSON of the expected shape, listing exactly the files that are there,
     each with its SHA-256.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_TARBALL = 64 << 20     # compressed
MAX_TOTAL = 96 << 20       # all members, decompressed
MAX_MEMBER = 32 << 20      # one member
MAX_MEMBERS = 200
MAX_PAX = 64 << 10
MAX_NAME = 200
MAX_DEPTH = 4
MAX_MANIFEST = 1 << 20
SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}$")
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
    root: Path                  # the extracted top folder
    manifest: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.root / name

    def read_text(self, name: str) -> str:
        return self.path(name).read_text(encoding="utf-8", errors="replace")

    @property
    def evidence(self) -> list[str]:
        return sorted(n for n in self.manifest["files"] if n.startswith("evidence/"))


def open_submission(tarball: Path, dest: Path) -> Submission:
    """Check and extract tarball into dest (a fresh folder); raise Rejected with the reason."""
    tarball = Path(tarball)
    try:
        st = tarball.lstat()
    except OSError as e:
        raise Rejected(f"cannot read the tarball: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise Rejected("not a regular file")
    if st.st_size > MAX_TARBALL:
        raise Rejected(f"tarball is {st.st_size >> 20} MiB, over the {MAX_TARBALL >> 20} MiB cap")
    digest = _sha256_file(tarball)
    _check_sha_file(tarball, digest)
    with open(tarball, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            raise Rejected("not a gzip-compressed tarball (.tgz)")
    names = prescan(tarball)
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1:
        raise Rejected(f"expected one top folder, found {len(tops)}")
    dest.mkdir(parents=True, exist_ok=False)
    _extract(tarball, dest)
    root = dest / tops.pop()
    if not root.is_dir() or root.is_symlink():
        raise Rejected("the top entry is not a folder")
    manifest = _check_manifest(root)
    return Submission(tarball, digest, root, manifest)


# ---------------------------------------------------------------------------------------------
# 2. Pre-scan of the raw tar stream
# ---------------------------------------------------------------------------------------------

def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for big numbers: always over our caps
        return 1 << 62
    text = field.split(b"\0", 1)[0].strip() or b"0"
    try:
        return int(text, 8)
    except ValueError:
        raise Rejected("corrupt tar header (bad size field)") from None


def check_name(name: str) -> str:
    """A member name we are willing to create: relative, short, plain components."""
    if "\0" in name or "\\" in name:
        raise Rejected(f"member name with a NUL or backslash: {name!r}")
    if name.startswith("/"):
        raise Rejected(f"absolute member path: {name!r}")
    clean = name.rstrip("/")
    if len(clean) > MAX_NAME:
        raise Rejected(f"member name over {MAX_NAME} characters")
    parts = clean.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise Rejected(f"member path leaves or confuses the folder: {name!r}")
    if len(parts) > MAX_DEPTH:
        raise Rejected(f"member path deeper than {MAX_DEPTH}: {name!r}")
    for p in parts:
        if not SAFE_PART.match(p):
            raise Rejected(f"member name with unexpected characters: {name!r}")
    return clean


def prescan(tarball: Path) -> list[str]:
    """Walk the tar headers in the decompressed stream, enforcing the caps; return the names."""
    names: list[str] = []
    seen: set[str] = set()
    total = 0
    pax_name: str | None = None
    try:
        with gzip.open(tarball, "rb") as stream:
            while True:
                header = stream.read(512)
                if len(header) == 0:
                    break
                if len(header) < 512:
                    raise Rejected("tarball is truncated")
                if header == b"\0" * 512:
                    break  # end of archive
                if _checksum_ok(header) is False:
                    raise Rejected("corrupt tar header (checksum)")
                size = _octal(header[124:136])
                kind = header[156:157]
                if kind in (b"x", b"g"):  # PAX extended header: read it, bounded
                    if size > MAX_PAX:
                        raise Rejected("PAX header too large")
                    data = stream.read(_padded(size))[:size]
                    total += size
                    pax_name = _pax_path(data) if kind == b"x" else pax_name
                    continue
                if kind in (b"L", b"K"):
                    raise Rejected("GNU long-name records are not accepted")
                name = pax_name or _ustar_name(header)
                pax_name = None
                if kind in (b"1", b"2"):
                    raise Rejected(f"link member {name!r}: links are not accepted")
                if kind in (b"3", b"4", b"6"):
                    raise Rejected(f"device or FIFO member {name!r}")
                if kind not in (b"0", b"\0", b"5"):
                    raise Rejected(f"member {name!r} of unsupported type {kind!r}")
                clean = check_name(name)
                if clean in seen:
                    raise Rejected(f"member {clean!r} appears twice")
                seen.add(clean)
                if kind == b"5":
                    size = 0
                elif size > MAX_MEMBER:
                    raise Rejected(f"member {clean!r} is {size >> 20} MiB, over the {MAX_MEMBER >> 20} MiB cap")
                total += size
                if total > MAX_TOTAL:
                    raise Rejected(f"members add up to over {MAX_TOTAL >> 20} MiB")
                if len(seen) > MAX_MEMBERS:
                    raise Rejected(f"more than {MAX_MEMBERS} members")
                names.append(clean)
                _skip(stream, _padded(size))
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # zlib.error: a bad deflate block
        raise Rejected(f"corrupt gzip stream ({type(e).__name__})") from None
    if not names:
        raise Rejected("empty tarball")
    return names


def _checksum_ok(header: bytes) -> bool | None:
    try:
        stored = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return stored == computed


def _padded(size: int) -> int:
    return (size + 511) // 512 * 512


def _skip(stream, n: int) -> None:
    while n > 0:
        chunk = stream.read(min(n, 1 << 20))
        if not chunk:
            raise Rejected("tarball is truncated")
        n -= len(chunk)


def _ustar_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    full = prefix + b"/" + name if prefix else name
    try:
        return full.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("member name is not UTF-8") from None


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a PAX header ("LEN path=VALUE\\n" records)."""
    pos, path = 0, None
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise Rejected("corrupt PAX header") from None
        if length <= 0:
            break
        record = data[sp + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        if key in (b"path", b"linkpath"):
            if key == b"linkpath":
                raise Rejected("PAX linkpath: links are not accepted")
            try:
                path = value.decode("utf-8")
            except UnicodeDecodeError:
                raise Rejected("member name is not UTF-8") from None
        pos += length
    return path


# ---------------------------------------------------------------------------------------------
# 3. Extraction
# ---------------------------------------------------------------------------------------------

def _extract(tarball: Path, dest: Path) -> None:
    data_filter = getattr(tarfile, "data_filter", None)
    dest_real = os.path.realpath(dest)
    try:
        with tarfile.open(tarball, mode="r:gz") as tar:
            count = 0
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise Rejected(f"more than {MAX_MEMBERS} members")
                name = check_name(member.name)
                if data_filter is not None:
                    try:
                        data_filter(member, dest_real)
                    except tarfile.FilterError as e:
                        raise Rejected(f"member {name!r} refused by tarfile's data filter: {e}") from None
                target = os.path.join(dest_real, *name.split("/"))
                if os.path.commonpath([dest_real, target]) != dest_real:
                    raise Rejected(f"member {name!r} would land outside the folder")
                if member.isdir():
                    os.makedirs(target, mode=0o755, exist_ok=True)
                    continue
                if not member.isreg() or member.size > MAX_MEMBER:
                    raise Rejected(f"member {name!r} is not an acceptable regular file")
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                src = tar.extractfile(member)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    remaining = member.size
                    while remaining > 0:
                        chunk = src.read(min(remaining, 1 << 20))
                        if not chunk:
                            raise Rejected(f"member {name!r} is truncated")
                        out.write(chunk)
                        remaining -= len(chunk)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise Rejected(f"cannot extract ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# 4. Manifest
# ---------------------------------------------------------------------------------------------

def _files_under(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            found.add(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    return found


def _check_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if not path.is_file():
        raise Rejected("manifest.json is missing")
    if path.stat().st_size > MAX_MANIFEST:
        raise Rejected("manifest.json is too large")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise Rejected(f"manifest.json is not valid JSON ({e})") from None
    validate_manifest(manifest)
    listed = set(manifest["files"])
    present = _files_under(root) - {"manifest.json"}
    if present - listed:
        raise Rejected("files not listed in the manifest: " + ", ".join(sorted(present - listed)[:5]))
    if listed - present:
        raise Rejected("files listed in the manifest are missing: " + ", ".join(sorted(listed - present)[:5]))
    for name, expected in sorted(manifest["files"].items()):
        if _sha256_file(root / name) != expected:
            raise Rejected(f"{name} does not match its SHA-256 in the manifest")
    missing = [f for f in REQUIRED_FILES if f not in listed]
    if missing:
        raise Rejected("required files missing: " + ", ".join(missing))
    return manifest


def validate_manifest(m: Any) -> None:
    """The manifest's shape and value ranges; raise Rejected naming the first bad field."""
    if not isinstance(m, dict):
        raise Rejected("manifest.json is not a JSON object")
    if m.get("format") != FORMAT or m.get("version") != VERSION:
        raise Rejected(f"manifest.json is not a {FORMAT} version {VERSION} manifest")

    def need(key, ok, what):
        if key not in m or not ok(m[key]):
            raise Rejected(f"manifest.json: {key!r} must be {what}")

    def is_int(lo, hi):
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    need("break", lambda v: isinstance(v, str) and re.fullmatch(r"[a-z_]{1,40}", v), "a break name")
    need("seed", is_int(0, 2**32 - 1), "an integer seed")
    need("epochs", is_int(1, 20), "an integer from 1 to 20")
    need("threads", is_int(1, 64), "an integer from 1 to 64")
    need("base_commit", lambda v: isinstance(v, str) and COMMIT.match(v), "a full 40-hex commit id")
    need("student", lambda v: v is None or (isinstance(v, str) and STUDENT.match(v)), "null or a short id")
    need("env", lambda v: isinstance(v, dict), "an object")
    need("files", lambda v: isinstance(v, dict) and len(v) <= MAX_MEMBERS and all(
        isinstance(k, str) and isinstance(s, str) and SHA256.match(s) for k, s in v.items()),
        "an object of file name -> SHA-256")
    for name in m["files"]:
        check_name(name)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_sha_file(tarball: Path, digest: str) -> None:
    side = tarball.with_name(tarball.name + ".sha256")
    if side.is_file() and not side.is_symlink():
        try:
            words = side.read_text(errors="replace")[:200].split()
        except OSError:
            return
        if words and words[0].lower() != digest:
            raise Rejected(f"tarball does not match {side.name} (corrupt or changed after submitting)")
