"""Grading a class in N independent pieces (a Slurm array, Kubernetes Jobs, N shells) and merging.

`breaklab grade INBOX --shard K/N --out OUT_K` grades the K-th of N shares of the class: every
shard lists the same tarballs, names them the same way (over the whole class, so the folder names
do not depend on N), and takes those whose position in the sorted list is K-1 modulo N. Each shard
writes its submission folders and `shard.json` (K, N, and the whole class's list). `breaklab grade
merge OUT_1 ... OUT_N --out OUT` copies the folders into OUT, checks that the N shards are all there
and agree on the class, and runs the class checks (breaklab.grader.integrity) and grades.csv over
the whole class: the result is what one run over the class gives.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from breaklab.atomic import atomic_write_text

SHARD_FILE = "shard.json"
SHARD_FORMAT = "breaklab-grading-shard"


class ShardError(Exception):
    """A shard specification or a set of shard folders that cannot be used; the message says why."""


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ShardError(f"--shard {text!r}: write K/N, for example 2/8 (the 2nd of 8 shards)")
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= k <= n:
        raise ShardError(f"--shard {text}: K must be between 1 and N ({n})")
    return k, n


def select(items: list[Any], k: int, n: int) -> list[int]:
    """Positions of the K-th share (1-based) of items: every N-th one, starting at K-1."""
    return list(range(k - 1, len(items), n))


def write_manifest(out: Path, k: int, n: int, class_list: list[tuple[str, str]], mine: list[str],
                   formats: tuple[str, ...]) -> None:
    """class_list: (submission id, tarball name) of the whole class; mine: this shard's ids."""
    atomic_write_text(out / SHARD_FILE, json.dumps({
        "format": SHARD_FORMAT, "shard": k, "of": n, "formats": list(formats),
        "class": [{"submission": s, "tarball": t} for s, t in class_list], "submissions": mine,
    }, indent=2) + "\n")


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / SHARD_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{folder} has no {SHARD_FILE}: it is not the --out of `breaklab grade --shard K/N`, "
                         "or that shard has not finished") from None
    except (OSError, ValueError) as e:
        raise ShardError(f"{path} cannot be read ({e}): grade that shard again") from None
    if not isinstance(data, dict) or data.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path} is not a grading shard's record: grade that shard again")
    return data


def merge(folders: list[Path], out: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Copy the shards' submission folders into out and return (the class's grades, formats).
    Raises ShardError when a shard is missing, doubled, or graded another list of tarballs."""
    from breaklab.grader.integrity import load_grade

    manifests = [(f, read_manifest(f)) for f in folders]
    n_values = {m["of"] for _, m in manifests}
    if len(n_values) != 1:
        raise ShardError(f"the folders are shards of different splits (N = {sorted(n_values)}): merge one split")
    n = n_values.pop()
    classes = {json.dumps(m["class"], sort_keys=True) for _, m in manifests}
    if len(classes) != 1:
        raise ShardError("the shards graded different lists of tarballs: grade every shard from the same inbox")
    seen: dict[int, Path] = {}
    for f, m in manifests:
        if m["shard"] in seen:
            raise ShardError(f"shard {m['shard']}/{n} twice: {seen[m['shard']]} and {f}")
        seen[m["shard"]] = f
    missing = sorted(set(range(1, n + 1)) - set(seen))
    if missing:
        raise ShardError(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing: grade them "
                         "(breaklab grade INBOX --shard K/N --out DIR) and merge all N folders")
    class_list = manifests[0][1]["class"]
    formats = tuple(manifests[0][1].get("formats") or ("json", "csv"))
    owner = {sub: f for f, m in manifests for sub in m["submissions"]}
    grades = []
    out.mkdir(parents=True, exist_ok=True)
    for entry in class_list:
        sub = entry["submission"]
        src = owner.get(sub)
        if src is None or not (src / sub / "grade.json").is_file():
            raise ShardError(f"submission {sub} has no grade in any shard: grade its shard again")
        dest = out / sub
        if dest.resolve() != (src / sub).resolve():
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src / sub, dest, symlinks=True)
        grades.append(load_grade(dest))
    return grades, formats
