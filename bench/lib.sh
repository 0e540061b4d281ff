# bench/lib.sh — helpers shared by the benchmark scripts (sourced).

# log MESSAGE...: a timestamped progress line on standard error.
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# hold_page_reporting: on a VM whose balloon reports free memory to the
# host (virtio-balloon free page reporting), the gigabytes a drop_caches
# frees are handed back to the host about two seconds later, and whoever
# touches them first afterwards waits for the host to fault each page in
# again: the host's disk emulation filling ext4's page cache, or a FUSE
# server copying its replies into the mount's. Measured on this machine
# (cold reads of a 1 GiB file 6 s after the drop, 4-5 each): ext4 1.25-1.98
# s with the report against 0.64-0.90 s held off, `vt mount` 1.04-1.32 s
# against 0.72-0.86 s; a read started within 2 s of the drop escapes it,
# so which measurements paid depended on timing. The benchmarks' own drops
# cause it (a machine in use recycles its page cache without the host), so
# this holds reporting off for the run where the kernel has the knobs
# (min_free_ms and max_waiting_mib of the page_reporting module) and root
# may set them; PAGE_REPORTING=keep leaves them alone. Sets
# PAGE_REPORTING_NOTE to a sentence for the report. Sets an EXIT trap that
# restores them (release_page_reporting); a script that sets its own EXIT
# trap later calls release_page_reporting from it.
PAGE_REPORTING_DIR=/sys/module/page_reporting/parameters
PAGE_REPORTING_SAVED=
PAGE_REPORTING_NOTE=
hold_page_reporting() {
    local d=$PAGE_REPORTING_DIR
    case ${PAGE_REPORTING:-hold} in
    hold | keep) ;;
    *)
        echo "${0##*/}: PAGE_REPORTING must be hold or keep" >&2
        exit 2
        ;;
    esac
    if [[ ! -w $d/min_free_ms || ! -w $d/max_waiting_mib ]]; then
        PAGE_REPORTING_NOTE="no free page reporting knobs on this kernel."
        return 0
    fi
    if [[ ${PAGE_REPORTING:-hold} == keep ]]; then
        PAGE_REPORTING_NOTE="free page reporting left as it was (PAGE_REPORTING=keep): min_free_ms $(<"$d/min_free_ms"), max_waiting_mib $(<"$d/max_waiting_mib")."
        return 0
    fi
    PAGE_REPORTING_SAVED="$(<"$d/min_free_ms") $(<"$d/max_waiting_mib")"
    trap release_page_reporting EXIT
    if echo 300000 >"$d/min_free_ms" 2>/dev/null &&
        echo $(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) >> 10)) >"$d/max_waiting_mib" 2>/dev/null; then
        PAGE_REPORTING_NOTE="free page reporting to the host held off during the run (memory freed by a drop is reported only after 5 minutes free), as bench/lib.sh explains."
    else
        release_page_reporting
        PAGE_REPORTING_NOTE="free page reporting could not be held off."
    fi
}
release_page_reporting() {
    [[ -n $PAGE_REPORTING_SAVED ]] || return 0
    local d=$PAGE_REPORTING_DIR min wait
    read -r min wait <<<"$PAGE_REPORTING_SAVED"
    echo "$min" >"$d/min_free_ms" 2>/dev/null || true
    echo "$wait" >"$d/max_waiting_mib" 2>/dev/null || true
    PAGE_REPORTING_SAVED=
}

# median FMT X...: the middle value of the Xs (the mean of the middle two
# for an even count; empty Xs are skipped), printed with printf format FMT.
median() {
    local fmt=$1
    shift
    printf '%s\n' "$@" | grep . | sort -g |
        awk -v f="$fmt" '{v[NR]=$1} END{if (NR) printf f, NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}

# write_large FILE MIB: the mount benchmarks' large file, MIB MiB, the same
# bytes every time: each MiB half text (compressible; excerpts of one pool
# of words, so some blocks recur) and half random bytes (no two MiB alike).
write_large() {
    python3 - "$1" "$2" <<'PY'
import random, sys
r = random.Random(1)
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(5000)]
pool = b" ".join(r.choice(words) for _ in range(2_000_000))
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        at = r.randrange(len(pool) - (1 << 19))
        f.write(pool[at : at + (1 << 19)] + r.randbytes(1 << 19))
PY
}

# tree_arg SCRIPT [TREE]: the tree a single-tree benchmark uses: TREE, else
# the oldest kernel tree compare.sh unpacked under $BENCH_DIR/corpus, else
# the cargo registry sources. Exits if it is not a directory, or if
# BENCH_DIR lies inside the repository ($ROOT).
tree_arg() {
    local script=$1 tree
    shift
    if [[ $# -ge 1 ]]; then
        tree=$1
    else
        tree=$(ls -d "$BENCH_DIR"/corpus/linux-source-*[0-9] 2>/dev/null | sort -V | head -1 || true)
        [[ -n $tree ]] || tree=/root/.cargo/registry/src
    fi
    [[ -d $tree ]] || { echo "$script: $tree is not a directory" >&2; exit 2; }
    case "$BENCH_DIR/" in "$ROOT"/*) echo "$script: BENCH_DIR is inside the repository" >&2; exit 2 ;; esac
    echo "$tree"
}

# ---------------------------------------------------------------- corpora
# (compare.sh and remote.sh)

# derive_v2 DIR: edit DIR in place, deterministically: of the regular files
# in byte order, every (N/400)-th gets in turn: a line appended, a line
# inserted at its middle byte, removed, or copied (with an extra line) to a
# new file beside it. About 100 of each, whatever the corpus size. Prints
# what it did.
derive_v2() {
    local d=$1 files n step i k f sz h new
    mapfile -t files < <(cd "$d" && find . -type f -printf '%P\n' | sort)
    n=${#files[@]}
    step=$((n / 400))
    ((step >= 1)) || step=1
    local app=0 ins=0 rem=0 add=0
    for ((i = step / 2; i < n; i += step)); do
        f=$d/${files[i]}
        k=$((i / step))
        case $((k % 4)) in
            0)
                printf '\n/* vt-bench v2: appended line %d */\n' "$k" >>"$f"
                app=$((app + 1))
                ;;
            1)
                sz=$(stat -c %s "$f")
                h=$((sz / 2))
                {
                    head -c "$h" "$f"
                    printf '\n/* vt-bench v2: inserted line %d */\n' "$k"
                    tail -c +"$((h + 1))" "$f"
                } >"$f.v2tmp"
                chmod --reference="$f" "$f.v2tmp"
                mv "$f.v2tmp" "$f"
                ins=$((ins + 1))
                ;;
            2)
                rm -f "$f"
                rem=$((rem + 1))
                ;;
            3)
                new=$(dirname "$f")/vtbench-new-$k-$(basename "$f")
                { cat "$f"; printf '\n/* vt-bench v2: new file %d */\n' "$k"; } >"$new"
                chmod --reference="$f" "$new"
                add=$((add + 1))
                ;;
        esac
    done
    echo "$app appended, $ins edited in the middle, $rem removed, $add added (copies of existing files plus one line)"
}

# linux_versions PKG [APT-OPTION...]: distinct available versions of PKG,
# oldest first.
linux_versions() {
    local pkg=$1
    shift
    apt-cache "$@" madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | sort -u | sort -V
}

# fetch_linux PKG VERSION DEST [APT-OPTION...]: unpack the kernel tarball of
# PKG=VERSION into DEST (the .deb is kept in $CORPUS/debs; an unpacked
# tree with DEST.ready beside it is reused).
fetch_linux() {
    local pkg=$1 ver=$2 dest=$3 debs=$CORPUS/debs deb
    shift 3
    if [[ -f $dest.ready ]]; then
        log "reusing $dest ($pkg $ver)"
        return
    fi
    mkdir -p "$debs"
    chmod 0777 "$debs" # apt-get download runs as _apt
    deb=$(ls "$debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
    if [[ -z $deb ]]; then
        log "downloading $pkg=$ver"
        (cd "$debs" && apt-get "$@" download -q "$pkg=$ver" >&2)
        deb=$(ls "$debs/${pkg}_${ver//:/%3a}_"*.deb | head -1)
    fi
    log "unpacking $(basename "$deb") into $dest"
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg-deb --fsys-tarfile "$deb" |
        tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
        tar -xJ --strip-components=1 -C "$dest"
    echo "$pkg $ver" >"$dest.ready"
}

# manifest DIR OUT: OUT.meta (type, mode, owner, size, path, symlink target),
# OUT.sums (sha256 of every regular file), OUT.mtime and OUT.mtime-s (mtimes
# in nanoseconds and in whole seconds). The top directory itself is left out.
manifest() {
    local d=$1 out=$2
    (cd "$d" && find . -mindepth 1 \
        \( -type f -printf 'f %m %U:%G %s %P\n' \) -o \
        \( -type l -printf 'l %U:%G %P -> %l\n' \) -o \
        \( -type d -printf 'd %m %U:%G %P\n' \) -o \
        -printf '%y %m %U:%G %P\n') | sort >"$out.meta"
    (cd "$d" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) >"$out.sums"
    (cd "$d" && find . -mindepth 1 -printf '%P\t%y\t%T@\n') | sort >"$out.mtime"
    awk -F'\t' -v OFS='\t' '{sub(/\..*/, "", $3); print}' "$out.mtime" >"$out.mtime-s"
}

# corpus_line DIR: "N files, N dirs, N symlinks, N bytes (N MiB) in regular files".
corpus_line() {
    (cd "$1" && find . -printf '%y %s\n') |
        awk '$1=="f"{f++; b+=$2} $1=="d"{d++} $1=="l"{l++}
             END{printf "%d files, %d dirs, %d symlinks, %d bytes (%.1f MiB) in regular files", f, d, l, b, b/1048576}'
}

# ---------------------------------------------------------------- scanners
# (gz.sh, vtd.sh, media.sh)

# scanner_timing LABEL GLOB DIR ROUNDS: how long a fresh import of DIR takes
# with the scanners and with plain CDC for the files GLOB matches
# ([scanners] GLOB = "none"), ROUNDS times each, each mode first in turn so
# that a drift of the machine's speed hits both alike. Prints the medians
# as a table row (LABEL names the scanner) and every run. Uses VT and B:
# compiled components are cached in B/cache, the stores are B/time-MODE.
scanner_timing() {
    local label=$1 glob=$2 dir=$3 rounds=$4 r s c ts=() tc=()
    for ((r = 1; r <= rounds; r++)); do
        if ((r % 2)); then
            ts+=("$(timed_import scanner "$glob" "$dir")") tc+=("$(timed_import cdc "$glob" "$dir")")
        else
            tc+=("$(timed_import cdc "$glob" "$dir")") ts+=("$(timed_import scanner "$glob" "$dir")")
        fi
    done
    s=$(median %.2f "${ts[@]}") c=$(median %.2f "${tc[@]}")
    echo "| plain CDC | wasm $label scanner | overhead |"
    echo "|---:|---:|---:|"
    printf '| %.2f s | %.2f s | %+.1f%% |\n' "$c" "$s" "$(echo "($s / $c - 1) * 100" | bc -l)"
    echo
    echo "runs (s), plain CDC: $(printf '%.2f ' "${tc[@]}"); scanner: $(printf '%.2f ' "${ts[@]}")"
}

# timed_import scanner|cdc GLOB DIR: seconds of an import of DIR into a
# fresh store (see scanner_timing).
timed_import() {
    local home=$B/time-$1 t0 t1
    rm -rf "$home" && mkdir -p "$home/cfg/vt"
    if [ "$1" = cdc ]; then printf '[scanners]\n"%s" = "none"\n' "$2" > "$home/cfg/vt/vtrc"; fi
    t0=$(date +%s.%N)
    XDG_CONFIG_HOME=$home/cfg XDG_DATA_HOME=$home/data XDG_CACHE_HOME=$B/cache "$VT" -q import "$3" timed
    t1=$(date +%s.%N)
    rm -rf "$home"
    echo "$t1 - $t0" | bc -l
}
