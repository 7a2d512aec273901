"""What `breaklab submit` warns about before packing, each warning naming the criterion and the
points it will cost, by the grader's own rules. No training: the broken run's records are made
up here; tests/test_submit.py sees the warnings of a real submission.

Part of the student kit: nothing here reads solutions/."""
from __future__ import annotations

import difflib
from pathlib import Path

from breaklab.presubmit import allowed_scope, presubmit_warnings
from breaklab.submission import BeforePacking

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = (ROOT / "reports" / "TEMPLATE.md").read_text()
MODULE = "breaks/huge_lr.py"
SOURCE = (ROOT / MODULE).read_text()

REPORT = """# huge_lr

## Symptoms
The loss rises.

```symptom
metric: loss
step: 2
value: 7.7
```

## Root cause
x

## Fix
x

## Verification
x
"""

# The broken run as the grader would re-run it: loss 7.66 at step 2.
BROKEN = [{"type": "step", "step": i, "loss": [2.31, 2.9, 7.66, 12.0][i]} for i in range(4)]


def patch_of(path: str, old: str, new: str) -> bytes:
    diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                f"a/{path}", f"b/{path}")
    return (f"diff --git a/{path} b/{path}\n" + "".join(diff)).encode()


def in_the_hook(source: str) -> str:
    return source.replace("return lr * 100", "return lr")


def outside_the_hook(source: str) -> str:
    return "# looked at this file\n" + in_the_hook(source)


def warnings(report=REPORT, evidence=None, new_source=None, path=MODULE, broken=BROKEN):
    new_source = in_the_hook(SOURCE) if new_source is None else new_source
    return presubmit_warnings(BeforePacking(
        report_text=report, template_text=TEMPLATE,
        evidence={"loss.json": b'{"type": "step", "step": 2, "loss": 7.66}'} if evidence is None else evidence,
        patch=patch_of(path, SOURCE, new_source), break_name="huge_lr", broken=broken,
        old_sources={MODULE: SOURCE}, new_sources={MODULE: new_source}))


def test_a_complete_submission_gets_no_warning():
    assert allowed_scope("huge_lr") == ([MODULE], ["HugeLR.learning_rate"])
    assert warnings() == []


def test_the_templates_placeholder_claim_is_named_with_its_points():
    (w,) = warnings(report=TEMPLATE)
    assert "template's placeholder (loss at step 2, value 0)" in w
    assert "claim_matches (12 points) and claim_shows_symptom (6)" in w


def test_a_claim_the_broken_run_does_not_show_costs_claim_matches():
    def claim_warnings(**kw):  # a wrong claim also makes the evidence miss it: look at the claim's
        return [w for w in warnings(**kw) if w.startswith("claim_matches")]

    (w,) = claim_warnings(report=REPORT.replace("value: 7.7", "value: 3.0"))
    assert w.startswith("claim_matches will cost 12 of its 12 points")
    assert "claimed loss = 3 at step 2" in w and "7.66" in w
    (w,) = claim_warnings(report=REPORT.replace("step: 2", "step: 99"))
    assert w.startswith("claim_matches will cost 12") and "no numeric loss at step 99" in w


def test_missing_or_unhelpful_evidence_costs_evidence_points():
    (w,) = warnings(evidence={})
    assert w.startswith("no evidence file: evidence will cost 6 points") and "--evidence" in w
    (w,) = warnings(evidence={"notes.txt": b"the curve goes up"})
    assert w.startswith("evidence will cost 6 of its 6 points") and "not a figure" in w


def test_a_change_outside_the_hook_or_the_file_costs_minimal_scope():
    (w,) = warnings(new_source=outside_the_hook(SOURCE))
    assert w.startswith("minimal_scope will cost 6 of its 6 points") and "HugeLR.learning_rate" in w
    trainer = (ROOT / "trainer.py").read_text()
    w = presubmit_warnings(BeforePacking(
        report_text=REPORT, template_text=TEMPLATE, evidence={"a.json": b'{"type": "step", "step": 2, "loss": 7.66}'},
        patch=patch_of("trainer.py", trainer, trainer + "# compensated here\n"), break_name="huge_lr",
        broken=BROKEN, old_sources={"trainer.py": trainer}, new_sources={"trainer.py": trainer + "# x\n"}))
    assert len(w) == 1 and w[0].startswith("minimal_scope will cost 6") and "trainer.py" in w[0]
