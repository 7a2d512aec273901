"""Shared fixtures: each training run a test needs is made once per test session."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Run:
    """A finished training run in a folder, with its records split by type."""

    def __init__(self, out: Path):
        self.out = out
        self.records = read_jsonl(out / "metrics.jsonl")
        self.steps = [r for r in self.records if r["type"] == "step"]
        self.epochs = [r for r in self.records if r["type"] == "epoch"]
        self.meta = json.loads((out / "meta.json").read_text())
        self.summary = json.loads((out / "summary.json").read_text())

    def series(self, key: str) -> list:
        return [r[key] for r in self.steps]


def pytest_configure(config):
    """torch and torch._dynamo, wherever a test first imports them, are imported with the garbage
    collector off and frozen after (breaklab/process_gc.py): the collections a test process makes
    later walk only the tests' own objects."""
    from breaklab.process_gc import heavy_imports_frozen

    heavy_imports_frozen()


@pytest.fixture(scope="session", autouse=True)
def demo_runs_keep_their_names():
    """demo_run.sh names a run BREAK_SEED_fixed when the checkout has uncommitted changes to
    breaks/ or trainer.py; tests that run it expect BREAK_SEED whatever the developer is editing
    (tests/test_demo_run.py turns the check back on where it tests it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BREAKLAB_DETECT_FIX", "0")
        yield


@pytest.fixture(scope="session", autouse=True)
def a_cache_of_this_test_session(tmp_path_factory):
    """breaklab's cache (the mystery secret, decoded data, exercise keys) in a folder of this test
    session: the tests neither read nor change the user's, nor each other's when run in parallel."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BREAKLAB_CACHE", str(tmp_path_factory.mktemp("breaklab-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def graded_submissions_removed_at_the_end():
    """tests/submission_fixtures.py builds its submissions in a folder of its own (about 450 MB):
    removed when the session ends, also in a pytest-xdist worker, which skips atexit handlers."""
    yield
    import shutil
    import sys

    fixtures = sys.modules.get("submission_fixtures")
    if fixtures is not None and fixtures.workspace.cache_info().currsize:
        shutil.rmtree(fixtures.workspace(), ignore_errors=True)


@pytest.fixture(scope="session")
def train_run(tmp_path_factory) -> Callable[..., Run]:
    """train_run(break_name="none", **config) -> Run, trained in-process once per configuration,
    without report.png (tests/test_plots.py draws and checks the figures)."""
    from breaklab.run_summary import train_and_summarize as train
    from breaklab.trainer import Config

    cache: dict[tuple, Run] = {}

    def make(break_name: str = "none", **overrides) -> Run:
        key = (break_name, tuple(sorted(overrides.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"run_{break_name}")
            train(Config(break_name=break_name, out=str(out), quiet=True, **overrides), figure=False)
            cache[key] = Run(out)
        return cache[key]

    return make


# Run in parallel (`pytest -n 2`, pytest-xdist), each test file stays on one worker, so its
# module-scoped fixtures are built once; the two files that share the graded submissions of
# tests/submission_fixtures.py (built once per process) stay together on one worker.
SHARE_GRADED_SUBMISSIONS = {"test_grader.py", "test_solutions.py"}
# The files that take minutes, longest first (measured with `pytest -n 2 --durations=0`): a
# worker that becomes free takes the longest file left, so that no long file starts last while
# the other worker idles. The rest follow in collection order.
LONGEST_FIRST = ("graded-submissions", "test_grader_security.py", "test_grading_scale.py", "test_exercises.py",
                 "test_examples.py", "test_plots.py", "test_sandbox.py", "test_reliability.py", "test_mystery.py",
                 "test_breaks.py", "test_triage.py")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, called only when it runs the tests
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's file scheduling (a test file is sent to one worker whole), with the files
    that share the graded submissions as one unit. (Its --dist loadgroup marks do not group
    anything under pytest 9, whose node ids no longer take the group's suffix.)"""
    from xdist.scheduler import LoadFileScheduling

    def rank(scope: str) -> int:
        name = Path(scope).name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    class OneWorkerPerFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return "graded-submissions" if Path(file).name in SHARE_GRADED_SUBMISSIONS else file

        def _assign_work_unit(self, node) -> None:
            longest = min(self.workqueue, key=rank)  # the first of the lowest rank: collection order
            self.workqueue.move_to_end(longest, last=False)
            super()._assign_work_unit(node)

    return OneWorkerPerFile(config, log)
