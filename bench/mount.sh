#!/usr/bin/env bash
# bench/mount.sh — reading through `vt mount`, `restic mount` and
# `borg mount`, against reading the same files natively.
#
# Each corpus (a source tree plus one large file) is stored with each tool;
# each repository is mounted and, with the page cache dropped before every
# measurement, timed for:
#   walk  — `find MNT -ls`: every directory listed, every entry stat'ed;
#   tree  — `tar -cf - . | cat`: every file read sequentially;
#   large — `cat` of the one large file (sequential throughput).
# The report (a Markdown table) goes to stdout, progress to stderr.
#
# Usage: bench/mount.sh
# Environment:
#   BENCH_DIR   work directory [/tmp/vt-bench-mount]; never inside the repo
#   CORPORA     which built-in corpora, in turn ["registry kernel"]:
#               registry — the cargo registry sources (/root/.cargo/registry/src:
#                          tens of thousands of files, a few hundred MiB);
#               kernel   — a Debian linux-source tree (KERNEL_PKG
#                          [linux-source-6.1], its newest version in the apt
#                          archives; 80,000+ small files in 5,000+ directories),
#                          unpacked once into CORPUS_CACHE [/tmp/vt-bench/corpus]
#   CORPUS      a directory to use instead of the built-in corpora
#   LARGE_MB    size of the large file [1024]
#   TOOLS       subset of "native vt vt-rw vt-blake3 restic borg" [all but
#               vt-rw]; vt is a read-only mount (`vt mount -r`), vt-rw the
#               default, read-write one of a store of its own
#   ROUNDS      measure every tool this many times, in turn [1]: all are
#               mounted first, then each round measures each tool, so a
#               drift of the machine's speed hits all alike; the report
#               gives every round and the medians
#   PAGE_REPORTING  "hold" [default]: on a VM that reports free memory to
#               its host, hold that off for the run (see bench/lib.sh);
#               "keep": leave it as it is

set -euo pipefail
export LC_ALL=C

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench-mount}
LARGE_MB=${LARGE_MB:-1024}
TOOLS=${TOOLS:-"native vt vt-blake3 restic borg"}
CORPORA=${CORPORA:-"registry kernel"}
KERNEL_PKG=${KERNEL_PKG:-linux-source-6.1}
CORPUS_CACHE=${CORPUS_CACHE:-/tmp/vt-bench/corpus}
ROUNDS=${ROUNDS:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "mount.sh: ROUNDS must be a positive number" >&2; exit 2; }
case "$BENCH_DIR/" in
    "$REPO_ROOT"/*) echo "mount.sh: BENCH_DIR is inside the repository" >&2; exit 2 ;;
esac
[[ $BENCH_DIR == / ]] && { echo "mount.sh: BENCH_DIR must not be /" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"
hold_page_reporting

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

# corpus_source NAME: the directory corpus NAME is copied from.
corpus_source() {
    case $1 in
    registry) echo /root/.cargo/registry/src ;;
    kernel)
        local vers ver dest
        mapfile -t vers < <(linux_versions "$KERNEL_PKG")
        if ((${#vers[@]} == 0)); then
            apt-get update -q >&2 || true
            mapfile -t vers < <(linux_versions "$KERNEL_PKG")
        fi
        ((${#vers[@]})) || { log "no $KERNEL_PKG in the apt archives"; exit 1; }
        ver=${vers[-1]}
        dest=$CORPUS_CACHE/$KERNEL_PKG-$ver
        CORPUS=$CORPUS_CACHE fetch_linux "$KERNEL_PKG" "$ver" "$dest"
        echo "$dest"
        ;;
    *) log "unknown corpus $1 (registry, kernel; or set CORPUS)"; exit 2 ;;
    esac
}

# bench_corpus SOURCE: stores SOURCE (plus the large file) with every tool,
# measures ROUNDS rounds, prints the report section.
bench_corpus() {
SOURCE=$1
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{mnt,work}
DATA=$BENCH_DIR/data
log "copying the corpus $SOURCE"
cp -a "$SOURCE" "$DATA"
log "writing a ${LARGE_MB} MiB file (compressible, not deduplicable)"
write_large "$DATA/large.bin" "$LARGE_MB"
FILES=$(find "$DATA" -type f | wc -l)
DIRS=$(find "$DATA" -type d | wc -l)
BYTES=$(du -sb "$DATA" | cut -f1)

export XDG_CONFIG_HOME=$BENCH_DIR/work/xdg-config XDG_DATA_HOME=$BENCH_DIR/work/xdg-data
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$BENCH_DIR/work/restic
export BORG_REPO=$BENCH_DIR/work/borg BORG_PASSPHRASE= BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

# settle: waits (up to 5 s) until the machine is quiet for 100 ms. Dropping
# the caches makes every FUSE server handle the kernel's FORGETs for the
# inodes it had (restic: about a second of CPU after a tree of 80,000
# files), work that would otherwise land in the next measurement.
settle() {
    local i a b busy total
    for ((i = 0; i < 50; i++)); do
        # cpu user nice system idle iowait irq softirq
        read -ra a </proc/stat
        sleep 0.1
        read -ra b </proc/stat
        busy=$((b[1] + b[2] + b[3] + b[6] + b[7] - a[1] - a[2] - a[3] - a[6] - a[7]))
        total=$((busy + b[4] + b[5] - a[4] - a[5]))
        ((total > 0 && busy * 10 <= total)) && return 0
    done
    return 0
}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; settle; }
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

declare -gA WALK TREE LARGE DIR LABEL PID MW MT ML
WALK=() TREE=() LARGE=() DIR=() LABEL=() PID=() MW=() MT=() ML=()
measure() { # tool, dir, round
    local w t l
    drop; w=$(secs walk "$2")
    drop; t=$(secs tree "$2")
    drop; l=$(secs large "$2")
    WALK[$1/$3]=$w TREE[$1/$3]=$t LARGE[$1/$3]=$l
    log "${LABEL[$1]} (round $3): walk ${w}s, tree ${t}s, large ${l}s"
}
row() { # label, walk, tree, large
    echo "| $1 | $2 | $3 ($(mbps "$BYTES" "$3") MiB/s) | $4 ($(mbps $((LARGE_MB << 20)) "$4") MiB/s) |"
}

# Every tool stored and mounted first (each on a mountpoint of its own).
unmount_all() {
    local tool
    for tool in "${!PID[@]}"; do
        if [[ $tool == vt* ]]; then
            "$VT" umount "$BENCH_DIR/mnt/$tool" 2>/dev/null || true
        else
            fusermount3 -u "$BENCH_DIR/mnt/$tool" 2>/dev/null || fusermount -u "$BENCH_DIR/mnt/$tool" 2>/dev/null || true
        fi
        wait "${PID[$tool]}" 2>/dev/null || true
        unset "PID[$tool]"
    done
}
trap 'unmount_all; release_page_reporting' EXIT
for tool in $TOOLS; do
    mnt=$BENCH_DIR/mnt/$tool
    mkdir -p "$mnt"
    case $tool in
    native)
        LABEL[$tool]=native DIR[$tool]=$DATA
        ;;
    vt | vt-rw | vt-blake3)
        # The default store (SHA3-256, every block's hash verified on
        # read) mounted read-only and read-write, and one hashing with
        # BLAKE3.
        hash=sha3_256 LABEL[$tool]="vt mount" ro=-r
        [[ $tool == vt-rw ]] && LABEL[$tool]="vt mount (read-write)" ro=
        [[ $tool == vt-blake3 ]] && hash=blake3 LABEL[$tool]="vt mount (BLAKE3 store)"
        mkdir -p "$XDG_CONFIG_HOME/vt"
        printf '[default]\nstore = "%s"\n[stores.%s]\ntype = "datadir"\npath = "%s"\nhash = "%s"\n' \
            "$tool" "$tool" "$BENCH_DIR/work/$tool" "$hash" >"$XDG_CONFIG_HOME/vt/vtrc"
        log "${LABEL[$tool]}: vt import"
        "$VT" -q import "$DATA" "$BENCH_DIR/work/$tool.vt" >/dev/null
        "$VT" -q mount $ro "$BENCH_DIR/work/$tool.vt" "$mnt" & PID[$tool]=$!
        DIR[$tool]=$mnt
        ;;
    restic)
        log "restic backup"
        LABEL[$tool]="restic mount"
        restic init -q >/dev/null
        restic backup -q "$DATA" >/dev/null
        restic mount "$mnt" >/dev/null 2>&1 & PID[$tool]=$!
        DIR[$tool]=$mnt/snapshots/latest$DATA
        ;;
    borg)
        log "borg create"
        LABEL[$tool]="borg mount"
        borg init -e none >"$BENCH_DIR/work/borg.log" 2>&1 &&
            borg create ::bench "$DATA" >>"$BENCH_DIR/work/borg.log" 2>&1 ||
            { log "borg failed:"; tail -5 "$BENCH_DIR/work/borg.log" >&2; exit 1; }
        borg mount -f ::bench "$mnt" >/dev/null 2>&1 & PID[$tool]=$!
        DIR[$tool]=$mnt$DATA
        ;;
    esac
    [[ -n ${PID[$tool]:-} ]] && { wait_for "${DIR[$tool]}/large.bin" "${PID[$tool]}" || exit 1; }
done

for ((r = 1; r <= ROUNDS; r++)); do
    for tool in $TOOLS; do
        measure "$tool" "${DIR[$tool]}" "$r"
    done
done
unmount_all

ROWS=()
for ((r = 1; r <= ROUNDS; r++)); do
    for tool in $TOOLS; do
        label=${LABEL[$tool]}
        ((ROUNDS > 1)) && label="$label, round $r"
        ROWS+=("$(row "$label" "${WALK[$tool/$r]}" "${TREE[$tool/$r]}" "${LARGE[$tool/$r]}")")
    done
done
if ((ROUNDS > 1)); then
    for tool in $TOOLS; do
        w=() t=() l=()
        for ((r = 1; r <= ROUNDS; r++)); do
            w+=("${WALK[$tool/$r]}") t+=("${TREE[$tool/$r]}") l+=("${LARGE[$tool/$r]}")
        done
        MW[$tool]=$(median %.2f "${w[@]}") MT[$tool]=$(median %.2f "${t[@]}") ML[$tool]=$(median %.2f "${l[@]}")
        ROWS+=("$(row "**${LABEL[$tool]}, median**" "${MW[$tool]}" "${MT[$tool]}" "${ML[$tool]}")")
    done
fi
# Ratios of the medians (of the single round with ROUNDS=1) to vt's.
RATIOS=()
if [[ " $TOOLS " == *" vt "* ]]; then
    ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2fx'; }
    for tool in $TOOLS; do
        [[ $tool == vt ]] && continue
        if ((ROUNDS == 1)); then
            MW[$tool]=${WALK[$tool/1]} MT[$tool]=${TREE[$tool/1]} ML[$tool]=${LARGE[$tool/1]}
            MW[vt]=${WALK[vt/1]} MT[vt]=${TREE[vt/1]} ML[vt]=${LARGE[vt/1]}
        fi
        RATIOS+=("| ${LABEL[$tool]} / vt mount | $(ratio "${MW[$tool]}" "${MW[vt]}") | $(ratio "${MT[$tool]}" "${MT[vt]}") | $(ratio "${ML[$tool]}" "${ML[vt]}") |")
    done
fi

cat <<REPORT
## Reading through mounts: $(basename "$SOURCE")

Corpus: $FILES files in $DIRS directories, $((BYTES >> 20)) MiB ($SOURCE plus one ${LARGE_MB} MiB file); page cache dropped before every measurement.
Machine: $(nproc) cores, $(uname -sr); $(restic version 2>/dev/null | cut -d' ' -f1-2), $(borg --version 2>/dev/null), vt $(git -C "$REPO_ROOT" rev-parse --short HEAD); $PAGE_REPORTING_NOTE

| | walk: \`find -ls\` (s) | tree: \`tar -cf - . \| cat\` (s) | large file: \`cat\` (s) |
|---|---:|---:|---:|
$(printf '%s\n' "${ROWS[@]}")
$( ((${#RATIOS[@]})) && printf '%s\n' "" "Times against vt's (medians; above 1 is slower than vt):" "" "| | walk | tree | large file |" "|---|---:|---:|---:|" "${RATIOS[@]}")
REPORT
rm -rf "$BENCH_DIR"
}

if [[ -n ${CORPUS:-} ]]; then
    bench_corpus "$CORPUS"
else
    for c in $CORPORA; do
        src=$(corpus_source "$c") || exit 1
        bench_corpus "$src"
        echo
    done
fi
