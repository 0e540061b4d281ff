#!/usr/bin/env bash
# bench/media.sh — what the media scanner buys: bytes that re-tagged audio
# and video files add to the store, with vt's media scanner, with vt's
# plain CDC and with restic; then the time cost of the wasm scanner on
# 1 GiB of media files.
#
# Usage: bench/media.sh
# The files are made by Debian's ffmpeg from its test sources (a test
# pattern with noise, pink noise, a sine): an MP4 (H.264 + AAC, moov first),
# an MKV (VP8 + Opus), an MP3 with a cover image, a FLAC with a cover
# image, an Ogg/Opus; 2 to 12 MB each. v2 re-tags each: ffmpeg -c copy with
# a new title, artist and comment (the way a user's tagger rewrites a
# file), and, as tools that edit tags in place, id3v2 (MP3) and metaflac
# (FLAC) on copies of v1.
# Environment: BENCH_DIR [/tmp/vt-media-bench], VT [target/release/vt],
#   RESTIC_RUNS [3], BENCH_TIME [1] (0 skips the 1 GiB timing),
#   TIME_ROUNDS [5].
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
VT=${VT:-$ROOT/target/release/vt}
B=${BENCH_DIR:-/tmp/vt-media-bench}
RUNS=${RESTIC_RUNS:-3}
TIME_ROUNDS=${TIME_ROUNDS:-5}
for t in ffmpeg:ffmpeg id3v2:id3v2 metaflac:flac restic:restic; do
    command -v "${t%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${t#*:}" >/dev/null; }
done
[ -x "$VT" ] || (cd "$ROOT" && cargo build --release -p vt)
rm -rf "$B" && mkdir -p "$B/v1" "$B/v2"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

log "making the v1 files"
ff -f lavfi -i "color=c=steelblue:s=640x360:d=1" -frames:v 1 "$B/cover.jpg"
ff -f lavfi -i "testsrc2=size=960x540:rate=25:duration=30,noise=alls=12:allf=t" \
    -f lavfi -i "sine=frequency=440:duration=30" -c:v libx264 -preset veryfast -b:v 2500k \
    -c:a aac -b:a 128k -movflags +faststart -metadata title="Clip" "$B/v1/clip.mp4"
ff -f lavfi -i "testsrc=size=640x360:rate=25:duration=30,noise=alls=10:allf=t" \
    -f lavfi -i "sine=frequency=330:duration=30" -c:v libvpx -b:v 2M -c:a libopus \
    -metadata title="Clip" "$B/v1/clip.mkv"
ff -f lavfi -i "anoisesrc=d=240:c=pink:a=0.2" -i "$B/cover.jpg" -map 0 -map 1 -c:a libmp3lame \
    -b:a 192k -c:v copy -id3v2_version 3 -metadata title="Song" -metadata artist="Band" \
    -metadata:s:v comment="Cover (front)" "$B/v1/song.mp3"
ff -f lavfi -i "anoisesrc=d=60:c=pink:a=0.2" -i "$B/cover.jpg" -map 0 -map 1 -c:a flac \
    -c:v copy -disposition:v attached_pic -metadata title="Song" "$B/v1/song.flac"
ff -f lavfi -i "anoisesrc=d=300:c=pink:a=0.2" -c:a libopus -b:a 96k -metadata title="Song" \
    "$B/v1/song.opus"

log "re-tagging: ffmpeg -c copy"
retag=(-metadata title="A longer title, re-tagged" -metadata artist="Another Band"
    -metadata comment="tagged again by bench/media.sh")
for f in "$B"/v1/*; do
    n=$(basename "$f")
    extra=()
    [ "${n##*.}" = mp4 ] && extra=(-movflags +faststart)
    ff -i "$f" -map 0 -c copy "${extra[@]}" "${retag[@]}" "$B/v2/$n"
done
log "re-tagging in place: id3v2, metaflac"
cp "$B/v1/song.mp3" "$B/v2/inplace.mp3"
cp "$B/v1/song.mp3" "$B/v1/inplace.mp3"
id3v2 --song "A longer title, re-tagged" --artist "Another Band" "$B/v2/inplace.mp3" >/dev/null
cp "$B/v1/song.flac" "$B/v1/inplace.flac"
cp "$B/v1/song.flac" "$B/v2/inplace.flac"
metaflac --remove-tag=TITLE --set-tag="TITLE=A longer title, re-tagged" \
    --set-tag="ARTIST=Another Band" "$B/v2/inplace.flac"

bytes() { du -sb --apparent-size "$1" | cut -f1; }
# one_file MODE FILE: bytes v2/FILE adds to a store holding v1/FILE
one_file() {
    local home=$B/vt-$1 a b
    rm -rf "$home" && mkdir -p "$home/cfg/vt" "$home/in"
    if [ "$1" = cdc ]; then printf '[scanners]\n"*" = "none"\n' > "$home/cfg/vt/vtrc"; fi
    cp "$B/v1/$2" "$home/in/$2"
    XDG_CONFIG_HOME=$home/cfg XDG_DATA_HOME=$home/data XDG_CACHE_HOME=$home/cache "$VT" -q import "$home/in" m
    a=$(bytes "$home/data/vt/store")
    cp "$B/v2/$2" "$home/in/$2"
    XDG_CONFIG_HOME=$home/cfg XDG_DATA_HOME=$home/data XDG_CACHE_HOME=$home/cache "$VT" -q import "$home/in" m
    b=$(bytes "$home/data/vt/store")
    rm -rf "$home"
    echo $((b - a))
}
restic_file() { # restic_file FILE: median over RUNS repositories
    local vals=() k repo a b
    export RESTIC_PASSWORD=bench
    for k in $(seq "$RUNS"); do
        repo=$B/restic-$k
        rm -rf "$repo" "$B/rin" && mkdir -p "$B/rin"
        restic init -q -r "$repo" >/dev/null
        cp "$B/v1/$1" "$B/rin/$1"
        restic -q -r "$repo" backup "$B/rin" >/dev/null
        a=$(bytes "$repo")
        cp "$B/v2/$1" "$B/rin/$1"
        restic -q -r "$repo" backup "$B/rin" >/dev/null
        b=$(bytes "$repo")
        vals+=($((b - a)))
        rm -rf "$repo"
    done
    median %d "${vals[@]}"
}
echo "## Re-tagged media: bytes the new version adds to a store holding the old one"
echo
echo "Each file in a store of its own (vt: the whole DataDir; restic $(restic version | cut -d' ' -f2): the whole repository, median of $RUNS)."
echo
echo "| file | size | how re-tagged | vt, media scanner | vt, plain CDC | restic |"
echo "|---|---:|---|---:|---:|---:|"
for f in "$B"/v2/*; do
    n=$(basename "$f")
    how="ffmpeg -c copy"
    case $n in inplace.mp3) how="id3v2, in place" ;; inplace.flac) how="metaflac, in place" ;; esac
    log "$n"
    printf '| %s | %d | %s | %d | %d | %d |\n' "$n" "$(stat -c %s "$f")" "$how" \
        "$(one_file scanner "$n")" "$(one_file cdc "$n")" "$(restic_file "$n")"
done

[ "${BENCH_TIME:-1}" = 0 ] && exit 0

# ---- time: 1 GiB of media files, the wasm scanner vs plain CDC
log "making 1 GiB of media"
mkdir -p "$B/big"
ff -f lavfi -i "anoisesrc=d=3000:c=pink:a=0.2" -c:a flac "$B/big/long.flac"
ff -f lavfi -i "anoisesrc=d=7000:c=pink:a=0.2" -c:a libmp3lame -b:a 320k "$B/big/long.mp3"
ff -f lavfi -i "testsrc2=size=1280x720:rate=25:duration=24,noise=alls=20:allf=t" \
    -f lavfi -i "sine=frequency=440:duration=24" -c:v mpeg4 -q:v 2 -c:a aac -movflags +faststart "$B/big/long.mp4"
ff -f lavfi -i "testsrc=size=1280x720:rate=25:duration=8,noise=alls=25:allf=t" \
    -f lavfi -i "sine=frequency=220:duration=8" -c:v mpeg4 -q:v 2 -c:a libopus "$B/big/long.mkv"
echo
echo "1 GiB set: $(du -sh --apparent-size "$B/big" | cut -f1) in $(ls "$B/big" | tr '\n' ' ')"
cat "$B"/big/* > /dev/null
echo
scanner_timing media "*" "$B/big" "$TIME_ROUNDS"
