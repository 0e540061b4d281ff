#!/usr/bin/env bash
# bench/reimport.sh — an unchanged tree imported again: how long it takes
# against the first import, and what it adds.
#
# For each of PAIRS pairs: a fresh store, `vt import TREE` (the first
# import), then `vt import TREE` again into the same archive (nothing
# changed), each with the page cache dropped first (cold) unless WARM=1.
# Prints a Markdown table of the pairs, the ratio of each pair, the median
# ratio, and the bytes the second import added to the store.
#
# Usage: bench/reimport.sh [TREE]
#   TREE   the tree to import [the kernel tree bench/compare.sh unpacks,
#          $BENCH_DIR/corpus/linux-source-*-<oldest>; else the cargo
#          registry sources]
# Environment: BENCH_DIR [/tmp/vt-bench], PAIRS [5], WARM [0],
#   VT [target/release/vt, built if missing], PAGE_REPORTING [hold: see
#   bench/lib.sh; keep: leave the VM's free page reporting as it is]
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench}
PAIRS=${PAIRS:-5}
WARM=${WARM:-0}
VT=${VT:-$ROOT/target/release/vt}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "reimport.sh: PAIRS must be a positive number" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
hold_page_reporting
TREE=$(tree_arg reimport.sh "$@")
[[ -x $VT ]] || (cd "$ROOT" && cargo build --release -q -p vt)
W=$BENCH_DIR/reimport
trap 'rm -rf "$W"; release_page_reporting' EXIT
cache() {
    sync
    if ((WARM)); then
        find "$TREE" -type f -print0 | xargs -0 -r cat >/dev/null
    else
        echo 3 >/proc/sys/vm/drop_caches
    fi
}
# timed OUTVAR CMD...: wall seconds of CMD into OUTVAR.
timed() {
    local -n out=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    out=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
}
stored() { du -sb "$W/store/data" | cut -f1; }

echo "| pair | first import s | unchanged re-import s | ratio | bytes added by the re-import |"
echo "|---:|---:|---:|---:|---:|"
ratios=()
for ((p = 1; p <= PAIRS; p++)); do
    rm -rf "$W" && mkdir -p "$W"
    log "pair $p: first import of $TREE"
    cache
    timed first "$VT" -q -S "$W/store" import "$TREE" "$W/a.vt"
    before=$(stored)
    log "pair $p: unchanged re-import"
    cache
    timed again "$VT" -q -S "$W/store" import "$TREE" "$W/a.vt"
    added=$(($(stored) - before))
    r=$(awk -v a="$again" -v b="$first" 'BEGIN{printf "%.3f", a/b}')
    ratios+=("$r")
    echo "| $p | $first | $again | $r | $added |"
done
med=$(median %.3f "${ratios[@]}")
echo
echo "Median ratio over $PAIRS pairs: $med ($( ((WARM)) && echo warm || echo cold) page cache; vt $(cd "$ROOT" && git rev-parse --short HEAD); tree $TREE); $PAGE_REPORTING_NOTE"
