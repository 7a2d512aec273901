"""demo_run.sh end to end: a byte-reproducible tarball, a .sha256 that sha256sum accepts, a
human summary, and clear usage errors."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

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
