#!/usr/bin/env bash
# Grade a class on a Slurm cluster: an array of N shards, then the merge.
#
#   INBOX=/shared/inbox REPO=/shared/course-kit OUT=/shared/grades N=16 examples/slurm/submit.sh
#
# The merge waits for every task to end (afterany, not afterok: a shard exits 1 when one of its
# tarballs could not be graded, and its other grades still count). OUT must be on a file system
# every node sees.
set -euo pipefail
: "${INBOX:?set INBOX}" "${REPO:?set REPO}"
OUT="${OUT:-grades}"
N="${N:-8}"
SBATCH="${SBATCH:-sbatch}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$OUT/logs"
array=$($SBATCH --parsable --array=1-"$N" --output="$OUT/logs/shard-%a.log" \
  --export=ALL,INBOX="$INBOX",REPO="$REPO",OUT="$OUT" "$HERE/grade_array.sbatch")
$SBATCH --parsable --dependency=afterany:"${array%%;*}" --output="$OUT/logs/merge.log" \
  --export=ALL,OUT="$OUT",N="$N" "$HERE/merge.sbatch"
echo "array job ${array%%;*} ($N shards), then the merge into $OUT/class"
