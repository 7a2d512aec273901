"""Faults and bad input: interrupted runs, concurrent demo runs, corrupted files.

- A run killed (SIGINT or SIGKILL) at seeded random moments never leaves a truncated or
  mismatched checkpoint or tarball under its final name, a .sha256 always matches its file, and
  resuming from the last good checkpoint (or starting again when there is none) ends in the same
  metrics.jsonl and checkpoint.pt bytes as a run never interrupted.
- Concurrent ./demo_run.sh in one folder (same name, other options; another name) clobber nothing.
- Truncated or bit-flipped data, checkpoints, tarballs and run files give a one-line error that
  names the file (no traceback); a cut-off last metrics line gives a warning and the good part.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner


ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, str(ROOT / "trainer.py"), "--seed", "3", "--epochs", "3", "--quiet"]
FINAL_BYTES = ("metrics.jsonl", "checkpoint.pt")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must end up identical to."""
    out = tmp_path_factory.mktemp("reference") / "run"
    subprocess.run(TRAIN + ["--out", str(out)], check=True, capture_output=True, timeout=300)
    return out


# ============================================================================
# Interrupts
# ============================================================================

def assert_consistent(folder: Path) -> None:
    """What an interrupt may leave: only whole files under final names, matching .sha256s."""
    from breaklab.metric_log import read_metrics
    from breaklab.canonical_setup import load_checkpoint

    for sha_file in folder.glob("*.sha256"):
        target = folder / sha_file.read_text().split()[1]
        assert target.is_file(), f"{sha_file.name} without its file"
        assert sha256(target) == sha_file.read_text().split()[0], f"{sha_file.name} does not match"
    if (folder / "checkpoint.pt").is_file():
        load_checkpoint(folder / "checkpoint.pt")  # raises SetupError when truncated or corrupt
    for name in ("meta.json", "summary.json"):
        if (folder / name).is_file():
            json.loads((folder / name).read_text())
    if (folder / "metrics.jsonl").is_file():
        read_metrics(folder / "metrics.jsonl", warn=lambda m: None)  # a cut-off last line is fine


def start_and_interrupt(cmd: list[str], sig: signal.Signals, rng: random.Random, final_size: int) -> tuple[int, str]:
    """Start the trainer and send `sig` at a random point of its progress: once metrics.jsonl
    has grown to a random share of its final size (mid-epoch, at an epoch's checkpoint), or, for
    a share above 1, a random moment after the last record (summary, report.png, exit)."""
    out = Path(cmd[cmd.index("--out") + 1])
    metrics = out / "metrics.jsonl"
    share = rng.uniform(0.0, 1.25)
    target = int(min(share, 1.0) * final_size)
    start_ns = time.time_ns()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = False
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:  # a resumed run first rewrites metrics.jsonl (new inode), then appends to it
            size = metrics.stat().st_size
            started = started or metrics.stat().st_mtime_ns > start_ns
        except FileNotFoundError:
            size = 0
        if started and size >= target:
            break
        time.sleep(0.002)
    if share > 1.0:
        time.sleep(rng.uniform(0.0, 1.5))
    if proc.poll() is None:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


# (signal, seed of the random points, how many times the resumed runs are interrupted too). Each
# plan interrupts a fresh run, then its resumed run, then resumes to the end: both the first
# interruption and an interrupted resume (each process imports torch: about 10 s of CPU apiece).
PLANS = [(signal.SIGINT, 14, 1), (signal.SIGKILL, 13, 1)]


@pytest.mark.slow
@pytest.mark.release
@pytest.mark.parametrize("sig,seed,again", PLANS, ids=[f"{s.name}-{n}-{a}" for s, n, a in PLANS])
def test_interrupted_then_resumed_run_matches_uninterrupted(reference, tmp_path, sig, seed, again):
    from breaklab.canonical_setup import load_checkpoint

    rng = random.Random(seed)
    final_size = (reference / "metrics.jsonl").stat().st_size
    out = tmp_path / "run"
    fresh = TRAIN + ["--out", str(out)]
    returncode, stderr = start_and_interrupt(fresh, sig, rng, final_size)
    if sig == signal.SIGINT and returncode != 0:
        assert "Traceback" not in stderr, stderr
    assert_consistent(out)

    for attempt in range(6):  # resume (or start again) until the run is complete
        meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").is_file() else {}
        if meta.get("status") == "complete":
            break
        ckpt = out / "checkpoint.pt"
        if ckpt.is_file() and load_checkpoint(ckpt)["epoch"] == 3:
            break  # interrupted after the last checkpoint: metrics and checkpoint are final already
        cmd = (TRAIN[:2] + ["--resume", str(ckpt), "--out", str(out), "--quiet"]
               if ckpt.is_file() else fresh)
        if again > 0:
            again -= 1
            start_and_interrupt(cmd, sig, rng, final_size)
            assert_consistent(out)
        else:
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    for name in FINAL_BYTES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs"


def test_interrupt_between_checkpoint_and_its_sha256_leaves_no_mismatch(tmp_path, monkeypatch):
    """The narrowest window (after the new checkpoint, before its .sha256) hit on purpose."""
    import breaklab.atomic
    from breaklab import canonical_setup

    path = tmp_path / "checkpoint.pt"
    canonical_setup.save_checkpoint(path, {"model": {}, "config": {}, "epoch": 1})
    real_write = breaklab.atomic.atomic_write_text

    def interrupted(target, text):
        if str(target).endswith(".sha256"):
            raise KeyboardInterrupt
        real_write(target, text)

    monkeypatch.setattr(breaklab.atomic, "atomic_write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        canonical_setup.save_checkpoint(path, {"model": {}, "config": {}, "epoch": 2})
    monkeypatch.undo()
    assert_consistent(tmp_path)
    assert canonical_setup.load_checkpoint(path)["epoch"] == 2


@pytest.mark.slow
def test_resumed_metrics_are_on_disk_before_the_run_goes_on(tmp_path):
    """A resumed run killed right after it starts must not lose the records its checkpoint
    covers: they are on disk (not in a buffer) as soon as the logger exists."""
    from breaklab.metric_log import MetricLogger

    path = tmp_path / "metrics.jsonl"
    kept = ['{"type":"header","schema":"breaklab.metrics","version":1}',
            '{"type":"epoch","epoch":0,"step":63}']
    path.write_text("\n".join(kept) + "\n" + '{"type":"step","step":63,"ep')
    logger = MetricLogger(path, keep_lines=kept, show_progress=False)
    assert path.read_text() == "\n".join(kept) + "\n"  # read before any flush or close
    logger.write({"type": "step", "step": 63})
    logger.close()
    assert path.read_text().splitlines()[:2] == kept


# ============================================================================
# Concurrent demo runs in one folder
# ============================================================================

@pytest.mark.slow
def test_concurrent_demo_runs_clobber_nothing(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    jobs = {  # same name with other options, and another name, all at once
        "a": ["5", "none", "--epochs", "1"],
        "b": ["5", "none", "--epochs", "1", "--lr", "0.05"],
        "c": ["6", "none", "--epochs", "1"],
    }
    procs = {k: subprocess.Popen(["bash", str(ROOT / "demo_run.sh"), *args], cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, args in jobs.items()}
    results = {k: p.communicate(timeout=300) for k, p in procs.items()}
    for k, p in procs.items():
        assert p.returncode == 0, results[k][1]
        assert "Traceback" not in results[k][1]
    for name, lrs in (("none_5", {0.1, 0.05}), ("none_6", {0.1})):
        tgz = tmp_path / f"run_{name}.tgz"
        assert subprocess.run(["sha256sum", "-c", tgz.name + ".sha256"], cwd=tmp_path,
                              capture_output=True).returncode == 0
        with tarfile.open(tgz) as tar:
            files = {m.name.split("/", 1)[1]: tar.extractfile(m).read()
                     for m in tar.getmembers() if m.isfile()}
        # Inside: a checkpoint matching its .sha256, complete metrics, and one run's meta.json
        # that agrees with the command stored beside it.
        assert hashlib.sha256(files["checkpoint.pt"]).hexdigest() == files["checkpoint.pt.sha256"].decode().split()[0]
        records = [json.loads(line) for line in files["metrics.jsonl"].decode().splitlines()]
        assert [r["type"] for r in records].count("step") == 63
        assert [r["type"] for r in records].count("epoch") == 1
        meta = json.loads(files["meta.json"])
        assert meta["status"] == "complete" and meta["config"]["lr"] in lrs
        assert ("--lr 0.05" in files["command.txt"].decode()) == (meta["config"]["lr"] == 0.05)
        # The folder left behind is the run the tarball holds.
        assert (tmp_path / "runs" / name / "metrics.jsonl").read_bytes() == files["metrics.jsonl"]


# ============================================================================
# Corrupted inputs: a one-line error naming the file, never a traceback
# ============================================================================

def flip_bit(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    b = bytearray(data)
    pos = rng.randrange(len(b))
    b[pos] ^= 1 << rng.randrange(8)
    return bytes(b)


def run_cli(command, args: list[str]):
    result = CliRunner().invoke(command, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), f"traceback: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    return result.output


def train_cli(args: list[str]) -> str:
    from breaklab.commands.train import build_command

    return run_cli(build_command(), args)


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_damaged_bundled_data_names_the_file(tmp_path, monkeypatch, damage, name):
    from breaklab import canonical_setup

    copy = tmp_path / "sample"
    shutil.copytree(canonical_setup.SAMPLE_DIR, copy)
    path = copy / "MNIST" / "raw" / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else flip_bit(data, 1))
    monkeypatch.setattr(canonical_setup, "SAMPLE_DIR", copy)
    out = train_cli(["--out", str(tmp_path / "run"), "--quiet"])
    assert str(path) in out and "corrupt" in out


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_damaged_full_mnist_files_name_the_folder(tmp_path, damage):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in (ROOT / "data" / "sample" / "MNIST" / "raw").glob("*.gz"):
        (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    images = raw / "train-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(data[:5000] if damage == "truncate" else data[:2] + b"\x0f" + data[3:])
    out = train_cli(["--data", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet"])
    assert str(raw) in out


def test_damaged_unpacked_cache_is_unpacked_again(tmp_path, monkeypatch):
    from breaklab import canonical_setup
    import torch

    monkeypatch.setenv("BREAKLAB_CACHE", str(tmp_path / "cache"))
    good = canonical_setup.load_dataset("sample")
    cached = next((tmp_path / "cache").glob("mnist-sample-*/MNIST/raw/train-images-idx3-ubyte"))
    for damage in (lambda d: flip_bit(d, 2), lambda d: d[:1000]):
        cached.write_bytes(damage(cached.read_bytes()))
        again = canonical_setup.load_dataset("sample")
        assert torch.equal(good.x_train, again.x_train)


@pytest.fixture(scope="module")
def finished(reference, tmp_path_factory) -> Path:
    """A run stopped after 1 of 3 epochs (--stop-after 1): resumable, and the same first epoch
    as the reference run."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    subprocess.run(TRAIN + ["--out", str(out), "--stop-after", "1"], check=True, capture_output=True,
                   timeout=300)
    return out


CHECKPOINT_DAMAGE = {
    "truncated": lambda d: d[: len(d) // 3],
    "bit-flipped": lambda d: flip_bit(d, 3),
    "empty": lambda d: b"",
    "garbage": lambda d: os.urandom(4096),
}


# A flipped bit in tensor data loads without error when the .sha256 is gone (torch.load does not
# check the zip's CRCs), so only the .sha256 the trainer writes beside every checkpoint catches it.
CHECKPOINT_CASES = [(d, True) for d in sorted(CHECKPOINT_DAMAGE)] + [
    (d, False) for d in sorted(CHECKPOINT_DAMAGE) if d != "bit-flipped"]


@pytest.mark.slow
@pytest.mark.parametrize("damage,with_sha", CHECKPOINT_CASES,
                         ids=[f"{d}-{'with' if w else 'without'}-sha256" for d, w in CHECKPOINT_CASES])
def test_damaged_checkpoint_on_resume_names_the_file(finished, tmp_path, damage, with_sha):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(CHECKPOINT_DAMAGE[damage](ckpt.read_bytes()))
    if not with_sha:
        (run / "checkpoint.pt.sha256").unlink()
    out = train_cli(["--resume", str(ckpt), "--out", str(run), "--quiet"])
    assert str(ckpt) in out


def test_not_a_breaklab_checkpoint_names_the_file(tmp_path):
    import torch

    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.zeros(3)}, ckpt)
    assert str(ckpt) in train_cli(["--resume", str(ckpt), "--out", str(tmp_path / "run"), "--quiet"])


@pytest.mark.slow
def test_pack_refuses_damaged_run_folders(finished, tmp_path):
    from breaklab.commands.pack import pack

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "status": "complete"}))
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(flip_bit(ckpt.read_bytes(), 4))
    assert "does not match" in run_cli(pack, [str(run), "--tarball", str(tmp_path / "x.tgz")])
    (run / "meta.json").write_text('{"status": "compl')
    assert "meta.json" in run_cli(pack, [str(run), "--tarball", str(tmp_path / "x.tgz")])
    assert not (tmp_path / "x.tgz").exists()


@pytest.fixture(scope="module")
def tarball(finished, tmp_path_factory) -> Path:
    from breaklab.commands.pack import pack

    run = tmp_path_factory.mktemp("packed") / "run"
    shutil.copytree(finished, run)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "status": "stopped"}))
    tgz = run.parent / "run_x.tgz"
    result = CliRunner().invoke(pack, [str(run), "--tarball", str(tgz)])
    assert result.exit_code == 0, result.output
    return tgz


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "empty"])
def test_damaged_tarball_for_the_doctor_names_the_file(tarball, tmp_path, damage):
    from breaklab.cli import cli

    data = tarball.read_bytes()
    bad = tmp_path / "run_bad.tgz"
    bad.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "bit-flipped": flip_bit(data, 5)}[damage])
    result = CliRunner().invoke(cli, ["doctor", str(bad)])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        f"traceback: {result.exception!r}"
    assert "Traceback" not in result.output
    if damage != "bit-flipped":
        assert result.exit_code != 0, result.output
    if result.exit_code != 0:
        assert str(bad) in result.output and not result.output.rstrip().endswith(":")
    else:  # a flipped bit the gzip and tar checks cannot see leaves a readable run: a whole diagnosis
        assert "verdict:" in result.output and "next check:" in result.output


@pytest.mark.slow
def test_cut_off_metrics_line_warns_and_uses_the_good_part(finished, tmp_path):
    from breaklab.cli import cli
    from breaklab.metric_log import read_metrics

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text("".join(lines[:40]) + lines[40][: len(lines[40]) // 2])
    warnings: list[str] = []
    records = read_metrics(metrics, warn=warnings.append)
    assert len(records) == 40 and len(warnings) == 1 and str(metrics) in warnings[0]
    result = CliRunner().invoke(cli, ["doctor", str(run)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "cut off" in result.output
    # A bad line that is not the last is an error naming the file and the line.
    metrics.write_text("".join(lines[:10]) + "{not json\n" + "".join(lines[10:20]))
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 11"):
        read_metrics(metrics)


@pytest.mark.slow
def test_resume_after_a_cut_off_metrics_line(finished, reference, tmp_path):
    """SIGKILL can cut the last metrics line; resuming drops it and still matches."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"type":"step","step":63,"epo')
    subprocess.run(TRAIN[:2] + ["--resume", str(run / "checkpoint.pt"), "--out", str(run), "--quiet"],
                   check=True, capture_output=True, timeout=300)
    for name in FINAL_BYTES:
        assert (run / name).read_bytes() == (reference / name).read_bytes()
