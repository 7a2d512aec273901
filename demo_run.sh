#!/usr/bin/env bash
# demo_run.sh SEED BREAK [trainer options...]
#
# Train with one break switched on (BREAK may be "none"), then pack the run into a
# byte-reproducible tarball with a .sha256 that `sha256sum -c` accepts.
#
#   ./demo_run.sh 42 huge_lr            -> runs/huge_lr_42/, run_huge_lr_42.tgz(.sha256)
#   ./demo_run.sh 7 none --epochs 1     -> extra options go to trainer.py (see --help)
#   ./demo_run.sh 5 mystery             -> a break (or none) picked from the seed, name hidden;
#                                          diagnose it, then: breaklab reveal runs/mystery_5 --guess NAME
#
# A break that makes training diverge is the expected outcome: the script still exits 0.
# Time on the bundled sample: 8-9 s of CPU time, 2.6-2.8 s of it importing torch (measured on a
# 2-core x86-64; the wall time is close to that on an idle machine, 30-50 s on a busy one).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-$(command -v python || command -v python3)}"

usage() {
    echo "usage: ./demo_run.sh SEED BREAK [trainer options...]" >&2
    echo "  SEED   a non-negative integer, e.g. 42" >&2
    echo "  BREAK  none, mystery, or one of the breaks listed by: breaklab list" >&2
    echo "  takes 8-9 s of CPU time on the bundled sample, 2.6-2.8 s of it importing torch" >&2
    exit 2
}

if [[ $# -lt 2 ]]; then usage; fi
SEED="$1"; BREAK="$2"; shift 2
if ! [[ "$SEED" =~ ^[0-9]+$ ]] || (( ${#SEED} > 10 )) || (( 10#$SEED > 4294967295 )); then
    echo "error: SEED must be an integer from 0 to 4294967295, got '$SEED'" >&2
    exit 2
fi
if ! [[ "$BREAK" =~ ^[a-z][a-z0-9_]*$ ]]; then
    echo "error: BREAK must be a break name such as huge_lr (see: breaklab list), got '$BREAK'" >&2
    exit 2
fi
# A mistyped break is answered at once, from the breaks' source (breaklab/catalogue.py), before torch loads
# (seconds) and before any lock or folder exists.
(cd "$HERE" && "$PY" -m breaklab.catalogue "$BREAK") || exit 2
SEED=$((10#$SEED))
# The seed, the break and the folders come from the arguments above and name the tarball:
# an extra option must not contradict them.
for arg in "$@"; do
    case "$arg" in
        --seed|--seed=*|--break|--break=*|--out|--out=*|--resume|--resume=*)
            echo "error: ${arg%%=*} is set by demo_run.sh itself (SEED, BREAK, runs/BREAK_SEED);" \
                 "call python trainer.py directly for other values" >&2
            exit 2 ;;
    esac
done

NAME="${BREAK}_${SEED}"
# A tree with a local fix (uncommitted changes to breaks/ or trainer.py, by git) writes beside the
# broken run instead of over it, so that `breaklab compare` can show both. Without git: not seen.
# BREAKLAB_DETECT_FIX=0 turns this off (the test suite does, for a developer's uncommitted edits).
if [[ "$BREAK" != none && "${BREAKLAB_DETECT_FIX:-1}" != 0 ]] && git -C "$HERE" rev-parse -q --verify HEAD >/dev/null 2>&1 \
        && ! git -C "$HERE" diff --quiet HEAD -- breaks trainer.py 2>/dev/null; then
    echo "local changes to breaks/ or trainer.py: writing runs/${NAME}_fixed/ and run_${NAME}_fixed.tgz (runs/${NAME}/ is kept)" >&2
    NAME="${NAME}_fixed"
fi
OUT="runs/${NAME}"
TARBALL="run_${NAME}.tgz"

# Two demo runs with the same SEED and BREAK write the same folder and tarball: the second waits
# for the first. The lock is held on file descriptor 9 until this script (and its children) exit,
# also when killed. Runs with other names do not wait. The holder removes the lock file on its way
# out (a usage error leaves nothing behind); a waiter that then gets the lock of a removed file
# sees that the name now points elsewhere (or nowhere) and locks again (exit status 3).
mkdir -p runs
LOCK="runs/.${NAME}.lock"
while :; do
    exec 9>"$LOCK"
    status=0
    "$PY" -c '
import fcntl, os, sys
try:
    fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print(f"waiting for another demo_run.sh that is writing {sys.argv[1]} ...", file=sys.stderr)
    fcntl.flock(9, fcntl.LOCK_EX)
try:
    current = os.stat(sys.argv[2]).st_ino
except FileNotFoundError:
    current = None
sys.exit(0 if current == os.fstat(9).st_ino else 3)
' "$OUT" "$LOCK" || status=$?
    if (( status == 0 )); then break; fi
    if (( status != 3 )); then exit "$status"; fi
done
trap 'rm -f "$LOCK"' EXIT

# 1. Train. Extra options (--epochs, --lr, --amp, ...) pass through to the trainer.
"$PY" "$HERE/trainer.py" --seed "$SEED" --break "$BREAK" --out "$OUT" "$@"

# 2. Pack metrics, checkpoint, SHA-256, meta.json and this exact command.
COMMAND="./demo_run.sh $SEED $BREAK${*:+ $*}"
"$PY" -m breaklab.commands.pack "$OUT" --tarball "$TARBALL" --name "run_${NAME}" \
    --command "$COMMAND" \
    --command "python trainer.py --seed $SEED --break $BREAK --out $OUT${*:+ $*}"
