#!/usr/bin/env bash
# Writes the committed seed corpora (fuzz/corpus/<target>/): small, hand-made or generated here
# (GStreamer's x264enc and rtph264pay for the H.264 and RTP seeds), none copied from
# ../shared/data. Run from the repository root: fuzz/make_corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
c=fuzz/corpus
mkdir -p $c/model_manifest $c/quality_table $c/trace $c/abr_manifest $c/rtp_salvage $c/h264_recover

cp models/manifest.toml $c/model_manifest/shipped.toml
cat > $c/model_manifest/one.toml <<'T'
[[model]]
name = "sr-x2-test"
file = "sub/x2.onnx"
task = "super-resolution"
scale = 2
frames = 2
default = true
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
input = { name = "lr", layout = "NCHW", planes = "Y", range = "unit" }
output = { name = "hr", layout = "NCHW", planes = "Y" }
T

cp nerve-abr/tables/pensieve_generic_nervesr.json $c/quality_table/generic.json
cp nerve-abr/tables/pensieve_sports_nervesr.json $c/quality_table/sports.json

printf '0 1.5\n1 2.25\n2 0.5\n3 4\n' > $c/trace/two_column.txt
printf '0\n3\n3\n7\n12\n12\n12\n20\n41\n60\n' > $c/trace/mahimahi.txt
printf '[{"duration_ms": 1000, "bandwidth_kbps": 1500, "latency_ms": 20}, {"duration_ms": 500, "bandwidth_kbps": 300, "latency_ms": 40}]\n' > $c/trace/sabre.json
printf '{"bandwidth": [{"duration_ms": 2000, "bandwidth_kbps": 800, "latency_ms": 10}, {"duration_ms": 1000, "bandwidth_kbps": 5000, "latency_ms": 10}]}\n' > $c/trace/sabre_wrapped.json

cat > $c/abr_manifest/dash.mpd <<'T'
<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT30.0S" minBufferTime="PT2S">
 <Period>
  <AdaptationSet contentType="video" segmentAlignment="true">
   <SegmentTemplate timescale="1000" duration="2000" media="$RepresentationID$/$Number$.m4s" initialization="$RepresentationID$/init.mp4"/>
   <Representation id="r2" bandwidth="1200000" width="854" height="480" codecs="avc1.64001e"/>
   <Representation id="r0" bandwidth="300000" width="320" height="180"/>
  </AdaptationSet>
  <AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000"/></AdaptationSet>
 </Period>
</MPD>
T
printf '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.4d401f,mp4a.40.2",RESOLUTION=640x360\nlow.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2400000,RESOLUTION=1280x720\nhi.m3u8\n' > $c/abr_manifest/master.m3u8
printf '300000:180, 800000:360,2400000' > $c/abr_manifest/ladder.txt

# H.264: 64x36 (12 frames) and 128x96 (two slices per frame, 4 frames), as Annex-B; the target's first two
# bytes are its loss mask (0: nothing dropped; 0x0024: access units 2 and 5 of each 16).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
enc() { # width height frames x264-options pattern output
  gst-launch-1.0 -q videotestsrc num-buffers=$3 pattern=$5 ! video/x-raw,width=$1,height=$2,framerate=25/1 ! \
    x264enc key-int-max=6 bframes=0 ${4:+option-string=$4} ! video/x-h264,stream-format=byte-stream,profile=constrained-baseline ! \
    filesink location="$6"
}
enc 64 36 12 "" ball "$tmp/small.h264"
enc 128 96 4 "slices=2" smpte "$tmp/sliced.h264"
for name in small sliced; do
  { printf '\x00\x00'; cat "$tmp/$name.h264"; } > $c/h264_recover/$name.bin
  { printf '\x00\x24'; cat "$tmp/$name.h264"; } > $c/h264_recover/${name}_lost.bin
done

# RTP: the 128x96 stream paid out at mtu 120 (FU-A fragments), each packet a length byte then
# the packet, as the target reads them.
# (rtpstreampay: multifilesink would write a buffer list into one file)
gst-launch-1.0 -q filesrc location="$tmp/sliced.h264" ! h264parse ! rtph264pay mtu=120 config-interval=-1 ! \
  rtpstreampay ! filesink location="$tmp/rtp.stream"
python3 - "$tmp" $c/rtp_salvage <<'P'
import os, sys
tmp, out = sys.argv[1], sys.argv[2]
# rtpstreampay's framing (RFC 4571): a 16-bit length before each packet.
data, packets = open(os.path.join(tmp, "rtp.stream"), "rb").read(), []
while data:
    n = int.from_bytes(data[:2], "big")
    packets.append(data[2 : 2 + n])
    data = data[2 + n :]
assert all(len(p) < 256 for p in packets)
def write(name, ps):
    with open(os.path.join(out, name), "wb") as f:
        for p in ps:
            f.write(bytes([len(p)]) + p)
write("stream.bin", packets[:40])
write("lost.bin", [p for i, p in enumerate(packets[:40]) if i % 7 != 3])
P
du -sh $c/*
