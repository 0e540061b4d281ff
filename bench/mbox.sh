#!/usr/bin/env bash
# bench/mbox.sh — what the mbox scanner buys: bytes each new version of a
# real mbox adds to the store, with vt's mbox scanner, with vt's plain CDC,
# and with restic; then the time cost of the wasm scanner on a 1 GiB mbox,
# and whether a second vt process recompiles the component.
#
# Usage: bench/mbox.sh GIT_REPO [N]
#   GIT_REPO  a git repository with at least N*1.1 commits; its history, as
#             `git format-patch --stdout`, is the mbox
#   N         messages in version 1 [10000]
# Versions (bench/mbox_versions.py): v1 = N messages; v2 = +10% appended;
# v3 = 2% removed from the middle; v4 = Status: header of 5% changed.
# restic's figures are random: each repository draws its own chunker
# polynomial, so the same files cut differently in each. The series is run
# in RESTIC_RUNS [5] fresh repositories and its median, minimum and maximum
# are reported beside vt's (which are the same in every run).
# Environment: BENCH_DIR [/tmp/vt-mbox-bench], VT [target/release/vt],
#   BENCH_TIME [1]: 0 measures dedup only (skips the 1 GiB import timing and
#   the component cache check, which take minutes).
#   TIME_ROUNDS [5]: imports of the 1 GiB mbox timed in each mode (their
#   median is reported).
set -euo pipefail
export LC_ALL=C
REPO=${1:?usage: bench/mbox.sh GIT_REPO [N]}
N=${2:-10000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
VT=${VT:-$ROOT/target/release/vt}
B=${BENCH_DIR:-/tmp/vt-mbox-bench}
TIME_ROUNDS=${TIME_ROUNDS:-5}
[[ $TIME_ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "mbox.sh: TIME_ROUNDS must be a positive number" >&2; exit 2; }
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
[ -x "$VT" ] || (cd "$ROOT" && cargo build --release -p vt)
rm -rf "$B" && mkdir -p "$B/versions"
git -C "$REPO" format-patch --stdout --max-count=$((N + N / 5)) HEAD > "$B/src.mbox" 2>/dev/null
python3 "$ROOT/bench/mbox_versions.py" "$B/src.mbox" "$N" "$B/versions" >&2

# bytes <dir>: total size of the files under dir
bytes() { du -sb --apparent-size "$1" | cut -f1; }

# vt_series MODE: imports v1..v4 as inbox.mbox, prints bytes added by each
vt_series() {
    local mode=$1 home=$B/vt-$1
    mkdir -p "$home/cfg/vt" "$home/in"
    if [ "$mode" = cdc ]; then
        printf '[scanners]\n"*.mbox" = "none"\n' > "$home/cfg/vt/vtrc"
    else
        : > "$home/cfg/vt/vtrc"
    fi
    local prev=0 out=()
    for v in v1 v2 v3 v4; do
        cp "$B/versions/$v.mbox" "$home/in/inbox.mbox"
        XDG_CONFIG_HOME=$home/cfg XDG_DATA_HOME=$home/data XDG_CACHE_HOME=$home/cache \
            "$VT" -q import "$home/in" mbox
        local now
        # The whole store: datafiles, index, archives, dictionaries.
        now=$(bytes "$home/data/vt/store")
        out+=($((now - prev)))
        prev=$now
    done
    echo "${out[@]}"
}

restic_series() { # restic_series K: run K, in a fresh repository
    local repo=$B/restic-$1 in=$B/restic-in
    export RESTIC_PASSWORD=bench
    mkdir -p "$in"
    restic init -q -r "$repo" >/dev/null
    local prev=0 out=()
    for v in v1 v2 v3 v4; do
        cp "$B/versions/$v.mbox" "$in/inbox.mbox"
        restic -q -r "$repo" backup "$in" >/dev/null
        local now
        now=$(bytes "$repo")
        out+=($((now - prev)))
        prev=$now
    done
    echo "${out[@]}"
}

read -r -a S <<<"$(vt_series scanner)"
read -r -a C <<<"$(vt_series cdc)"
RUNS=${RESTIC_RUNS:-5}
RR=()
for k in $(seq "$RUNS"); do RR+=("$(restic_series "$k")"); done
# restic_stat I WHICH: min, median or max over the runs of version I
restic_stat() {
    local i=$1 vals
    vals=$(for r in "${RR[@]}"; do read -r -a x <<<"$r"; echo "${x[$i]}"; done | sort -g)
    case $2 in
    min) head -1 <<<"$vals" ;;
    max) tail -1 <<<"$vals" ;;
    median) sed -n "$(((RUNS + 1) / 2))p" <<<"$vals" ;;
    esac
}
echo "## mbox dedup: bytes added to the store by each version ($N messages in v1)"
echo
echo "vt: the whole DataDir (datafiles, index, archives, dictionaries); restic: the whole repository."
echo
echo "restic $(restic version | cut -d' ' -f2): median, and minimum to maximum, of $RUNS repositories."
echo
echo "| version | vt, mbox scanner | vt, plain CDC | restic median (min–max) | scanner / restic median | scanner / restic min |"
echo "|---|---:|---:|---:|---:|---:|"
names=("v1: $N messages" "v2: +10% appended" "v3: 2% removed from the middle" "v4: Status: of 5% changed")
for i in 0 1 2 3; do
    med=$(restic_stat "$i" median) lo=$(restic_stat "$i" min) hi=$(restic_stat "$i" max)
    printf '| %s | %d | %d | %d (%d–%d) | %.2f | %.2f |\n' "${names[$i]}" "${S[$i]}" "${C[$i]}" \
        "$med" "$lo" "$hi" "$(echo "${S[$i]} / $med" | bc -l)" "$(echo "${S[$i]} / $lo" | bc -l)"
done
echo
echo "restic runs (v1 v2 v3 v4): $(printf '[%s] ' "${RR[@]}")"

[ "${BENCH_TIME:-1}" = 0 ] && exit 0

# ---- time: a 1 GiB mbox with the wasm scanner vs plain CDC (warm cache)
big=$B/big/inbox.mbox
mkdir -p "$B/big"
while [ "$(stat -c %s "$big" 2>/dev/null || echo 0)" -lt $((1 << 30)) ]; do
    cat "$B/src.mbox" >> "$big"
done
truncate -s $((1 << 30)) "$big"
cat "$big" > /dev/null
timed() { # timed MODE -> seconds of a fresh import of big/
    local home=$B/time-$1
    rm -rf "$home" && mkdir -p "$home/cfg/vt"
    if [ "$1" = cdc ]; then printf '[scanners]\n"*.mbox" = "none"\n' > "$home/cfg/vt/vtrc"; fi
    local t0 t1
    t0=$(date +%s.%N)
    XDG_CONFIG_HOME=$home/cfg XDG_DATA_HOME=$home/data XDG_CACHE_HOME=$B/cache \
        "$VT" -q import "$B/big" big
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
rm -rf "$B/cache"
ts=() tc=()
# Pairs, each mode first in turn, so a drift of the machine's speed hits
# both alike.
for ((r = 1; r <= TIME_ROUNDS; r++)); do
    if ((r % 2)); then
        ts+=("$(timed scanner)") tc+=("$(timed cdc)")
    else
        tc+=("$(timed cdc)") ts+=("$(timed scanner)")
    fi
done
med() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
S1=$(med "${ts[@]}") C1=$(med "${tc[@]}")
echo
echo "## 1 GiB mbox, import wall time (median of $TIME_ROUNDS, warm page cache)"
echo
echo "| plain CDC | wasm mbox scanner | overhead |"
echo "|---:|---:|---:|"
printf '| %.2f s | %.2f s | %+.1f%% |\n' "$C1" "$S1" "$(echo "($S1 / $C1 - 1) * 100" | bc -l)"
echo
echo "runs (s), plain CDC: $(printf '%.2f ' "${tc[@]}"); scanner: $(printf '%.2f ' "${ts[@]}")"

# ---- a second process does not recompile the component
cache=$B/cache2
rm -rf "$cache"
one() { XDG_CACHE_HOME=$cache XDG_DATA_HOME=$B/info "$VT" plugin info mbox | sed -n 's/^compiled: *//p'; }
first=$(one)
second=$(one)
echo
echo "## component cache"
echo
echo "- first vt process: compiled $first"
echo "- second vt process: $second"
