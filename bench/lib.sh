# bench/lib.sh — helpers shared by the benchmark scripts (sourced).

# log MESSAGE...: a timestamped progress line on standard error.
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# median FMT X...: the middle value of the Xs (the mean of the middle two
# for an even count; empty Xs are skipped), printed with printf format FMT.
median() {
    local fmt=$1
    shift
    printf '%s\n' "$@" | grep . | sort -g |
        awk -v f="$fmt" '{v[NR]=$1} END{if (NR) printf f, NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}
