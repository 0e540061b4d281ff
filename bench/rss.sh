#!/usr/bin/env bash
# Peak resident memory of `vt import` into a DataDir that already holds
# many blocks (default 10 million): the index must stay on disk.
#
#   bash bench/rss.sh [BLOCKS] [CORPUS_DIR]
#
# Without CORPUS_DIR it imports 100,000 new small files of random bytes
# (100,000 new blocks: every look-up misses and every block is inserted).
# The filled store is kept in $BENCH_DIR (default /tmp/vt-rss) and reused
# by later runs if it already holds at least BLOCKS blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=${1:-10000000}
work=${BENCH_DIR:-/tmp/vt-rss}
corpus=${2:-}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release -q -p vt -p vt-stores --examples --bins
mkdir -p "$work"
store="$work/store-$blocks"
export XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data"
if [ ! -e "$store/.filled" ]; then
    rm -rf "$store"
    echo "filling $store with $blocks blocks..."
    /usr/bin/time -f "fill: %e s wall, %M KiB peak RSS" \
        target/release/examples/fill_datadir "$store" "$blocks"
    touch "$store/.filled"
fi
if [ -z "$corpus" ]; then
    corpus="$work/novel"
    rm -rf "$corpus"
    python3 - "$corpus" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(200):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(500):
        with open(f"{root}/d{d}/f{f}", "wb") as fh:
            fh.write(os.urandom(3000 + (d * 7 + f) % 2000))
PY
fi
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
rm -f "$work/corpus.vt"
/usr/bin/time -f "import: %e s wall, %U s user, %S s sys, %M KiB peak RSS" \
    target/release/vt -q -S "$store" import "$corpus" "$work/corpus.vt"
target/release/vt -S "$store" stats | sed -n '2,4p'
