"""Mystery mode: a run whose break is picked from the seed and a secret, and never written down.

`--break mystery` records the word "mystery" (in meta.json, the checkpoint's config and the
command) and a commitment to the choice that opens only with the secret (breaklab/secret.py).
`reveal` and `hint` are the places that open it. `reveal` keeps a record of the guesses made on
each run in the cache folder, shows the answer only after a right guess or when the person gives
up, and says how many guesses it took.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breaklab.breaks import BREAK_NAMES, MYSTERY, REGISTRY, mystery_options

ROOT = Path(__file__).resolve().parent.parent
# Accepted spellings of "there is no bug".
HEALTHY_WORDS = {"none", "healthy", "clean"}
ATTEMPTS_DIR = "mystery-attempts"


class RevealError(Exception):
    """The run cannot be revealed (message says why and what to do)."""


def is_mystery(meta: dict[str, Any] | None) -> bool:
    return isinstance(meta, dict) and meta.get("break") == MYSTERY


def normalise_guess(guess: str) -> str:
    g = guess.strip().lower().replace("-", "_")
    if g in HEALTHY_WORDS:
        return "none"
    if g not in BREAK_NAMES:
        raise RevealError(f"unknown guess {guess!r}: guess one of none, {', '.join(BREAK_NAMES)}")
    return g


def find_answer(meta: dict[str, Any] | None, secret: str | None = None) -> tuple[str, bool]:
    """The break a run used, and whether it was a mystery. A mystery run's commitment is opened
    with the secret (--secret, BREAKLAB_SECRET or the per-install one)."""
    from breaklab.secret import SecretError, open_commitment, resolve

    if not meta or "seed" not in meta or "break" not in meta:
        raise RevealError("the run has no meta.json with its seed and break: give the run folder or "
                          "tarball that demo_run.sh made")
    recorded, seed = meta["break"], meta["seed"]
    if recorded != MYSTERY:
        if recorded != "none" and recorded not in REGISTRY:
            raise RevealError(f"meta.json names an unknown break {recorded!r}")
        return recorded, False
    record = meta.get("mystery")
    committed = record.get("commitment") if isinstance(record, dict) else None
    if not isinstance(committed, str) or not isinstance(seed, int):
        raise RevealError("meta.json has no commitment to the mystery's choice: the run was made by an "
                          "older breaklab; train it again with ./demo_run.sh SEED mystery")
    try:
        key = resolve(secret)
    except SecretError as e:
        raise RevealError(str(e)) from None
    answer = open_commitment(seed, committed, mystery_options(), key)
    if answer is None:
        raise RevealError("this mystery run was made with another secret: give the one it was made with "
                          "(--secret, or BREAKLAB_SECRET); runs from an instructor open with theirs")
    return answer, True


def writeup(name: str) -> tuple[str | None, str]:
    """The reference write-up, solutions/NAME/WRITEUP.md, and where it is; (None, why) when this
    copy has none (a course kit leaves the answers with the instructor)."""
    if name == "none":
        return ("No break: the canonical training loop. The loss falls from ln 10 and every metric "
                "looks healthy.", "breaks/base.py")
    path = ROOT / "solutions" / name / "WRITEUP.md"
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))
    return None, "no reference write-up in this copy: ask your instructor for it"


# ---------------------------------------------------------------------------------------------
# The record of attempts, one small JSON file per run in the cache folder
# ---------------------------------------------------------------------------------------------

@dataclass
class Attempts:
    guesses: list[str] = field(default_factory=list)
    solved_after: int | None = None     # the number of guesses up to the first right one
    gave_up_after: int | None = None    # the number of guesses made before giving up
    hint_level: int = 0                 # the highest hint level shown


def run_key(meta: dict[str, Any]) -> str:
    """One id per run, the same for its folder and its tarball (they hold the same meta.json)."""
    identity = [meta.get("seed"), meta.get("break"), (meta.get("mystery") or {}).get("commitment"),
                meta.get("checkpoint_sha256")]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]


def _attempts_file(meta: dict[str, Any]) -> Path | None:
    from breaklab.cache import cache_candidates

    for base in cache_candidates():
        folder = base / ATTEMPTS_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        return folder / f"{run_key(meta)}.json"
    return None


def load_attempts(meta: dict[str, Any]) -> Attempts:
    path = _attempts_file(meta)
    try:
        data = json.loads(path.read_text()) if path and path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    known = {k: data[k] for k in Attempts.__dataclass_fields__ if k in data}
    try:
        return Attempts(**known)
    except TypeError:
        return Attempts()


def save_attempts(meta: dict[str, Any], attempts: Attempts) -> bool:
    """Write the record; False when no cache folder is writable (the count is then not kept)."""
    from breaklab.atomic import atomic_write_text

    path = _attempts_file(meta)
    if path is None:
        return False
    try:
        atomic_write_text(path, json.dumps(attempts.__dict__, indent=2) + "\n")
    except OSError:
        return False
    return True


def record_hint(meta: dict[str, Any], level: int) -> None:
    attempts = load_attempts(meta)
    attempts.hint_level = max(attempts.hint_level, level)
    save_attempts(meta, attempts)


# ---------------------------------------------------------------------------------------------
# Reveal
# ---------------------------------------------------------------------------------------------

@dataclass
class Reveal:
    guess: str | None        # None when the person gave up without a guess
    right: bool
    shown: bool              # whether the answer may be shown (right, or gave up)
    actual: str              # the answer: use only when shown
    was_mystery: bool
    attempts: Attempts
    recorded: bool           # whether the record could be written


def reveal(meta: dict[str, Any] | None, guess: str | None, give_up: bool = False,
           secret: str | None = None) -> Reveal:
    """Check a guess (and record it), or give up. The answer is marked shown only after a right
    guess or giving up; a wrong guess learns nothing but "wrong"."""
    if guess is None and not give_up:
        raise RevealError("give --guess NAME (a break's name or none), or --give-up to see the answer")
    g = normalise_guess(guess) if guess is not None else None
    actual, was_mystery = find_answer(meta, secret)
    attempts = load_attempts(meta)
    right = g == actual
    if g is not None:
        attempts.guesses.append(g)
        if right and attempts.solved_after is None:
            attempts.solved_after = len(attempts.guesses)
    if give_up and attempts.gave_up_after is None and attempts.solved_after is None:
        attempts.gave_up_after = len(attempts.guesses)
    recorded = save_attempts(meta, attempts)
    return Reveal(g, right, right or give_up, actual, was_mystery, attempts, recorded)


def spoiler_refusal(run: Any, command: str) -> str:
    """The one line `doctor` and `triage` answer on a mystery run (or --break mystery, run None)
    without --spoil."""
    if run is None:
        return (f"--break mystery: `breaklab {command}` would name its answer; train it with "
                f"./demo_run.sh SEED mystery and use `breaklab hint RUN`, or add --spoil")
    return (f"{run} is a mystery run: `breaklab {command}` would name its answer; use "
            f"`breaklab hint {run}` for a graded hint, or add --spoil to see it all")
