"""What a newcomer trips on in the first minutes, each answered with one clear line: a mistyped
break (answered before torch loads, no lock file left behind), Ctrl-C during training (how to
resume), a Python without the environment (how to activate it), a checksum file given where a run
tarball belongs, and `breaklab --help` (no torch import)."""
from __future__ import annotations

import re

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo_run.sh"


@pytest.fixture
def no_torch(tmp_path) -> dict[str, str]:
    """An environment in which `import torch` fails as it does where torch is not installed (a
    package that raises ModuleNotFoundError for torch, first on the path), so a test also proves
    that whatever answered never got as far as importing torch."""
    fake = tmp_path / "fake-site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'torch\'", name="torch")\n')
    path = os.pathsep.join([str(fake.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": path}


def demo(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DEMO), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_mistyped_break_gets_did_you_mean_before_torch_loads(tmp_path, no_torch):
    r = demo(tmp_path, no_torch, "42", "hugelr")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line
    assert "unknown break 'hugelr'; did you mean huge_lr?" in r.stderr
    assert "activate the environment" not in r.stderr  # torch was never imported
    assert not (tmp_path / "runs").exists()  # no folder, no lock


def test_break_names_come_from_the_breaks_folder():
    from breaklab.breaks import BREAK_NAMES
    from breaklab.catalogue import closest, names
    from breaklab.catalogue import unknown_message as unknown_break_message

    assert sorted(names()) == sorted(BREAK_NAMES)
    assert closest("hugelr") == "huge_lr" and closest("evalmode") == "eval_mode"
    assert closest("doble_softmax") == "double_softmax" and closest("mistery") == "mystery"
    assert closest("xyzzy") is None
    assert "did you mean" not in unknown_break_message("xyzzy")


def test_a_failed_run_leaves_no_lock_behind(tmp_path, no_torch):
    """The trainer fails after the lock is taken (here: torch missing); the lock file goes too."""
    r = demo(tmp_path, no_torch, "42", "huge_lr")
    assert r.returncode != 0
    assert list((tmp_path / "runs").iterdir()) == []


def test_missing_torch_gives_one_line_activate_hint(tmp_path, no_torch):
    for r in (demo(tmp_path, no_torch, "42", "huge_lr"),
              subprocess.run([sys.executable, str(ROOT / "trainer.py"), "--epochs", "1"], cwd=tmp_path,
                             env=no_torch, capture_output=True, text=True, timeout=120)):
        assert r.returncode != 0
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("error: torch is not installed") and "activate the environment" in lines[0]


def test_missing_torch_in_the_breaklab_command(no_torch):
    r = subprocess.run([sys.executable, "-m", "breaklab", "train", "--epochs", "1"], env=no_torch,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("Error: torch is not installed for this Python: activate the environment "
                                "(. .venv/bin/activate) or install it (pip install -e .)")


def test_help_does_not_import_torch(no_torch):
    r = subprocess.run([sys.executable, "-m", "breaklab", "--help"], env=no_torch, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.search(r"train +Train the MLP on MNIST", r.stdout), r.stdout


def test_ctrl_c_prints_how_to_resume(tmp_path, monkeypatch):
    import breaklab.trainer
    from breaklab.commands.train import build_command

    def interrupted(cfg, observer=None):
        Path(cfg.out, "checkpoint.pt").write_bytes(b"the last finished epoch")
        raise KeyboardInterrupt

    monkeypatch.setattr(breaklab.trainer, "train", interrupted)
    out = tmp_path / "runs" / "x"
    result = CliRunner().invoke(build_command(), ["--out", str(out), "--quiet"])
    assert result.exit_code == 130
    assert "Aborted!" not in result.output
    assert (f"python trainer.py --resume {out}/checkpoint.pt --out {out}" in result.output
            and "byte-identical" in result.output)

    def early(cfg, observer=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(breaklab.trainer, "train", early)
    result = CliRunner().invoke(build_command(), ["--out", str(tmp_path / "y"), "--quiet"])
    assert result.exit_code == 130 and "no checkpoint to resume from yet" in result.output


@pytest.mark.slow
def test_sigint_during_training_prints_the_resume_command(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "trainer.py"), "--epochs", "2", "--out", str(out),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt.sha256").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived (a very fast machine)")
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert f"--resume {out}/checkpoint.pt --out {out}" in stderr and "byte-identical" in stderr


def test_checksum_file_given_as_a_run_says_which_file_to_give(tmp_path):
    from breaklab.cli import cli

    (tmp_path / "x.tgz.sha256").write_text("0" * 64 + "  x.tgz\n")
    (tmp_path / "notes.txt").write_text("not a tarball\n")
    checksum = CliRunner().invoke(cli, ["doctor", str(tmp_path / "x.tgz.sha256")])
    assert checksum.exit_code == 1
    assert "is a checksum file, not a run: give the tarball x.tgz itself" in checksum.output
    junk = CliRunner().invoke(cli, ["doctor", str(tmp_path / "notes.txt")])
    assert junk.exit_code == 1 and "not a tar or gzip archive" in junk.output
    for result in (checksum, junk):
        message = result.output.strip()
        assert len(message.splitlines()) == 1
        assert ":)" not in message and ": )" not in message and not message.endswith(":")
