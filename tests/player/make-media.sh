#!/usr/bin/env bash
# Makes the real media the HLS origin simulator serves with --media: a short clip of H.264 video
# (320x180, 30 fps, High profile, about 150 kbit/s, a keyframe at every segment start) and AAC
# audio (48 kHz stereo sine), as MPEG-TS and as fMP4, cut into segments of the given duration.
# Prints the media directory on stdout. Made once per segment duration into a cache directory.
#
#   tests/player/make-media.sh [SEGMENT_SECONDS]     default 1; a multiple of 0.1 s
#
# The clip loops in the simulator, which rewrites its timestamps from the media sequence number
# (tests/hls-sim/src/media.rs). For the loop to be seamless the clip is K segments long with
# K * duration a whole number of AAC frames (1024 samples at 48 kHz), and it is taken from the
# second loop of an encode twice as long, so its first audio frame follows the last one exactly.
# Installs Debian's ffmpeg when missing (non-interactive; needs root, as CI and the dev machines
# are).
#
# Environment: CVS_MEDIA_CACHE (default ~/.cache/cvs-operator/media).
set -euo pipefail

td="${1:-1}"
td_ms=$(python3 -c "import sys; v=round(float(sys.argv[1])*1000); print(v if v>0 and v%100==0 and v<=10000 else '')" "$td")
[[ -n "$td_ms" ]] || { echo "make-media.sh: segment duration must be a multiple of 0.1 s up to 10 s" >&2; exit 2; }
cache="${CVS_MEDIA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator/media}"
out="$cache/td${td_ms}-v1"
if [[ -s "$out/media.json" ]]; then echo "$out"; exit 0; fi

if ! command -v ffmpeg >/dev/null; then
  echo "make-media.sh: installing Debian's ffmpeg" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends ffmpeg >&2
fi

# K: the fewest segments (at least 2) whose total is a whole number of AAC frames.
k=2
while (( (k * td_ms * 48) % 1024 != 0 )); do k=$((k + 1)); done
(( k <= 64 )) || { echo "make-media.sh: no short seamless loop for ${td_ms} ms" >&2; exit 2; }
fps=30
(( (td_ms * fps) % 1000 == 0 )) || { echo "make-media.sh: ${td_ms} ms is not a whole number of frames at $fps fps" >&2; exit 2; }
gop=$(( td_ms * fps / 1000 ))
secs=$(python3 -c "print($td_ms * $k * 2 / 1000)")
td_s=$(python3 -c "print($td_ms / 1000)")

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.make.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
video=(-map 0:v -c:v libx264 -profile:v high -level:v 4.0 -pix_fmt yuv420p -preset veryfast
  -b:v 150k -maxrate 200k -bufsize 200k -g "$gop" -keyint_min "$gop" -sc_threshold 0 -bf 0)
audio=(-map 1:a -c:a aac -b:a 64k -ac 2)
for fmt in ts fmp4; do
  mkdir -p "$tmp/all/$fmt/video" "$tmp/all/$fmt/audio"
  if [[ $fmt == ts ]]; then
    seg=(-hls_segment_type mpegts); ext=ts
  else
    seg=(-hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4); ext=m4s
  fi
  ffmpeg -nostdin -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=320x180:rate=$fps:duration=$secs" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$secs" \
    "${video[@]}" -f hls -hls_time "$td_s" -hls_list_size 0 "${seg[@]}" \
      -hls_segment_filename "$tmp/all/$fmt/video/%d.$ext" "$tmp/all/$fmt/video/index.m3u8" \
    "${audio[@]}" -f hls -hls_time "$td_s" -hls_list_size 0 "${seg[@]}" \
      -hls_segment_filename "$tmp/all/$fmt/audio/%d.$ext" "$tmp/all/$fmt/audio/index.m3u8"
  for track in video audio; do
    mkdir -p "$tmp/media/$fmt/$track"
    [[ $fmt == fmp4 ]] && cp "$tmp/all/$fmt/$track/init.mp4" "$tmp/media/$fmt/$track/"
    for ((j = 0; j < k; j++)); do
      cp "$tmp/all/$fmt/$track/$((k + j)).$ext" "$tmp/media/$fmt/$track/$j.$ext"
    done
  done
done
printf '{"version":1,"segment_ms":%d,"segments":%d,"source_first_index":%d}\n' \
  "$td_ms" "$k" "$k" > "$tmp/media/media.json"
rm -rf "$out"
mv "$tmp/media" "$out"
echo "$out"
