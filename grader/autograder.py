"""A Gradescope autograder bundle: each submission graded by breaklab in Gradescope's container.

Gradescope's format (gradescope-autograders.readthedocs.io, "Autograder Specifications"): a zip
with `setup.sh` and an executable `run_autograder` at its root. The zip is extracted into
/autograder/source and setup.sh runs once, as root, when the image is built; run_autograder runs
once per submission, with the student's upload in /autograder/submission, and must write
/autograder/results/results.json. The bundle holds

    setup.sh            installs Python, the pinned torch/torchvision and the other requirements
                        into /autograder/venv, and clones the course repository
    run_autograder      grades the one tarball in submission/ with `breaklab grade --format
                        gradescope` and copies its results.json; with no tarball, or when the
                        grader itself fails, it still writes a results.json (score 0, the reason)
    requirements.txt    the pinned versions of the grading environment
    course.bundle       the course repository students cloned (`git bundle --all`): every base
                        commit a submission can name
    breaklab/           the grader: this checkout's files (with solutions/, without tests/,
                        benchmarks/ and docs/), run from source with PYTHONPATH
    bundle.json         what was packed: the course repository's HEAD, this checkout's commit,
                        the pinned versions

The zip's entries are sorted and dated 1980-01-01, so the same inputs give the same bytes.
run_autograder reads BREAKLAB_AUTOGRADER_ROOT (default /autograder) and BREAKLAB_AUTOGRADER_PYTHON
(default ROOT/venv/bin/python), so that it can be tried on a fake /autograder tree in a folder.
"""
from __future__ import annotations

import importlib.metadata
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

from breaklab.grader import gitrepo

LEFT_OUT = ("tests/", "benchmarks/", "docs/", "examples/", ".ci/", ".github/")
REQUIREMENTS = ("numpy", "matplotlib", "click", "tqdm")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (network allowed).
set -euo pipefail
SRC=/autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip git util-linux ca-certificates
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q --upgrade pip
/autograder/venv/bin/pip install -q {torch_pins} --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install -q -r "$SRC/requirements.txt"
rm -rf /autograder/course
git clone -q "$SRC/course.bundle" /autograder/course
chmod +x "$SRC/run_autograder"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this once per submission. It grades the one breaklab tarball the student
# uploaded and writes results/results.json, whatever happens.
set -u
ROOT="${BREAKLAB_AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
PY="${BREAKLAB_AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
RESULTS="$ROOT/results"
mkdir -p "$RESULTS"

fail() {  # a results.json with score 0 and the reason, for the student to read
  "$PY" - "$RESULTS/results.json" "$1" <<'EOF' || printf '{"score": 0, "output": "the autograder could not run"}\n' > "$RESULTS/results.json"
import json, sys
json.dump({"score": 0.0, "output": sys.argv[2], "visibility": "visible", "tests": []}, open(sys.argv[1], "w"), indent=2)
EOF
  exit 0
}

shopt -s nullglob
tarballs=("$ROOT"/submission/*.tgz "$ROOT"/submission/*.tar.gz)
if [ "${#tarballs[@]}" -ne 1 ]; then
  fail "Upload exactly one tarball made by breaklab submit (submission_BREAK_SEED_ID.tgz); found ${#tarballs[@]}."
fi
if [ ! -d "$ROOT/course/.git" ]; then
  git clone -q "$SRC/course.bundle" "$ROOT/course" || fail "The autograder could not unpack the course repository; tell the instructor."
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
extra=()
# Gradescope's container is itself the throwaway machine: where the grader asks for a flag to run
# student code without OS isolation, give it.
if PYTHONPATH="$SRC/breaklab" "$PY" -m breaklab grade --help 2>/dev/null | grep -q -- "--no-isolation"; then
  extra+=(--no-isolation)
fi
PYTHONPATH="$SRC/breaklab" "$PY" -m breaklab grade "${tarballs[0]}" --repo "$ROOT/course" \
  --out "$WORK/grades" --format json,gradescope --no-plots --timeout "${BREAKLAB_AUTOGRADER_TIMEOUT:-900}" ${extra[@]+"${extra[@]}"}
echo "breaklab grade exited with status $?"
if [ -f "$WORK/grades/results.json" ]; then
  cp "$WORK/grades/results.json" "$RESULTS/results.json"
else
  fail "The grader stopped before writing a result; tell the instructor (the autograder log has the details)."
fi
"""


class BundleError(Exception):
    """Why the bundle cannot be made; the message says what to do."""


def pinned(name: str) -> str:
    try:
        return f"{name}=={importlib.metadata.version(name).split('+')[0]}"
    except importlib.metadata.PackageNotFoundError:
        return name


def grader_files(checkout: Path) -> list[str]:
    """The grader's files: what git sees in the checkout (tracked, and new files not ignored) that
    exist on disk, less tests, benchmarks and docs."""
    out = gitrepo.git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], checkout).stdout
    names = sorted({n for n in out.decode().split("\0") if n})
    return [n for n in names if not n.startswith(LEFT_OUT) and (checkout / n).is_file()
            and not (checkout / n).is_symlink()]


def build_bundle(out: Path, course: Path, checkout: Path) -> dict[str, object]:
    """Write the autograder zip to out; return what bundle.json records."""
    for folder, what in ((course, "the course repository (--repo)"), (checkout, "the grader's checkout")):
        if gitrepo.toplevel(folder) is None:
            raise BundleError(f"{folder} is not a git repository: pass {what}")
    if not (checkout / "solutions").is_dir():
        raise BundleError(f"{checkout} has no solutions/: build the bundle from the instructor's checkout, "
                          "not from the student kit")
    head = gitrepo.resolve_commit(course, "HEAD")
    if head is None:
        raise BundleError(f"{course} has no commit: pass the repository the students cloned")
    out.parent.mkdir(parents=True, exist_ok=True)
    bundle_file = out.with_name(f".{out.name}.course.bundle")
    try:
        gitrepo.git(["bundle", "create", "--quiet", str(bundle_file.resolve()), "--all"], course, timeout=600)
        course_bundle = bundle_file.read_bytes()
    finally:
        bundle_file.unlink(missing_ok=True)
    torch_pins = " ".join(pinned(n) for n in ("torch", "torchvision"))
    info = {"format": "breaklab-gradescope-autograder", "version": 1, "course_head": head,
            "grader_commit": gitrepo.resolve_commit(checkout, "HEAD"),
            "requirements": [pinned(n) for n in ("torch", "torchvision", *REQUIREMENTS)]}
    entries: dict[str, tuple[bytes, int]] = {
        "setup.sh": (SETUP_SH.format(torch_pins=torch_pins).encode(), 0o755),
        "run_autograder": (RUN_AUTOGRADER.encode(), 0o755),
        "requirements.txt": (("\n".join(pinned(n) for n in REQUIREMENTS) + "\n").encode(), 0o644),
        "course.bundle": (course_bundle, 0o644),
        "bundle.json": ((json.dumps(info, indent=2) + "\n").encode(), 0o644),
    }
    for name in grader_files(checkout):
        path = checkout / name
        mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
        entries[f"breaklab/{name}"] = (path.read_bytes(), mode)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            data, mode = entries[name]
            zi = zipfile.ZipInfo(name, ZIP_DATE)
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3  # unix: the permission bits are read from external_attr
            zf.writestr(zi, data)
    from breaklab.atomic import atomic_write_bytes

    atomic_write_bytes(out, buf.getvalue())
    return {**info, "files": len(entries), "bytes": len(buf.getvalue())}


def extract(zip_path: Path, dest: Path) -> None:
    """Unpack a bundle the way `unzip` does, keeping the executable bits (zipfile alone drops
    them): used to try the bundle on a fake /autograder tree."""
    with zipfile.ZipFile(zip_path) as zf:
        for zi in zf.infolist():
            target = (dest / zi.filename).resolve()
            if not str(target).startswith(str(dest.resolve()) + os.sep):
                raise BundleError(f"{zi.filename} leaves the folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(zi))
            mode = (zi.external_attr >> 16) & 0o777
            os.chmod(target, mode or 0o644)


def run_local(root: Path, python: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run the extracted bundle's run_autograder against root (a fake /autograder)."""
    env = {**os.environ, "BREAKLAB_AUTOGRADER_ROOT": str(root), "BREAKLAB_AUTOGRADER_PYTHON": python}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(root / "source" / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout)
