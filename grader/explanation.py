"""The explanation criterion (15 points): reasoning about the run, not words.

A report earns concept points only where it reasons: a concept of the break's rubric counts when
it is named in a sentence of the causal chain, and numbers count when they are the student's own
measurements. Four criteria, their maxima declared in breaklab.grader.rubric.CRITERIA:

    length        2   at least MIN_WORDS words of prose and at most MAX_WORDS
    sections      2   each of the four sections has something written under it (1/2 point each)
    causal_chain  8   the share of the rubric's concepts named in chain sentences
    measured      3   a number in a sentence matches the grader's re-run of the broken run

What counts as what:
  * a *sentence* is at least MIN_SENTENCE_WORDS words with at least two different function words
    ("the", "is", "so", "of"...) and fewer separators than one per LIST_WORDS_PER_SEPARATOR words:
    "learning rate, 100x, overshoot, dead ReLU" is a list of terms, not a sentence;
  * a *chain sentence* is a sentence with a causal link (because, so, which means, causes, leads to,
    when, ...) or a sentence next to one in the same paragraph: cause -> mechanism -> symptom are
    usually told in two or three consecutive sentences;
  * a *measured number* is in a sentence that names a metric (by its field name or in words: "loss",
    "accuracy", "gradient norm", "dead units"...), has at least two significant digits, and equals,
    at its written precision (or within 0.1 %), a value of that metric in the broken re-run's
    metrics.jsonl that the clean re-run never has (a percentage is compared as a fraction; the
    initial loss of 2.31 is every run's); step, epoch and seed numbers are not measurements;
  * a sentence whose word sequences are mostly found in a reference write-up (solutions/*/WRITEUP.md)
    is copied: it counts for nothing. A report that is mostly a write-up scores 0 and is flagged.

Reports shorter than MIN_WORDS earn the chain and measured points in proportion to their length:
fifteen well-chosen words are not an explanation.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Any

from breaklab.grader import similarity
from breaklab.submission import MIN_WORDS, SECTIONS, prose, section_text, word_count

MIN_SECTION_WORDS = MIN_SENTENCE_WORDS = 6

LIST_WORDS_PER_SEPARATOR = 3
# Containment of a sentence's word 4-grams in a write-up above which the sentence is copied, and of
# the whole report above which the report is (docs/GRADING.md: calibration).
COPIED_SENTENCE = 0.5
COPIED_REPORT = 0.3

FUNCTION_WORDS = frozenset("""
a an the is are was were be been being it its this that these those of to in on at by for with
from as so because and or but which when then than there their they we i my our has have had does
do did not no into after before each every only also instead still will would can could since if
while what how why too very more less all any
""".split())

CAUSAL = re.compile(r"\b(because|since|so|therefore|thus|hence|consequently|as a result|due to|"
                    r"means?|meaning|caus(e|es|ed|ing)|lead(s|ing)? to|led to|result(s|ed|ing)? in|"
                    r"mak(e|es|ing)|made|explain(s|ed|ing)?|why|which|when|whenever|if|then|"
                    r"in turn|drive[sn]?|drove|push(es|ed)?|forc(e|es|ed)|turn(s|ed)? into|"
                    r"prevent(s|ed)?|stop(s|ped)?|kill(s|ed)?|end(s|ed)? up|blow(s|n)? up)\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(\s*%)?(?![\w])")
_NOT_A_MEASUREMENT = re.compile(r"\b(step|steps|epoch|epochs|seed|seeds|batch|size|line|lines|layer)\s*$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[])")
_TOKEN = re.compile(r"[A-Za-z0-9_]+(?:['’.][A-Za-z0-9_]+)*")
SKIP_KEYS = {"step", "epoch", "type", "batch_size", "schema", "version"}


@dataclass
class Sentence:
    text: str
    section: str
    paragraph: int
    words: int
    is_sentence: bool = False
    causal: bool = False
    copied: bool = False
    chain: bool = False


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------

def sentences(report: str) -> list[Sentence]:
    """The report's prose cut into sentences, each with its section and paragraph: headings,
    blank lines and list items end a paragraph-unit; sentence punctuation ends a sentence."""
    out: list[Sentence] = []
    section, paragraph, buf = "", 0, []

    def flush():
        nonlocal buf, paragraph
        text = " ".join(buf).strip()
        buf = []
        if not text:
            return
        for piece in _SPLIT.split(text):
            piece = piece.strip().replace("`", "")
            if piece:
                out.append(Sentence(piece, section, paragraph, len(_TOKEN.findall(piece))))
        paragraph += 1

    for line in prose(report).splitlines():
        head = _HEADING.match(line)
        if head:
            flush()
            section = head.group(1).strip().rstrip(":")
            continue
        if not line.strip():
            flush()
            continue
        if _BULLET.match(line):
            # A list item is its own unit, but the items of one list are one paragraph: a chain
            # told as a list stays a chain.
            text = " ".join(buf).strip()
            buf = []
            if text:
                for piece in _SPLIT.split(text):
                    piece = piece.strip().replace("`", "")
                    if piece:
                        out.append(Sentence(piece, section, paragraph, len(_TOKEN.findall(piece))))
            line = _BULLET.sub("", line)
        buf.append(line.strip())
    flush()
    return out


def is_sentence(text: str) -> bool:
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    if len(tokens) < MIN_SENTENCE_WORDS:
        return False
    if len(FUNCTION_WORDS.intersection(tokens)) < 2:
        return False
    separators = len(re.findall(r"[,;|/]|\s-\s", text))
    return separators < max(3, len(tokens) / LIST_WORDS_PER_SEPARATOR)


def analyse(report: str, references: dict[str, str] | None = None) -> list[Sentence]:
    """Every sentence of the report, marked: a sentence, causal, copied, part of the chain."""
    sents = sentences(report)
    refs = {name: similarity.shingles(text) for name, text in (references or {}).items()}
    all_refs = frozenset().union(*refs.values()) if refs else frozenset()
    for s in sents:
        s.is_sentence = is_sentence(s.text)
        s.causal = s.is_sentence and bool(CAUSAL.search(s.text))
        if all_refs and s.is_sentence:
            s.copied = similarity.containment(similarity.shingles(s.text), all_refs) >= COPIED_SENTENCE
    for i, s in enumerate(sents):
        if not s.is_sentence or s.copied:
            continue
        neighbours = [sents[j] for j in (i - 1, i + 1) if 0 <= j < len(sents)]
        s.chain = s.causal or any(n.causal and not n.copied and n.paragraph == s.paragraph
                                  and n.section == s.section for n in neighbours)
    return sents


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

# Which metrics a sentence talks about: a number is compared only with the metrics its sentence
# names (by field name or in words), so "seed 42" or "0.916 after one epoch" in a sentence about
# the clean run's accuracy cannot match an unrelated per-layer gradient by chance.
_GRAD_NORM = r"grad(ient)?s?[ _]norm|\bnorm\b"
_DEAD = r"\bdead|\bunits?\b|\brelus?\b|\bneurons?\b|\bfire\b"
_ZEROS = r"\bzeros?\b|underflow"
_BN = r"running|batch ?norm|\bbn\b|\bvariance\b"
_LOGITS = r"row[ -]?sums?|sums? to|logits?|probabilit|outputs?"
METRIC_WORDS: dict[str, str] = {
    "loss": r"\bloss", "train_loss": r"\bloss", "test_loss": r"\bloss",
    "test_acc": r"\bacc(uracy)?\b", "train_acc": r"\bacc(uracy)?\b",
    "grad_norm": _GRAD_NORM, "grad_norm_by_layer": _GRAD_NORM,
    "grad_mean": r"grad(ient)?s?[ _]mean|mean (absolute )?grad",
    "zero_grad_frac": _ZEROS, "zero_grad_frac_by_layer": _ZEROS,
    "dead_unit_frac": _DEAD, "act_first_dead_frac": _DEAD,
    "update_ratio": r"\bupdates?\b|step size",
    "lr": r"learning rate|\blr\b",
    "bn_running_var_mean": _BN, "bn_running_mean_abs": _BN,
    "logit_rowsum_mean": _LOGITS, "logit_min": _LOGITS, "logit_max": _LOGITS,
    "act_last_mean": _LOGITS, "act_last_var": _LOGITS,
    "act_first_mean": r"activation", "act_first_var": r"activation",
    "amp_scale": r"\bscale\b|scaler",
}


def metrics_named(text: str) -> set[str]:
    low = text.lower()
    return {key for key, words in METRIC_WORDS.items() if key in low or re.search(words, low)}


@dataclass(frozen=True)
class RunValues:
    """The numeric values of a run's metrics, per metric, sorted, each with where it comes from."""
    values: dict[str, list[float]]
    where: dict[str, list[str]]

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> "RunValues":
        pairs: dict[str, list[tuple[float, str]]] = {}
        for r in records:
            at = f"step {r.get('step')}" if r.get("type") == "step" else f"epoch {r.get('epoch')}"
            for key, val in r.items():
                if key in SKIP_KEYS:
                    continue
                if isinstance(val, dict):
                    pairs.setdefault(key, []).extend(
                        (float(v), f"{key}.{k} at {at}") for k, v in val.items() if _finite(v))
                elif _finite(val):
                    pairs.setdefault(key, []).append((float(val), f"{key} at {at}"))
        for p in pairs.values():
            p.sort()
        return cls({k: [v for v, _ in p] for k, p in pairs.items()}, {k: [w for _, w in p] for k, p in pairs.items()})

    def find(self, x: float, tol: float, metrics: set[str], unless: "RunValues | None" = None) -> str | None:
        """Where x (within tol) is a value of one of metrics; with `unless` (the clean run), only a
        metric whose value there is not also one of the clean run's: the initial loss of 2.31 is
        every run's, not a measurement of this one."""
        for key in sorted(metrics):
            values = self.values.get(key, [])
            i = bisect.bisect_left(values, x - tol)
            if i < len(values) and values[i] <= x + tol:
                if unless is not None and unless.find(x, tol, {key}) is not None:
                    continue
                return self.where[key][i]
        return None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def significant_digits(token: str) -> int:
    mantissa = re.split(r"[eE]", token)[0]
    return len(mantissa.replace(".", "").lstrip("0"))


def written_tolerance(token: str, value: float) -> float:
    """Half a unit of the last written digit (of the value, for a percentage), or 0.1 % of it."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    half_unit = 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return max(half_unit, 0.001 * abs(value))


def measured_numbers(text: str, run: RunValues, clean: RunValues | None = None) -> list[tuple[str, str]]:
    """(number as written, the metric it matches) for each number of text found in the run among
    the metrics the text names, and (given the clean run) not a value the clean run has too."""
    metrics = metrics_named(text)
    if not metrics:
        return []
    found = []
    for m in _NUMBER.finditer(text):
        token, percent = m.group(1), bool(m.group(2))
        if significant_digits(token) < 2 or _NOT_A_MEASUREMENT.search(text[:m.start()]):
            continue
        scale = 100 if percent else 1
        value = float(token) / scale
        where = run.find(value, written_tolerance(token, float(token)) / scale, metrics, unless=clean)
        if where is not None:
            found.append((token + ("%" if percent else ""), where))
    return found


# ---------------------------------------------------------------------------------------------
# The criteria
# ---------------------------------------------------------------------------------------------

@dataclass
class Explanation:
    """What the grader found in a report: the four criteria's inputs, and whether it is a copy."""
    words: int
    sections_written: dict[str, bool]
    concepts_in_chain: list[str]
    concepts_elsewhere: list[str]
    concepts_missing: list[str]
    measured: list[tuple[str, str]]
    copied_from: str | None
    copied_share: float
    copied_sentences: int
    chain_sentences: int

    @property
    def length_factor(self) -> float:
        return min(1.0, self.words / MIN_WORDS)


def examine(report: str, concepts: list[dict[str, Any]], broken: list[dict[str, Any]] | None,
            references: dict[str, str] | None = None, clean: list[dict[str, Any]] | None = None) -> Explanation:
    sents = analyse(report, references)
    chain_text = " ".join(s.text for s in sents if s.chain).lower()
    other_text = " ".join(s.text for s in sents if not s.chain).lower()
    in_chain, elsewhere, missing = [], [], []
    for c in concepts:
        if any(re.search(p, chain_text) for p in c["patterns"]):
            in_chain.append(c["name"])
        elif any(re.search(p, other_text) for p in c["patterns"]):
            elsewhere.append(c["name"])
        else:
            missing.append(c["name"])
    measured: list[tuple[str, str]] = []
    if broken:
        run = RunValues.of(broken)
        clean_run = RunValues.of(clean) if clean else None
        for s in sents:
            if s.is_sentence and not s.copied:
                measured += measured_numbers(s.text, run, clean_run)
    mine = similarity.shingles(report)
    copied_from, share = similarity.best_match(mine, ((n, similarity.shingles(t)) for n, t in
                                                      sorted((references or {}).items())))
    written = {name: word_count(section_text(report, name)) >= MIN_SECTION_WORDS for name in SECTIONS}
    return Explanation(words=word_count(report), sections_written=written, concepts_in_chain=in_chain,
                       concepts_elsewhere=elsewhere, concepts_missing=missing, measured=measured,
                       copied_from=copied_from if share >= COPIED_REPORT else None, copied_share=share,
                       copied_sentences=sum(s.copied for s in sents),
                       chain_sentences=sum(s.chain for s in sents))
