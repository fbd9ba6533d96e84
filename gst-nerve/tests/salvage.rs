//! `nervesalvage` element tests: unbroken streams go through bit-exact, a broken fragmentation
//! unit is closed before the gap (marker only across access units), reported losses, EOS and
//! flush, non-RTP input, and a real H.264 stream whose decode gets closer to the lossless one.

mod common;

use gst::prelude::*;
use gst_check::Harness;

use common::{init, stat};

const CAPS: &str = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96";

fn harness() -> Harness {
    init();
    let mut h = Harness::new("nervesalvage");
    h.set_src_caps_str(CAPS);
    h
}

/// An RTP packet of an FU-A fragment (start, end bits), or of a single NAL unit.
fn packet(seq: u16, ts: u32, marker: bool, fu: Option<(bool, bool)>) -> gst::Buffer {
    let mut p = vec![0x80, if marker { 0xe0 } else { 0x60 }];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend([0, 0, 0, 1]);
    match fu {
        Some((s, e)) => p.extend([0x7c, 0x01 | if s { 0x80 } else { 0 } | if e { 0x40 } else { 0 }, 0xaa, 0xbb]),
        None => p.extend([0x41, 0x9a, 0xcc]),
    }
    gst::Buffer::from_mut_slice(p)
}

fn bytes(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().expect("readable").to_vec()
}


#[test]
fn an_unbroken_stream_goes_through_bit_exact_and_in_order() {
    let mut h = harness();
    let sent = [
        packet(10, 0, false, Some((true, false))),
        packet(11, 0, false, Some((false, false))),
        packet(12, 0, true, Some((false, true))),
        packet(13, 3000, true, None),
    ];
    for p in &sent {
        h.push(p.clone()).expect("push");
    }
    let got: Vec<Vec<u8>> = (0..sent.len()).map(|_| bytes(&h.pull().expect("pull"))).collect();
    assert_eq!(got, sent.iter().map(bytes).collect::<Vec<_>>());
    assert_eq!((stat(&h, "packets"), stat(&h, "units-salvaged")), (4, 0));
}

#[test]
fn a_lost_fragment_closes_the_unit_before_it() {
    let mut h = harness();
    h.push(packet(1, 0, false, Some((true, false)))).expect("push");
    h.push(packet(2, 0, false, Some((false, false)))).expect("push");
    assert_eq!(h.buffers_in_queue(), 1, "the unfinished unit's latest fragment waits for the next packet");
    // 3 is lost; 4 is the rest of the same unit, 5 lost too (with the marker), 6 the next frame.
    h.push(packet(4, 0, false, Some((false, false)))).expect("push");
    h.push(packet(6, 3000, true, None)).expect("push");
    let first = h.pull().expect("pull");
    assert_eq!(bytes(&first), bytes(&packet(1, 0, false, Some((true, false)))));
    let closed = bytes(&h.pull().expect("pull"));
    assert_eq!(closed[13], 0x01 | 0x40, "end bit set on the last fragment before the gap");
    assert_eq!(closed[1] & 0x80, 0, "no marker: the access unit goes on after the gap");
    let closed_again = bytes(&h.pull().expect("pull"));
    assert_eq!(closed_again[13], 0x01 | 0x40);
    assert_eq!(closed_again[1] & 0x80, 0x80, "the marker was lost with packet 5: the next packet is another frame");
    assert_eq!(bytes(&h.pull().expect("pull")), bytes(&packet(6, 3000, true, None)));
    assert_eq!(stat(&h, "units-salvaged"), 2);
}

#[test]
fn a_reported_loss_sends_the_held_fragment_closed_before_the_event() {
    let mut h = harness();
    h.push(packet(1, 0, false, Some((true, false)))).expect("push");
    let lost = gst::event::CustomDownstream::new(gst::Structure::builder("GstRTPPacketLost").field("seqnum", 2u32).build());
    assert!(h.push_event(lost));
    let closed = bytes(&h.pull().expect("the held fragment comes out"));
    assert_eq!(closed[13] & 0x40, 0x40);
    // The event follows it.
    loop {
        let e = h.pull_event().expect("event");
        if let gst::EventView::CustomDownstream(c) = e.view() {
            assert_eq!(c.structure().map(|s| s.name().as_str()), Some("GstRTPPacketLost"));
            break;
        }
    }
}

#[test]
fn other_serialized_events_keep_their_place_after_the_held_fragment() {
    let mut h = harness();
    let first = packet(1, 0, false, Some((true, false)));
    h.push(first.clone()).expect("push");
    assert!(h.push_event(gst::event::CustomDownstream::new(gst::Structure::new_empty("something-else"))));
    assert_eq!(bytes(&h.pull().expect("the held fragment goes first")), bytes(&first), "unchanged: nothing was lost");
    assert_eq!(stat(&h, "units-salvaged"), 0);
}

#[test]
fn end_of_stream_closes_and_flush_drops_the_held_fragment() {
    let mut h = harness();
    h.push(packet(1, 0, false, Some((true, false)))).expect("push");
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())));
    h.push(packet(2, 0, false, Some((true, false)))).expect("push");
    h.push_event(gst::event::Eos::new());
    let closed = bytes(&h.pull().expect("pull"));
    assert_eq!(u16::from_be_bytes([closed[2], closed[3]]), 2, "the flushed fragment is gone");
    assert_eq!((closed[13] & 0x40, closed[1] & 0x80), (0x40, 0x80), "closed, with its access unit");
    assert!(h.try_pull().is_none());
}

#[test]
fn a_buffer_that_is_not_rtp_goes_through_unchanged() {
    let mut h = harness();
    let junk = gst::Buffer::from_slice([1u8, 2, 3]);
    h.push(junk).expect("push");
    assert_eq!(bytes(&h.pull().expect("pull")), vec![1, 2, 3]);
    assert_eq!(stat(&h, "not-rtp"), 1);
}

/// RTP packets of a real H.264 stream: 640x368 noise (every slice spans many packets), four
/// slices per frame, 1200-byte packets. Smaller frames would not do: FFmpeg conceals the 50
/// macroblocks before the point where it finds a slice broken, which in a 160x120 frame is the
/// whole slice.
fn real_packets() -> Vec<gst::Buffer> {
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=8 pattern=snow ! video/x-raw,format=I420,width=640,height=368,framerate=30/1 ! \
         x264enc threads=1 tune=zerolatency speed-preset=ultrafast bitrate=20000 key-int-max=30 option-string=slices=4 ! \
         rtph264pay mtu=1200 config-interval=-1 ! appsink name=out sync=false",
    )
    .expect("encoder pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let sink = pipeline.by_name("out").expect("sink").downcast::<gst_app::AppSink>().expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut out = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        if let Some(list) = s.buffer_list() {
            out.extend(list.iter_owned());
        } else if let Some(b) = s.buffer_owned() {
            out.push(b);
        }
    }
    pipeline.set_state(gst::State::Null).expect("null");
    out
}

/// Decodes packets (in order already: no jitter buffer needed) on one thread; luma of each frame.
fn decode(packets: &[gst::Buffer], salvage: bool) -> Vec<Vec<u8>> {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src caps=\"{CAPS}\" format=time ! {} rtph264depay ! avdec_h264 max-threads=1 ! \
         video/x-raw,format=I420 ! appsink name=out sync=false",
        if salvage { "nervesalvage !" } else { "" }
    ))
    .expect("decoder pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let src = pipeline.by_name("src").expect("src").downcast::<gst_app::AppSrc>().expect("appsrc");
    let sink = pipeline.by_name("out").expect("sink").downcast::<gst_app::AppSink>().expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    for p in packets {
        src.push_buffer(p.clone()).expect("push");
    }
    src.end_of_stream().expect("eos");
    let mut frames = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        let map = s.buffer().expect("buffer").map_readable().expect("map");
        frames.push(map[..640 * 368].to_vec());
    }
    pipeline.set_state(gst::State::Null).expect("null");
    frames
}

fn squared_error(a: &[u8], b: &[u8]) -> u64 {
    a.iter().zip(b).map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64).sum()
}

#[test]
fn a_real_slice_that_lost_a_middle_fragment_keeps_its_first_macroblocks() {
    init();
    let packets = real_packets();
    // In the fifth frame, the next-to-last fragment of its first fragmented slice: what arrived
    // before it is most of that slice.
    let mut timestamps: Vec<u32> = packets.iter().map(|p| u32::from_be_bytes(bytes(p)[4..8].try_into().expect("4 bytes"))).collect();
    timestamps.dedup();
    let fifth = timestamps[4];
    let is_fu = |p: &gst::Buffer, bits: u8| {
        let b = bytes(p);
        u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")) == fifth && b[12] & 0x1f == 28 && b[13] & 0xc0 == bits
    };
    let lost = (0..packets.len() - 1)
        .find(|&i| is_fu(&packets[i], 0) && is_fu(&packets[i + 1], 0x40))
        .expect("a fragmented slice in the fifth frame");
    let mut damaged = packets.clone();
    damaged.remove(lost);
    let clean = decode(&packets, false);
    let plain = decode(&damaged, false);
    let salvaged = decode(&damaged, true);
    assert_eq!(clean.len(), 8);
    assert_eq!((plain.len(), salvaged.len()), (8, 8), "one frame out per frame in, either way");
    let (e_plain, e_salvaged) = (squared_error(&plain[4], &clean[4]), squared_error(&salvaged[4], &clean[4]));
    assert!(e_plain > 0, "the loss damages the frame");
    assert!(e_salvaged < e_plain, "salvaged {e_salvaged} vs plain {e_plain}: the slice's first macroblocks decoded");
    assert_eq!(salvaged[..4], clean[..4], "frames before the loss are untouched");
    // Without the loss both receivers decode exactly the same frames.
    assert_eq!(decode(&packets, true), clean);
}
