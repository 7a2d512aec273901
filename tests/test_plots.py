"""Figures: every run writes report.png (byte-reproducible, symptom step marked), `plot` draws
one for a folder or a tarball, `compare` overlays two runs."""
from __future__ import annotations

import copy
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from breaklab.cli import cli
from breaklab.doctor import diagnose, load_run
from breaklab.plots import report_png, write_report

pytestmark = pytest.mark.slow  # these tests train (the training tier)

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from breaklab.run_summary import train_and_summarize as train
    from breaklab.trainer import Config

    out = {}
    for name in ("huge_lr", "none"):
        folder = tmp_path_factory.mktemp(name)
        train(Config(break_name=name, seed=0, epochs=1, out=str(folder), quiet=True))
        out[name] = folder
    return out


def test_every_run_writes_a_reproducible_report(two_runs, tmp_path):
    report = two_runs["huge_lr"] / "report.png"
    data = report.read_bytes()
    assert png_size(data) == (1200, 1400)
    assert b"Software" not in data and b"matplotlib" not in data.lower()
    again = write_report(two_runs["huge_lr"], tmp_path / "again.png").read_bytes()
    assert again == data


def test_the_symptom_step_is_marked(two_runs):
    run = load_run(two_runs["huge_lr"])
    dx = diagnose(run)
    assert dx.onset_step is not None and dx.onset_step < 10
    unmarked = copy.copy(dx)
    unmarked.onset_step = None
    assert report_png(run, dx) != report_png(run, unmarked)
    assert "huge_lr" not in dx.onset  # the figure describes the symptom, never names the cause


def test_non_finite_values_leave_gaps_not_errors(two_runs):
    run = load_run(two_runs["huge_lr"])
    for r in run.steps[5:15]:
        r["loss"] = None
        r["grad_norm"] = None
    assert png_size(report_png(run, diagnose(run))) == (1200, 1400)


def test_plot_command_on_a_tarball(two_runs, tmp_path, monkeypatch):
    from breaklab.tarballs import read_folder, write_tarball

    tgz = tmp_path / "run_x.tgz"
    write_tarball(tgz, read_folder(two_runs["none"], ["metrics.jsonl", "meta.json"]), "run_x")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["plot", str(tgz)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run_x_report.png").read_bytes()[:8] == PNG


def test_compare_overlays_a_broken_and_a_fixed_run(two_runs, tmp_path):
    out = tmp_path / "cmp.png"
    result = CliRunner().invoke(cli, ["compare", str(two_runs["huge_lr"]), str(two_runs["none"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "doctor's verdict" in result.output and "huge_lr" in result.output and "healthy" in result.output
    assert "test accuracy" in result.output
    assert png_size(out.read_bytes()) == (1200, 1100)


def test_compare_needs_two_runs(tmp_path):
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "missing"), str(tmp_path)])
    assert result.exit_code == 2 and "does not exist" in result.output
