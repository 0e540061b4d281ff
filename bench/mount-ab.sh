#!/usr/bin/env bash
# bench/mount-ab.sh — two vt builds side by side through `vt mount`:
# interleaved cold reads, so a drift of the machine's speed hits both alike.
#
# Each build imports the corpus into a store of its own (builds may write
# different datafile versions), then, PAIRS times, each in turn is mounted
# read-only and timed, page cache dropped before each read, for:
#   large — `cat` of the large file (read once first, unmeasured: the
#           first read also builds the file's blockmap);
#   small — `tar -cf - --exclude=./large.bin . | cat` (the small files);
#   walk  — `find -ls` (put it first in WHAT: a mount keeps the
#           directories a walk loaded, so only its first walk loads them).
# Reported: mean wall time and the mount process's mean CPU time.
#
# Usage: bench/mount-ab.sh OLD_VT NEW_VT CORPUS
#   CORPUS must hold a large.bin (bench/mount.sh's work directory
#   /tmp/vt-bench-mount/data does).
# Environment: BENCH_DIR [/tmp/vt-bench-ab], PAIRS [6], WHAT ["large small"]
set -euo pipefail
export LC_ALL=C
OLD=${1:?usage: bench/mount-ab.sh OLD_VT NEW_VT CORPUS} NEW=${2:?} CORPUS=${3:?}
B=${BENCH_DIR:-/tmp/vt-bench-ab}
PAIRS=${PAIRS:-6}
WHAT=${WHAT:-"large small"}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "mount-ab.sh: PAIRS must be a positive number" >&2; exit 2; }
[[ -f $CORPUS/large.bin ]] || { echo "mount-ab.sh: $CORPUS has no large.bin" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hold_page_reporting
rm -rf "$B" && mkdir -p "$B/mnt"
MNT=$B/mnt
declare -A BIN=([old]=$OLD [new]=$NEW)
env_of() { echo "XDG_CONFIG_HOME=$B/$1/cfg XDG_DATA_HOME=$B/$1/data"; }
for v in old new; do
    mkdir -p "$B/$v/cfg/vt" "$B/$v/data"
    env $(env_of $v) "${BIN[$v]}" -q import "$CORPUS" "$B/$v/a.vt" >/dev/null
done
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
read_one() { # what
    case $1 in
    large) cat "$MNT/large.bin" ;;
    small) tar -C "$MNT" --exclude=./large.bin -cf - . | cat ;;
    walk) find "$MNT" -ls ;;
    esac
}
declare -A SUM
for ((p = 1; p <= PAIRS; p++)); do
    for v in old new; do
        env $(env_of $v) "${BIN[$v]}" -q mount -r "$B/$v/a.vt" "$MNT" & pid=$!
        for _ in $(seq 200); do [[ -e $MNT/large.bin ]] && break; sleep 0.05; done
        cat "$MNT/large.bin" >/dev/null
        for w in $WHAT; do
            drop
            c0=$(cpu $pid) t0=$(date +%s.%N)
            read_one "$w" >/dev/null
            t1=$(date +%s.%N) c1=$(cpu $pid)
            SUM[$v/$w/wall]=$(echo "${SUM[$v/$w/wall]:-0} + $t1 - $t0" | bc -l)
            SUM[$v/$w/cpu]=$(echo "${SUM[$v/$w/cpu]:-0} + ($c1 - $c0) / 100" | bc -l)
        done
        env $(env_of $v) "${BIN[$v]}" umount "$MNT"
        wait $pid
    done
done
echo "| read | build | mean wall (s) | mean vt CPU (s) |"
echo "|---|---|---:|---:|"
for w in $WHAT; do
    for v in old new; do
        printf '| %s | %s | %.3f | %.3f |\n' "$w" "$v" \
            "$(echo "${SUM[$v/$w/wall]} / $PAIRS" | bc -l)" "$(echo "${SUM[$v/$w/cpu]} / $PAIRS" | bc -l)"
    done
done
echo
echo "$PAIRS interleaved cold reads per build; old: $OLD, new: $NEW; $PAGE_REPORTING_NOTE"
