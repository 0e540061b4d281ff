#!/usr/bin/env bash
# bench/compare.sh — compare vt with restic and borgbackup on real corpora.
#
# For each tool: first ingest of v1, incremental ingest of v2 into the same
# repository, restore of v2, and a check that the restore is exact.
# See bench/README.md for what is measured and how to read the output.
#
# Usage: bench/compare.sh [--quick] [--warm] [--keep]
#   --quick   small corpus (the cargo registry sources, else this repo) with a
#             derived v2, for smoke-testing the script
#   --warm    do not drop the page cache; pre-read inputs instead
#   --keep    keep the repositories and restores in $BENCH_DIR/run afterwards
# Environment:
#   BENCH_DIR     work directory [/tmp/vt-bench]; never inside the repo
#   CORPUS_V1     use this directory as v1 instead of a Linux source tree
#   CORPUS_V2     use this directory as v2 (with CORPUS_V1); if unset, v2 is
#                 derived from v1 by deterministic edits
#   LINUX_PKG     Debian source package to use [auto: linux-source-X.Y with
#                 two versions in the configured archives]
#   LINUX_V1, LINUX_V2  Debian package versions of LINUX_PKG [auto: oldest
#                 and newest available]
#   TOOLS         tools to run, space-separated ["vt restic borg"]
#   ROUNDS        run the whole series this many times, each in fresh
#                 repositories from a fresh copy of v1, the tools taking
#                 turns first [1]; the report gives every round and the
#                 median of each figure (this machine's speed drifts by
#                 up to 30% within minutes: a single round is one draw)
#   BACKEND       "local" [default]: each tool's repository in a directory;
#                 "s3": vt and restic store into buckets of one s3s-fs
#                 server (an S3-compatible server over a directory, started
#                 here on loopback; installed with cargo if missing): vt as
#                 -S s3(bucket=vt-bench,...) with its archive in the bucket,
#                 restic as -r s3:http://.../restic-bench. The table gains the requests
#                 each phase made (from s3s-fs's request log); repo MiB is the
#                 bucket. borg has no S3 backend and is left out.
#   RESTORE_FS    "fresh" [default when root]: each tool restores into a
#                 newly made ext4 filesystem (a sparse image on a loop
#                 device), so that inodes freed by earlier runs do not slow
#                 the restore's file creation (on an ext4 without a journal,
#                 as this machine's root, the allocator steps over every inode
#                 freed in the last 5 minutes one by one: a kernel-tree restore
#                 under /tmp took 10-12 s there against 5.2 s elsewhere);
#                 "same": restore under $BENCH_DIR/run/restore
#   PAGE_REPORTING  "hold" [default]: on a VM that reports free memory to
#                 its host, hold that off for the run (see bench/lib.sh);
#                 "keep": leave it as it is
#
# The report (versions, machine, corpus, table, notes) goes to stdout;
# progress goes to stderr.

set -euo pipefail
export LC_ALL=C

# ---------------------------------------------------------------- options
QUICK=0 WARM=0 KEEP=0
for a in "$@"; do
    case $a in
        --quick) QUICK=1 ;;
        --warm) WARM=1 ;;
        --keep) KEEP=1 ;;
        -h | --help)
            sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "compare.sh: unknown argument $a (try --help)" >&2
            exit 2
            ;;
    esac
done

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P)
case "$BENCH_DIR/" in
    "$REPO_ROOT"/*)
        echo "compare.sh: BENCH_DIR=$BENCH_DIR is inside the repository $REPO_ROOT; choose another" >&2
        exit 2
        ;;
esac
[[ $BENCH_DIR == / ]] && { echo "compare.sh: BENCH_DIR must not be /" >&2; exit 2; }
BACKEND=${BACKEND:-local}
case $BACKEND in
    local) TOOLS=${TOOLS:-"vt restic borg"} ;;
    s3) TOOLS=${TOOLS:-"vt restic"} ;;
    *) echo "compare.sh: BACKEND must be local or s3, not $BACKEND" >&2; exit 2 ;;
esac
[[ $BACKEND == s3 && " $TOOLS " == *" borg "* ]] && { echo "compare.sh: borg has no S3 backend: TOOLS=\"vt restic\"" >&2; exit 2; }
ROUNDS=${ROUNDS:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: ROUNDS must be a positive number, not $ROUNDS" >&2; exit 2; }

# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"
hold_page_reporting
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
command -v restic >/dev/null || need_pkgs+=(restic)
command -v borg >/dev/null || need_pkgs+=(borgbackup)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2
    fi
fi

log "building vt (cargo build --release -p vt) in $REPO_ROOT"
(cd "$REPO_ROOT" && cargo build --release -q -p vt >&2)
VT=$REPO_ROOT/target/release/vt
[[ -x $VT ]] || die "no $VT after the build"

# ---------------------------------------------------------------- page cache
if ((WARM == 0)) && (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    CACHE_MODE=cold
else
    CACHE_MODE=warm
fi
# prepare_cache DIR...: cold mode drops the page cache; warm mode reads DIRs
# so that every tool starts from the same (hot) state.
prepare_cache() {
    if [[ $CACHE_MODE == cold ]]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    else
        sync
        local d
        for d in "$@"; do
            find "$d" -type f -print0 | xargs -0 -r cat >/dev/null 2>&1 || true
        done
    fi
}

# ---------------------------------------------------------------- corpus
CORPUS=$BENCH_DIR/corpus
mkdir -p "$CORPUS"
V1_DESC="" V2_DESC="" V2_DERIVED=0
# derive_v2, linux_versions, fetch_linux, manifest and corpus_line are in bench/lib.sh.

if ((QUICK)); then
    if [[ -d /root/.cargo/registry/src ]]; then
        QSRC=/root/.cargo/registry/src
    else
        QSRC=$REPO_ROOT
    fi
    V1=$CORPUS/quick-v1
    rm -rf "$V1" "$CORPUS/quick-v2"
    mkdir -p "$V1"
    log "quick corpus: copying $QSRC (without target/ and .git/)"
    rsync -a --exclude=/target --exclude=/.git "$QSRC/" "$V1/"
    V1_DESC="quick: copy of $QSRC (without target/, .git/)"
    V2=$CORPUS/quick-v2
    cp -a "$V1" "$V2"
    V2_DESC="v1 with deterministic edits: $(derive_v2 "$V2")"
    V2_DERIVED=1
elif [[ -n ${CORPUS_V1:-} ]]; then
    [[ -d $CORPUS_V1 ]] || die "CORPUS_V1=$CORPUS_V1 is not a directory"
    V1=$(cd "$CORPUS_V1" && pwd -P)
    V1_DESC="CORPUS_V1=$V1"
    if [[ -n ${CORPUS_V2:-} ]]; then
        [[ -d $CORPUS_V2 ]] || die "CORPUS_V2=$CORPUS_V2 is not a directory"
        V2=$(cd "$CORPUS_V2" && pwd -P)
        V2_DESC="CORPUS_V2=$V2"
    else
        V2=$CORPUS/derived-v2
        rm -rf "$V2"
        log "deriving v2 from $V1"
        cp -a "$V1" "$V2"
        V2_DESC="v1 with deterministic edits: $(derive_v2 "$V2")"
        V2_DERIVED=1
    fi
else
    # Debian's linux-source-X.Y packages: pick one with two versions.
    pkg=${LINUX_PKG:-}
    if [[ -z $pkg ]]; then
        best="" best_n=0
        for p in $(apt-cache search --names-only '^linux-source-[0-9.]+$' | awk '{print $1}' | sort -V); do
            nv=$(linux_versions "$p" | sed 's/-[^-]*$//' | sort -u | wc -l)
            if ((nv >= 2)) || [[ -z $best ]] || ((best_n < 2)); then
                best=$p best_n=$nv
            fi
        done
        [[ -n $best ]] || { apt-get update -q >&2; die "no linux-source-X.Y package in the apt archives (apt-get update was run; try again)"; }
        pkg=$best
    fi
    mapfile -t vers < <(linux_versions "$pkg")
    ((${#vers[@]})) || die "no versions of $pkg available"
    lv1=${LINUX_V1:-${vers[0]}}
    lv2=${LINUX_V2:-${vers[-1]}}
    V1=$CORPUS/$pkg-$lv1
    fetch_linux "$pkg" "$lv1" "$V1"
    V1_DESC="Debian $pkg $lv1 (kernel $(make -s -C "$V1" kernelversion 2>/dev/null || echo '?'))"
    if [[ $lv1 != "$lv2" ]]; then
        V2=$CORPUS/$pkg-$lv2
        fetch_linux "$pkg" "$lv2" "$V2"
        V2_DESC="Debian $pkg $lv2 (kernel $(make -s -C "$V2" kernelversion 2>/dev/null || echo '?'))"
    else
        V2=$CORPUS/$pkg-$lv1-derived-v2
        log "only one version of $pkg is available; deriving v2"
        rm -rf "$V2"
        cp -a "$V1" "$V2"
        V2_DESC="only one version of $pkg available: v1 with deterministic edits: $(derive_v2 "$V2")"
        V2_DERIVED=1
    fi
fi

# ---------------------------------------------------------------- run dirs
RUN=$BENCH_DIR/run
rm -rf "$RUN"
mkdir -p "$RUN/logs"
LOGS=$RUN/logs
SRC=$RUN/src # the live tree every tool backs up: v1, then updated in place to v2
RESTORE_FS=${RESTORE_FS:-$([[ $(id -u) == 0 ]] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null && echo fresh || echo same)}
# fresh_fs DIR: mount a newly made ext4 filesystem on DIR (RESTORE_FS=fresh).
fresh_fs() {
    [[ $RESTORE_FS == fresh ]] || return 0
    local img=$1.img size
    size=$(($(du -sb "$SRC" | cut -f1) * 3 + (1 << 30)))
    truncate -s "$size" "$img"
    mkfs.ext4 -q -F "$img"
    mkdir -p "$1"
    mount -o loop "$img" "$1"
}
# drop_fs DIR: unmount and remove what fresh_fs made.
drop_fs() {
    [[ $RESTORE_FS == fresh ]] || return 0
    mountpoint -q "$1" && umount "$1"
    rm -f "$1.img"
}
cleanup() {
    [[ -n $S3_PID ]] && kill "$S3_PID" 2>/dev/null
    for t in vt restic borg; do drop_fs "$RUN/restore/$t" 2>/dev/null || true; done
    ((KEEP)) || rm -rf "$RUN/vt" "$RUN/restic" "$RUN/borg" "$RUN/restore" "$RUN/src" "$RUN/s3root"
    release_page_reporting
}
trap cleanup EXIT

export XDG_CONFIG_HOME=$RUN/vt/config XDG_DATA_HOME=$RUN/vt/data XDG_CACHE_HOME=$RUN/cache
VT_DATADIR=$RUN/vt/datadir
VT_ARCHIVE=$RUN/vt/bench.vt
VT_STORE=$VT_DATADIR
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$RUN/restic/cache
RESTIC_REPO=$RUN/restic/repo
RESTIC_DIR=$RESTIC_REPO # where restic's repository lies on disk
export BORG_BASE_DIR=$RUN/borg/home BORG_RELOCATED_REPO_ACCESS_IS_OK=yes \
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO
BORG_REPO_DIR=$RUN/borg/repo
mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$RUN/restic" "$BORG_BASE_DIR" "$RUN/restore"

# ---------------------------------------------------------------- S3
S3_PID=""
if [[ $BACKEND == s3 ]]; then
    S3FS=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
    if [[ ! -x $S3FS ]]; then
        log "installing s3s-fs (cargo install --locked s3s-fs@0.14.1 --features binary)"
        cargo install --locked s3s-fs@0.14.1 --features binary >&2
    fi
    S3ROOT=$RUN/s3root
    mkdir -p "$S3ROOT"
    S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    export AWS_ACCESS_KEY_ID=vtbench AWS_SECRET_ACCESS_KEY=vtbench-secret-key
    # One line per request (method, path) in the log, nothing else.
    RUST_LOG=s3s::service=debug "$S3FS" --host 127.0.0.1 --port "$S3PORT" \
        --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$S3ROOT" >"$LOGS/s3s-fs.log" 2>&1 &
    S3_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null && break
        sleep 0.1
    done
    VT_STORE="s3(bucket=vt-bench,endpoint=http://127.0.0.1:$S3PORT)"
    VT_ARCHIVE=bench
    RESTIC_REPO=s3:http://127.0.0.1:$S3PORT/restic-bench
    RESTIC_DIR=$S3ROOT/restic-bench
    VT_DATADIR=$S3ROOT/vt-bench
    log "s3s-fs on 127.0.0.1:$S3PORT over $S3ROOT"
fi
# requests TOOL: requests s3s-fs has logged for TOOL's bucket, by method.
declare -A REQ
requests() {
    local bucket=$1
    { grep -o "req: Request { method: [A-Z]*, uri: /$bucket[/?]" "$LOGS/s3s-fs.log" 2>/dev/null || true; } |
        awk '{print $5}' | tr -d , | sort | uniq -c | awk '{printf "%s %s\n", $2, $1}'
}

# ---------------------------------------------------------------- measuring
declare -A WALL CPU RSS REPO EXACT RC
# measure TOOL PHASE CMD...: run CMD under /usr/bin/time; record wall, CPU, RSS.
measure() {
    local tool=$1 phase=$2 tf rc=0 before after
    shift 2
    tf=$LOGS/$tool-$phase.time
    log "$tool: $phase"
    [[ $BACKEND == s3 ]] && before=$(requests "$tool-bench")
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$LOGS/$tool-$phase.out" 2>"$LOGS/$tool-$phase.err" || rc=$?
    read -r w u s m < <(tail -1 "$tf")
    WALL[$R/$tool/$phase]=$w
    CPU[$R/$tool/$phase]=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')
    RSS[$R/$tool/$phase]=$(awk -v m="$m" 'BEGIN{printf "%.0f", m/1024}')
    RC[$R/$tool/$phase]=$rc
    if [[ $BACKEND == s3 ]]; then
        after=$(requests "$tool-bench")
        # Requests of this phase: after minus before, by method.
        REQ[$R/$tool/$phase]=$(join -a1 -e0 -o 0,1.2,2.2 <(sort <<<"$after") <(sort <<<"$before") |
            awk '$2-$3 > 0 {t += $2-$3; s = s (s ? ", " : "") $1 " " $2-$3} END {printf "%d (%s)", t, s}')
    fi
    if ((rc)); then
        log "$tool: $phase FAILED (exit $rc); stderr:"
        tail -5 "$LOGS/$tool-$phase.err" >&2
    fi
    return 0
}
mib() { { du -sb "$@" 2>/dev/null || true; } | awk '{s+=$1} END{printf "%.1f", s/1048576}'; }

repo_size() {
    case $1 in
        vt) if [[ $BACKEND == s3 ]]; then mib "$VT_DATADIR"; else mib "$VT_DATADIR" "$VT_ARCHIVE"; fi ;;
        restic) mib "$RESTIC_DIR" ;;
        borg) mib "$BORG_REPO_DIR" ;;
    esac
}

ingest() { # TOOL VERSION(v1|v2)
    local tool=$1 v=$2
    case $tool in
        vt)
            prepare_cache "$SRC"
            measure vt "ingest-$v" "$VT" -S "$VT_STORE" import "$SRC" "$VT_ARCHIVE" ;;
        restic)
            [[ -f $RUN/restic/initialised ]] || {
                restic -r "$RESTIC_REPO" init -q >"$LOGS/restic-init.out" 2>&1
                touch "$RUN/restic/initialised"
            }
            prepare_cache "$SRC"
            measure restic "ingest-$v" restic -r "$RESTIC_REPO" backup "$SRC"
            ;;
        borg)
            [[ -d $BORG_REPO_DIR ]] || borg init -e none "$BORG_REPO_DIR" >"$LOGS/borg-init.out" 2>&1
            prepare_cache "$SRC"
            measure borg "ingest-$v" env -C "$SRC" borg create --stats "$BORG_REPO_DIR::$v" .
            ;;
    esac
    REPO[$R/$tool/ingest-$v]=$(repo_size "$tool")
}

restore() { # TOOL: restore the newest snapshot (v2) into $RUN/restore/TOOL
    local tool=$1 t=$RUN/restore/$1 repo
    case $tool in vt) repo=$VT_DATADIR ;; restic) repo=$RESTIC_DIR ;; borg) repo=$BORG_REPO_DIR ;; esac
    # vt export wants the target absent or empty; a fresh filesystem's root
    # holds lost+found, so the snapshot goes one level down.
    fresh_fs "$t"
    [[ $RESTORE_FS == fresh ]] && t=$t/tree
    prepare_cache "$repo"
    case $tool in
        vt) measure vt restore-v2 "$VT" -S "$VT_STORE" export "$VT_ARCHIVE" "$t" ;;
        restic) measure restic restore-v2 restic -r "$RESTIC_REPO" restore latest --target "$t" ;;
        borg)
            mkdir -p "$t"
            measure borg restore-v2 env -C "$t" borg extract "$BORG_REPO_DIR::v2"
            ;;
    esac
}

# check TOOL DIR: compare the restore in DIR with the live tree's manifest.
check() {
    local tool=$1 d=$2 m=$LOGS/manifest-$1 nd ns nm nms detail
    if [[ ${RC[$R/$tool/restore-v2]} != 0 ]]; then
        EXACT[$R/$tool/restore-v2]="FAILED (exit ${RC[$R/$tool/restore-v2]})"
        return
    fi
    if [[ ! -d $d ]]; then
        EXACT[$R/$tool/restore-v2]="NO (no restored tree at $d)"
        return
    fi
    log "$tool: checking the restore"
    manifest "$d" "$m"
    diff "$LOGS/manifest-src.meta" "$m.meta" >"$LOGS/$tool-diff.meta" || true
    diff "$LOGS/manifest-src.sums" "$m.sums" >"$LOGS/$tool-diff.sums" || true
    diff "$LOGS/manifest-src.mtime" "$m.mtime" >"$LOGS/$tool-diff.mtime" || true
    diff "$LOGS/manifest-src.mtime-s" "$m.mtime-s" >"$LOGS/$tool-diff.mtime-s" || true
    nd=$(grep -c '^>' "$LOGS/$tool-diff.meta" || true)
    ns=$(grep -c '^>' "$LOGS/$tool-diff.sums" || true)
    nd=$((nd + $(grep -c '^<' "$LOGS/$tool-diff.meta" || true)))
    ns=$((ns + $(grep -c '^<' "$LOGS/$tool-diff.sums" || true)))
    # mtime differences among entries present in both trees
    nm=$(join -t $'\t' -j1 "$LOGS/manifest-src.mtime" "$m.mtime" | awk -F'\t' '$3!=$5' | wc -l)
    nms=$(join -t $'\t' -j1 "$LOGS/manifest-src.mtime-s" "$m.mtime-s" | awk -F'\t' '$3!=$5' | wc -l)
    if ((nd + ns > 0)); then
        EXACT[$R/$tool/restore-v2]="NO: $nd meta, $ns content diff lines"
    elif ((nm == 0)); then
        EXACT[$R/$tool/restore-v2]="yes"
    else
        detail=$(join -t $'\t' -j1 "$LOGS/manifest-src.mtime" "$m.mtime" |
            awk -F'\t' '$3!=$5 {c[$2]++} END {for (t in c) printf "%s%d %s", (n++ ? ", " : ""), c[t], (t=="f" ? "files" : t=="d" ? "dirs" : t=="l" ? "symlinks" : t)}')
        if ((nms == 0)); then
            EXACT[$R/$tool/restore-v2]="content yes; sub-second mtime differs ($detail)"
        else
            EXACT[$R/$tool/restore-v2]="content yes; mtime differs ($detail)"
        fi
    fi
}

# ---------------------------------------------------------------- run
# one_round: the whole series once, in fresh repositories, from a fresh
# copy of v1 (round $R; the tools in the order $ORDER).
one_round() {
    local tool d
    rm -rf "$RUN/vt" "$RUN/restic" "$RUN/borg" "$SRC"
    mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$RUN/restic" "$BORG_BASE_DIR" "$RUN/restore"
    if [[ $BACKEND == s3 ]]; then
        # Fresh buckets, and no index cache of an earlier round.
        rm -rf "${S3ROOT:?}/vt-bench" "$S3ROOT/restic-bench" "$XDG_CACHE_HOME/vt/s3"
        mkdir -p "$S3ROOT/vt-bench" "$S3ROOT/restic-bench"
    fi
    log "round $R: copying v1 into the live tree $SRC"
    cp -a "$V1" "$SRC"
    for tool in $ORDER; do
        ingest "$tool" v1
    done

    log "updating the live tree to v2 in place (rsync --checksum, no times: unchanged files keep inode and mtime)"
    rsync -rlpgoD --checksum --delete --itemize-changes "$V2/" "$SRC/" >"$LOGS/update-v2.rsync"
    n_new=$(grep -c '^>f+++' "$LOGS/update-v2.rsync" || true)
    n_chg=$(grep '^>f' "$LOGS/update-v2.rsync" | grep -vc '^>f+++' || true)
    n_del=$(grep '^\*deleting' "$LOGS/update-v2.rsync" | grep -vc '/$' || true)
    n_other=$(grep -vc -e '^>f' -e '^\*deleting' -e '^\.d' "$LOGS/update-v2.rsync" || true)

    for tool in $ORDER; do
        ingest "$tool" v2
    done

    log "manifest of the live v2 tree"
    manifest "$SRC" "$LOGS/manifest-src"

    for tool in $ORDER; do
        restore "$tool"
        d=$RUN/restore/$tool
        [[ $RESTORE_FS == fresh ]] && d=$d/tree
        case $tool in
            restic) check restic "$d$SRC" ;;
            *) check "$tool" "$d" ;;
        esac
        ((KEEP)) || { rm -rf "${d:?}"; drop_fs "$RUN/restore/$tool"; }
    done
}

t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((R = 1; R <= ROUNDS; R++)); do
    # Each tool goes first in turn: the first of a round meets the
    # freshest page cache and the machine's mood of the moment.
    read -ra tl <<<"$TOOLS"
    k=$(((R - 1) % ${#tl[@]}))
    ORDER="${tl[*]:k} ${tl[*]:0:k}"
    one_round
done
t_end=$(date +%s)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
mode_name="full run"
((QUICK)) && mode_name="quick mode"
echo "## vt vs restic vs borg ($(date -u +%Y-%m-%d), $mode_name$([[ $BACKEND == s3 ]] && echo ", into S3: s3s-fs $("$S3FS" --version 2>/dev/null | awk '{print $2}') on loopback"))"
echo
echo "Machine: $(nproc) CPUs ($cpu_model), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM,"
echo "$(uname -sr), work dir $BENCH_DIR on $(df -T "$BENCH_DIR" | awk 'NR==2{print $2" ("$1")"}')."
echo "Load average (1/5/15 min) at start: $load_start, at end: $load_end (other work on the machine skews timings)."
echo "Page cache: $CACHE_MODE ($([[ $CACHE_MODE == cold ]] && echo 'dropped before every measured command' || echo 'inputs pre-read before every measured command')); $PAGE_REPORTING_NOTE"
echo "Restore target: $([[ $RESTORE_FS == fresh ]] && echo 'a newly made ext4 filesystem per tool (sparse image on a loop device; RESTORE_FS=fresh)' || echo "$RUN/restore on the filesystem of $BENCH_DIR (RESTORE_FS=same)")."
echo
echo "Versions:"
echo "- vt: $("$VT" --version) (git $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO_ROOT" && git diff --quiet HEAD 2>/dev/null || echo ', dirty'); $(rustc --version 2>/dev/null || echo 'rustc ?')); defaults (SHA3-256, zstd)"
echo "- restic: $(restic version 2>/dev/null | head -1); defaults (repository v2, compression auto)"
echo "- borg: $(borg --version); defaults (-e none, lz4)"
echo
echo "Corpus:"
echo "- v1: $V1_DESC — $(corpus_line "$V1")"
echo "- v2: $V2_DESC — $(corpus_line "$V2")"
echo "- The live tree $SRC starts as a copy of v1 (cp -a) and is then updated in place to v2 by"
echo "  rsync --checksum without times, as a git checkout would: $n_chg files rewritten, $n_new added,"
echo "  $n_del removed ($n_other other entries changed); unchanged files keep their inode, mtime and ctime."
((V2_DERIVED)) && echo "- v2 is DERIVED from v1 (not a real second release): see the edits above."
echo
((ROUNDS > 1)) && echo "Every round ($ROUNDS, in fresh repositories; the tools took turns going first):" && echo
echo "| $( ((ROUNDS > 1)) && printf 'round | ')tool | phase | wall s | CPU s | peak RSS MiB | repo MiB | exact |$([[ $BACKEND == s3 ]] && printf ' requests |')"
echo "|$( ((ROUNDS > 1)) && printf -- '---:|')---|---|---:|---:|---:|---:|---|$([[ $BACKEND == s3 ]] && printf -- '---|')"
for ((R = 1; R <= ROUNDS; R++)); do
    for tool in $TOOLS; do
        for phase in ingest-v1 ingest-v2 restore-v2; do
            k=$R/$tool/$phase
            ex=${EXACT[$k]:-}
            if [[ $phase != restore-v2 && ${RC[$k]:-0} != 0 ]]; then ex="FAILED (exit ${RC[$k]})"; fi
            printf '| %s%s | %s | %s | %s | %s | %s | %s |%s\n' "$( ((ROUNDS > 1)) && printf '%s | ' "$R")" "$tool" "$phase" \
                "${WALL[$k]:-}" "${CPU[$k]:-}" "${RSS[$k]:-}" "${REPO[$k]:-}" "$ex" \
                "$([[ $BACKEND == s3 ]] && printf ' %s |' "${REQ[$k]:-}")"
        done
    done
done
echo
if ((ROUNDS > 1)); then
    echo "Medians over the $ROUNDS rounds, and each tool's wall time against restic's (the median of the"
    echo "rounds' ratios, each round's tools measured minutes apart):"
    echo
    echo "| tool | phase | wall s | CPU s | peak RSS MiB | repo MiB | wall / restic's |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for tool in $TOOLS; do
        for phase in ingest-v1 ingest-v2 restore-v2; do
            w=() c=() m=() b=() q=()
            for ((R = 1; R <= ROUNDS; R++)); do
                k=$R/$tool/$phase
                w+=("${WALL[$k]:-}") c+=("${CPU[$k]:-}") m+=("${RSS[$k]:-}")
                [[ -n ${REPO[$k]:-} ]] && b+=("${REPO[$k]}")
                rw=${WALL[$R/restic/$phase]:-}
                [[ -n $rw && -n ${WALL[$k]:-} ]] && q+=("$(awk -v a="${WALL[$k]}" -v b="$rw" 'BEGIN{if (b > 0) printf "%.3f", a/b}')")
            done
            printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$tool" "$phase" "$(median %.2f "${w[@]}")" \
                "$(median %.2f "${c[@]}")" "$(median %.0f "${m[@]}")" "$( ((${#b[@]})) && median %.1f "${b[@]}")" \
                "$( ((${#q[@]})) && median %.2f "${q[@]}")"
        done
    done
    echo
fi
echo "Notes:"
echo "- ingest-v2 is incremental into the same repository (vt: same archive file; restic: parent"
echo "  snapshot; borg: files cache). repo MiB is du -sb of the repository after the phase"
echo "  (vt: DataDir + archive file). restic's cache ($(mib "$RESTIC_CACHE_DIR" 2>/dev/null || echo 0) MiB) and"
echo "  borg's cache ($(mib "$BORG_BASE_DIR" 2>/dev/null || echo 0) MiB) live outside the repository and are not counted."
echo "- exact: restore of v2 compared with the live tree: types, modes, owners, sizes, symlink"
echo "  targets and sha256 of contents (\"yes\" also requires every mtime to match to the nanosecond;"
echo "  the top directory itself is not compared). restic restores under the full original path."
if [[ " $TOOLS " == *" vt "* ]]; then
    echo "- vt import output: v1: $(head -2 "$LOGS/vt-ingest-v1.out" 2>/dev/null | tr '\n' ' ')"
    echo "  v2: $(head -2 "$LOGS/vt-ingest-v2.out" 2>/dev/null | tr '\n' ' ')"
    echo "- vt stats: $("$VT" -S "$VT_STORE" stats "$VT_ARCHIVE" 2>&1 | tr -s ' ' | tr '\n' ';')"
fi
if [[ " $TOOLS " == *" restic "* ]]; then
    echo "- restic v2: $(grep -E '^(Files|Dirs|Added)' "$LOGS/restic-ingest-v2.out" 2>/dev/null | tr -s ' ' | tr '\n' ';')"
fi
if [[ " $TOOLS " == *" borg "* ]]; then
    echo "- borg v2: $(grep -E '^(This archive|Number of files)' "$LOGS/borg-ingest-v2.err" 2>/dev/null | tr -s ' ' | tr '\n' ';')"
fi
for tool in $TOOLS; do
    for phase in ingest-v1 ingest-v2 restore-v2; do
        if [[ -s $LOGS/$tool-$phase.err && $tool == vt ]]; then
            echo "- vt $phase stderr: $(head -c 600 "$LOGS/$tool-$phase.err" | tr '\n' ' ')"
        fi
    done
    if [[ -s $LOGS/$tool-diff.meta || -s $LOGS/$tool-diff.sums ]]; then
        echo "- $tool restore differences (first lines; < live tree, > restore):"
        cat "$LOGS/$tool-diff.meta" "$LOGS/$tool-diff.sums" | grep '^[<>]' | head -8 | sed 's/^/    /'
    elif [[ -s $LOGS/$tool-diff.mtime ]]; then
        echo "- $tool mtime differences (first lines; < live tree, > restore):"
        grep '^[<>]' "$LOGS/$tool-diff.mtime" | head -6 | sed 's/^/    /'
    fi
done
echo "- total benchmark time $((t_end - t_start)) s; logs in $LOGS"
