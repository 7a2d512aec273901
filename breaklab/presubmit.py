"""What `breaklab submit` checks before it packs, with the broken run it has just re-trained.

Each finding is a warning that names the grader's criterion it will cost and how many points,
computed by the grader's own rules (breaklab.grader.rubric) on the same facts the grader will
see: the symptom block against the broken run's metrics, the evidence files, and the patch's
scope. Nothing here stops the submission; the student decides. `breaklab submit` passes
`presubmit_warnings` to build_submission as its review.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from breaklab.grader import rubric
from breaklab.submission import BeforePacking, parse_symptom_block


def allowed_scope(break_name: str) -> tuple[list[str], list[str]]:
    """The files and functions a fix of this break may change: the break's own module and its
    hook (what every solutions/<break>/rubric.json says; a course kit has no rubrics)."""
    from breaklab.breaks import REGISTRY

    cls = REGISTRY[break_name]
    module = Path(inspect.getfile(cls))
    return [f"{module.parent.name}/{module.name}"], [f"{cls.__name__}.{cls.hook}"]


def _cost(c: rubric.Criterion) -> str:
    return f"{c.name} will cost {c.max - c.points:g} of its {c.max:g} points: {c.reason}"


def is_placeholder(claim: dict[str, Any] | None, template_claim: dict[str, Any] | None) -> bool:
    """Whether the symptom block is still the one reports/TEMPLATE.md ships."""
    keys = ("metric", "step", "epoch", "value")
    return bool(claim and template_claim) and all(claim.get(k) == template_claim.get(k) for k in keys)


def claim_warnings(claim: dict[str, Any] | None, template_claim: dict[str, Any] | None,
                   broken: list[dict]) -> list[str]:
    if claim is None or claim["errors"]:
        return []  # check_report has said so already
    match, shows = rubric.claim_criteria(claim, broken, None, [])
    if is_placeholder(claim, template_claim):
        where = f"epoch {claim['epoch']}" if "epoch" in claim else f"step {claim.get('step')}"
        return [f"the ```symptom block is still the template's placeholder ({claim['metric']} at {where}, "
                f"value {claim['value']:g}): {match.name} ({match.max:g} points) and {shows.name} "
                f"({shows.max:g}) judge it as your claim; put in what your broken run shows"]
    return [] if match.points == match.max else [_cost(match)]


def evidence_warnings(evidence: dict[str, bytes], claim: dict[str, Any] | None,
                      broken: list[dict[str, Any]] | None = None) -> list[str]:
    c = rubric.evidence_criterion(evidence, claim, broken)
    if c.points == c.max:
        return []
    if not evidence:
        return [f"no evidence file: {c.name} will cost {c.max:g} points (pass --evidence FILE: a plot "
                f"or a snippet of the broken run's metrics.jsonl that shows the symptom)"]
    return [_cost(c)]


def scope_warnings(patch: bytes, break_name: str, old: dict[str, str], new: dict[str, str]) -> list[str]:
    from breaklab.grader.gitrepo import parse_patch

    files, functions = allowed_scope(break_name)
    c = rubric.scope_criterion(parse_patch(patch), files, functions, old, new)
    return [] if c.points == c.max else [_cost(c)]


def presubmit_warnings(facts: BeforePacking) -> list[str]:
    """Every warning, in the order of the report's parts: symptom block, evidence, fix."""
    claim = parse_symptom_block(facts.report_text)
    template_claim = parse_symptom_block(facts.template_text) if facts.template_text else None
    return (claim_warnings(claim, template_claim, facts.broken) + evidence_warnings(facts.evidence, claim, facts.broken)
            + scope_warnings(facts.patch, facts.break_name, facts.old_sources, facts.new_sources))
