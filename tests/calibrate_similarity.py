"""Print the similarity measurements the integrity thresholds rest on (docs/GRADING.md).

    PYTHONPATH=.:tests python tests/calibrate_similarity.py            # the calibration breaks
    PYTHONPATH=.:tests python tests/calibrate_similarity.py --evaluate # the held-out breaks

For word n-grams of 3, 4 and 5: the Jaccard similarity of honest reports written independently
(every pair, and pairs on the same break), of each honest report with lightly edited copies of it
(tests/report_corpus.light_edit at three edit rates, five seeds each; the share of words actually
changed is printed), and the containment of honest reports and of edited write-ups in the
reference write-ups. The thresholds in breaklab.grader.integrity and .explanation were chosen on
the calibration breaks only.
"""
from __future__ import annotations

import argparse
import difflib
import itertools

import report_corpus as rc
from breaklab.grader import similarity as sim
from breaklab.grader.explanation import COPIED_REPORT
from breaklab.grader.integrity import NEAR_DUPLICATE
from breaklab.solutions import names, writeup

RATES = (0.1, 0.2, 0.3)
SEEDS = range(5)


def changed_share(a: str, b: str) -> float:
    wa, wb = sim.words(a), sim.words(b)
    same = sum(block.size for block in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_matching_blocks())
    return 1 - same / max(len(wa), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evaluate", action="store_true", help="measure the held-out breaks")
    args = ap.parse_args()
    breaks = rc.EVALUATION_BREAKS if args.evaluate else rc.CALIBRATION_BREAKS
    honest = [(b, t) for b in breaks for t in rc.HONEST[b]]
    print(f"{'held-out' if args.evaluate else 'calibration'} breaks: {', '.join(breaks)}; "
          f"{len(honest)} honest reports")
    for rate in RATES:
        shares = [changed_share(t, rc.light_edit(t, rate, s)) for _, t in honest for s in SEEDS]
        print(f"light_edit rate {rate}: {min(shares):.0%}..{max(shares):.0%} of the words changed")
    for n in (3, 4, 5):
        sh = lambda t: sim.shingles(t, n)
        pairs = list(itertools.combinations(honest, 2))
        all_pairs = max(sim.jaccard(sh(a), sh(c)) for (_, a), (_, c) in pairs)
        same = max(sim.jaccard(sh(a), sh(c)) for (b1, a), (b2, c) in pairs if b1 == b2)
        edits = {r: [sim.jaccard(sh(t), sh(rc.light_edit(t, r, s))) for _, t in honest for s in SEEDS] for r in RATES}
        refs = {b: sh(writeup(b)) for b in names()}
        honest_in_ref = max(max(sim.containment(sh(t), r) for r in refs.values()) for _, t in honest)
        copies = {r: [sim.containment(sh(rc.light_edit(writeup(b), r, s)), refs[b]) for b in breaks for s in SEEDS]
                  for r in RATES}
        print(f"n={n}: Jaccard of honest pairs max {all_pairs:.3f} (same break {same:.3f}); of edited copies "
              + ", ".join(f"rate {r} min {min(v):.3f}" for r, v in edits.items()))
        print(f"      containment in a write-up: honest max {honest_in_ref:.3f}; edited write-ups "
              + ", ".join(f"rate {r} min {min(v):.3f}" for r, v in copies.items()))
    print(f"chosen: n={sim.SHINGLE_WORDS}, near-duplicate Jaccard >= {NEAR_DUPLICATE}, "
          f"copied write-up containment >= {COPIED_REPORT}")


if __name__ == "__main__":
    main()
