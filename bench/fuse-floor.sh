#!/usr/bin/env bash
# bench/fuse-floor.sh — how fast any FUSE filesystem can serve a large file
# on this machine, beside ext4 and `vt mount`: the floor under vt's
# large-file figure in bench/mount.sh.
#
# One file (bench/mount.sh's large file: half text, half random bytes) is
# read with `cat`, page cache dropped before each read, ROUNDS times in
# turn from: ext4; bench/fuse-floor (a FUSE filesystem serving the file's
# bytes from memory, mounted as `vt mount -r` mounts: 4 threads, 1 MiB
# reads and read-ahead, no OPEN); and `vt mount -r` of it imported into a
# DataDir.
#
# Usage: bench/fuse-floor.sh
# Environment: BENCH_DIR [/tmp/vt-bench-floor], LARGE_MB [1024], ROUNDS [5]
set -euo pipefail
export LC_ALL=C
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench-floor}
LARGE_MB=${LARGE_MB:-1024}
ROUNDS=${ROUNDS:-5}
case "$BENCH_DIR/" in
    "$REPO_ROOT"/*) echo "fuse-floor.sh: BENCH_DIR is inside the repository" >&2; exit 2 ;;
esac
# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"
hold_page_reporting

log "building vt and fuse-floor (release)"
(cd "$REPO_ROOT" && cargo build --release -p vt -q)
cargo build --release -q --manifest-path "$REPO_ROOT/bench/fuse-floor/Cargo.toml"
VT=$REPO_ROOT/target/release/vt
FLOOR=$REPO_ROOT/bench/fuse-floor/target/release/fuse-floor

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{data,mnt-vt,mnt-floor,work}
log "writing a ${LARGE_MB} MiB file"
write_large "$BENCH_DIR/data/large.bin" "$LARGE_MB"
export XDG_CONFIG_HOME=$BENCH_DIR/work/cfg XDG_DATA_HOME=$BENCH_DIR/work/data
"$VT" -q import "$BENCH_DIR/data" "$BENCH_DIR/work/l.vt" >/dev/null

cleanup() {
    "$VT" umount "$BENCH_DIR/mnt-vt" 2>/dev/null || true
    fusermount3 -u "$BENCH_DIR/mnt-floor" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap 'cleanup; release_page_reporting' EXIT
"$VT" -q mount -r "$BENCH_DIR/work/l.vt" "$BENCH_DIR/mnt-vt" &
"$FLOOR" "$BENCH_DIR/mnt-floor" "$LARGE_MB" 2>/dev/null &
for _ in $(seq 300); do
    [[ -e $BENCH_DIR/mnt-vt/large.bin && -e $BENCH_DIR/mnt-floor/large.bin ]] && break
    sleep 0.1
done
# The floor's read-ahead window as vt sets its own (root only).
dev=$(awk -v p="$BENCH_DIR/mnt-floor" '$5 == p {print $3}' /proc/self/mountinfo | tail -1)
echo 1024 >"/sys/class/bdi/$dev/read_ahead_kb" || log "read-ahead of the floor left at the kernel's default"

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l | xargs printf '%.3f'; }
declare -A T
for ((r = 1; r <= ROUNDS; r++)); do
    for k in ext4 floor vt; do
        case $k in
        ext4) f=$BENCH_DIR/data/large.bin ;;
        floor) f=$BENCH_DIR/mnt-floor/large.bin ;;
        vt) f=$BENCH_DIR/mnt-vt/large.bin ;;
        esac
        drop
        T[$k/$r]=$(secs cat "$f")
        log "round $r: $k ${T[$k/$r]} s"
    done
done
cleanup

echo "## A ${LARGE_MB} MiB file read with cat, page cache dropped (vt $(git -C "$REPO_ROOT" rev-parse --short HEAD), $(nproc) cores, $(uname -r))"
echo
echo "$PAGE_REPORTING_NOTE"
echo
echo "| | $(seq -s ' | ' 1 "$ROUNDS") | median | vs ext4 |"
echo "|---|$(printf -- '---:|%.0s' $(seq "$ROUNDS"))---:|---:|"
e=()
for ((r = 1; r <= ROUNDS; r++)); do e+=("${T[ext4/$r]}"); done
me=$(median %.3f "${e[@]}")
for k in ext4 floor vt; do
    v=()
    for ((r = 1; r <= ROUNDS; r++)); do v+=("${T[$k/$r]}"); done
    m=$(median %.3f "${v[@]}")
    echo "| $k | $(printf '%s | ' "${v[@]}")$m | $(echo "$m / $me" | bc -l | xargs printf '%.2fx') |"
done
rm -rf "$BENCH_DIR"
