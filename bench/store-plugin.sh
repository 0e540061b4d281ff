#!/usr/bin/env bash
# bench/store-plugin.sh — a tree imported into the bundled WebAssembly
# store scheme `store-dir` (one file per block, through the sandbox)
# against the same tree imported into a native DataDir, taking turns,
# page cache dropped before each; then each exported and compared.
#
# Usage: bench/store-plugin.sh [TREE]
#   TREE   [the oldest kernel tree under $BENCH_DIR/corpus, as
#          bench/compare.sh unpacks it; else the cargo registry sources]
# Environment: BENCH_DIR [/tmp/vt-bench], ROUNDS [3],
#   VT [target/release/vt, built if missing], PAGE_REPORTING [hold: see
#   bench/lib.sh; keep: leave the VM's free page reporting as it is]
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench}
ROUNDS=${ROUNDS:-3}
VT=${VT:-$ROOT/target/release/vt}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "store-plugin.sh: ROUNDS must be a positive number" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
hold_page_reporting
TREE=$(tree_arg store-plugin.sh "$@")
[[ -x $VT ]] || (cd "$ROOT" && cargo build --release -q -p vt)
W=$BENCH_DIR/store-plugin
trap 'rm -rf "$W"; release_page_reporting' EXIT
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
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

echo "| round | DataDir import s | store-dir import s | ratio | DataDir export s | store-dir export s | exact |"
echo "|---:|---:|---:|---:|---:|---:|---|"
ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
    rm -rf "$W" && mkdir -p "$W"
    printf '[stores.dir]\ntype = "store-dir"\npreopen = "%s"\n' "$W/usb" >"$W/vtrc"
    run() { "$VT" -q -f "$W/vtrc" "$@"; }
    imp_dd() { cold; timed dd_i run -S "$W/dd" import "$TREE" snap; }
    imp_sd() { cold; timed sd_i run -S dir import "$TREE" snap; }
    log "round $r: imports of $TREE"
    if ((r % 2)); then imp_dd; imp_sd; else imp_sd; imp_dd; fi
    log "round $r: exports"
    cold; timed dd_e run -S "$W/dd" export snap "$W/out-dd"
    cold; timed sd_e run -S dir export snap "$W/out-sd"
    exact=yes
    diff -r --no-dereference "$TREE" "$W/out-sd" >/dev/null || exact=NO
    rt=$(awk -v a="$sd_i" -v b="$dd_i" 'BEGIN{printf "%.2f", a/b}')
    ratios+=("$rt")
    echo "| $r | $dd_i | $sd_i | $rt | $dd_e | $sd_e | $exact |"
done
echo
echo "Median import ratio (store-dir / DataDir) over $ROUNDS rounds: $(median %.2f "${ratios[@]}") (vt $(cd "$ROOT" && git rev-parse --short HEAD); tree $TREE; $(nproc) cores); $PAGE_REPORTING_NOTE"
