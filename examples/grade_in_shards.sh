#!/usr/bin/env bash
# Grade a class in N shards at once on one machine, then merge them: the same grades as one
# `breaklab grade` over the class. Replace the loop by any scheduler (Slurm: examples/slurm/).
#
#   INBOX=inbox REPO=../course-kit OUT=grades N=4 examples/grade_in_shards.sh
#
# Each shard re-runs its own submissions' trainings, one at a time (JOBS=1): N shards use about
# N cores. Logs go to OUT/shard-K.log; the class's grades to OUT/class/grades.csv.
set -euo pipefail
INBOX="${INBOX:?set INBOX to the folder of submission tarballs}"
REPO="${REPO:?set REPO to the course repository the students cloned}"
OUT="${OUT:-grades}"
N="${N:-4}"
JOBS="${JOBS:-1}"
BREAKLAB="${BREAKLAB:-breaklab}"
GRADE_OPTIONS="${GRADE_OPTIONS:-}"   # more options for every shard, e.g. "--no-plots --timeout 900"

mkdir -p "$OUT"
pids=()
for K in $(seq 1 "$N"); do
  # shellcheck disable=SC2086  # BREAKLAB and GRADE_OPTIONS may hold several words
  $BREAKLAB grade "$INBOX" --repo "$REPO" --shard "$K/$N" --jobs "$JOBS" --out "$OUT/shard-$K" \
    $GRADE_OPTIONS > "$OUT/shard-$K.log" 2>&1 &
  pids+=("$!")
done
# A shard exits 1 when one of its tarballs could not be graded (rejected, or a grading error):
# its other grades are still good, so merge anyway; the merge says how many and exits 1 too.
for pid in "${pids[@]}"; do wait "$pid" || true; done
shards=()
for K in $(seq 1 "$N"); do shards+=("$OUT/shard-$K"); done
$BREAKLAB grade merge "${shards[@]}" --out "$OUT/class"
