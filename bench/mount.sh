#!/usr/bin/env bash
# bench/mount.sh — reading through `vt mount`, `restic mount` and
# `borg mount`, against reading the same files natively.
#
# One corpus (a copy of the cargo registry sources, or $CORPUS, plus one
# large file) is stored with each tool; each repository is mounted and,
# with the page cache dropped before every measurement, timed for:
#   walk  — `find MNT -ls`: every directory listed, every entry stat'ed;
#   tree  — `tar -cf - . | cat`: every file read sequentially;
#   large — `cat` of the one large file (sequential throughput).
# The report (a Markdown table) goes to stdout, progress to stderr.
#
# Usage: bench/mount.sh
# Environment:
#   BENCH_DIR   work directory [/tmp/vt-bench-mount]; never inside the repo
#   CORPUS      directory to use instead of /root/.cargo/registry/src
#   LARGE_MB    size of the large file [1024]
#   TOOLS       subset of "native vt vt-blake3 restic borg"

set -euo pipefail
export LC_ALL=C

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench-mount}
CORPUS=${CORPUS:-/root/.cargo/registry/src}
LARGE_MB=${LARGE_MB:-1024}
TOOLS=${TOOLS:-"native vt vt-blake3 restic borg"}
case "$BENCH_DIR/" in
    "$REPO_ROOT"/*) echo "mount.sh: BENCH_DIR is inside the repository" >&2; exit 2 ;;
esac
[[ $BENCH_DIR == / ]] && { echo "mount.sh: BENCH_DIR must not be /" >&2; exit 2; }

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

need_pkgs=()
command -v restic >/dev/null || need_pkgs+=(restic)
command -v borg >/dev/null || need_pkgs+=(borgbackup)
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
/usr/bin/python3 -c 'import llfuse' 2>/dev/null || need_pkgs+=(python3-llfuse)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    apt-get install -y -q "${need_pkgs[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need_pkgs[@]}" >&2; }
fi

log "building vt (cargo build --release -p vt)"
(cd "$REPO_ROOT" && cargo build --release -p vt -q)
VT=$REPO_ROOT/target/release/vt

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{mnt,work}
DATA=$BENCH_DIR/data
log "copying the corpus $CORPUS"
cp -a "$CORPUS" "$DATA"
log "writing a ${LARGE_MB} MiB file (compressible, not deduplicable)"
python3 - "$DATA/large.bin" "$LARGE_MB" <<'PY'
import random, sys
r = random.Random(1)
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(5000)]
pool = b" ".join(r.choice(words) for _ in range(2_000_000))
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        # Half text (compressible), half random bytes (no two MiB alike).
        at = r.randrange(len(pool) - (1 << 19))
        f.write(pool[at : at + (1 << 19)] + r.randbytes(1 << 19))
PY
FILES=$(find "$DATA" -type f | wc -l)
BYTES=$(du -sb "$DATA" | cut -f1)

export XDG_CONFIG_HOME=$BENCH_DIR/work/xdg-config XDG_DATA_HOME=$BENCH_DIR/work/xdg-data
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$BENCH_DIR/work/restic
export BORG_REPO=$BENCH_DIR/work/borg BORG_PASSPHRASE= BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
secs() { # seconds taken by "$@" (stdout discarded)
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l | xargs printf '%.2f'
}
walk() { find "$1" -ls; }
tree() { tar -C "$1" -cf - . | cat; }
large() { cat "$1/large.bin"; }
mbps() { echo "$1 / 1048576 / $2" | bc -l | xargs printf '%.0f'; }

wait_for() { # path, pid
    for _ in $(seq 600); do
        [[ -e $1 ]] && return 0
        kill -0 "$2" 2>/dev/null || { log "mount process $2 died"; return 1; }
        sleep 0.1
    done
    return 1
}

ROWS=()
measure() { # tool, dir
    local w t l
    drop; w=$(secs walk "$2")
    drop; t=$(secs tree "$2")
    drop; l=$(secs large "$2")
    ROWS+=("| $1 | $w | $t ($(mbps "$BYTES" "$t") MiB/s) | $l ($(mbps $((LARGE_MB << 20)) "$l") MiB/s) |")
    log "$1: walk ${w}s, tree ${t}s, large ${l}s"
}

MNT=$BENCH_DIR/mnt
for tool in $TOOLS; do
    case $tool in
    native)
        measure native "$DATA"
        ;;
    vt | vt-blake3)
        # The default store (SHA3-256, every block's hash verified on
        # read), and one hashing with BLAKE3.
        hash=sha3_256 label="vt mount"
        [[ $tool == vt-blake3 ]] && hash=blake3 label="vt mount (BLAKE3 store)"
        mkdir -p "$XDG_CONFIG_HOME/vt"
        printf '[default]\nstore = "%s"\n[stores.%s]\ntype = "datadir"\npath = "%s"\nhash = "%s"\n' \
            "$tool" "$tool" "$BENCH_DIR/work/$tool" "$hash" >"$XDG_CONFIG_HOME/vt/vtrc"
        log "$label: vt import"
        "$VT" -q import "$DATA" "$BENCH_DIR/work/$tool.vt" >/dev/null
        "$VT" -q mount -r "$BENCH_DIR/work/$tool.vt" "$MNT" & pid=$!
        wait_for "$MNT/large.bin" $pid
        measure "$label" "$MNT"
        "$VT" umount "$MNT"; wait $pid
        ;;
    restic)
        log "restic backup"
        restic init -q >/dev/null
        restic backup -q "$DATA" >/dev/null
        restic mount "$MNT" >/dev/null 2>&1 & pid=$!
        dir=$MNT/snapshots/latest$DATA
        wait_for "$dir/large.bin" $pid
        measure "restic mount" "$dir"
        fusermount3 -u "$MNT" || fusermount -u "$MNT"; wait $pid || true
        ;;
    borg)
        log "borg create"
        borg init -e none >/dev/null 2>&1
        borg create ::bench "$DATA" >/dev/null 2>&1
        borg mount -f ::bench "$MNT" >/dev/null 2>&1 & pid=$!
        dir=$MNT${DATA}
        wait_for "$dir/large.bin" $pid
        measure "borg mount" "$dir"
        fusermount3 -u "$MNT" 2>/dev/null || fusermount -u "$MNT"; wait $pid || true
        ;;
    esac
done

cat <<REPORT
## Reading through mounts

Corpus: $FILES files, $((BYTES >> 20)) MiB ($CORPUS plus one ${LARGE_MB} MiB file); page cache dropped before every measurement.
Machine: $(nproc) cores, $(uname -sr); $(restic version 2>/dev/null | cut -d' ' -f1-2), $(borg --version 2>/dev/null), vt $(git -C "$REPO_ROOT" rev-parse --short HEAD).

| | walk: \`find -ls\` (s) | tree: \`tar -cf - . \| cat\` (s) | large file: \`cat\` (s) |
|---|---:|---:|---:|
$(printf '%s\n' "${ROWS[@]}")
REPORT
rm -rf "$BENCH_DIR"
