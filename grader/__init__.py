"""The instructor's grader: opens submission tarballs defensively, re-runs the broken and fixed
trainings in a sandbox at the submission's base commit, and scores them against the solutions'
rubrics (see docs/GRADING.md)."""
