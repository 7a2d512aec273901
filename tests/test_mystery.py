"""Mystery mode: the seed picks a break (or none) that no output names; doctor and triage work
on the run as on a named one; reveal checks a guess and shows the reference write-up."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from breaklab.cli import cli
from breaklab.doctor import diagnose, load_run
from breaklab.triage import Triage, TriageSetup
from breaklab.breaks import BREAK_NAMES, FAULT_NAMES, get_break, mystery_choice

ROOT = Path(__file__).resolve().parent.parent


def test_the_choice_is_a_fixed_function_of_the_seed_covering_every_option():
    picks = [mystery_choice(s) for s in range(400)]
    assert picks == [mystery_choice(s) for s in range(400)]
    # Every bug can come up, and no control: a control is not a fault to find.
    assert set(picks) == {"none", *FAULT_NAMES}
    assert max(Counter(picks).values()) < 40  # no option dominates (uniform: about 12 each)
    assert type(get_break("mystery", seed=7)) is type(get_break(mystery_choice(7), seed=7))


# A cheap, non-AMP hidden break, found from the rule itself (not a hard-coded answer).
SEED = next(s for s in range(1000) if mystery_choice(s) == "loss_sum")
HIDDEN = mystery_choice(SEED)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """./demo_run.sh SEED mystery --epochs 1, run as a person runs it."""
    cwd = tmp_path_factory.mktemp("mystery")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "demo_run.sh"), str(SEED), "mystery", "--epochs", "1"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


def test_the_name_appears_in_no_output_and_not_in_the_command(demo):
    cwd, proc = demo
    folder, tarball = cwd / "runs" / f"mystery_{SEED}", cwd / f"run_mystery_{SEED}.tgz"
    assert HIDDEN not in proc.stdout + proc.stderr
    assert "break mystery" in proc.stdout
    files = sorted(p.name for p in folder.iterdir())
    assert {"metrics.jsonl", "checkpoint.pt", "meta.json", "summary.json", "report.png"} <= set(files)
    for name in files:
        assert HIDDEN.encode() not in (folder / name).read_bytes(), name
    unpacked = gzip.decompress(tarball.read_bytes())
    assert HIDDEN.encode() not in unpacked
    assert f"./demo_run.sh {SEED} mystery".encode() in unpacked and b"report.png" in unpacked
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["break"] == "mystery" and meta["config"]["break_name"] == "mystery"


def test_doctor_and_triage_work_on_the_mystery_run(demo):
    cwd, _ = demo
    tarball = cwd / f"run_mystery_{SEED}.tgz"
    assert diagnose(load_run(tarball)).verdict == HIDDEN
    meta = json.loads((cwd / "runs" / f"mystery_{SEED}" / "meta.json").read_text())
    report = Triage(TriageSetup.from_meta(meta), out_dir=None, echo=lambda s: None).run()
    assert report.verdict == HIDDEN
    result = CliRunner().invoke(cli, ["triage", str(tarball), "--out", str(cwd / "tri")])
    assert result.exit_code == 0, result.output
    assert "code mystery (hidden)" in result.output
    assert result.output.index(HIDDEN) > result.output.index("verdict:")


def test_reveal_says_right_or_wrong_and_shows_the_write_up(demo):
    cwd, _ = demo
    tarball = str(cwd / f"run_mystery_{SEED}.tgz")
    right = CliRunner().invoke(cli, ["reveal", tarball, "--guess", HIDDEN])
    assert right.exit_code == 0 and "... right" in right.output
    assert f"answer:   {HIDDEN}" in right.output
    writeup = ROOT / "solutions" / HIDDEN / "WRITEUP.md"
    if writeup.is_file():
        assert writeup.read_text().strip().splitlines()[0] in right.output
    else:
        assert "batch" in right.output  # the break module's docstring
    wrong_guess = next(b for b in BREAK_NAMES if b != HIDDEN)
    wrong = CliRunner().invoke(cli, ["reveal", tarball, "--guess", wrong_guess])
    assert wrong.exit_code == 1 and "... wrong" in wrong.output and f"answer:   {HIDDEN}" in wrong.output
    bad = CliRunner().invoke(cli, ["reveal", tarball, "--guess", "gremlins"])
    assert bad.exit_code == 1 and "unknown guess 'gremlins'" in bad.output


def test_reveal_accepts_healthy_for_a_clean_run(tmp_path):
    from breaklab.mystery import reveal

    clean_seed = next(s for s in range(1000) if mystery_choice(s) == "none")
    result = reveal({"seed": clean_seed, "break": "mystery"}, "healthy")
    assert result.right and result.actual == "none"
    assert not reveal({"seed": 1, "break": "huge_lr"}, "none").right
