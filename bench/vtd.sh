#!/usr/bin/env bash
# bench/vtd.sh — what the vtd scanner buys: backing up a vt DataDir with vt
# (a store inside a store). The inner DataDir gets FIRST imported and is
# backed up; then it gets SECOND imported too (new records appended to its
# datafiles, new index runs) and is backed up again. Reported: the bytes
# the second backup adds to the outer store, against the bytes of the new
# records in the inner datafiles, with the vtd scanner, with plain CDC and
# with restic backing up the same directory.
#
# Usage: bench/vtd.sh FIRST_DIR SECOND_DIR
#   e.g. a kernel subtree and one about a tenth of its size
# Environment: BENCH_DIR [/tmp/vt-vtd-bench], VT [target/release/vt],
#   RESTIC_RUNS [3], BENCH_TIME [1] (0 skips the timing), TIME_ROUNDS [5],
#   BIG_SOURCE [FIRST_DIR/..]: imported into a DataDir whose datafiles are
#   then imported with the scanner and with plain CDC, timed.
set -euo pipefail
export LC_ALL=C
FIRST=$(cd "${1:?usage: bench/vtd.sh FIRST_DIR SECOND_DIR}" && pwd -P)
SECOND=$(cd "${2:?usage: bench/vtd.sh FIRST_DIR SECOND_DIR}" && pwd -P)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
VT=${VT:-$ROOT/target/release/vt}
B=${BENCH_DIR:-/tmp/vt-vtd-bench}
RUNS=${RESTIC_RUNS:-3}
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
[ -x "$VT" ] || (cd "$ROOT" && cargo build --release -p vt)
rm -rf "$B" && mkdir -p "$B"

bytes() { du -sb --apparent-size "$1" | cut -f1; }
# datafile_bytes DIR: the inner DataDir's datafiles only (its records)
datafile_bytes() { find "$1/data" -name '*.vtd' -printf '%s\n' | awk '{s+=$1} END{print s+0}'; }
inner() { XDG_CONFIG_HOME=$B/inner/cfg XDG_DATA_HOME=$B/inner/data XDG_CACHE_HOME=$B/inner/cache "$VT" -q "$@"; }
IN=$B/inner/data/vt/store

log "inner DataDir: $FIRST"
mkdir -p "$B/inner/cfg"
inner import "$FIRST" first
cp -a "$IN" "$B/snap1"
r1=$(datafile_bytes "$IN") t1=$(bytes "$IN")
log "inner DataDir: + $SECOND"
inner import "$SECOND" second
cp -a "$IN" "$B/snap2"
r2=$(datafile_bytes "$IN") t2=$(bytes "$IN")
NEW=$((r2 - r1))

vt_series() { # vt_series scanner|cdc: bytes added by backup 1 and backup 2
    local home=$B/vt-$1 prev=0 out=() now
    mkdir -p "$home/cfg/vt"
    if [ "$1" = cdc ]; then printf '[scanners]\n"*.vtd" = "none"\n' > "$home/cfg/vt/vtrc"; else : > "$home/cfg/vt/vtrc"; fi
    for s in snap1 snap2; do
        rm -rf "$B/backup" && cp -a "$B/$s" "$B/backup"
        XDG_CONFIG_HOME=$home/cfg XDG_DATA_HOME=$home/data XDG_CACHE_HOME=$home/cache \
            "$VT" -q import "$B/backup" store
        now=$(bytes "$home/data/vt/store")
        out+=($((now - prev)))
        prev=$now
    done
    rm -rf "$home"
    echo "${out[@]}"
}
restic_series() {
    local repo=$B/restic-$1 prev=0 out=() now
    export RESTIC_PASSWORD=bench
    restic init -q -r "$repo" >/dev/null
    for s in snap1 snap2; do
        rm -rf "$B/backup" && cp -a "$B/$s" "$B/backup"
        restic -q -r "$repo" backup "$B/backup" >/dev/null
        now=$(bytes "$repo")
        out+=($((now - prev)))
        prev=$now
    done
    rm -rf "$repo"
    echo "${out[@]}"
}
log "outer store, vtd scanner"
read -r -a S <<<"$(vt_series scanner)"
log "outer store, plain CDC"
read -r -a C <<<"$(vt_series cdc)"
RR=()
for k in $(seq "$RUNS"); do log "restic $k/$RUNS"; RR+=("$(restic_series "$k")"); done
rv=$(for r in "${RR[@]}"; do read -r -a x <<<"$r"; echo "${x[1]}"; done | sort -g)
rmed=$(median %d $rv)
echo "## A DataDir backed up with vt: $(basename "$FIRST"), then + $(basename "$SECOND")"
echo
echo "Inner DataDir: $t1 bytes after the first import ($r1 in datafiles), $t2 after the second ($r2);"
echo "new records: $NEW bytes. Outer store and restic repository counted whole."
echo
echo "| | vt, vtd scanner | vt, plain CDC | restic $(restic version | cut -d' ' -f2) median (min–max of $RUNS) |"
echo "|---|---:|---:|---:|"
printf '| first backup | %d | %d | %s |\n' "${S[0]}" "${C[0]}" \
    "$(median %d $(for r in "${RR[@]}"; do read -r -a x <<<"$r"; echo "${x[0]}"; done))"
printf '| second backup | %d | %d | %d (%d–%d) |\n' "${S[1]}" "${C[1]}" "$rmed" "$(head -1 <<<"$rv")" "$(tail -1 <<<"$rv")"
printf '| second / new records | %.3f | %.3f | %.3f |\n' "$(echo "${S[1]} / $NEW" | bc -l)" \
    "$(echo "${C[1]} / $NEW" | bc -l)" "$(echo "$rmed / $NEW" | bc -l)"

[ "${BENCH_TIME:-1}" = 0 ] && exit 0

# ---- time: a DataDir's datafiles imported with the wasm scanner vs plain CDC
BIG_SOURCE=${BIG_SOURCE:-$FIRST/..}
TIME_ROUNDS=${TIME_ROUNDS:-5}
log "a DataDir of $BIG_SOURCE"
XDG_CONFIG_HOME=$B/big/cfg XDG_DATA_HOME=$B/big/data XDG_CACHE_HOME=$B/big/cache "$VT" -q import "$BIG_SOURCE" big
BIGDATA=$B/big/data/vt/store/data
cat "$BIGDATA"/* > /dev/null
echo
echo "## $(($(datafile_bytes "$B/big/data/vt/store") >> 20)) MiB of datafiles, import wall time (median of $TIME_ROUNDS, warm page cache)"
echo
scanner_timing vtd "*.vtd" "$BIGDATA" "$TIME_ROUNDS"
