#!/usr/bin/env bash
# bench/soak.sh — the mount soak (issue 18): 16 writer threads create,
# overwrite, append to, truncate, rename, unlink and fsync files in a
# `vt mount` for SECS seconds, each against a model of its directory; the
# snapshot recorded at unmount must equal the models exactly, and fsck must
# be clean. The test suite runs the same test for 2 minutes
# (tests/tests/mount.rs, soak_16_writers_against_a_model).
#
# Usage: bench/soak.sh [SECS]   (default 1800; release build of vt)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SECS=${1:-1800}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: SECS must be a positive number" >&2; exit 2; }
cd "$ROOT"
cargo build --release -p vt -q
echo "soak: $SECS s at $(git rev-parse --short HEAD), started $(date -u +%FT%TZ)"
VT_BIN=$ROOT/target/release/vt VT_SOAK_SECS=$SECS \
    cargo test -q -p vt-tests --test mount soak_16_writers_against_a_model -- --nocapture 2>&1 |
    grep -E '^soak:|test result|panicked|differs|FAILED'
echo "finished $(date -u +%FT%TZ)"
