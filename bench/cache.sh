#!/usr/bin/env bash
# bench/cache.sh — a file cache in front of a vt serve: a large snapshot
# read through cache(limit=64MiB) twice (the cache directory's size after
# each), and a 50 MB file read twice (what the server was asked each time,
# as vt -v reports it from the ProgressStore behind the cache).
#
# Usage: bench/cache.sh [TREE]   [default: the linux-source v2 tree that
#        bench/remote.sh fetched into $BENCH_DIR/corpus]
# Environment: BENCH_DIR [/tmp/vt-bench]; VT [target/release/vt]; LIMIT [64MiB].
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench}
VT=${VT:-$repo/target/release/vt}
LIMIT=${LIMIT:-64MiB}
work=$BENCH_DIR/cache
tree=${1:-$(ls -d "$BENCH_DIR"/corpus/linux-source-*-[0-9]* 2>/dev/null | grep -v '\.ready$' | sort -V | tail -1)}
[[ -d $tree ]] || { echo "no tree: run bench/remote.sh first or name one" >&2; exit 2; }
[[ -x $VT ]] || (cd "$repo" && cargo build --release -q -p vt)

rm -rf "$work"
mkdir -p "$work/big"
export XDG_CONFIG_HOME=$work/cfg XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/xdg-cache
"$VT" -S "$work/server" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 100); do
    spec=$(sed -n 's/^vt: serving default on \(tcp:[0-9.:]*\).*/\1/p' "$work/serve.log")
    [[ -n $spec ]] && break
    sleep 0.1
done
head -c 50000000 /dev/urandom >"$work/big/file50"
"$VT" -q -S "$spec" import "$tree" tree
"$VT" -q -S "$spec" import "$work/big" big
cache="cache(limit=$LIMIT,dir=$work/cache):$spec"
bytes=$(du -sb "$tree" | cut -f1)

echo "## A file cache of $LIMIT in front of a vt serve ($(date -u +%F))"
echo
echo "vt $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'); snapshot: ${tree##*/} ($bytes bytes)"
echo
echo "| read | wall s | cache dir (du -sb) | server requests | blocks fetched from the server |"
echo "|---|---:|---:|---:|---:|"
row() {
    local what=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    "$VT" -v -S "$cache" "$@" 2>"$work/run.log" >/dev/null
    t1=$(date +%s.%N)
    local line
    line=$(grep ' requests (' "$work/run.log" | tail -1)
    printf '| %s | %.1f | %s | %s | %s |\n' "$what" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
        "$(du -sb "$work/cache" | cut -f1)" \
        "$(sed -n 's/.*: \([0-9]*\) requests (.*/\1/p' <<<"$line")" \
        "$(sed -n 's/.* requests (\([0-9]*\) blocks fetched.*/\1/p' <<<"$line")"
}
rm -rf "$work/out1" "$work/out2"
row "snapshot, first export" export tree "$work/out1"
row "snapshot, second export" export tree "$work/out2"
diff -r "$tree" "$work/out2" >/dev/null && echo "| (second export identical to the tree) | | | | |"
row "50 MB file, first cat" cat big file50
row "50 MB file, second cat" cat big file50
