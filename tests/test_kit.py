"""The student kit leaks nothing: no reference fix's line in a break module, no BUG/Fix comment,
no explanatory docstring, no documentation pointing at the answers; and grading inside a kit is
one clear line, never a traceback.

Instructor-only (it reads solutions/): `breaklab kit` leaves this file out.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from breaklab.breaks import BREAK_NAMES, FAULT_NAMES, REGISTRY
from breaklab.solutions import SOLUTIONS_DIR, fix_patch, names, rubric

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    from breaklab.commands.kit import make_kit

    out = tmp_path_factory.mktemp("kit") / "course-kit"
    make_kit(out, rev="HEAD", repo=ROOT, make_git=False)
    return out


def patched_files(name: str) -> list[str]:
    """The files a reference fix changes."""
    return [line[4:].removeprefix("b/") for line in fix_patch(name).decode().splitlines()
            if line.startswith("+++ ")]


def fix_lines(name: str) -> dict[str, list[str]]:
    """The lines a reference fix brings in (the + lines of fix.patch, stripped), per file. A line
    the fix only moves (it is also a - line of the same file) is left out: the module must carry
    it, and where it stands tells nothing a diff against breaks/base.py would not."""
    added: dict[str, list[str]] = {}
    removed: dict[str, set[str]] = {}
    path = None
    for line in fix_patch(name).decode().splitlines():
        if line.startswith("+++ "):
            path = line[4:].removeprefix("b/")
        elif line.startswith("---"):
            continue
        elif line[:1] in "+-" and path and line[1:].strip():
            (added.setdefault(path, []).append(line[1:].strip()) if line[0] == "+"
             else removed.setdefault(path, set()).add(line[1:].strip()))
    return {path: [line for line in lines if line not in removed.get(path, set())]
            for path, lines in added.items()}


def carries(source: str, lines: list[str]) -> list[str]:
    present = {line.strip() for line in source.splitlines()}
    return [line for line in lines if line in present]


@pytest.mark.parametrize("name", sorted(FAULT_NAMES))
def test_no_break_module_carries_its_reference_fix(kit, name):
    """Scoped to the fix's own file: a clean line like `return lr` is also in breaks/base.py,
    where the clean behaviour belongs. Controls have no fix to carry (nothing to undo)."""
    assert patched_files(name) == [f"breaks/{name}.py"]
    for path, lines in fix_lines(name).items():
        source = (kit / path).read_text()
        assert carries(source, lines) == [], (path, lines)
        # The check is not vacuous: the same module with the fix applied carries them.
        fixed = subprocess.run(["git", "apply", "--include", path, "-"], cwd=kit, input=fix_patch(name),
                               capture_output=True)
        assert fixed.returncode == 0, fixed.stderr
        try:
            assert carries((kit / path).read_text(), lines) == lines
        finally:
            (kit / path).write_text(source)


def test_no_bug_or_fix_comment_anywhere_in_the_kit(kit):
    hits = []
    for path in sorted(kit.rglob("*.py")):
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if re.search(r"#.*(\bBUG\b|\bFix\s*:)", line):
                hits.append(f"{path.relative_to(kit)}:{n}: {line.strip()}")
    assert hits == []
    for name in BREAK_NAMES:
        text = (kit / "breaks" / f"{name}.py").read_text()
        assert not re.search(r"\bfix|\bbug\b|should|instead of", text, re.I), name


@pytest.mark.parametrize("name", sorted(BREAK_NAMES))
def test_break_modules_are_one_neutral_class_and_nothing_is_lost(kit, name):
    tree = ast.parse((kit / "breaks" / f"{name}.py").read_text())
    module_doc = ast.get_docstring(tree) or ""
    assert "\n" not in module_doc and len(module_doc) < 100
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef)]
    assert ast.get_docstring(cls) is None and [m.name for m in methods] == [REGISTRY[name].hook]
    assert ast.get_docstring(methods[0]) is None
    # What the module used to explain is in solutions/, next to the fix.
    notes = (SOLUTIONS_DIR / name / "NOTES.md").read_text()
    assert "## What the bug is" in notes and "BUG:" in notes
    # The attributes `breaklab list` shows say what the break does, not how to undo it.
    cls_obj = REGISTRY[name]
    shown = f"{cls_obj.description} {cls_obj.symptom}"
    assert "instead of" not in shown
    if not cls_obj.control:  # a control has no fix.patch: nothing to undo
        assert carries(shown, fix_lines(name).get(f"breaks/{name}.py", [])) == []


def test_the_kit_leaves_out_private_files_and_every_pointer_to_the_answers(kit):
    assert not (kit / "solutions").exists() and not (kit / "docs" / "GRADING.md").exists()
    assert not (kit / "tests" / "test_kit.py").exists()
    for path in sorted(kit.rglob("*.md")):
        text = path.read_text()
        assert not re.search(r"solutions|WRITEUP|NOTES\.md|instructor-only", text), path.relative_to(kit)
    readme = (kit / "README.md").read_text()
    assert "git clone" in readme and "course-kit" in readme  # the student works in a clone of the kit
    # The repository's own README points at solutions/ only inside the passages the kit drops.
    from breaklab.commands.kit import student_copy

    full = (ROOT / "README.md").read_text()
    assert "solutions/" in full and "solutions" not in student_copy("README.md", full)
    # The break table's generator prints its fenced note with the table, and README.md has it.
    from breaklab.solutions.catalogue import MADE_BY

    assert MADE_BY in full and student_copy("x.md", MADE_BY + "\n") == ""


def test_an_unpaired_marker_is_refused_not_handed_out():
    from breaklab.commands.kit import KitError, student_copy

    kept = student_copy("a.md", "a\n<!-- instructor-only -->\nsecret\n<!-- /instructor-only -->\nb\n")
    assert kept == "a\nb\n"
    with pytest.raises(KitError, match="without its pair"):
        student_copy("a.md", "a\n<!-- instructor-only -->\nsecret\n")


def test_the_submit_checks_allow_what_every_rubric_allows():
    from breaklab.presubmit import allowed_scope

    # Every bug has a reference fix and a rubric; a control has neither (there is nothing to fix).
    assert names() == sorted(FAULT_NAMES)
    for name in sorted(set(BREAK_NAMES) - set(FAULT_NAMES)):
        assert not (SOLUTIONS_DIR / name / "rubric.json").exists(), name
    for name in names():
        fix = rubric(name)["fix"]
        assert allowed_scope(name) == (fix["allowed_files"], fix["allowed_functions"])


def test_grade_inside_a_kit_is_one_line_and_exits_non_zero(kit, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.tgz").write_bytes(b"not a submission")
    proc = subprocess.run([sys.executable, "-m", "breaklab", "grade", str(inbox), "--out", str(tmp_path / "out")],
                          cwd=kit, env={**os.environ, "PYTHONPATH": str(kit)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "no solutions/" in errors[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_kits_pyproject_names_only_folders_the_kit_has(kit):
    """`pip install -e .` in a kit: setuptools refuses a package directory that is missing."""
    import tomllib

    config = tomllib.loads((kit / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "solutions" not in (kit / "pyproject.toml").read_text()
    for package in config["packages"]:
        folder = config["package-dir"].get(package, package.replace(".", "/"))
        assert (kit / folder).is_dir(), package
