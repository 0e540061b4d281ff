#!/usr/bin/env bash
# Runs vt's whole test suite on a fresh Debian machine with only the Rust
# toolchain: installs what the tests need, builds everything, runs every
# unit, property and end-to-end test, and prints one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v mount >/dev/null || need_pkgs+=(mount)
# vt mount: FUSE (fusermount3), and the tools its tests drive.
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v git >/dev/null || need_pkgs+=(git)
# vt serve's TLS test makes its certificates with openssl.
command -v openssl >/dev/null || need_pkgs+=(openssl)
# vt httpd's tests read it with curl.
command -v curl >/dev/null || need_pkgs+=(curl)
# The media scanner's tests make real audio and video files with ffmpeg.
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_pkgs[@]}"
fi

# Scanner plugins are WebAssembly components (target wasm32-wasip2).
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi

set -e
# Formatting is part of the suite: unformatted code fails it.
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
cargo fmt --all --check
# The POSIX conformance suite run against `vt mount` (tests/tests/mount.rs),
# with the dummy user it switches to.
command -v pjdfstest >/dev/null || [ -x "$HOME/.cargo/bin/pjdfstest" ] ||
    cargo install --locked pjdfstest
# The S3 store's tests (host/stores/src/s3/tests.rs) run against a real
# S3-compatible server, s3s-fs.
command -v s3s-fs >/dev/null || [ -x "$HOME/.cargo/bin/s3s-fs" ] ||
    cargo install --locked s3s-fs@0.14.1 --features binary
id tests >/dev/null 2>&1 || useradd -M tests
# So is clippy: any lint fails it. The lints run inside the build:
# clippy-driver (rustc with clippy's lints, as `cargo clippy` runs it)
# compiles the workspace's own crates, which finds what `cargo clippy
# --workspace --all-targets -- -D warnings` finds without checking every
# dependency a second time for a separate `cargo clippy` (that step took
# 92-245 s of a clean run). The tests are built and run with the same
# setting, so nothing is compiled twice; nested builds in the tests clear it.
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver)
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
cargo build --workspace --all-targets
set +e
mkdir -p target
log=target/test-output.log
if cargo nextest --version >/dev/null 2>&1; then
    # cargo-nextest (on this project's CI machines) runs tests of different
    # binaries side by side, where `cargo test` runs the binaries one after
    # another: the mount's long tests overlap the plugin builds (a clean run
    # 543 s -> 427 s). It does not run doc tests; `cargo test --doc` does.
    cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    cargo test --workspace --doc 2>&1 | tee -a "$log"
    doc_status=${PIPESTATUS[0]}
    [ "$status" -ne 0 ] || status=$doc_status
else
    cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
fi

# One closing line for the whole run: the sum of every test binary's result
# (`cargo test`'s "test result:" lines, nextest's "Summary" line).
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^passed/)  p += $(i-1)
            if ($i ~ /^failed/)  f += $(i-1)
            if ($i ~ /^ignored/) s += $(i-1)
        }
     }
     /^ *Summary \[/ {
        sub(/^.*tests run: /, "")
        n = split($0, part, /, /)
        for (i = 1; i <= n; i++) {
            split(part[i], w, " ")
            if (w[2] ~ /^passed/)  p += w[1]
            if (w[2] ~ /^failed/ || w[2] ~ /^timed/ || w[2] ~ /^leaky/) f += w[1]
            if (w[2] ~ /^skipped/) s += w[1]
        }
     }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
