#!/usr/bin/env bash
# bench/push.sh — `vt push` of real snapshots to a `vt serve` on loopback:
# bytes on the wire against what the receiving store grows by, a second
# push, and a push killed with SIGKILL midway then run again (fsck of both
# stores after). Prints a Markdown report on stdout, progress on stderr.
#
# Usage: bench/push.sh [DIR...]
#   DIR...   trees to import as successive snapshots of one archive and
#            push [default: the linux-source v1 and v2 trees bench/remote.sh
#            fetched into $BENCH_DIR/corpus]
# Environment: BENCH_DIR [/tmp/vt-bench]; VT [target/release/vt, built if
# missing].
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

BENCH_DIR=${BENCH_DIR:-/tmp/vt-bench}
work=$BENCH_DIR/push
VT=${VT:-$repo/target/release/vt}
if [[ ! -x $VT ]]; then
    log "building vt"
    (cd "$repo" && cargo build --release -q -p vt)
fi

trees=("$@")
if [[ ${#trees[@]} -eq 0 ]]; then
    mapfile -t trees < <(ls -d "$BENCH_DIR"/corpus/linux-source-*-[0-9]* 2>/dev/null | grep -v '\.ready$' | sort -V)
fi
[[ ${#trees[@]} -gt 0 ]] || { echo "no trees: run bench/remote.sh first or name some" >&2; exit 2; }

rm -rf "$work"
mkdir -p "$work"
export XDG_CONFIG_HOME=$work/cfg XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
local_store=$work/local
server_pid=
stop_server() {
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap stop_server EXIT

# start_server DIR: a vt serve on a free loopback port; sets $spec.
start_server() {
    local err=$work/serve.log
    "$VT" -S "$1" serve --listen 127.0.0.1:0 2>"$err" &
    server_pid=$!
    for _ in $(seq 100); do
        spec=$(sed -n 's/^vt: serving default on \(tcp:[0-9.:]*\).*/\1/p' "$err")
        [[ -n $spec ]] && return 0
        sleep 0.1
    done
    echo "vt serve did not start: $(cat "$err")" >&2
    exit 1
}

# sent_bytes LOG: the bytes a push sent, from its -v summary.
sent_bytes() { sed -n 's/.* \([0-9]*\) bytes sent,.*/\1/p' "$1" | tail -1; }

log "importing ${#trees[@]} trees into $local_store"
for t in "${trees[@]}"; do
    "$VT" -q -S "$local_store" import "$t" k
done

echo "## vt push to a vt serve on loopback ($(date -u +%F))"
echo
echo "vt $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'); snapshots of archive k: ${trees[*]##*/}"
echo
echo "| push | wire bytes sent | receiving store grew (du -sb) | sent / grown | wall s |"
echo "|---|---:|---:|---:|---:|"
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

remote=$work/remote
start_server "$remote"
before=$(du -sb "$remote" | cut -f1)
t0=$(date +%s.%N)
"$VT" -v -S "$local_store" push "$spec" k 2>"$work/push1.log" >/dev/null
t1=$(date +%s.%N)
grown=$(( $(du -sb "$remote" | cut -f1) - before ))
sent=$(sent_bytes "$work/push1.log")
first=$sent
row "first" "$sent" "$grown" "$(awk -v a="$sent" -v b="$grown" 'BEGIN{printf "%.3f", a/b}')" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
t0=$(date +%s.%N)
"$VT" -v -S "$local_store" push "$spec" k 2>"$work/push2.log" >/dev/null
t1=$(date +%s.%N)
sent=$(sent_bytes "$work/push2.log")
row "second" "$sent" "-" "$(awk -v a="$sent" -v b="$first" 'BEGIN{printf "%.5f of the first", a/b}')" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
stop_server

# Killed midway: SIGKILL once the server's store holds a third of what the
# first push sent, then push again.
remote2=$work/remote2
start_server "$remote2"
before=$(du -sb "$remote2" | cut -f1)
"$VT" -q -S "$local_store" push "$spec" k &
pusher=$!
while kill -0 "$pusher" 2>/dev/null; do
    now=$(( $(du -sb "$remote2" | cut -f1) - before ))
    if (( now > first / 3 )); then
        kill -KILL "$pusher"
        break
    fi
    sleep 0.05
done
wait "$pusher" 2>/dev/null || true
at_kill=$(( $(du -sb "$remote2" | cut -f1) - before ))
t0=$(date +%s.%N)
"$VT" -v -S "$local_store" push "$spec" k 2>"$work/push3.log" >/dev/null
t1=$(date +%s.%N)
sent=$(sent_bytes "$work/push3.log")
grown=$(( $(du -sb "$remote2" | cut -f1) - before - at_kill ))
row "after SIGKILL at $at_kill bytes" "$sent" "$grown" "$(awk -v a="$sent" -v b="$grown" 'BEGIN{printf "%.3f", a/b}')" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
stop_server
echo
for s in "$local_store" "$remote" "$remote2"; do
    printf -- '- `vt fsck` of %s: %s\n' "${s##*/}" "$("$VT" -S "$s" fsck | tail -1)"
done
echo "- snapshots in remote2 after the resumed push: $("$VT" -S "$remote2" log k | wc -l) (local: $("$VT" -S "$local_store" log k | wc -l))"
