"""Cut an exercise from the clean template: pick a variant and bugs from the seed, apply the
mutations, write train.py, and write the key somewhere else.

Everything the seed decides is decided by SHA-256 of the seed and a purpose word, so the same
seed gives the same script on every machine and Python version.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from breaklab.exercises.variants import VARIANTS, Variant

if TYPE_CHECKING:  # the answers' module, which a kit does not have
    from breaklab.solutions.exercise_template import Script


class ExerciseError(Exception):
    """A request the generator cannot meet, or a key it cannot read (the message says why)."""


# The clean script and the mutations with their fixes are the answers: they live in solutions/,
# which the course kit leaves out. A kit can check an exercise (the key carries what the check
# needs) but not make one.
NO_ANSWERS = ("exercises are generated from a full install of breaklab (this copy has no solutions/, "
              "as in a course kit); ask your instructor for an exercise folder and its key")


def answers():
    """The mutations (name -> Mutation) and render(), from solutions/; ExerciseError in a kit."""
    import breaklab

    try:
        from breaklab.solutions import exercise_mutations
        from breaklab.solutions.exercise_template import render
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("breaklab.solutions"):
            raise
        raise ExerciseError(NO_ANSWERS) from None
    # A solutions package found elsewhere (another checkout's editable install) is not this copy's.
    package = Path(breaklab.__file__).resolve().parent
    if Path(exercise_mutations.__file__).resolve().parent not in (package / "solutions", package.parent / "solutions"):
        raise ExerciseError(NO_ANSWERS)
    return exercise_mutations.MUTATIONS, render


@dataclass
class Buggy:
    """A clean script with some mutations applied, and where each bug's code now is."""

    clean: Script
    lines: list[str]
    bugs: tuple[str, ...]
    spans: dict[str, tuple[int, int]]    # bug -> [start, end) of its buggy line(s) (empty when deleted)
    regions: dict[str, tuple[int, int]]  # bug -> [start, end) of the region a fix may touch
    clean_spans: dict[str, tuple[int, int]]  # bug -> [start, end) of the clean lines it replaced

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def apply_mutations(variant: Variant, bugs: tuple[str, ...] | list[str]) -> Buggy:
    """The variant's clean script with each named mutation applied at its span (the clean lines
    it replaces). Two mutations of the same lines cannot be combined (ValueError)."""
    mutations, render = answers()
    clean = render(variant)
    unknown = [b for b in bugs if b not in mutations]
    if unknown:
        raise ValueError(f"unknown bug(s) {', '.join(unknown)}; known: {', '.join(mutations)}")
    spans = {b: mutations[b].span(clean) for b in bugs}
    missing = [b for b, span in spans.items() if span is None]
    if missing:
        raise ValueError(f"the {variant.name} script has no place for {', '.join(missing)}")
    if overlapping(spans):
        raise ValueError(f"{' and '.join(sorted(bugs))} change the same lines; they cannot be combined")
    replacement = {spans[b][0]: (b, spans[b][1], mutations[b].apply(clean.lines[slice(*spans[b])], variant))
                   for b in bugs}
    lines: list[str] = []
    new_index: list[int] = []  # clean line i -> where it, or what replaced it, starts in the buggy script
    buggy_spans: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(clean.lines):
        new_index.append(len(lines))
        if i in replacement:
            bug, end, new = replacement[i]
            buggy_spans[bug] = (len(lines), len(lines) + len(new))
            lines.extend(new)
            new_index.extend([len(lines)] * (end - i - 1))
            i = end
        else:
            lines.append(clean.lines[i])
            i += 1
    new_index.append(len(lines))
    regions = {}
    for bug in bugs:
        start, end = clean.regions.get(bug, spans[bug])
        regions[bug] = (new_index[start], new_index[end])
    return Buggy(clean, lines, tuple(sorted(bugs)), buggy_spans, regions, spans)


def overlapping(spans: dict[str, tuple[int, int]]) -> bool:
    """Whether two of the spans share a line."""
    ordered = sorted(spans.values())
    return any(b[0] < a[1] for a, b in zip(ordered, ordered[1:]))


def combinable(variant: Variant, combo) -> bool:
    """The bugs of `combo` change different lines of the variant's script."""
    mutations, render = answers()
    clean = render(variant)
    return not overlapping({b: mutations[b].span(clean) for b in combo})


def seeded_index(seed: int, purpose: str, n: int) -> int:
    """A number in [0, n) from the seed and a purpose word: the same everywhere."""
    digest = hashlib.sha256(f"breaklab-exercise:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


# ============================================================================
# What the calibration measured: which combinations show a symptom, which bugs are loud
# ============================================================================

LEVELS = ("easy", "medium", "hard")
MIN_BUGS, MAX_BUGS = 1, 4


# What the calibration measured (solutions/exercise_calibrate.py writes it): which bugs and
# combinations of bugs show a symptom in each variant.
CALIBRATION = Path(__file__).with_name("calibration.json")


def eligible(variant: Variant) -> list[str]:
    """The mutations that apply to this variant of the template."""
    mutations, _ = answers()
    return [name for name, m in mutations.items() if m.applies(variant)]


def combo_key(bugs) -> str:
    return "+".join(sorted(bugs)) if bugs else "none"


def load_calibration() -> dict:
    import json

    try:
        data = json.loads(CALIBRATION.read_text())
    except (OSError, ValueError) as e:
        raise ExerciseError(f"cannot read {CALIBRATION} ({e}); regenerate it with "
                            f"`python -m breaklab.solutions.exercise_calibrate`") from None
    return data


def reference(calibration: dict, variant: Variant) -> tuple[float, float]:
    """The clean script's test accuracy at seed 0, and the tolerance a run of it may fall short by:
    the spread over seeds 1-3 below seed 0 (at least 0.01), plus 0.01 for other CPUs' bits."""
    clean = calibration["variants"][variant.name]["clean"]
    ref = clean["0"]["test_acc"]
    others = [run["test_acc"] for seed, run in clean.items() if seed != "0"]
    return ref, max(0.01, ref - min(others)) + 0.01


def shows_symptom(run: dict, ref: float, tolerance: float) -> bool:
    """What a person running the script would notice: the doctor does not call the run healthy,
    or the test accuracy falls short of the clean script's."""
    if not run.get("ok"):
        return True
    return run.get("verdict") != "healthy" or (run.get("test_acc") or 0.0) < ref - tolerance


def is_loud(run: dict, ref: float, tolerance: float) -> bool:
    """The accuracy alone gives this bug away (otherwise only the measurements do)."""
    return not run.get("ok") or (run.get("test_acc") or 0.0) < ref - tolerance


@dataclass
class Catalogue:
    """Per variant: every combination the generator may produce, and which bugs are loud."""

    allowed: dict[str, list[tuple[str, ...]]]   # variant -> combinations (sorted names) allowed
    refused: dict[str, dict[tuple[str, ...], str]]  # variant -> combination -> why refused
    loud: dict[str, set[str]]                   # variant -> bugs that hurt accuracy alone


def catalogue(calibration: dict | None = None) -> Catalogue:
    """Allowed: a combination all of whose non-empty sub-combinations show a symptom, so a
    learner who fixes some of its bugs never faces a run that looks healthy with bugs left.
    Refused, with the reason: one whose run (or a part's) looks healthy or was not measured, and
    one whose bugs change the same lines. Built by size: a combination is allowed when every part
    one bug smaller is allowed and its own run shows a symptom."""
    from itertools import combinations

    calibration = calibration or load_calibration()
    mutations, render = answers()
    allowed: dict[str, list[tuple[str, ...]]] = {}
    refused: dict[str, dict[tuple[str, ...], str]] = {}
    loud: dict[str, set[str]] = {}
    for variant in VARIANTS:
        measured = calibration.get("variants", {}).get(variant.name)
        if measured is None:
            continue
        ref, tol = reference(calibration, variant)
        runs = measured["runs"]
        bugs = sorted(eligible(variant))
        clean = render(variant)
        spans = {b: mutations[b].span(clean) for b in bugs}
        loud[variant.name] = {b for b in bugs if combo_key((b,)) in runs and is_loud(runs[combo_key((b,))], ref, tol)}
        ok: set[tuple[str, ...]] = {()}
        why: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}
        for k in range(1, MAX_BUGS + 1):
            for combo in combinations(bugs, k):
                bad_part = next((part for part in combinations(combo, k - 1) if part not in ok), None)
                if bad_part is not None:
                    why[combo] = why[bad_part]  # (the smallest refused part, its reason)
                    continue
                run = runs.get(combo_key(combo))
                if overlapping({b: spans[b] for b in combo}):
                    why[combo] = (combo, "changes one line twice: its bugs cannot be combined")
                elif run is None and k > 2 and any(mutations[b].certain for b in combo):
                    ok.add(combo)  # shows by construction (the calibration measured it alone and in pairs)
                elif run is None:
                    why[combo] = (combo, "not measured")
                elif not shows_symptom(run, ref, tol):
                    why[combo] = (combo, f"looks healthy: the doctor says {run['verdict']}, test accuracy "
                                         f"{run['test_acc']:.3f}")
                else:
                    ok.add(combo)
        allowed[variant.name] = [c for c in sorted(ok, key=lambda c: (len(c), c)) if len(c) >= MIN_BUGS]
        refused[variant.name] = {combo: reason if part == combo else f"{'+'.join(part)} {reason}"
                                 for combo, (part, reason) in why.items()}
    return Catalogue(allowed, refused, loud)


def fits_level(combo: tuple[str, ...], loud: set[str], level: str) -> bool:
    """easy: every bug shows in the accuracy; hard: none does, only the measurements show them;
    medium: any."""
    if level == "easy":
        return all(b in loud for b in combo)
    if level == "hard":
        return not any(b in loud for b in combo)
    return True


def choose(seed: int, n_bugs: int, level: str = "medium", cat: Catalogue | None = None,
           avoid: set[tuple[str, tuple[str, ...]]] = frozenset()) -> tuple[Variant, tuple[str, ...]]:
    """The variant and bugs of exercise `seed`: a variant picked from the seed among those that
    have a combination of this size and level, then one of its combinations."""
    if not MIN_BUGS <= n_bugs <= MAX_BUGS:
        raise ExerciseError(f"--bugs {n_bugs}: an exercise has {MIN_BUGS} to {MAX_BUGS} bugs")
    if level not in LEVELS:
        raise ExerciseError(f"--level {level}: use one of {', '.join(LEVELS)}")
    cat = cat or catalogue()
    options = {}
    for variant in VARIANTS:
        combos = [c for c in cat.allowed.get(variant.name, [])
                  if len(c) == n_bugs and fits_level(c, cat.loud.get(variant.name, set()), level)
                  and (variant.name, c) not in avoid]
        if combos:
            options[variant] = combos
    if not options:
        raise ExerciseError(f"no exercise has {n_bugs} {level} bug(s) that all show a symptom together; "
                            f"ask for fewer --bugs or another --level")
    variants = sorted(options, key=lambda v: v.name)
    variant = variants[seeded_index(seed, "variant", len(variants))]
    combos = options[variant]
    return variant, combos[seeded_index(seed, f"bugs:{variant.name}", len(combos))]


# ============================================================================
# The exercise and its key
# ============================================================================

KEY_FORMAT = "breaklab.exercise-key"
KEY_VERSION = 1
SCRIPT_NAME = "train.py"


def make_key(seed: int, level: str, variant: Variant, buggy: Buggy, created: float) -> dict:
    """Everything the check and an instructor need; nothing of it goes into the exercise folder."""
    from breaklab.atomic import sha256_bytes

    mutations, _ = answers()
    bugs = []
    for name in sorted(buggy.bugs, key=lambda b: buggy.spans[b]):
        start, end = buggy.spans[name]
        site_start, site_end = buggy.clean_spans[name]
        mutation = mutations[name]
        bugs.append({
            "name": name,
            "line": start + 1,                               # 1-based, in train.py as written
            "buggy_lines": buggy.lines[start:end],           # empty when the bug deleted a line
            "clean_lines": buggy.clean.lines[site_start:site_end],
            "region": list(buggy.regions[name]),             # 0-based [start, end) in train.py
            "region_clean_lines": buggy.clean.lines[slice(*buggy.clean.regions.get(name, buggy.clean_spans[name]))],  # what the region reads without the bug
            "fix": mutation.fix,
            "questions": list(mutation.questions),
        })
    return {"format": KEY_FORMAT, "version": KEY_VERSION, "seed": seed, "level": level,
            "variant": variant.name, "created": created, "bugs": bugs,
            "script_sha256": sha256_bytes(buggy.text.encode()),
            "script": buggy.text, "clean_script": buggy.clean.text}


def task_text(n_bugs: int, variant: Variant, ref: float) -> str:
    """TASK.md: what the learner is told. The expected accuracy and the number of bugs; nothing
    about where they are."""
    bugs = "one bug" if n_bugs == 1 else f"{n_bugs} bugs"
    return (f"# Exercise\n\n"
            f"`train.py` trains a small {variant.model.upper()} on a 4,000-image sample of MNIST. "
            f"Written correctly, it reaches a test accuracy of about {ref:.2f} in 3 epochs on a CPU "
            f"(under a minute). As it stands it has {bugs}: each one is an ordinary line of code that "
            f"runs without an error.\n\n"
            f"Find and fix them. Run the script with `python train.py`; it records per-step "
            f"measurements in `run/`, which `breaklab doctor run` reads. Keep the `monitor` lines: "
            f"the check reads what they record.\n\n"
            f"When you think you are done, `breaklab exercise check FOLDER` (`.` in this folder) says "
            f"how many bugs are fixed, without naming the others.\n")


CLASS_KEY_FORMAT = "breaklab.exercise-class-key"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def cache_root() -> Path:
    """The user cache: $BREAKLAB_CACHE, else $XDG_CACHE_HOME/breaklab or ~/.cache/breaklab (the
    rule of breaklab.canonical_setup, which imports torch; this module must not)."""
    base = os.environ.get("BREAKLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "breaklab")
    return Path(base)


def default_key_path(folder: Path, roster: bool = False) -> Path:
    """Where `new` keeps the key of an exercise folder (or of a class's folder) when --key is not
    given: in the user cache, named after the folder's absolute path."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "exercises" / (f"class-{digest}.json" if roster else f"{digest}.json")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _write_json(path: Path, data: dict) -> None:
    import json

    from breaklab.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _prepare_folder(out: Path) -> None:
    if (out / SCRIPT_NAME).exists():
        raise ExerciseError(f"{out / SCRIPT_NAME} already exists; choose another --out or remove it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExerciseError(f"cannot create {out} ({e.strerror}); choose another --out") from None


@dataclass
class Written:
    folder: Path
    key_path: Path | None
    variant: Variant
    bugs: tuple[str, ...]


def write_exercise(out: Path, seed: int, n_bugs: int = 1, level: str = "medium", key_path: Path | None = None,
                   clean: bool = False, now: float | None = None) -> Written:
    """Write OUT/train.py (and TASK.md) for exercise `seed`, and its key to key_path (outside OUT).
    With clean=True, write the same variant without bugs, and no key."""
    from breaklab.atomic import atomic_write_text

    cat = catalogue()
    variant, bugs = choose(seed, n_bugs, level, cat)
    key_path = None if clean else (key_path or default_key_path(out))
    if key_path is not None and _inside(key_path, out):
        raise ExerciseError(f"the key {key_path} would be inside the exercise folder {out}; "
                            f"give a --key outside it")
    _prepare_folder(out)
    buggy = apply_mutations(variant, () if clean else bugs)
    atomic_write_text(out / SCRIPT_NAME, buggy.text)
    if clean:
        return Written(out, None, variant, ())
    ref, _ = reference(load_calibration(), variant)
    atomic_write_text(out / "TASK.md", task_text(len(bugs), variant, ref))
    _write_json(key_path, make_key(seed, level, variant, buggy, time.time() if now is None else now))
    return Written(out, key_path, variant, bugs)


def read_roster(path: Path) -> list[str]:
    """One student per line; blank lines and lines starting with # are skipped. Each name becomes
    a folder, so it must be a plain name (letters, digits, _ . -)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ExerciseError(f"cannot read the roster {path} ({e.strerror})") from None
    names = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    for name in names:
        if not _NAME.fullmatch(name):
            raise ExerciseError(f"roster {path}: {name!r} is not a plain name (letters, digits, _ . -, "
                                f"at most 64); it names the student's folder")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExerciseError(f"roster {path}: {', '.join(dupes)} listed twice")
    if not names:
        raise ExerciseError(f"roster {path} lists no student")
    return names


def write_class(out: Path, roster: Path, seed: int, n_bugs: int = 1, level: str = "medium",
                key_path: Path | None = None, now: float | None = None) -> tuple[Path, dict[str, Written]]:
    """One exercise per student in OUT/NAME/, each from its own seed (from the class seed and the
    name), with a different variant and set of bugs as long as there are enough; all keys in one
    instructor key file."""
    names = read_roster(roster)
    key_path = key_path or default_key_path(out, roster=True)
    if _inside(key_path, out):
        raise ExerciseError(f"the key {key_path} would be inside the class folder {out}; give a --key outside it")
    for name in names:
        if (out / name / SCRIPT_NAME).exists():
            raise ExerciseError(f"{out / name / SCRIPT_NAME} already exists; choose another --out")
    calibration = load_calibration()
    cat = catalogue(calibration)
    created = time.time() if now is None else now
    taken: set[tuple[str, tuple[str, ...]]] = set()
    keys, written = {}, {}
    for name in names:
        student_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big")
        try:
            variant, bugs = choose(student_seed, n_bugs, level, cat, avoid=taken)
        except ExerciseError:  # every combination handed out once already: repeats from here on
            taken = set()
            variant, bugs = choose(student_seed, n_bugs, level, cat)
        taken.add((variant.name, bugs))
        folder = out / name
        _prepare_folder(folder)
        buggy = apply_mutations(variant, bugs)
        from breaklab.atomic import atomic_write_text

        atomic_write_text(folder / SCRIPT_NAME, buggy.text)
        ref, _ = reference(calibration, variant)
        atomic_write_text(folder / "TASK.md", task_text(len(bugs), variant, ref))
        keys[name] = make_key(student_seed, level, variant, buggy, created)
        written[name] = Written(folder, key_path, variant, bugs)
    _write_json(key_path, {"format": CLASS_KEY_FORMAT, "version": KEY_VERSION, "seed": seed,
                           "created": created, "exercises": keys})
    return key_path, written


def _key_is_whole(data: dict) -> bool:
    """The fields the check reads, with the types it reads them as (a bug's name must be one of
    the catalogue's: the key, not the mutations, is what a kit checks against)."""
    from breaklab.catalogue import names

    try:
        Variant.parse(data["variant"])
        ok = isinstance(data["script"], str) and isinstance(data["clean_script"], str)
        for bug in data["bugs"]:
            start, end = bug["region"]
            ok = ok and bug["name"] in names() and isinstance(bug["line"], int) and 0 <= start <= end
            ok = ok and all(isinstance(line, str) for key in ("buggy_lines", "clean_lines", "region_clean_lines")
                            for line in bug[key])
            ok = ok and isinstance(bug["fix"], str) and all(isinstance(q, str) for q in bug["questions"])
        return ok and isinstance(data.get("created", 0), (int, float))
    except (KeyError, TypeError, ValueError):
        return False


def read_key(folder: Path, key_path: Path | None = None) -> tuple[dict, Path]:
    """The key of the exercise in `folder`: from key_path (an exercise key, or a class key with an
    entry named like the folder), else from the user cache where `new` put it."""
    import json

    candidates = [key_path] if key_path else [default_key_path(folder), default_key_path(folder.parent, roster=True)]
    for path in candidates:
        if path is None or not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ExerciseError(f"the key {path} is not readable JSON ({e}); use the key `exercise new` "
                                f"wrote") from None
        if not isinstance(data, dict):
            raise ExerciseError(f"{path} is not an exercise key")
        if data.get("format") == CLASS_KEY_FORMAT:
            entry = (data.get("exercises") or {}).get(folder.resolve().name)
            if entry is None:
                raise ExerciseError(f"the class key {path} has no exercise named {folder.resolve().name!r} "
                                    f"(it has: {', '.join(sorted(data.get('exercises') or {}))})")
            data = entry
        if data.get("format") != KEY_FORMAT or data.get("version") != KEY_VERSION:
            raise ExerciseError(f"{path} is not a version-{KEY_VERSION} exercise key")
        if not _key_is_whole(data):
            raise ExerciseError(f"the key {path} is damaged (a field is missing or of the wrong type); "
                                f"use the key `exercise new` wrote")
        return data, path
    if key_path:
        raise ExerciseError(f"the key {key_path} does not exist")
    raise ExerciseError(f"no key for {folder} in {cache_root() / 'exercises'}; pass the file `exercise new` "
                        f"wrote with --key KEYFILE")
