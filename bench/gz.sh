#!/usr/bin/env bash
# bench/gz.sh — what the gz scanner buys: bytes a new version of an
# rsyncable .tar.gz adds to the store, with vt's gz scanner, with vt's plain
# CDC and with restic; then the time cost of the wasm scanner on 1 GiB of
# gzip.
#
# Usage: bench/gz.sh SOURCE_DIR
#   SOURCE_DIR  a source tree (e.g. a linux-source subtree); v1 is it as
#               `tar | gzip --rsyncable`, v2 the same tree with EDITS files
#               edited (a line inserted at the middle byte), tarred and
#               gzipped the same way.
# Environment: BENCH_DIR [/tmp/vt-gz-bench], VT [target/release/vt],
#   EDITS [40], GZIP_CMD ["gzip --rsyncable -n"] (e.g. "pigz --rsyncable -n"),
#   RESTIC_RUNS [3]: fresh restic repositories (each draws its own chunker
#   polynomial: median, minimum and maximum are reported),
#   BENCH_TIME [1]: 0 skips the 1 GiB timing, TIME_ROUNDS [5] imports timed
#   in each mode, BIG_SOURCE [SOURCE_DIR/..]: what the 1 GiB file is made of.
set -euo pipefail
export LC_ALL=C
SRC=$(cd "${1:?usage: bench/gz.sh SOURCE_DIR}" && pwd -P)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
VT=${VT:-$ROOT/target/release/vt}
B=${BENCH_DIR:-/tmp/vt-gz-bench}
EDITS=${EDITS:-40}
GZIP_CMD=${GZIP_CMD:-gzip --rsyncable -n}
RUNS=${RESTIC_RUNS:-3}
TIME_ROUNDS=${TIME_ROUNDS:-5}
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
case $GZIP_CMD in pigz*) command -v pigz >/dev/null || apt-get install -y -qq pigz >/dev/null ;; esac
[ -x "$VT" ] || (cd "$ROOT" && cargo build --release -p vt)
rm -rf "$B" && mkdir -p "$B/v"

tarball() { # tarball DIR OUT: a reproducible tar of DIR, compressed
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf - . | $GZIP_CMD > "$2"
}
log "v1: $SRC as tar | $GZIP_CMD"
tarball "$SRC" "$B/v/v1.tar.gz"
cp -a "$SRC" "$B/tree"
mapfile -t files < <(cd "$B/tree" && find . -type f -size +2k -printf '%P\n' | sort)
step=$((${#files[@]} / EDITS))
((step >= 1)) || step=1
edited=0
for ((i = step / 2; i < ${#files[@]} && edited < EDITS; i += step)); do
    f=$B/tree/${files[i]}
    h=$(($(stat -c %s "$f") / 2))
    { head -c "$h" "$f"; printf '\n/* vt-bench gz v2: edit %d */\n' "$i"; tail -c +"$((h + 1))" "$f"; } > "$f.tmp"
    mv "$f.tmp" "$f"
    edited=$((edited + 1))
done
log "v2: $edited files edited"
tarball "$B/tree" "$B/v/v2.tar.gz"
rm -rf "$B/tree"

bytes() { du -sb --apparent-size "$1" | cut -f1; }

vt_series() { # vt_series scanner|cdc: bytes added by v1 and by v2
    local home=$B/vt-$1 prev=0 out=() now
    mkdir -p "$home/cfg/vt" "$home/in"
    if [ "$1" = cdc ]; then printf '[scanners]\n"*.gz" = "none"\n' > "$home/cfg/vt/vtrc"; else : > "$home/cfg/vt/vtrc"; fi
    for v in v1 v2; do
        cp "$B/v/$v.tar.gz" "$home/in/src.tar.gz"
        XDG_CONFIG_HOME=$home/cfg XDG_DATA_HOME=$home/data XDG_CACHE_HOME=$home/cache \
            "$VT" -q import "$home/in" gz
        now=$(bytes "$home/data/vt/store") # datafiles, index, archives, dictionaries
        out+=($((now - prev)))
        prev=$now
    done
    echo "${out[@]}"
}
restic_series() { # restic_series K
    local repo=$B/restic-$1 in=$B/restic-in prev=0 out=() now
    export RESTIC_PASSWORD=bench
    mkdir -p "$in"
    restic init -q -r "$repo" >/dev/null
    for v in v1 v2; do
        cp "$B/v/$v.tar.gz" "$in/src.tar.gz"
        restic -q -r "$repo" backup "$in" >/dev/null
        now=$(bytes "$repo")
        out+=($((now - prev)))
        prev=$now
    done
    rm -rf "$repo"
    echo "${out[@]}"
}
log "vt with the gz scanner"
read -r -a S <<<"$(vt_series scanner)"
log "vt, plain CDC"
read -r -a C <<<"$(vt_series cdc)"
RR=()
for k in $(seq "$RUNS"); do log "restic $k/$RUNS"; RR+=("$(restic_series "$k")"); done
rstat() { # rstat I min|median|max
    local vals
    vals=$(for r in "${RR[@]}"; do read -r -a x <<<"$r"; echo "${x[$1]}"; done | sort -g)
    case $2 in min) head -1 <<<"$vals" ;; max) tail -1 <<<"$vals" ;; median) median %d $vals ;; esac
}
echo "## gz dedup: bytes added to the store ($(basename "$SRC"), $GZIP_CMD)"
echo
echo "v1 $(stat -c %s "$B/v/v1.tar.gz") bytes, v2 $(stat -c %s "$B/v/v2.tar.gz") bytes ($edited files edited)."
echo "vt: the whole DataDir (datafiles, index, archives, dictionaries); restic $(restic version | cut -d' ' -f2): the whole repository, median (min–max) of $RUNS."
echo
echo "| version | vt, gz scanner | vt, plain CDC | restic | scanner / plain CDC | scanner / restic median |"
echo "|---|---:|---:|---:|---:|---:|"
for i in 0 1; do
    printf '| v%d | %d | %d | %d (%d–%d) | %.2f | %.2f |\n' $((i + 1)) "${S[$i]}" "${C[$i]}" \
        "$(rstat $i median)" "$(rstat $i min)" "$(rstat $i max)" \
        "$(echo "${S[$i]} / ${C[$i]}" | bc -l)" "$(echo "${S[$i]} / $(rstat $i median)" | bc -l)"
done
rm -rf "$B"/vt-*

[ "${BENCH_TIME:-1}" = 0 ] && exit 0

# ---- time: 1 GiB of rsyncable gzip, the wasm scanner vs plain CDC
big=$B/big/big.tar.gz
mkdir -p "$B/big"
BIG_SOURCE=${BIG_SOURCE:-$SRC/..}
log "1 GiB of gzip from $BIG_SOURCE"
tar --sort=name -C "$BIG_SOURCE" -cf - . | $GZIP_CMD | head -c $((1 << 30)) > "$big"
[ "$(stat -c %s "$big")" -eq $((1 << 30)) ] || log "note: $BIG_SOURCE gives only $(stat -c %s "$big") bytes of gzip"
cat "$big" > /dev/null
echo
echo "## $(($(stat -c %s "$big") >> 20)) MiB of gzip, import wall time (median of $TIME_ROUNDS, warm page cache)"
echo
scanner_timing gz "*.gz" "$B/big" "$TIME_ROUNDS"
