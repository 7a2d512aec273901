"""Git plumbing shared by `breaklab submit` and the grader: check out a commit into a private
folder, make and apply patches, and read which lines a patch changes.

A checkout is a `git clone --shared` of the repository into a folder of our own: nothing is
written into the repository itself (no worktree records), and the copy is thrown away after.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class GitError(Exception):
    """A git step failed; the message says which and why."""


def git(args: list[str], cwd: Path | str, *, input: bytes | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **GIT_ENV}
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True,
                              timeout=timeout, env=env)
    except (OSError, subprocess.SubprocessError) as e:
        raise GitError(f"git {args[0]} failed: {e}") from None
    if check and proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else proc.returncode}")
    return proc


def toplevel(path: Path | str) -> Path | None:
    """The root of the git checkout holding path, or None when it is not in one."""
    proc = git(["rev-parse", "--show-toplevel"], path, check=False)
    return Path(proc.stdout.decode().strip()) if proc.returncode == 0 else None


def resolve_commit(repo: Path, rev: str) -> str | None:
    proc = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo, check=False)
    sha = proc.stdout.decode().strip()
    return sha if proc.returncode == 0 and SHA_RE.match(sha) else None


def checkout(repo: Path, commit: str, dest: Path) -> Path:
    """A private checkout of `commit` in dest (which must not exist yet)."""
    if not SHA_RE.match(commit):
        raise GitError(f"not a full commit id: {commit!r}")
    git(["clone", "--quiet", "--shared", "--no-checkout", str(repo), str(dest)], dest.parent)
    if git(["cat-file", "-e", f"{commit}^{{commit}}"], dest, check=False).returncode != 0:
        raise GitError(f"commit {commit[:12]} is not in the repository {repo}")
    git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit], dest)
    return dest


def diff_against(repo: Path, base: str) -> bytes:
    """The working tree's tracked changes against base, as a patch `git apply` takes."""
    return git(["diff", "--binary", "--full-index", "--no-color", "--no-ext-diff", base, "--"],
               repo).stdout


def untracked_files(repo: Path) -> list[str]:
    out = git(["ls-files", "--others", "--exclude-standard", "-z"], repo).stdout.decode()
    return [p for p in out.split("\0") if p]


def apply_patch(tree: Path, patch: bytes) -> None:
    """Apply a patch checked by `patch_problems` first (no escaping paths, no symlinks)."""
    problems = patch_problems(patch)
    if problems:
        raise GitError("the patch cannot be applied: " + "; ".join(problems))
    if not patch.strip():
        return
    proc = git(["apply", "--whitespace=nowarn", "-"], tree, input=patch, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"the patch does not apply to the base commit: {msg[-1] if msg else ''}")


# ---------------------------------------------------------------------------------------------
# Reading a patch
# ---------------------------------------------------------------------------------------------

@dataclass
class FileChange:
    """One file of a patch: its paths and the line numbers it removes (old) and adds (new)."""

    old_path: str | None
    new_path: str | None
    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    binary: bool = False
    mode: str | None = None

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    @property
    def changed_lines(self) -> int:
        return len(self.removed) + len(self.added)


_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _strip_prefix(p: bytes) -> str | None:
    s = p.decode("utf-8", errors="replace").strip()
    if s == "/dev/null":
        return None
    if s.startswith('"'):
        s = s.strip('"')
    return s[2:] if s[:2] in ("a/", "b/") else s


def parse_patch(patch: bytes) -> list[FileChange]:
    """The files of a git patch with their changed line numbers (unified diff hunks)."""
    changes: list[FileChange] = []
    cur: FileChange | None = None
    old_no = new_no = 0
    for line in patch.splitlines():
        if line.startswith(b"diff --git "):
            parts = line[len(b"diff --git "):].split(b" b/", 1)
            a = _strip_prefix(parts[0])
            b = _strip_prefix(b"b/" + parts[1]) if len(parts) == 2 else a
            cur = FileChange(a, b)
            changes.append(cur)
        elif cur is None:
            continue
        elif line.startswith(b"--- "):
            cur.old_path = _strip_prefix(line[4:])
        elif line.startswith(b"+++ "):
            cur.new_path = _strip_prefix(line[4:])
        elif line.startswith((b"new file mode ", b"new mode ", b"deleted file mode ")):
            cur.mode = line.split()[-1].decode(errors="replace")
        elif line.startswith(b"GIT binary patch") or line.startswith(b"Binary files "):
            cur.binary = True
        elif m := _HUNK.match(line):
            old_no, new_no = int(m.group(1)), int(m.group(3))
        elif line.startswith(b"-"):
            cur.removed.append(old_no)
            old_no += 1
        elif line.startswith(b"+"):
            cur.added.append(new_no)
            new_no += 1
        elif line.startswith(b" "):
            old_no += 1
            new_no += 1
    return changes


def patch_problems(patch: bytes) -> list[str]:
    """Why a patch is unsafe to apply: paths outside the tree, symlinks, submodules."""
    problems = []
    for ch in parse_patch(patch):
        for p in (ch.old_path, ch.new_path):
            if p is None:
                continue
            parts = p.split("/")
            if p.startswith("/") or ".." in parts or "\\" in p or p.startswith(".git/") or ".git" in parts:
                problems.append(f"unsafe path {p!r}")
        if ch.mode in ("120000", "160000"):
            problems.append(f"{ch.path}: symlinks and submodules are not accepted")
    return problems


def split_patch(patch: bytes) -> list[tuple[FileChange, bytes]]:
    """The patch cut into its files: each file's FileChange with the bytes of its section."""
    starts = [0] if not patch.startswith(b"diff --git ") else []
    pos = 0
    for line in patch.splitlines(keepends=True):
        if line.startswith(b"diff --git "):
            starts.append(pos)
        pos += len(line)
    bounds = list(zip(starts, starts[1:] + [len(patch)]))
    sections = [patch[a:b] for a, b in bounds if patch[a:b].startswith(b"diff --git ")]
    return [(parse_patch(s)[0], s) for s in sections if parse_patch(s)]


def restrict_patch(patch: bytes, allowed_files: list[str]) -> tuple[bytes, list[str]]:
    """(the part of the patch that changes only allowed_files, as text; the paths of the rest).

    Only this part is applied and run: a change elsewhere (trainer.py, the Config, another
    module) is out of scope, named in the grade, and never executed."""
    kept, dropped = [], []
    for change, section in split_patch(patch):
        paths = {p for p in (change.old_path, change.new_path) if p is not None}
        if paths and paths <= set(allowed_files) and not change.binary and change.mode is None:
            kept.append(section)
        else:
            dropped.append(change.path + (" (binary or mode change)" if change.binary or change.mode else ""))
    return b"".join(kept), dropped
