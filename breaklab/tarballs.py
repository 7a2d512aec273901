"""Byte-reproducible tarballs: sorted names, mtime 0, uid/gid 0, no user names, gzip without a
timestamp. The same inputs always give the same bytes, so a SHA-256 identifies a run."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Mapping

from breaklab.atomic import write_with_sha256


def _info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tarball_bytes(members: Mapping[str, bytes], top: str) -> bytes:
    """A gzipped tar of `members` (relative name -> content) under the folder `top`."""
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirinfo = _info(top, 0, 0o755)
            dirinfo.type = tarfile.DIRTYPE
            tar.addfile(dirinfo)
            for name in sorted(members):
                data = members[name]
                tar.addfile(_info(f"{top}/{name}", len(data), 0o644), io.BytesIO(data))
    return raw.getvalue()


def write_tarball(path: Path | str, members: Mapping[str, bytes], top: str) -> str:
    """Write the tarball and its `.sha256` (which `sha256sum -c` accepts) atomically.

    The old `.sha256` goes first and the new one comes last, so at every moment a `.sha256`
    that exists matches the tarball beside it."""
    return write_with_sha256(path, tarball_bytes(members, top))


def read_folder(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}
