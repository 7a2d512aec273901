"""resume_without_rng_state: on resume, the RNGs keep the state the fresh process seeded them with."""
from __future__ import annotations

from breaklab.breaks.base import Break


class ResumeWithoutRNGState(Break):
    name = "resume_without_rng_state"
    category = "checkpoint"
    description = "resume without the RNG state (the run resumes itself after epoch 1)"
    symptom = "the resumed run leaves the uninterrupted run's metrics at the first step after the resume"
    metric = "loss"
    hook = "restore_rng_state"
    restart_after = 1

    def restore_rng_state(self, state: dict) -> None:
        pass
