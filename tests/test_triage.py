"""Triage reaches the right verdict for every break (and none for the clean loop), stops at the
step that establishes the cause, prints each step's what/saw/means/time, and runs in well under a
minute on a CPU."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from breaklab.cli import cli
from breaklab.triage import Triage, TriageSetup

# The step that should establish each cause, by the procedure's order of cost and information,
# for the breaks triage has a step for (the catalogue's first seven).
ESTABLISHED_AT = {"label_permute": 2, "loss_sum": 3, "double_softmax": 3, "missing_zero_grad": 4,
                  "huge_lr": 5, "amp_no_scaling": 6, "eval_mode": 8}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ESTABLISHED_AT))
def test_triage_establishes_each_break_and_stops_there(name):
    printed: list[str] = []
    report = Triage(TriageSetup(seed=3, break_name=name), out_dir=None, echo=printed.append).run()
    assert report.verdict == name, [(s.number, s.saw, s.means) for s in report.steps]
    assert report.steps[-1].number == ESTABLISHED_AT[name] and report.steps[-1].cause == name
    assert all(s.cause is None for s in report.steps[:-1])
    assert len(printed) == len(report.steps)
    assert report.seconds < 60
    assert report.fix and "established" in report.explanation.lower()


@pytest.mark.slow
def test_triage_finds_nothing_wrong_in_the_clean_loop():
    report = Triage(TriageSetup(seed=3, break_name="none"), out_dir=None, echo=lambda s: None).run()
    assert report.verdict == "healthy"
    assert [s.number for s in report.steps] == list(range(1, 9))
    assert report.seconds < 60


@pytest.mark.slow
def test_triage_on_another_configuration():
    report = Triage(TriageSetup(seed=5, break_name="huge_lr", batch_size=32, lr=0.05), out_dir=None,
                    echo=lambda s: None).run()
    assert report.verdict == "huge_lr"


@pytest.mark.slow
def test_triage_command_prints_every_step_and_the_picture(tmp_path):
    result = CliRunner().invoke(cli, ["triage", "--break", "label_permute", "--seed", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for word in ("[1/8] overfit one fixed batch", "[2/8] data and label sanity", "ran:", "saw:", "means:",
                 "time:", "verdict: label_permute (established at step 2 of 8"):
        assert word in result.output
    assert "[3/8]" not in result.output
    png = tmp_path / "triage_inputs.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_triage_rejects_an_unknown_break():
    result = CliRunner().invoke(cli, ["triage", "--break", "nope"])
    assert result.exit_code == 2 and "unknown break 'nope'" in result.output
