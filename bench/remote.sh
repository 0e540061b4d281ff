#!/usr/bin/env bash
# bench/remote.sh — vt's remote store (`vt serve` on loopback TCP) against
# vt's local DataDir, restic over sftp and borg over ssh, on loopback; then
# vt's remote store again through a proxy that delays every chunk of bytes.
#
# Rows, each round: every tool ingests v1 of a live tree; the tree is
# updated in place to v2; every tool ingests v2 (incrementally); every tool
# restores v2 and the restore is checked byte for byte. The tools:
#   vt-local   vt -S DATADIR import/export
#   vt-remote  vt -S tcp:127.0.0.1:PORT import/export against
#              `vt -S DATADIR serve --listen 127.0.0.1:PORT`
#   restic     restic -r sftp:… (OpenSSH's sshd, started by this script on a
#              free loopback port with its own host key and config)
#   borg       borg over ssh://… to the same sshd (`borg serve` there)
#   vt-delay   vt-remote into a fresh DataDir through bench/delayproxy,
#              which delays every chunk DELAY_MS each way
# Then the goals, as ratios of wall times, with PASS/FAIL. See
# bench/README.md ("Remote stores") for what is measured.
#
# Usage: bench/remote.sh [--quick] [--warm] [--keep]
#   --quick   small corpus (the cargo registry sources, else this repo) with a
#             derived v2, for smoke-testing the script
#   --warm    do not drop the page cache; pre-read inputs instead
#   --keep    keep the repositories and restores in $BENCH_DIR/remote
# Environment:
#   BENCH_DIR     work directory [/tmp/vt-bench]; never inside the repo.
#                 The corpus is shared with compare.sh ($BENCH_DIR/corpus);
#                 this script works in $BENCH_DIR/remote
#   CORPUS_V1, CORPUS_V2  benchmark these two directories instead (with only
#                 CORPUS_V1, v2 is derived from it by deterministic edits)
#   LINUX_PKG_V1, LINUX_PKG_V2  Debian packages of v1 and v2
#                 [linux-source-6.1, linux-source-6.12]
#   LINUX_V1, LINUX_V2  their package versions [the newest of each]
#   BACKPORTS     when LINUX_PKG_V2 is not in the configured apt archives,
#                 look for it in CODENAME-backports through a private apt
#                 list under $BENCH_DIR/apt (the system's apt configuration
#                 is not touched) [1]; 0: do not. When it is still not
#                 found, the newest two linux-source versions available are
#                 used, and the report says so
#   TOOLS         subset of "vt-local vt-remote restic borg vt-delay" [all];
#                 "vt" stands for the three vt ones
#   ROUNDS        run the whole series this many times, each in fresh
#                 repositories from a fresh copy of v1, the tools taking turns
#                 going first [1]; the report gives every round and medians
#   DELAY_MS      delay of the proxy, each way [10]
#   RESTORE_FS    "fresh" [default when root]: each tool restores into a
#                 newly made ext4 filesystem (see compare.sh); "same":
#                 under $BENCH_DIR/remote/restore
#   PAGE_REPORTING  "hold" [default]: on a VM that reports free memory to
#                 its host, hold that off for the run (see bench/lib.sh);
#                 "keep": leave it as it is
#
# The report (versions, machine, corpus, table, goals, notes) goes to
# stdout; progress goes to stderr. Exit status 0 even when goals fail.

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
            echo "remote.sh: unknown argument $a (try --help)" >&2
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
        echo "remote.sh: BENCH_DIR=$BENCH_DIR is inside the repository $REPO_ROOT; choose another" >&2
        exit 2
        ;;
esac
[[ $BENCH_DIR == / ]] && { echo "remote.sh: BENCH_DIR must not be /" >&2; exit 2; }
ALL_TOOLS="vt-local vt-remote restic borg vt-delay"
TOOLS=${TOOLS:-$ALL_TOOLS}
TOOLS=$(for t in $TOOLS; do [[ $t == vt ]] && echo "vt-local vt-remote vt-delay" || echo "$t"; done | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')
TOOLS=${TOOLS% }
for t in $TOOLS; do
    [[ " $ALL_TOOLS " == *" $t "* ]] || { echo "remote.sh: unknown tool $t in TOOLS (known: $ALL_TOOLS, vt)" >&2; exit 2; }
done
[[ -n $TOOLS ]] || { echo "remote.sh: TOOLS is empty" >&2; exit 2; }
ROUNDS=${ROUNDS:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "remote.sh: ROUNDS must be a positive number, not $ROUNDS" >&2; exit 2; }
DELAY_MS=${DELAY_MS:-10}
[[ $DELAY_MS =~ ^[0-9]+$ ]] || { echo "remote.sh: DELAY_MS must be a whole number, not $DELAY_MS" >&2; exit 2; }
BACKPORTS=${BACKPORTS:-1}
has() { [[ " $TOOLS " == *" $1 "* ]]; }
NEED_SSH=0
if has restic || has borg; then NEED_SSH=1; fi

# shellcheck source=bench/lib.sh
. "$REPO_ROOT/bench/lib.sh"
die() { log "error: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (sshd, drop_caches, apt-get, loop mounts)"
hold_page_reporting

# ---------------------------------------------------------------- prerequisites
need_pkgs=()
has restic && ! command -v restic >/dev/null && need_pkgs+=(restic)
has borg && ! command -v borg >/dev/null && need_pkgs+=(borgbackup)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
if ((NEED_SSH)); then
    [[ -x /usr/sbin/sshd ]] || need_pkgs+=(openssh-server)
    [[ -x /usr/lib/openssh/sftp-server ]] || need_pkgs+=(openssh-sftp-server)
    command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need_pkgs+=(openssh-client)
fi
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Installing openssh-server must not start the system's sshd: without a
    # policy-rc.d (containers usually have one), one that forbids starting
    # services is put in place for the installation only.
    tmp_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# bench/remote.sh, during apt-get install only\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        tmp_policy=1
    fi
    if ! apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >&2 || { ((tmp_policy)) && rm -f /usr/sbin/policy-rc.d; die "apt-get install ${need_pkgs[*]} failed"; }
    fi
    ((tmp_policy)) && rm -f /usr/sbin/policy-rc.d
fi

log "building vt (cargo build --release -p vt) in $REPO_ROOT"
(cd "$REPO_ROOT" && cargo build --release -q -p vt >&2)
VT=$REPO_ROOT/target/release/vt
[[ -x $VT ]] || die "no $VT after the build"
# vt serve is what vt-remote and vt-delay need; without it their rows fail.
VT_SERVE=1
if ! "$VT" serve --help >/dev/null 2>&1; then
    VT_SERVE=0
    if has vt-remote || has vt-delay; then
        log "WARNING: $VT has no 'serve' command: the vt-remote and vt-delay rows will fail"
    fi
fi
DELAYPROXY=$REPO_ROOT/bench/delayproxy/target/release/delayproxy
if has vt-delay; then
    log "building the delay proxy (cargo build --release --manifest-path bench/delayproxy/Cargo.toml)"
    cargo build --release -q --manifest-path "$REPO_ROOT/bench/delayproxy/Cargo.toml" >&2
    [[ -x $DELAYPROXY ]] || die "no $DELAYPROXY after the build"
fi

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
V1_DESC="" V2_DESC="" V2_DERIVED=0 CORPUS_NOTE=""

# backports_apt: set up a private apt list of CODENAME-backports under
# $BENCH_DIR/apt (sources, lists and caches all there; nothing of the
# system's apt state changes) and print the apt options that use it.
backports_apt() {
    local codename d=$BENCH_DIR/apt opts
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [[ -n $codename ]] || return 1
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/sources.list.d"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename-backports main" >"$d/sources.list"
    opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/sources.list.d"
        -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o "APT::Sandbox::User=root")
    log "looking for ${LINUX_PKG_V2:-linux-source-6.12} in $codename-backports (private apt list in $d)"
    apt-get "${opts[@]}" update -q >&2 || return 1
    printf '%s\n' "${opts[@]}"
}

# newest_two: the newest two upstream versions among the linux-source-X.Y
# packages of the configured archives, as "PKG VERSION" lines, older first.
newest_two() {
    local p v
    for p in $(apt-cache search --names-only '^linux-source-[0-9.]+$' | awk '{print $1}'); do
        for v in $(linux_versions "$p"); do echo "$p $v ${v%-*}"; done
    done | sort -k3,3V -k2,2V | awk '{last[$3]=$1" "$2} END{for (u in last) print u, last[u]}' | sort -k1,1V | tail -2 | cut -d' ' -f2-
}

if ((QUICK)); then
    if [[ -d /root/.cargo/registry/src ]]; then
        QSRC=/root/.cargo/registry/src
    else
        QSRC=$REPO_ROOT
    fi
    V1=$CORPUS/quick-remote-v1
    V2=$CORPUS/quick-remote-v2
    rm -rf "$V1" "$V2"
    mkdir -p "$V1"
    log "quick corpus: copying $QSRC (without target/ and .git/)"
    rsync -a --exclude=/target --exclude=/.git "$QSRC/" "$V1/"
    V1_DESC="quick: copy of $QSRC (without target/, .git/)"
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
    p1=${LINUX_PKG_V1:-linux-source-6.1}
    p2=${LINUX_PKG_V2:-linux-source-6.12}
    apt2=()
    mapfile -t vers1 < <(linux_versions "$p1")
    if ((${#vers1[@]} == 0)); then
        apt-get update -q >&2 || true
        mapfile -t vers1 < <(linux_versions "$p1")
    fi
    mapfile -t vers2 < <(linux_versions "$p2")
    if ((${#vers2[@]} == 0 && BACKPORTS)); then
        if mapfile -t apt2 < <(backports_apt) && ((${#apt2[@]})); then
            mapfile -t vers2 < <(linux_versions "$p2" "${apt2[@]}")
        fi
        ((${#vers2[@]})) || apt2=()
    fi
    if ((${#vers1[@]} && ${#vers2[@]})); then
        lv1=${LINUX_V1:-${vers1[-1]}}
        lv2=${LINUX_V2:-${vers2[-1]}}
        if ((${#apt2[@]})); then
            CORPUS_NOTE="$p2 is not in the configured apt archives; it came from $(awk '{print $4}' "$BENCH_DIR/apt/sources.list") (private apt list under $BENCH_DIR/apt)"
        fi
    else
        mapfile -t two < <(newest_two)
        ((${#two[@]} == 2)) || die "neither $p1 and $p2 nor two linux-source versions are available"
        p1=${two[0]% *} lv1=${two[0]#* } p2=${two[1]% *} lv2=${two[1]#* }
        CORPUS_NOTE="FALLBACK: ${LINUX_PKG_V1:-linux-source-6.1} and ${LINUX_PKG_V2:-linux-source-6.12} are not both available; the newest two linux-source versions available were used instead"
        log "$CORPUS_NOTE: $p1 $lv1, $p2 $lv2"
    fi
    V1=$CORPUS/$p1-$lv1
    fetch_linux "$p1" "$lv1" "$V1"
    V1_DESC="Debian $p1 $lv1 (kernel $(make -s -C "$V1" kernelversion 2>/dev/null || echo '?'))"
    V2=$CORPUS/$p2-$lv2
    fetch_linux "$p2" "$lv2" "$V2" ${apt2[@]+"${apt2[@]}"}
    V2_DESC="Debian $p2 $lv2 (kernel $(make -s -C "$V2" kernelversion 2>/dev/null || echo '?'))"
fi
[[ $V1 != "$V2" ]] || die "v1 and v2 are the same directory ($V1)"

# ---------------------------------------------------------------- run dirs
RUN=$BENCH_DIR/remote
# Restore filesystems a killed earlier run left mounted.
if [[ -d $RUN ]]; then
    { findmnt -rn -o TARGET | grep -F "$RUN/" || true; } | sort -r | while read -r m; do umount "$m" || umount -l "$m"; done
fi
rm -rf "$RUN"
mkdir -p "$RUN/logs" "$RUN/restore"
LOGS=$RUN/logs
SRC=$RUN/src # the live tree every tool backs up: v1, then updated in place to v2
ARCH=bench   # the name of vt's archive (snapshot) in each store
RESTORE_FS=${RESTORE_FS:-$(command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null && echo fresh || echo same)}
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

export XDG_CONFIG_HOME=$RUN/xdg/config XDG_DATA_HOME=$RUN/xdg/data XDG_CACHE_HOME=$RUN/xdg/cache
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$RUN/restic/cache
export BORG_BASE_DIR=$RUN/borg/home BORG_PASSPHRASE=bench BORG_RELOCATED_REPO_ACCESS_IS_OK=yes \
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO
RESTIC_REPO_DIR=$RUN/restic/repo
BORG_REPO_DIR=$RUN/borg/repo
datadir() { echo "$RUN/$1/datadir"; } # TOOL (vt-*)

# ---------------------------------------------------------------- ports
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port: a port nobody listens on, below the ephemeral range.
free_port() {
    local lo p i
    lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    ((lo > 21000)) || lo=32768
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % (lo - 20000)))
        if ! port_open "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free TCP port found"
}
# wait_port PORT PID SECONDS: until PORT accepts connections; false if PID
# exits first or the time runs out.
wait_port() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        port_open "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
# child_of PID: the (first) child process of PID.
child_of() {
    local c
    c=$(awk '{print $1}' "/proc/$1/task/$1/children" 2>/dev/null || true)
    [[ -n $c ]] || c=$(pgrep -P "$1" | head -1 || true)
    echo "$c"
}

# ---------------------------------------------------------------- sshd
SSHD_PID="" SSH_PORT="" SSH_CIPHER="" SSHD_DIR=$RUN/sshd
SSH_CFG=$SSHD_DIR/ssh_config
# start_sshd: OpenSSH's sshd on a free loopback port, with its own host key,
# client key, config and log under $SSHD_DIR; root logs in by key only.
start_sshd() {
    mkdir -p "$SSHD_DIR" /run/sshd "$RUN/borg/server-home"
    chmod 0755 /run/sshd
    ssh-keygen -q -t ed25519 -N '' -C vt-bench-host -f "$SSHD_DIR/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C vt-bench-client -f "$SSHD_DIR/client_ed25519"
    cp "$SSHD_DIR/client_ed25519.pub" "$SSHD_DIR/authorized_keys"
    SSH_PORT=$(free_port)
    cat >"$SSHD_DIR/sshd_config" <<EOF
# bench/remote.sh: a private sshd for the benchmark (loopback only)
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHD_DIR/host_ed25519
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
MaxStartups 100
MaxSessions 100
# borg serve keeps its state there, not in root's home
SetEnv BORG_BASE_DIR=$RUN/borg/server-home
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
    /usr/sbin/sshd -t -f "$SSHD_DIR/sshd_config" || die "sshd -t rejects $SSHD_DIR/sshd_config"
    /usr/sbin/sshd -D -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log" &
    SSHD_PID=$!
    wait_port "$SSH_PORT" "$SSHD_PID" 20 || die "sshd did not start on port $SSH_PORT: $(tail -3 "$SSHD_DIR/sshd.log" 2>/dev/null)"
    printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$SSHD_DIR/host_ed25519.pub")" >"$SSHD_DIR/known_hosts"
    cat >"$SSH_CFG" <<EOF
Host vtbench
    HostName 127.0.0.1
    Port $SSH_PORT
    User root
    IdentityFile $SSHD_DIR/client_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $SSHD_DIR/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ControlMaster no
    ControlPath none
    LogLevel ERROR
EOF
    ssh -F "$SSH_CFG" vtbench true || die "ssh to the benchmark's sshd (port $SSH_PORT) fails; see $SSHD_DIR/sshd.log"
    SSH_CIPHER=$(ssh -F "$SSH_CFG" -o LogLevel=DEBUG1 vtbench true 2>&1 |
        awk '/kex: client->server cipher/{for (i=1;i<=NF;i++) if ($i=="cipher:") c=$(i+1)} /kex: algorithm/{k=$NF} END{print c" (kex "k")"}')
    log "sshd (pid $SSHD_PID) listening on 127.0.0.1:$SSH_PORT; ssh cipher $SSH_CIPHER"
}
# sshd_cpu: user and system CPU ticks of the sshd and its reaped children
# (every connection's sshd, sftp-server, borg serve).
sshd_cpu() { awk '{print $14 + $16, $15 + $17}' "/proc/$SSHD_PID/stat"; }
# sshd_settle: wait (up to 10 s) until the sshd has no connection left.
sshd_settle() {
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -z $(cat "/proc/$SSHD_PID/task/$SSHD_PID/children" 2>/dev/null) ]] && return 0
        sleep 0.05
    done
}
RESTIC=(restic -r "sftp:vtbench:$RESTIC_REPO_DIR" -o "sftp.command=ssh -F $SSH_CFG vtbench -s sftp")
BORG_URL=ssh://vtbench$BORG_REPO_DIR
export BORG_RSH="ssh -F $SSH_CFG"

# ---------------------------------------------------------------- vt serve
SRV_TPID="" SRV_PID="" PROXY_PID="" ENDPOINT=""
# srv_start TOOL PHASE: `vt serve` on the tool's DataDir on a free port
# (under /usr/bin/time, for its CPU), and for vt-delay the delay proxy in
# front of it; sets ENDPOINT. False, with the reason in the server's
# .err log, when it does not come up.
srv_start() {
    local tool=$1 phase=$2 pfx=$LOGS/r$R-$1-$2 port pport
    SRV_TPID="" SRV_PID="" PROXY_PID="" ENDPOINT=""
    if ((!VT_SERVE)); then
        echo "$VT has no 'serve' command ($("$VT" --version 2>&1))" >"$pfx.server.err"
        return 1
    fi
    port=$(free_port)
    /usr/bin/time -f '%e %U %S %M' -o "$pfx.server.time" \
        "$VT" -S "$(datadir "$tool")" serve --listen "127.0.0.1:$port" >"$pfx.server.out" 2>"$pfx.server.err" &
    SRV_TPID=$!
    if ! wait_port "$port" "$SRV_TPID" 60; then
        echo "vt serve did not accept connections on 127.0.0.1:$port" >>"$pfx.server.err"
        srv_stop "$tool" "$phase"
        return 1
    fi
    SRV_PID=$(child_of "$SRV_TPID")
    ENDPOINT=tcp:127.0.0.1:$port
    if [[ $tool == vt-delay ]]; then
        pport=$(free_port)
        "$DELAYPROXY" "127.0.0.1:$pport" "127.0.0.1:$port" "$DELAY_MS" 2>"$pfx.proxy.err" &
        PROXY_PID=$!
        if ! wait_port "$pport" "$PROXY_PID" 10; then
            echo "the delay proxy did not start: $(cat "$pfx.proxy.err")" >>"$pfx.server.err"
            srv_stop "$tool" "$phase"
            return 1
        fi
        ENDPOINT=tcp:127.0.0.1:$pport
    fi
    return 0
}
# srv_stop TOOL PHASE: SIGTERM to the server (it syncs and exits), wait for
# it; record its CPU, peak RSS and stopping time, and the proxy's bytes.
srv_stop() {
    local tool=$1 phase=$2 k=$R/$1/$2 pfx=$LOGS/r$R-$1-$2 t0 w u s m
    [[ -n $SRV_TPID ]] || return 0
    t0=$(date +%s.%N)
    kill -TERM "${SRV_PID:-$SRV_TPID}" 2>/dev/null || true
    wait "$SRV_TPID" 2>/dev/null || true
    STOP[$k]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
    if [[ -s $pfx.server.time ]] && read -r w u s m < <(tail -1 "$pfx.server.time") && [[ $m =~ ^[0-9]+$ ]]; then
        SU[$k]=$u SS[$k]=$s SRSS[$k]=$(awk -v m="$m" 'BEGIN{printf "%.0f", m/1024}')
    fi
    if [[ -n $PROXY_PID ]]; then
        sleep "$(awk -v d="$DELAY_MS" 'BEGIN{print 3*d/1000 + 0.05}')" # let the last closes through
        kill -TERM "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
        # (the connection that probed the port carried nothing)
        NET[$k]=$(awk '/ closed: / && $5 + $10 > 0 {u+=$5; d+=$10; n++} END{printf "%.1f MiB to the server, %.1f MiB back, %d connection(s)", u/1048576, d/1048576, n}' "$pfx.proxy.err")
    fi
    SRV_TPID="" SRV_PID="" PROXY_PID=""
}

cleanup() {
    local t
    [[ -n $SRV_TPID ]] && { kill -TERM "${SRV_PID:-$SRV_TPID}" 2>/dev/null; wait "$SRV_TPID" 2>/dev/null; }
    [[ -n $PROXY_PID ]] && { kill -TERM "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; }
    [[ -n $SSHD_PID ]] && { kill -TERM "$SSHD_PID" 2>/dev/null; wait "$SSHD_PID" 2>/dev/null; }
    for t in $ALL_TOOLS; do drop_fs "$RUN/restore/$t" 2>/dev/null || true; done
    if ((!KEEP)); then
        for t in $ALL_TOOLS; do rm -rf "${RUN:?}/$t"; done
        rm -rf "$RUN/restore" "$RUN/src" "$RUN/xdg"
    fi
    release_page_reporting
    true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- measuring
declare -A WALL CU CS CRSS SU SS SRSS STOP NET REPO EXACT RC WHY
# measure TOOL PHASE CMD...: run CMD under /usr/bin/time; record wall, client
# CPU and RSS (and, for restic and borg, the CPU of the sshd side).
measure() {
    local tool=$1 phase=$2 k=$R/$1/$2 tf rc=0 s0="" s1 w u s m
    shift 2
    tf=$LOGS/r$R-$tool-$phase.time
    log "round $R: $tool: $phase"
    if [[ $tool == restic || $tool == borg ]]; then s0=$(sshd_cpu); fi
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$LOGS/r$R-$tool-$phase.out" 2>"$LOGS/r$R-$tool-$phase.err" || rc=$?
    read -r w u s m < <(tail -1 "$tf")
    WALL[$k]=$w CU[$k]=$u CS[$k]=$s CRSS[$k]=$(awk -v m="$m" 'BEGIN{printf "%.0f", m/1024}')
    RC[$k]=$rc
    if [[ -n $s0 ]]; then
        sshd_settle
        s1=$(sshd_cpu)
        read -r u s < <(awk -v a="$s0" -v b="$s1" -v t="$(getconf CLK_TCK)" \
            'BEGIN{split(a, x, " "); split(b, y, " "); printf "%.2f %.2f\n", (y[1]-x[1])/t, (y[2]-x[2])/t}')
        SU[$k]=$u SS[$k]=$s
    fi
    if ((rc)); then
        WHY[$k]="exit $rc"
        log "$tool: $phase FAILED (exit $rc); stderr:"
        tail -5 "$LOGS/r$R-$tool-$phase.err" >&2
    fi
    return 0
}
# ok KEY: the command of KEY (ROUND/TOOL/PHASE) ran and succeeded.
ok() { [[ ${RC[$1]:-1} == 0 && -n ${WALL[$1]:-} ]]; }
# fail_row TOOL PHASE WHY: a row that could not be run.
fail_row() {
    local k=$R/$1/$2
    RC[$k]=1 WHY[$k]=$3
    log "$1: $2 NOT RUN: $3"
}
mib() { { du -sb "$@" 2>/dev/null || true; } | awk '{s+=$1} END{printf "%.1f", s/1048576}'; }
repo_size() {
    case $1 in
        vt-*) mib "$(datadir "$1")" ;;
        restic) mib "$RESTIC_REPO_DIR" ;;
        borg) mib "$BORG_REPO_DIR" ;;
    esac
}

ingest() { # TOOL v1|v2
    local tool=$1 v=$2
    case $tool in
        vt-local)
            prepare_cache "$SRC"
            measure "$tool" "ingest-$v" "$VT" -S "$(datadir vt-local)" import "$SRC" "$ARCH"
            ;;
        vt-remote | vt-delay)
            if srv_start "$tool" "ingest-$v"; then
                prepare_cache "$SRC"
                measure "$tool" "ingest-$v" "$VT" -S "$ENDPOINT" import "$SRC" "$ARCH"
                srv_stop "$tool" "ingest-$v"
            else
                fail_row "$tool" "ingest-$v" "server: $(tail -1 "$LOGS/r$R-$tool-ingest-$v.server.err" 2>/dev/null)"
            fi
            ;;
        restic)
            [[ $v == v1 ]] && { "${RESTIC[@]}" init >"$LOGS/r$R-restic-init.out" 2>&1 || true; }
            prepare_cache "$SRC"
            measure restic "ingest-$v" "${RESTIC[@]}" backup "$SRC"
            ;;
        borg)
            [[ $v == v1 ]] && { borg init -e none "$BORG_URL" >"$LOGS/r$R-borg-init.out" 2>&1 || true; }
            prepare_cache "$SRC"
            measure borg "ingest-$v" env -C "$SRC" borg create --stats "$BORG_URL::$v" .
            ;;
    esac
    ok "$R/$tool/ingest-$v" && REPO[$R/$tool/ingest-$v]=$(repo_size "$tool")
    return 0
}

# restore TOOL: restore the newest snapshot (v2) into $RUN/restore/TOOL
# (a fresh filesystem's root holds lost+found, so one level down).
restore() {
    local tool=$1 t=$RUN/restore/$1
    fresh_fs "$t"
    [[ $RESTORE_FS == fresh ]] && t=$t/tree
    case $tool in
        vt-local)
            prepare_cache "$(datadir vt-local)"
            measure "$tool" restore-v2 "$VT" -S "$(datadir vt-local)" export "$ARCH" "$t"
            ;;
        vt-remote | vt-delay)
            if srv_start "$tool" restore-v2; then
                prepare_cache "$(datadir "$tool")"
                measure "$tool" restore-v2 "$VT" -S "$ENDPOINT" export "$ARCH" "$t"
                srv_stop "$tool" restore-v2
            else
                fail_row "$tool" restore-v2 "server: $(tail -1 "$LOGS/r$R-$tool-restore-v2.server.err" 2>/dev/null)"
            fi
            ;;
        restic)
            prepare_cache "$RESTIC_REPO_DIR"
            measure restic restore-v2 "${RESTIC[@]}" restore latest --target "$t"
            ;;
        borg)
            mkdir -p "$t"
            prepare_cache "$BORG_REPO_DIR"
            measure borg restore-v2 env -C "$t" borg extract "$BORG_URL::v2"
            ;;
    esac
}

# check TOOL DIR: compare the restore in DIR with the live tree's manifest
# (as compare.sh does).
check() {
    local tool=$1 d=$2 k=$R/$1/restore-v2 m=$LOGS/r$R-manifest-$1 p=$LOGS/r$R-$1-diff nd ns nm nms detail
    if [[ ${RC[$k]:-1} != 0 ]]; then
        EXACT[$k]="FAILED (${WHY[$k]:-})"
        return
    fi
    if [[ ! -d $d ]]; then
        EXACT[$k]="NO (no restored tree at $d)"
        return
    fi
    log "$tool: checking the restore"
    manifest "$d" "$m"
    diff "$LOGS/r$R-manifest-src.meta" "$m.meta" >"$p.meta" || true
    diff "$LOGS/r$R-manifest-src.sums" "$m.sums" >"$p.sums" || true
    diff "$LOGS/r$R-manifest-src.mtime" "$m.mtime" >"$p.mtime" || true
    nd=$(grep -c '^[<>]' "$p.meta" || true)
    ns=$(grep -c '^[<>]' "$p.sums" || true)
    nm=$(join -t $'\t' -j1 "$LOGS/r$R-manifest-src.mtime" "$m.mtime" | awk -F'\t' '$3!=$5' | wc -l)
    nms=$(join -t $'\t' -j1 "$LOGS/r$R-manifest-src.mtime-s" "$m.mtime-s" | awk -F'\t' '$3!=$5' | wc -l)
    if ((nd + ns > 0)); then
        EXACT[$k]="NO: $nd meta, $ns content diff lines"
    elif ((nm == 0)); then
        EXACT[$k]="yes"
    else
        detail=$(join -t $'\t' -j1 "$LOGS/r$R-manifest-src.mtime" "$m.mtime" |
            awk -F'\t' '$3!=$5 {c[$2]++} END {for (t in c) printf "%s%d %s", (n++ ? ", " : ""), c[t], (t=="f" ? "files" : t=="d" ? "dirs" : t=="l" ? "symlinks" : t)}')
        if ((nms == 0)); then
            EXACT[$k]="content yes; sub-second mtime differs ($detail)"
        else
            EXACT[$k]="content yes; mtime differs ($detail)"
        fi
    fi
}

# ---------------------------------------------------------------- run
((NEED_SSH)) && start_sshd
# Compile vt's plugins into the (shared) cache once, unmeasured, so that no
# vt row pays for it.
"$VT" -q -S "$RUN/warmup" import "$REPO_ROOT/bench" warmup >/dev/null 2>&1 || true
rm -rf "$RUN/warmup"

# one_round: the whole series once, in fresh repositories, from a fresh copy
# of v1 (round $R; the tools in the order $ORDER).
one_round() {
    local tool d
    for tool in $ALL_TOOLS; do rm -rf "${RUN:?}/$tool"; done
    rm -rf "$SRC"
    mkdir -p "$RUN/restic" "$BORG_BASE_DIR" "$RUN/borg/server-home" "$RUN/restore"
    log "round $R: copying v1 into the live tree $SRC"
    cp -a "$V1" "$SRC"
    for tool in $ORDER; do
        ingest "$tool" v1
    done

    log "updating the live tree to v2 in place (rsync --checksum, no times: unchanged files keep inode and mtime)"
    rsync -rlpgoD --checksum --delete --itemize-changes "$V2/" "$SRC/" >"$LOGS/r$R-update-v2.rsync"
    n_new=$(grep -c '^>f+++' "$LOGS/r$R-update-v2.rsync" || true)
    n_chg=$(grep '^>f' "$LOGS/r$R-update-v2.rsync" | grep -vc '^>f+++' || true)
    n_del=$(grep '^\*deleting' "$LOGS/r$R-update-v2.rsync" | grep -vc '/$' || true)
    n_other=$(grep -vc -e '^>f' -e '^\*deleting' -e '^\.d' "$LOGS/r$R-update-v2.rsync" || true)

    for tool in $ORDER; do
        ingest "$tool" v2
    done

    log "manifest of the live v2 tree"
    manifest "$SRC" "$LOGS/r$R-manifest-src"

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
    read -ra tl <<<"$TOOLS"
    k=$(((R - 1) % ${#tl[@]}))
    ORDER="${tl[*]:k} ${tl[*]:0:k}"
    one_round
done
t_end=$(date +%s)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
declare -A LABEL=(
    [vt-local]="vt, local DataDir"
    [vt-remote]="vt → vt serve, TCP loopback"
    [restic]="restic → sftp, ssh loopback"
    [borg]="borg → borg serve, ssh loopback"
    [vt-delay]="vt → vt serve via delay proxy, ${DELAY_MS} ms each way"
)
PHASES="ingest-v1 ingest-v2 restore-v2"
LOOP_TOOLS=$(for t in vt-local vt-remote restic borg; do if has "$t"; then printf '%s ' "$t"; fi; done)
# rows: loopback tools phase by phase, then the delayed vt.
rows() {
    local p t
    for p in $PHASES; do for t in $LOOP_TOOLS; do echo "$t $p"; done; done
    if has vt-delay; then for p in $PHASES; do echo "vt-delay $p"; done; fi
}
status() { # KEY: the last column of a row
    local k=$1
    if [[ ${RC[$k]:-} == "" ]]; then echo "not run"
    elif [[ $k == */restore-v2 ]]; then echo "${EXACT[$k]:-}"
    elif [[ ${RC[$k]} != 0 ]]; then echo "FAILED (${WHY[$k]:-})"
    else echo ok; fi
}
# ratio KEY_A KEY_B: wall A / wall B of round R, if both ran.
ratio() { ok "$1" && ok "$2" && awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN{if (b > 0) printf "%.3f", a/b}'; }

cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
mode_name="full run"
((QUICK)) && mode_name="quick mode"
echo "## vt remote store vs restic (sftp) and borg (ssh) on loopback ($(date -u +%Y-%m-%d), $mode_name)"
echo
echo "Machine: $(nproc) CPUs ($cpu_model), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM,"
echo "$(uname -sr), work dir $BENCH_DIR on $(df -T "$BENCH_DIR" | awk 'NR==2{print $2" ("$1")"}')."
echo "Load average (1/5/15 min) at start: $load_start, at end: $load_end (other work on the machine skews timings)."
echo "Page cache: $CACHE_MODE ($([[ $CACHE_MODE == cold ]] && echo 'dropped before every measured command' || echo 'inputs pre-read before every measured command')); $PAGE_REPORTING_NOTE"
echo "Restore target: $([[ $RESTORE_FS == fresh ]] && echo 'a newly made ext4 filesystem per tool (sparse image on a loop device; RESTORE_FS=fresh)' || echo "$RUN/restore on the filesystem of $BENCH_DIR (RESTORE_FS=same)")."
echo "Client and servers run on this one machine: they share its $(nproc) CPUs."
echo
echo "Versions:"
echo "- vt: $("$VT" --version) (git $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO_ROOT" && git diff --quiet HEAD 2>/dev/null || echo ', dirty'); $(rustc --version 2>/dev/null || echo 'rustc ?')); defaults (SHA3-256, zstd)$( ((VT_SERVE)) || echo '; NO serve command')"
has restic && echo "- restic: $(restic version 2>/dev/null | head -1); defaults (repository v2, compression auto), over sftp (sftp-server)"
has borg && echo "- borg: $(borg --version); -e none (as compare.sh), lz4; borg serve over ssh"
((NEED_SSH)) && echo "- ssh: $(ssh -V 2>&1); sshd started by the script on 127.0.0.1:$SSH_PORT; cipher $SSH_CIPHER"
has vt-delay && echo "- delay proxy: bench/delayproxy, $DELAY_MS ms each way on every chunk (up to 256 KiB), no throughput limit"
echo
echo "Corpus:"
echo "- v1: $V1_DESC — $(corpus_line "$V1")"
echo "- v2: $V2_DESC — $(corpus_line "$V2")"
[[ -n $CORPUS_NOTE ]] && echo "- $CORPUS_NOTE."
echo "- The live tree $SRC starts as a copy of v1 (cp -a) and is then updated in place to v2 by"
echo "  rsync --checksum without times: $n_chg files rewritten, $n_new added, $n_del removed"
echo "  ($n_other other entries changed); unchanged files keep their inode, mtime and ctime."
((V2_DERIVED)) && echo "- v2 is DERIVED from v1 (not a real second release): see the edits above."
echo
echo "Tools (rows):"
for t in $TOOLS; do echo "- $t: ${LABEL[$t]}"; done
echo
((ROUNDS > 1)) && echo "Every round ($ROUNDS, in fresh repositories; the tools took turns going first):" && echo
hdr="| tool | phase | wall s | client user s | client sys s | client RSS MiB | server user s | server sys s | server RSS MiB | repo MiB | result |"
echo "$( ((ROUNDS > 1)) && printf '| round ')$hdr"
echo "$( ((ROUNDS > 1)) && printf '|---:')|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for ((R = 1; R <= ROUNDS; R++)); do
    while read -r t p; do
        k=$R/$t/$p
        printf '%s| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$( ((ROUNDS > 1)) && printf '| %s ' "$R")" \
            "$t" "$p" "${WALL[$k]:-}" "${CU[$k]:-}" "${CS[$k]:-}" "${CRSS[$k]:-}" "${SU[$k]:-}" "${SS[$k]:-}" \
            "${SRSS[$k]:-}" "${REPO[$k]:-}" "$(status "$k")"
    done < <(rows)
done
echo
if ((ROUNDS > 1)); then
    echo "Medians over the $ROUNDS rounds:"
    echo
    echo "| tool | phase | wall s | client user s | client sys s | client RSS MiB | server user s | server sys s | server RSS MiB | repo MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    while read -r t p; do
        a_w=() a_cu=() a_cs=() a_cr=() a_su=() a_ss=() a_sr=() a_b=()
        for ((R = 1; R <= ROUNDS; R++)); do
            k=$R/$t/$p
            ok "$k" || continue
            a_w+=("${WALL[$k]}") a_cu+=("${CU[$k]:-}") a_cs+=("${CS[$k]:-}") a_cr+=("${CRSS[$k]:-}")
            a_su+=("${SU[$k]:-}") a_ss+=("${SS[$k]:-}") a_sr+=("${SRSS[$k]:-}") a_b+=("${REPO[$k]:-}")
        done
        if ((${#a_w[@]} == 0)); then
            printf '| %s | %s | failed in every round | | | | | | | |\n' "$t" "$p"
            continue
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$p" "$(median %.2f "${a_w[@]}")" \
            "$(median %.2f "${a_cu[@]}")" "$(median %.2f "${a_cs[@]}")" "$(median %.0f "${a_cr[@]}")" \
            "$(median %.2f "${a_su[@]}")" "$(median %.2f "${a_ss[@]}")" "$(median %.0f "${a_sr[@]}")" "$(median %.1f "${a_b[@]}")"
    done < <(rows)
    echo
fi

# Goals: NUMERATOR DENOMINATOR LIMIT TEXT (wall-time ratios).
GOALS=(
    "vt-remote/ingest-v1 vt-local/ingest-v1 1.5 vt remote import of v1 / vt local import of v1"
    "vt-remote/ingest-v2 vt-local/ingest-v2 1.5 vt remote import of v2 / vt local import of v2"
    "vt-remote/ingest-v1 restic/ingest-v1 0.5 vt remote import of v1 / restic backup of v1 over sftp"
    "vt-remote/ingest-v2 restic/ingest-v2 0.5 vt remote import of v2 / restic backup of v2 over sftp"
    "vt-remote/ingest-v1 borg/ingest-v1 0.5 vt remote import of v1 / borg create of v1 over ssh"
    "vt-remote/ingest-v2 borg/ingest-v2 0.5 vt remote import of v2 / borg create of v2 over ssh"
    "vt-remote/restore-v2 restic/restore-v2 0.5 vt remote export of v2 / restic restore of v2 over sftp"
    "vt-delay/ingest-v1 vt-remote/ingest-v1 2 vt remote import of v1, ${DELAY_MS} ms delay / loopback"
    "vt-delay/ingest-v2 vt-remote/ingest-v2 2 vt remote import of v2, ${DELAY_MS} ms delay / loopback"
    "vt-delay/restore-v2 vt-remote/restore-v2 2 vt remote export of v2, ${DELAY_MS} ms delay / loopback"
)
if ((ROUNDS > 1)); then
    echo "Goals (wall time ratios: the median of the rounds' ratios; wall s: the medians of each side):"
else
    echo "Goals (wall time ratios):"
fi
echo
echo "| goal | wall s | ratio | limit | result |"
echo "|---|---:|---:|---:|---|"
n_pass=0 n_goals=0
for g in "${GOALS[@]}"; do
    read -r a b lim text <<<"$g"
    ta=${a%%/*} tb=${b%%/*}
    n_goals=$((n_goals + 1))
    if ! has "$ta" || ! has "$tb"; then
        printf '| %s | | | ≤ %s | not run (TOOLS) |\n' "$text" "$lim"
        continue
    fi
    qs=() was=() wbs=() bad=""
    for ((R = 1; R <= ROUNDS; R++)); do
        q=$(ratio "$R/$a" "$R/$b" || true)
        [[ -n $q ]] && qs+=("$q") was+=("${WALL[$R/$a]}") wbs+=("${WALL[$R/$b]}")
        for x in "$R/$a" "$R/$b"; do
            if [[ $x == */restore-v2 && ${EXACT[$x]:-} != yes && ${EXACT[$x]:-} != "content yes"* ]]; then
                bad="restore of ${x#*/} not exact: ${EXACT[$x]:-not run}"
            fi
        done
    done
    if ((${#qs[@]} == 0)); then
        why=""
        for x in "$a" "$b"; do ok "1/$x" || why+="${why:+, }${x%%/*} ${x#*/} failed"; done
        printf '| %s | | | ≤ %s | n/a (%s) |\n' "$text" "$lim" "$why"
        continue
    fi
    q=$(median %.2f "${qs[@]}")
    res=$(awk -v q="$q" -v l="$lim" 'BEGIN{print (q <= l) ? "PASS" : "FAIL"}')
    [[ -n $bad ]] && res="FAIL ($bad)"
    [[ $res == PASS ]] && n_pass=$((n_pass + 1))
    printf '| %s | %s / %s | %s | ≤ %s | %s |\n' "$text" "$(median %.2f "${was[@]}")" "$(median %.2f "${wbs[@]}")" "$q" "$lim" "$res"
done
echo
echo "$n_pass of $n_goals goals pass."
echo
echo "Notes:"
echo "- wall s and client CPU/RSS: /usr/bin/time of the client command (restic's and borg's include"
echo "  their ssh client). server: vt-remote and vt-delay run a \`vt serve\` started for each phase"
echo "  (before the page cache is dropped) and stopped after it with SIGTERM (it syncs and exits);"
echo "  its CPU and peak RSS are those of its whole life, from /usr/bin/time. restic and borg: the"
echo "  CPU the sshd, sftp-server and borg serve used during the command (the sshd's reaped children"
echo "  in /proc), no RSS. Client and server share the machine's CPUs, so wall time includes both."
echo "- repo MiB: du -sb of the repository after the phase (vt: the whole DataDir, archives and"
echo "  indexes included). Client caches are outside it and not counted:$(has restic && printf ' restic %s MiB' "$(mib "$RESTIC_CACHE_DIR")")$(has borg && printf ' borg %s MiB' "$(mib "$BORG_BASE_DIR")") at the end."
echo "- result of a restore: compared with the live v2 tree (types, modes, owners, sizes, symlink"
echo "  targets, sha256 of contents; \"yes\" also needs every mtime to match to the nanosecond)."
for t in vt-remote vt-delay; do
    has "$t" || continue
    for p in $PHASES; do
        k=$ROUNDS/$t/$p
        s="${STOP[$k]:+server stop ${STOP[$k]} s}${NET[$k]:+; through the proxy: ${NET[$k]}}"
        [[ -n $s ]] && echo "- $t $p (round $ROUNDS): $s"
        e=$LOGS/r$ROUNDS-$t-$p.server.err
        if [[ -s $e ]] && grep -qv -e '^vt: serving' -e '^vt: signal' "$e"; then
            echo "- $t $p server stderr: $(grep -v -e '^vt: serving' -e '^vt: signal' "$e" | head -c 400 | tr '\n' ' ')"
        fi
    done
done
for t in vt-local vt-remote vt-delay; do
    has "$t" || continue
    for p in $PHASES; do
        for o in "$LOGS/r$ROUNDS-$t-$p.out" "$LOGS/r$ROUNDS-$t-$p.err"; do
            [[ -s $o ]] && echo "- $t $p ${o##*.}: $(head -3 "$o" | head -c 400 | tr '\n' ' ')"
        done
    done
done
has restic && echo "- restic v2: $(grep -E '^(Files|Dirs|Added)' "$LOGS/r$ROUNDS-restic-ingest-v2.out" 2>/dev/null | tr -s ' ' | tr '\n' ';')"
has borg && echo "- borg v2: $(grep -E '^(This archive|Number of files)' "$LOGS/r$ROUNDS-borg-ingest-v2.err" 2>/dev/null | tr -s ' ' | tr '\n' ';')"
for t in $TOOLS; do
    p=$LOGS/r$ROUNDS-$t-diff
    if [[ -s $p.meta || -s $p.sums ]]; then
        echo "- $t restore differences (first lines; < live tree, > restore):"
        cat "$p.meta" "$p.sums" | grep '^[<>]' | head -8 | sed 's/^/    /'
    elif [[ -s $p.mtime ]]; then
        echo "- $t mtime differences (first lines; < live tree, > restore):"
        grep '^[<>]' "$p.mtime" | head -6 | sed 's/^/    /'
    fi
done
echo "- total benchmark time $((t_end - t_start)) s; logs in $LOGS"
