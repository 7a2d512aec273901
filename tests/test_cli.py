"""The command surface: `breaklab` group, `train`, `list`, `pack`, and their errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from breaklab.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


def test_every_command_has_help(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in cli.commands:
        sub = runner.invoke(cli, [name, "--help"])
        assert sub.exit_code == 0, name
        assert "Usage:" in sub.output


def test_list_shows_every_break_with_category(runner):
    from breaklab.breaks import BREAK_NAMES, REGISTRY

    result = runner.invoke(cli, ["list"])
    assert result.exit_code == 0
    for name in BREAK_NAMES:
        assert name in result.output and REGISTRY[name].category in result.output
    as_json = json.loads(runner.invoke(cli, ["list", "--json"]).output)
    # The catalogue (read from the source, without torch) and the registry that runs them agree.
    assert sorted(b["name"] for b in as_json) == sorted(BREAK_NAMES)
    assert all({"name", "category", "control"} <= set(b) for b in as_json)
    assert sorted(b["name"] for b in as_json if b["control"]) == sorted(n for n in BREAK_NAMES if REGISTRY[n].control)
    for entry in as_json:
        assert entry["category"] == REGISTRY[entry["name"]].category
    assert {b["category"] for b in as_json} == {"data", "target", "objective", "shapes", "numerics",
                                                "optimization", "mode", "memory", "checkpoint"}
    controls = [line for line in result.output.splitlines() if "  control  " in line]
    assert len(controls) == sum(b["control"] for b in as_json) > 0


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"], ["train", "--help"], ["doctor", "--help"],
                                  ["pack", "--help"], ["grade", "--help"], ["triage", "--help"]])
def test_the_command_line_starts_without_torch(args):
    """`python -X importtime` lists every module a command imports: torch must not be among them."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "breaklab", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "matplotlib" not in imported, args


def test_train_help_documents_every_option(runner):
    out = runner.invoke(cli, ["train", "--help"]).output
    for flag in ("--seed", "--break", "--epochs", "--batch-size", "--lr", "--device", "--threads",
                 "--amp", "--data", "--data-dir", "--out", "--resume", "--quiet", "--dry-run"):
        assert flag in out, flag


@pytest.mark.parametrize("args, message", [
    (["--break", "nope"], "unknown break 'nope'"),
    (["--seed", "-1"], "Invalid value for '--seed'"),
    (["--seed", "x"], "Invalid value for '--seed'"),
    (["--epochs", "0"], "Invalid value for '--epochs'"),
    (["--data", "mnist"], "--data mnist needs --data-dir"),
    (["--resume", "/nonexistent/checkpoint.pt"], "checkpoint /nonexistent/checkpoint.pt does not exist"),
])
def test_train_usage_errors(runner, tmp_path, args, message):
    result = runner.invoke(cli, ["train", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unwritable_output_folder(runner, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(cli, ["train", "--out", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "cannot write to output folder" in result.output


def test_dry_run_trains_two_steps(runner, tmp_path):
    result = runner.invoke(cli, ["train", "--dry-run", "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert sum('"type":"step"' in l for l in lines) == 2


def test_resume_refuses_a_different_configuration(runner, tmp_path):
    first = runner.invoke(cli, ["train", "--epochs", "2", "--stop-after", "1", "--quiet",
                                "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    result = runner.invoke(cli, ["train", "--resume", str(tmp_path / "a" / "checkpoint.pt"),
                                 "--lr", "0.5", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "--resume continues the checkpoint's run, which has --lr 0.1" in result.output


def test_pack_refuses_an_unfinished_folder(runner, tmp_path):
    result = runner.invoke(cli, ["pack", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a finished run" in result.output


def test_imports_without_collection_freezes_only_a_fresh_process():
    """The train command's imports run with the collector off and are frozen after, in a process
    that had not imported them; a process that already had (a test, a notebook) is left alone."""
    import gc
    import subprocess
    import sys

    from breaklab.process_gc import imports_without_collection

    fresh = subprocess.run([sys.executable, "-c", (
        "import gc\nfrom breaklab.process_gc import imports_without_collection\n"
        "with imports_without_collection(heavy='xml.dom.minidom'):\n    assert not gc.isenabled()\n"
        "    import xml.dom.minidom\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0)")], capture_output=True, text=True, check=True)
    assert fresh.stdout.split() == ["True", "True"], fresh.stdout + fresh.stderr
    frozen = gc.get_freeze_count()
    with imports_without_collection(heavy="json"):
        assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_heavy_imports_frozen_pauses_the_collector_only_while_they_import():
    """The hook every breaklab command installs: the named module imports with the collector off
    and is frozen after; the collector is on again, and a second call adds no second hook."""
    import subprocess
    import sys

    fresh = subprocess.run([sys.executable, "-c", (
        "import gc, sys\nfrom breaklab import process_gc\n"
        "process_gc.heavy_imports_frozen(('xml.dom.minidom',))\nprocess_gc.heavy_imports_frozen(('xml.dom.minidom',))\n"
        "hooks = sum(isinstance(f, process_gc._FrozenImport) for f in sys.meta_path)\n"
        "before = gc.get_freeze_count()\nimport xml.dom.minidom\n"
        "print(hooks, gc.isenabled(), gc.get_freeze_count() > before)")], capture_output=True, text=True, check=True)
    assert fresh.stdout.split() == ["1", "True", "True"], fresh.stdout + fresh.stderr
