"""Mystery mode: the seed and a secret pick a break (or none) that no file or output names, in
words either; doctor and triage ask for --spoil; hint grades its help; reveal counts guesses and
shows the answer only after a right one or --give-up; without the secret nothing opens."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from breaklab.breaks import BREAK_NAMES, FAULT_NAMES, REGISTRY, get_break, mystery_choice, mystery_options
from breaklab.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"course-2024-instructor-secret"  # what an instructor would put in BREAKLAB_SECRET


# ---------------------------------------------------------------------------------------------
# The choice and the secret (no training)
# ---------------------------------------------------------------------------------------------

def test_the_choice_is_a_fixed_function_of_seed_and_secret_covering_every_option():
    picks = [mystery_choice(s, SECRET) for s in range(400)]
    assert picks == [mystery_choice(s, SECRET) for s in range(400)]
    assert set(picks) == set(mystery_options()) == {"none", *FAULT_NAMES}
    assert max(Counter(picks).values()) < 60  # no option dominates
    # Another secret, another assignment: the seed alone does not say the break.
    other = [mystery_choice(s, b"another secret") for s in range(200)]
    assert sum(a != b for a, b in zip(picks, other)) > 100
    assert type(get_break("mystery", seed=7, secret=SECRET)) is type(get_break(mystery_choice(7, SECRET), seed=7))


def test_the_secret_comes_from_the_option_then_the_environment_then_the_install(tmp_path, monkeypatch):
    from breaklab.secret import SECRET_FILE, install_secret, resolve

    monkeypatch.setenv("BREAKLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BREAKLAB_SECRET", raising=False)
    made = resolve()
    path = tmp_path / "cache" / SECRET_FILE
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(made) == 64 and resolve() == made == install_secret()  # made once, then read
    assert not [p for p in path.parent.iterdir() if p.name != SECRET_FILE]  # no temporary left
    monkeypatch.setenv("BREAKLAB_SECRET", "from-the-environment")
    assert resolve() == b"from-the-environment"
    assert resolve("from-the-option") == b"from-the-option"
    # Another install (another cache) gets another secret.
    monkeypatch.delenv("BREAKLAB_SECRET")
    monkeypatch.setenv("BREAKLAB_CACHE", str(tmp_path / "other"))
    assert resolve() != made


def test_processes_making_the_install_secret_at_once_agree(tmp_path):
    """Eight processes start together on an empty cache: one secret is made, all eight read it."""
    code = "from breaklab.secret import install_secret; print(install_secret().decode())"
    env = {**os.environ, "BREAKLAB_CACHE": str(tmp_path)}
    env.pop("BREAKLAB_SECRET", None)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    outs = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert len(outs) == 1 and len(outs.pop()) == 64


def test_a_mystery_records_a_commitment_that_opens_only_with_its_secret(monkeypatch):
    from breaklab.breaks import mystery_record
    from breaklab.secret import open_commitment

    monkeypatch.setenv("BREAKLAB_SECRET", SECRET.decode())
    record = mystery_record("mystery", 11)
    assert mystery_record("mystery", 11) == record and mystery_record("huge_lr", 11) == {}
    committed = record["mystery"]["commitment"]
    assert re.fullmatch(r"[0-9a-f]{64}", committed)  # nothing else: no name, no index
    assert open_commitment(11, committed, mystery_options(), SECRET) == mystery_choice(11, SECRET)
    assert open_commitment(11, committed, mystery_options(), b"a guessed secret") is None
    assert open_commitment(12, committed, mystery_options(), SECRET) is None


# ---------------------------------------------------------------------------------------------
# Reveal: the record of attempts (no training: reveal reads only meta.json)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def mystery_meta(tmp_path, monkeypatch):
    """A run folder holding only the meta.json of a mystery run, its answer and a private cache."""
    from breaklab.breaks import mystery_record

    monkeypatch.setenv("BREAKLAB_SECRET", SECRET.decode())
    monkeypatch.setenv("BREAKLAB_CACHE", str(tmp_path / "cache"))
    seed = next(s for s in range(1000) if mystery_choice(s, SECRET) == "eval_mode")
    meta = {"seed": seed, "break": "mystery", **mystery_record("mystery", seed), "checkpoint_sha256": "ab" * 32}
    folder = tmp_path / "runs" / f"mystery_{seed}"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder, "eval_mode"


def test_a_wrong_guess_says_wrong_and_shows_nothing(mystery_meta):
    folder, answer = mystery_meta
    for guess in ("none", "huge_lr"):
        result = CliRunner().invoke(cli, ["reveal", str(folder), "--guess", guess])
        assert result.exit_code == 1 and "... wrong" in result.output
        assert answer not in result.output and "answer:" not in result.output and "write-up" not in result.output
        assert "--give-up" in result.output
    right = CliRunner().invoke(cli, ["reveal", str(folder), "--guess", answer])
    assert right.exit_code == 0, right.output
    assert "... right, found in 3 guesses" in right.output and f"answer:   {answer}" in right.output
    writeup = ROOT / "solutions" / answer / "WRITEUP.md"
    if writeup.is_file():  # a course kit has none: reveal says so instead
        assert writeup.read_text().strip().splitlines()[0] in right.output
    else:
        assert "no reference write-up in this copy" in right.output
    again = CliRunner().invoke(cli, ["reveal", str(folder), "--guess", answer])
    assert again.exit_code == 0 and "first found in 3 guesses" in again.output


def test_giving_up_shows_the_answer_and_counts_the_guesses_and_hints(mystery_meta):
    from breaklab.mystery import load_attempts, record_hint

    folder, answer = mystery_meta
    meta = json.loads((folder / "meta.json").read_text())
    assert CliRunner().invoke(cli, ["reveal", str(folder), "--guess", "loss_sum"]).exit_code == 1
    record_hint(meta, 2)
    gave_up = CliRunner().invoke(cli, ["reveal", str(folder), "--give-up"])
    assert gave_up.exit_code == 0, gave_up.output
    assert "gave up:  after 1 wrong guess, with hints up to level 2" in gave_up.output
    assert f"answer:   {answer}" in gave_up.output
    attempts = load_attempts(meta)
    assert attempts.guesses == ["loss_sum"] and attempts.gave_up_after == 1 and attempts.hint_level == 2
    neither = CliRunner().invoke(cli, ["reveal", str(folder)])
    assert neither.exit_code == 1 and "--give-up" in neither.output and "Traceback" not in neither.output
    bad = CliRunner().invoke(cli, ["reveal", str(folder), "--guess", "gremlins"])
    assert bad.exit_code == 1 and "unknown guess 'gremlins'" in bad.output


def test_without_the_runs_secret_nothing_opens(mystery_meta, monkeypatch):
    folder, answer = mystery_meta
    monkeypatch.setenv("BREAKLAB_SECRET", "a learner's guess at the secret")
    for args in (["--guess", answer], ["--give-up"]):
        result = CliRunner().invoke(cli, ["reveal", str(folder), *args])
        assert result.exit_code == 1 and "made with another secret" in result.output
        assert answer not in result.output.replace(str(folder), "")
    given = CliRunner().invoke(cli, ["reveal", str(folder), "--guess", answer, "--secret", SECRET.decode()])
    assert given.exit_code == 0 and "... right" in given.output


def test_reveal_accepts_healthy_for_a_clean_mystery_and_works_on_named_runs(tmp_path, monkeypatch):
    from breaklab.breaks import mystery_record
    from breaklab.mystery import reveal

    monkeypatch.setenv("BREAKLAB_SECRET", SECRET.decode())
    monkeypatch.setenv("BREAKLAB_CACHE", str(tmp_path))
    clean_seed = next(s for s in range(1000) if mystery_choice(s, SECRET) == "none")
    result = reveal({"seed": clean_seed, "break": "mystery", **mystery_record("mystery", clean_seed)}, "healthy")
    assert result.right and result.shown and result.actual == "none"
    named = reveal({"seed": 1, "break": "huge_lr"}, "none")
    assert not named.right and not named.shown


# ---------------------------------------------------------------------------------------------
# Measurements without mechanism words (no training: records made up)
# ---------------------------------------------------------------------------------------------

def _steps(n: int, **fields) -> list[dict]:
    base = {"type": "step", "batch_size": 64, "loss": 2.3, "grad_norm": 1.0, "update_ratio": 1e-3,
            "dead_unit_frac": 0.0, "zero_grad_frac_by_layer": {"fc1.weight": 0.0}, "bn_running_mean_abs": 0.5,
            "bn_running_var_mean": 2.0, "logit_min": -3.0, "logit_max": 4.0, "logit_rowsum_mean": 0.3}
    return [{**base, "step": i, **fields} for i in range(n)]


def test_the_measurement_wording_is_the_same_lines_whatever_the_run_shows():
    from breaklab.symptoms import format_summary, summarize

    epoch = [{"type": "epoch", "epoch": 0, "step": 63, "train_acc": 0.1, "test_acc": 0.1}]
    looks_summed = _steps(63, loss=147.0) + epoch
    looks_frozen = _steps(63, bn_running_mean_abs=0.0, bn_running_var_mean=1.0) + epoch
    looks_probabilities = _steps(63, logit_min=0.0, logit_max=1.0, logit_rowsum_mean=1.0) + epoch
    for records in (looks_summed, looks_frozen, looks_probabilities):
        assert summarize(records)["symptoms"]  # the named wording interprets them...
        measured = summarize(records, wording="measurements")
        assert "symptoms" not in measured and len(measured["measurements"]) == 7
        text = format_summary(measured, "runs/mystery_1") + json.dumps(measured)
        assert mechanism_words_in(text) == [], text  # ...the measurement wording never does


# Every word that names a mechanism, from each break's description and symptom (breaklab list -v)
# and the solutions' write-ups and notes, as regular expressions (case-insensitive). The names
# every run carries are not words of a mechanism: metrics fields (zero_grad_frac,
# logit_rowsum_mean, amp_scale), the dataset's files (train-labels-idx1-ubyte.gz).
MECHANISM_WORDS = [
    *BREAK_NAMES, r"huge.lr", r"label.permut", r"zero_grad(?!_frac)", r"double.softmax", r"loss.sum\b",
    r"eval.mode", r"evaluation mode", r"model\.eval", r"model\.train", r"\.train\(\)", r"train mode",
    r"softmax", r"probabilit", r"\blogits\b", r"summed", r"sum over the batch", r"reduction",
    r"learning rate x", r"multiplied by", r"x ?100\b", r"100 ?x\b", r"100 times", r"too (large|high|big)",
    r"overshoot", r"units? die",
    r"accumulat", r"never cleared", r"diverg", r"explod",
    r"underflow", r"float16", r"fp16", r"half.precision", r"gradscaler", r"loss scal", r"autocast",
    r"dead relu", r"dead unit", r"permut", r"shuffl", r"random image", r"uniform",
    r"\blabels? (shuffl|permut|goes|go to|do not|don't|belong)",
    r"chance level", r"never mov", r"frozen", r"dropout (inactive|off)", r"symptom", r"healthy",
]


def mechanism_words_in(text: str) -> list[str]:
    return [w for w in MECHANISM_WORDS if re.search(w, text, re.I)]


def mechanism_words_in_bytes(data: bytes) -> list[str]:
    return [w for w in MECHANISM_WORDS if re.search(w.encode(), data, re.I)]


def words_of_file(name: str, data: bytes) -> bytes:
    """Where a run file can hold words: a PNG's text chunks (its pixels are no text, and
    compressed bytes match short patterns by chance), a checkpoint's pickled structure (not its
    tensors' raw bytes), every other file whole."""
    if name.endswith(".png"):
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        chunks, pos = [], 8
        while pos < len(data):
            length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
            if kind in (b"tEXt", b"zTXt", b"iTXt"):
                body = data[pos + 8:pos + 8 + length]
                chunks.append(zlib.decompress(body.split(b"\0", 2)[-1][1:]) if kind == b"zTXt" else body)
            pos += 12 + length
        return b"\n".join(chunks)
    if name.endswith(".pt"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return b"\n".join(archive.read(m) for m in archive.namelist() if "/data/" not in m)
    return data


def mechanism_words_in_file(name: str, data: bytes) -> list[str]:
    return mechanism_words_in_bytes(words_of_file(name, data))


def mechanism_words_in_tarball(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return [f"{m.name}: {w}" for m in tar if m.isfile()
                for w in mechanism_words_in_file(m.name, tar.extractfile(m).read())]


def test_the_word_list_catches_what_named_runs_print():
    """The list is not vacuous: each named break's own symptom and description hit it, and so
    does the summary wording the named runs print."""
    for name in ["amp_no_scaling", "double_softmax", "eval_mode", "huge_lr", "label_permute", "loss_sum",
                 "missing_zero_grad"]:  # the words were collected from these seven's wording
        cls = REGISTRY[name]
        assert mechanism_words_in(cls.description + " " + cls.symptom), name
    from breaklab import symptoms

    assert mechanism_words_in(symptoms.sentence("bn_stats_frozen", _steps(10, bn_running_mean_abs=0.0,
                                                                            bn_running_var_mean=1.0)))
    assert mechanism_words_in(symptoms.sentence("outputs_are_probabilities", _steps(
        10, logit_min=0.0, logit_max=1.0, logit_rowsum_mean=1.0)))
    assert mechanism_words_in(symptoms.sentence("initial_loss_is_summed", _steps(10, loss=147.0)))


# ---------------------------------------------------------------------------------------------
# Real mystery runs (training)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secret_env(tmp_path_factory):
    """The instructor's secret and a private cache for the whole module's runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BREAKLAB_SECRET", SECRET.decode())
        mp.setenv("BREAKLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


# A cheap, non-AMP hidden break, found from the rule itself (not a hard-coded answer).
SEED = next(s for s in range(1000) if mystery_choice(s, SECRET) == "loss_sum")
HIDDEN = mystery_choice(SEED, SECRET)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, secret_env):
    """./demo_run.sh SEED mystery --epochs 1, run as a person runs it."""
    cwd = tmp_path_factory.mktemp("mystery")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "demo_run.sh"), str(SEED), "mystery", "--epochs", "1"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


@pytest.mark.slow
def test_the_name_appears_in_no_output_and_not_in_the_command(demo):
    cwd, proc = demo
    folder, tarball = cwd / "runs" / f"mystery_{SEED}", cwd / f"run_mystery_{SEED}.tgz"
    assert HIDDEN not in proc.stdout + proc.stderr
    assert "break mystery" in proc.stdout and "measured: loss" in proc.stdout
    files = sorted(p.name for p in folder.iterdir())
    assert {"metrics.jsonl", "checkpoint.pt", "meta.json", "summary.json", "report.png"} <= set(files)
    for name in files:
        assert mechanism_words_in_file(name, (folder / name).read_bytes()) == [], name
    # The checkpoint's words are read, not its tensors: its config says "mystery" there.
    assert b"mystery" in words_of_file("checkpoint.pt", (folder / "checkpoint.pt").read_bytes())
    unpacked = gzip.decompress(tarball.read_bytes())
    assert mechanism_words_in_tarball(tarball) == []
    assert mechanism_words_in(proc.stdout + proc.stderr) == []
    assert f"./demo_run.sh {SEED} mystery".encode() in unpacked and b"report.png" in unpacked
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["break"] == "mystery" and meta["config"]["break_name"] == "mystery"


@pytest.fixture(scope="module")
def every_option(tmp_path_factory, secret_env):
    """One 1-epoch mystery run per option (seeds found from the rule under the module's secret),
    trained and packed in-process through the commands a person runs; with the titles of the
    report.png each training drew, read from the drawing itself."""
    out = tmp_path_factory.mktemp("every")
    runs = {}
    for option in mystery_options():
        seed = next(s for s in range(1000) if mystery_choice(s, SECRET) == option)
        folder = out / f"mystery_{seed}"
        with figure_titles() as texts:
            trained = CliRunner().invoke(cli, ["train", "--break", "mystery", "--seed", str(seed), "--epochs",
                                               "1", "--out", str(folder)])
        assert trained.exit_code == 0, trained.output
        packed = CliRunner().invoke(cli, ["pack", str(folder), "--tarball", str(out / f"run_mystery_{seed}.tgz"),
                                          "--command", f"./demo_run.sh {seed} mystery --epochs 1"])
        assert packed.exit_code == 0, packed.output
        runs[option] = (seed, folder, out / f"run_mystery_{seed}.tgz", trained.output + packed.output, texts)
    return runs


@pytest.mark.slow
@pytest.mark.release
def test_no_mechanism_word_in_any_file_or_output_of_any_option(every_option):
    for option, (seed, folder, tarball, output, titles) in every_option.items():
        assert mechanism_words_in(output) == [], (option, output)
        for path in sorted(folder.iterdir()):
            assert mechanism_words_in_file(path.name, path.read_bytes()) == [], (option, path.name)
        assert mechanism_words_in_tarball(tarball) == [], option
        # The figure's words are pixels: its title and panel titles, read from the drawing itself.
        assert len(titles) == 1 and titles[0] and mechanism_words_in(" ".join(titles[0])) == [], (option, titles)
    # The summaries differ in numbers only: every option prints the same measurement lines.
    shapes = {tuple(re.sub(r"[-+]?[\d.]+(e[-+]?\d+)?%?|non-finite|n/a", "#", line)
                    for line in json.loads((f / "summary.json").read_text())["measurements"])
              for _, f, _, _, _ in every_option.values()}
    assert len(shapes) == 1, shapes


@contextlib.contextmanager
def figure_titles():
    """A list that receives, for each figure drawn inside the block, its suptitle and panel titles
    (read when the figure is encoded, so what the PNG shows)."""
    from breaklab import plots

    seen: list[list[str]] = []
    original = plots._png

    def read_then_encode(fig, *title):
        marked = [line for ax in fig.axes for line in ax.lines  # the onset mark: a vertical red line
                  if line.get_color() == plots.SYMPTOM_COLOR and len(set(line.get_xdata())) == 1]
        assert not marked, "a mystery figure marks no step"
        seen.append([fig._suptitle.get_text()] + [ax.get_title() for ax in fig.axes])
        return original(fig, *title)

    plots._png = read_then_encode
    try:
        yield seen
    finally:
        plots._png = original


@pytest.mark.slow
def test_doctor_and_triage_ask_for_spoil_then_work(demo):
    from breaklab.doctor import diagnose, load_run
    from breaklab.triage import Triage, TriageSetup

    cwd, _ = demo
    tarball = cwd / f"run_mystery_{SEED}.tgz"
    for command in (["doctor", str(tarball)], ["triage", str(tarball), "--out", str(cwd / "tri")]):
        refused = CliRunner().invoke(cli, command)
        assert refused.exit_code == 1 and "Traceback" not in refused.output
        errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "breaklab hint" in errors[0] and "--spoil" in errors[0], refused.output
        assert HIDDEN not in refused.output
    assert not (cwd / "tri").exists()
    spoiled = CliRunner().invoke(cli, ["doctor", str(tarball), "--spoil"])
    assert spoiled.exit_code == 0 and f"verdict:     {HIDDEN}" in spoiled.output
    assert diagnose(load_run(tarball)).verdict == HIDDEN
    meta = json.loads((cwd / "runs" / f"mystery_{SEED}" / "meta.json").read_text())
    report = Triage(TriageSetup.from_meta(meta), out_dir=None, echo=lambda s: None).run()
    assert report.verdict == HIDDEN
    result = CliRunner().invoke(cli, ["triage", str(tarball), "--spoil", "--out", str(cwd / "tri")])
    assert result.exit_code == 0, result.output
    assert "code mystery (hidden)" in result.output
    assert result.output.index(HIDDEN) > result.output.index("verdict:")
    plain = CliRunner().invoke(cli, ["triage", "--break", "mystery", "--seed", str(SEED)])
    assert plain.exit_code == 1 and "--spoil" in plain.output
    compared = CliRunner().invoke(cli, ["compare", str(tarball), str(tarball), "--out", str(cwd / "c.png")])
    assert compared.exit_code == 0 and "hidden (mystery run)" in compared.output and HIDDEN not in compared.output


@pytest.mark.slow
def test_hints_come_in_three_levels_and_reveal_counts_them(demo):
    cwd, _ = demo
    run = str(cwd / "runs" / f"mystery_{SEED}")
    levels = [CliRunner().invoke(cli, ["hint", run, "--level", str(n)]) for n in (1, 2, 3)]
    assert all(r.exit_code == 0 for r in levels), [r.output for r in levels]
    one, two, three = (r.output for r in levels)
    assert "hint 1:   look at the loss at step 0" in one and "hint 2" not in one
    assert "hint 2:   category: objective" in two and HIDDEN not in two
    assert mechanism_words_in(one) == [] and f"hint 3:   answer: {HIDDEN}" in three
    guessed = CliRunner().invoke(cli, ["reveal", run, "--guess", HIDDEN])
    assert guessed.exit_code == 0 and "found in 1 guess, with hints up to level 3" in guessed.output
    # Without the run's secret the hints follow the doctor, and say so.
    elsewhere = CliRunner().invoke(cli, ["hint", run, "--level", "3", "--secret", "not the secret"])
    assert elsewhere.exit_code == 0 and "the doctor's verdict" in elsewhere.output
