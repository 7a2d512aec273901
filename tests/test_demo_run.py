"""demo_run.sh end to end: a byte-reproducible tarball, a .sha256 that sha256sum accepts, a
human summary, and clear usage errors."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # these tests train (the training tier)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo_run.sh"


def demo(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(DEMO), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    ra = demo(a, "42", "huge_lr", "--epochs", "2")
    rb = demo(b, "42", "huge_lr", "--epochs", "2")
    return a, b, ra, rb


def test_demo_exits_zero_for_a_diverging_break_and_summarises(twice):
    a, _, ra, _ = twice
    assert ra.returncode == 0, ra.stderr
    out = ra.stdout
    assert "break huge_lr, seed 42" in out
    assert "loss rose above 1.5x its start" in out
    assert "test:     accuracy" in out
    assert "run_huge_lr_42.tgz" in out and "sha256sum -c" in out
    assert "Traceback" not in ra.stderr


def test_tarball_is_byte_identical_across_runs(twice):
    a, b, _, _ = twice
    assert (a / "run_huge_lr_42.tgz").read_bytes() == (b / "run_huge_lr_42.tgz").read_bytes()


def test_sha256sum_accepts_the_checksum_file(twice):
    a, _, _, _ = twice
    check = subprocess.run(["sha256sum", "-c", "run_huge_lr_42.tgz.sha256"], cwd=a,
                           capture_output=True, text=True)
    assert check.returncode == 0 and "OK" in check.stdout


def test_tarball_contents_are_normalised(twice):
    a, _, _, _ = twice
    with tarfile.open(a / "run_huge_lr_42.tgz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        command = tar.extractfile("run_huge_lr_42/command.txt").read().decode()
    for f in ("metrics.jsonl", "checkpoint.pt", "checkpoint.pt.sha256", "meta.json", "command.txt"):
        assert f"run_huge_lr_42/{f}" in names
    assert names[1:] == sorted(names[1:])
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert command.splitlines()[0] == "./demo_run.sh 42 huge_lr --epochs 2"
    # gzip header without a timestamp
    assert (a / "run_huge_lr_42.tgz").read_bytes()[4:8] == b"\0\0\0\0"


@pytest.mark.parametrize("args, message", [
    ((), "usage: ./demo_run.sh SEED BREAK"),
    (("abc", "huge_lr"), "SEED must be an integer"),
    (("-3", "huge_lr"), "SEED must be an integer"),
    (("99999999999", "huge_lr"), "SEED must be an integer"),
    (("42", "huge-lr"), "BREAK must be a break name"),
    (("42", "nosuchbreak"), "unknown break 'nosuchbreak'"),
    (("42", "none", "--seed", "7"), "--seed is set by demo_run.sh itself"),
    (("42", "none", "--out=elsewhere"), "--out is set by demo_run.sh itself"),
])
def test_usage_errors_are_clear(tmp_path, args, message):
    r = demo(tmp_path, *args)
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.tgz"))


def tree_copy(dest: Path, with_git: bool) -> Path:
    """The repository's tracked files as they are now, in a folder of their own (a git repository
    with one commit, or no git at all)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if with_git:
        git = lambda *a: subprocess.run(["git", *a], cwd=dest, check=True, capture_output=True)
        git("init", "-q")
        git("add", "-A")
        git("-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "course")
    return dest


@pytest.mark.slow
def test_a_local_fix_writes_beside_the_broken_run(tmp_path, monkeypatch):
    """With an uncommitted change to breaks/ the run is BREAK_SEED_fixed (said in one line) and the
    broken run's folder is left alone; without git nothing is detected."""
    monkeypatch.setenv("BREAKLAB_DETECT_FIX", "1")
    for with_git, expected in ((True, "huge_lr_42_fixed"), (False, "huge_lr_42")):
        tree = tree_copy(tmp_path / f"tree_{with_git}", with_git)
        module = tree / "breaks" / "huge_lr.py"
        module.write_text(module.read_text().replace("return lr * 100", "return lr"))
        work = tmp_path / f"work_{with_git}"
        (work / "runs" / "huge_lr_42").mkdir(parents=True)
        (work / "runs" / "huge_lr_42" / "kept.txt").write_text("the broken run\n")
        env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(tree)}
        r = subprocess.run(["bash", str(tree / "demo_run.sh"), "42", "huge_lr", "--dry-run", "--quiet"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert (work / "runs" / expected / "metrics.jsonl").is_file()
        assert (work / f"run_{expected}.tgz").is_file()
        said = [line for line in r.stderr.splitlines() if "local changes" in line]
        if with_git:
            assert said == ["local changes to breaks/ or trainer.py: writing runs/huge_lr_42_fixed/ and "
                            "run_huge_lr_42_fixed.tgz (runs/huge_lr_42/ is kept)"]
            assert (work / "runs" / "huge_lr_42" / "kept.txt").is_file()
            assert not (work / "runs" / "huge_lr_42" / "metrics.jsonl").exists()
        else:
            assert said == []
