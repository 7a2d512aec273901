"""Reading files that someone else made: tarballs from students, folders a sandboxed run wrote.

One reader with one set of limits, for the grader's intake, the files the grader copies out of a
re-run, and the doctor's run tarballs. Nothing here follows a link, opens anything but a regular
file, reads past a size cap or for longer than a time bound, or writes anywhere but a fresh
folder its caller made. Torch-free, so the commands that only read files stay fast.

Files in a folder
  `read_folder_files(folder, caps)` opens the folder itself with O_NOFOLLOW|O_DIRECTORY, then each
  name relative to that descriptor with O_NOFOLLOW|O_NONBLOCK (a FIFO or device opens without
  waiting, and fstat then refuses it), checks S_ISREG and the size on the open descriptor, and
  reads at most the cap. A symbolic link, FIFO, socket, device or folder where a file should be is
  reported as a problem, never followed or read. `copy_out` writes what was read into a fresh
  folder (created by the caller's process, each file O_CREAT|O_EXCL|O_NOFOLLOW): everything
  downstream reads those copies.

Tarballs
  `read_tar(path, accept)` reads the file once (regular, not a link, at most MAX_COMPRESSED), walks the raw tar
  headers of the decompressed stream before tarfile parses anything (caps on members, sizes, PAX
  headers, names; regular files and folders only), then reads the members' bytes into memory.
  Nothing is extracted.
"""
from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
import time
import zlib
from pathlib import Path
from typing import Callable, Mapping

MiB = 1 << 20

# The limits, for every tarball breaklab opens (a submission, a packed run).
MAX_COMPRESSED = 64 * MiB   # the tarball itself
MAX_TOTAL = 160 * MiB       # all members, decompressed
MAX_MEMBER = 64 * MiB       # one member
MAX_MEMBERS = 200
MAX_PAX = 64 << 10
MAX_NAME = 200
MAX_DEPTH = 4
READ_SECONDS = 30.0         # one file or one tarball: reading it may take no longer
SAFE_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,99}$")

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
_OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


class Untrusted(Exception):
    """The input cannot be read safely; str(e) says why (one line)."""


# ---------------------------------------------------------------------------------------------
# Regular files, opened without following links
# ---------------------------------------------------------------------------------------------

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _read_fd(fd: int, name: str, cap: int, deadline: float) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise Untrusted(f"{name} is {_kind(st.st_mode)}, not a regular file")
    if st.st_size > cap:
        raise Untrusted(f"{name} is {st.st_size} bytes, over its {cap}-byte cap")
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise Untrusted(f"{name}: reading it took too long")
        chunk = os.read(fd, min(1 * MiB, cap + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise Untrusted(f"{name} grew past its {cap}-byte cap while being read")
    return b"".join(chunks)


def read_file(path: Path | str, cap: int, *, seconds: float = READ_SECONDS) -> bytes:
    """One regular file, not through a link at its last component, at most cap bytes."""
    path = Path(path)
    try:
        fd = os.open(path, _OPEN_FILE)
    except OSError as e:
        if e.errno in (getattr(os, "ELOOP", 40), getattr(os, "EMLINK", 31)):
            raise Untrusted(f"{path.name} is a symbolic link; links are not followed") from None
        raise Untrusted(f"cannot open {path.name}: {e.strerror}") from None
    try:
        return _read_fd(fd, path.name, cap, time.monotonic() + seconds)
    finally:
        os.close(fd)


def open_folder(folder: Path | str, parts: tuple[str, ...] = ()) -> int:
    """A descriptor of folder/parts..., each component opened without following a link."""
    fd = os.open(folder, _OPEN_DIR)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise Untrusted(f"unexpected path component {part!r}")
            try:
                nxt = os.open(part, _OPEN_DIR, dir_fd=fd)
            except OSError as e:
                raise Untrusted(f"{part} is not a plain folder ({e.strerror})") from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_folder_files(folder: Path | str, caps: Mapping[str, int], *, seconds: float = READ_SECONDS
                      ) -> tuple[dict[str, bytes], list[str]]:
    """The regular files `caps` names (relative names, '/'-separated) in folder: (name -> bytes,
    problems). A name that is absent is skipped silently; one that is a link, FIFO, device,
    socket or folder, or over its cap, is a problem (never followed, never read)."""
    deadline = time.monotonic() + seconds
    files: dict[str, bytes] = {}
    problems: list[str] = []
    try:
        root = open_folder(folder)
    except OSError as e:
        return {}, [f"{Path(folder).name}: not a plain folder ({e.strerror})"]
    try:
        for name, cap in caps.items():
            *dirs, base = name.split("/")
            try:
                dir_fd = _walk(root, dirs)
            except Untrusted as e:
                problems.append(f"{name}: {e}")
                continue
            except FileNotFoundError:
                continue
            try:
                try:
                    fd = os.open(base, _OPEN_FILE, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    kind = _lstat_kind(dir_fd, base)
                    problems.append(f"{name} is {kind}; not read" if kind else f"{name}: {e.strerror}")
                    continue
                try:
                    files[name] = _read_fd(fd, name, cap, deadline)
                except Untrusted as e:
                    problems.append(str(e))
                finally:
                    os.close(fd)
            finally:
                if dir_fd != root:
                    os.close(dir_fd)
    finally:
        os.close(root)
    return files, problems


def _walk(root: int, dirs: list[str]) -> int:
    fd = root
    for part in dirs:
        if part in ("", ".", ".."):
            raise Untrusted(f"unexpected path component {part!r}")
        try:
            nxt = os.open(part, _OPEN_DIR, dir_fd=fd)
        except FileNotFoundError:
            if fd != root:
                os.close(fd)
            raise
        except OSError as e:
            if fd != root:
                os.close(fd)
            raise Untrusted(f"{part} is not a plain folder ({e.strerror})") from None
        if fd != root:
            os.close(fd)
        fd = nxt
    return fd


def _lstat_kind(dir_fd: int, name: str) -> str | None:
    try:
        return _kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return None


def write_fresh(folder: Path | str, files: Mapping[str, bytes]) -> Path:
    """Write files (relative '/'-separated names of plain components) into folder, which must not
    exist yet: every folder made here, every file created O_EXCL|O_NOFOLLOW. Nothing already on
    disk is followed or overwritten."""
    folder = Path(folder)
    os.mkdir(folder, 0o755)
    for name, data in sorted(files.items()):
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise Untrusted(f"unexpected file name {name!r}")
        target = folder
        for part in parts[:-1]:
            target = target / part
            try:
                os.mkdir(target, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(target).st_mode):
                    raise Untrusted(f"{name}: {part} is not a folder") from None
        fd = os.open(target / parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    return folder


def copy_out(folder: Path | str, caps: Mapping[str, int], dest: Path | str, *,
             seconds: float = READ_SECONDS) -> tuple[Path, dict[str, bytes], list[str]]:
    """Read the files `caps` names from folder (read_folder_files) and write them into dest, a
    fresh folder: (dest, name -> bytes, problems)."""
    files, problems = read_folder_files(folder, caps, seconds=seconds)
    return write_fresh(dest, files), files, problems


# ---------------------------------------------------------------------------------------------
# Tarballs
# ---------------------------------------------------------------------------------------------

def check_name(name: str) -> str:
    """A member name we are willing to read: relative, short, plain components."""
    if "\0" in name or "\\" in name:
        raise Untrusted(f"member name with a NUL or backslash: {name!r}")
    if name.startswith("/"):
        raise Untrusted(f"absolute member path: {name!r}")
    clean = name.rstrip("/")
    if len(clean) > MAX_NAME:
        raise Untrusted(f"member name over {MAX_NAME} characters")
    parts = clean.split("/")
    if parts and parts[0] == "." and len(parts) > 1:  # "./x" from `tar -C dir .`
        parts = parts[1:]
        clean = "/".join(parts)
    if any(p in ("", ".", "..") for p in parts):
        raise Untrusted(f"member path leaves or confuses the folder: {name!r}")
    if len(parts) > MAX_DEPTH:
        raise Untrusted(f"member path deeper than {MAX_DEPTH}: {name!r}")
    for p in parts:
        if not SAFE_PART.match(p):
            raise Untrusted(f"member name with unexpected characters: {name!r}")
    return clean


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for big numbers: always over our caps
        return 1 << 62
    text = field.split(b"\0", 1)[0].strip() or b"0"
    try:
        return int(text, 8)
    except ValueError:
        raise Untrusted("corrupt tar header (bad size field)") from None


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = int(header[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    return stored == sum(header[:148]) + 8 * 32 + sum(header[156:])


def _padded(size: int) -> int:
    return (size + 511) // 512 * 512


def _skip(stream, n: int, deadline: float) -> None:
    while n > 0:
        if time.monotonic() > deadline:
            raise Untrusted("reading the tarball took too long")
        chunk = stream.read(min(n, 1 * MiB))
        if not chunk:
            raise Untrusted("tarball is truncated")
        n -= len(chunk)


def _ustar_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    full = prefix + b"/" + name if prefix else name
    try:
        return full.decode("utf-8")
    except UnicodeDecodeError:
        raise Untrusted("member name is not UTF-8") from None


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
            raise Untrusted("corrupt PAX header") from None
        if length <= 0:
            break
        record = data[sp + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        if key == b"linkpath":
            raise Untrusted("PAX linkpath: links are not accepted")
        if key == b"path":
            try:
                path = value.decode("utf-8")
            except UnicodeDecodeError:
                raise Untrusted("member name is not UTF-8") from None
        pos += length
    return path


def read_tarball_bytes(path: Path | str) -> tuple[bytes, bool]:
    """(bytes, gzipped) of a tarball: a regular file within MAX_COMPRESSED, not a link, read once
    (everything after reads these bytes, so the file cannot change under the checks)."""
    data = read_file(path, MAX_COMPRESSED)
    return data, data[:2] == b"\x1f\x8b"


def prescan(data: bytes, gzipped: bool = True, *, seconds: float = READ_SECONDS) -> list[str]:
    """Walk the tar headers in the (decompressed) stream of a tarball's bytes, enforcing the caps;
    return the names (folders end with '/'). Raises Untrusted naming the first problem."""
    deadline = time.monotonic() + seconds
    names: list[str] = []
    seen: set[str] = set()
    total = 0
    pax_name: str | None = None
    try:
        with (gzip.GzipFile(fileobj=io.BytesIO(data)) if gzipped else io.BytesIO(data)) as stream:
            while True:
                header = stream.read(512)
                if len(header) == 0:
                    break
                if len(header) < 512:
                    raise Untrusted("tarball is truncated")
                if header == b"\0" * 512:
                    break  # end of archive
                if not _checksum_ok(header):
                    raise Untrusted("corrupt tar header (checksum)")
                size = _octal(header[124:136])
                kind = header[156:157]
                if kind in (b"x", b"g"):  # PAX extended header: read it, bounded
                    if size > MAX_PAX:
                        raise Untrusted("PAX header too large")
                    data = stream.read(_padded(size))[:size]
                    total += size
                    pax_name = _pax_path(data) if kind == b"x" else pax_name
                    continue
                if kind in (b"L", b"K"):
                    raise Untrusted("GNU long-name records are not accepted")
                name = pax_name or _ustar_name(header)
                pax_name = None
                if kind in (b"1", b"2"):
                    raise Untrusted(f"link member {name!r}: links are not accepted")
                if kind in (b"3", b"4", b"6"):
                    raise Untrusted(f"device or FIFO member {name!r}")
                if kind not in (b"0", b"\0", b"5"):
                    raise Untrusted(f"member {name!r} of unsupported type {kind!r}")
                clean = check_name(name)
                if clean in seen:
                    raise Untrusted(f"member {clean!r} appears twice")
                seen.add(clean)
                if kind == b"5":
                    size = 0
                elif size > MAX_MEMBER:
                    raise Untrusted(f"member {clean!r} is {size >> 20} MiB, over the {MAX_MEMBER >> 20} MiB cap")
                total += size
                if total > MAX_TOTAL:
                    raise Untrusted(f"members add up to over {MAX_TOTAL >> 20} MiB")
                if len(seen) > MAX_MEMBERS:
                    raise Untrusted(f"more than {MAX_MEMBERS} members")
                names.append(clean + ("/" if kind == b"5" else ""))
                _skip(stream, _padded(size), deadline)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # zlib.error: a bad deflate block
        raise Untrusted(f"corrupt gzip stream ({type(e).__name__})") from None
    if not names:
        raise Untrusted("empty tarball")
    return names


def read_tar(path: Path | str, accept: Callable[[str], int | None] = lambda name: MAX_MEMBER, *,
             require_gzip: bool = True, seconds: float = READ_SECONDS) -> dict[str, bytes]:
    """The regular members of a tarball (name -> bytes), read into memory after the pre-scan.

    accept(name) returns the cap in bytes for a member to read, or None to skip it unread.
    Folders are not returned."""
    raw, gzipped = read_tarball_bytes(path)
    return read_tar_bytes(raw, gzipped, accept, require_gzip=require_gzip, seconds=seconds)


def read_tar_bytes(raw: bytes, gzipped: bool, accept: Callable[[str], int | None] = lambda name: MAX_MEMBER, *,
                   require_gzip: bool = True, seconds: float = READ_SECONDS) -> dict[str, bytes]:
    """read_tar on bytes already read."""
    if require_gzip and not gzipped:
        raise Untrusted("not a gzip-compressed tarball (.tgz)")
    names = prescan(raw, gzipped, seconds=seconds)
    expected = {n for n in names if not n.endswith("/")}
    deadline = time.monotonic() + seconds
    files: dict[str, bytes] = {}
    data_filter = getattr(tarfile, "data_filter", None)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz" if gzipped else "r:") as tar:
            count = 0
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise Untrusted(f"more than {MAX_MEMBERS} members")
                if time.monotonic() > deadline:
                    raise Untrusted("reading the tarball took too long")
                name = check_name(member.name)
                if data_filter is not None:
                    try:  # a second opinion (PEP 706) on what the pre-scan let through
                        data_filter(member, "/nonexistent-breaklab-root")
                    except tarfile.FilterError as e:
                        raise Untrusted(f"member {name!r} refused by tarfile's data filter: {e}") from None
                if member.isdir():
                    continue
                if not member.isreg() or member.size > MAX_MEMBER or name not in expected:
                    raise Untrusted(f"member {name!r} is not an acceptable regular file")
                cap = accept(name)
                if cap is None:
                    continue
                if member.size > cap:
                    raise Untrusted(f"member {name!r} is {member.size} bytes, over its {cap}-byte cap")
                handle = tar.extractfile(member)
                data = handle.read(member.size + 1) if handle else b""
                if len(data) != member.size:
                    raise Untrusted(f"member {name!r} is truncated")
                files[name] = data
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise Untrusted(f"cannot read the tarball ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                        ) from None
    return files
