//! RTP packets of H.264 into `nervesalvage`: the header parser and the salvager's decision
//! (`salvage::fragment`), then the element itself in a pipeline.
//!
//! Input: packets, each a length byte then that many bytes (a short last one is taken as it is).
#![no_main]

use gst::prelude::*;
use gstnerve::salvage::fragment::{self, Fragment, Out, Rtp, Salvager};
use libfuzzer_sys::fuzz_target;

fn packets(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        out.push(&tail[..n]);
        rest = &tail[n..];
    }
    out
}

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstnerve::plugin_register_static().expect("the nerve plugin registers");
    });
}

const CAPS: &str = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96";

fuzz_target!(|data: &[u8]| {
    let packets = packets(data);
    // The decision alone: whatever comes in goes out, in order, with at most the FU end bit and
    // the marker changed.
    let mut salvager = Salvager::default();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let emit = |o: Out<Vec<u8>>, out: &mut Vec<Vec<u8>>| match o {
        Out::Pass(p) => out.push(p),
        Out::Close { mut packet, rtp, marker } => {
            fragment::close(&mut packet, &rtp, marker);
            out.push(packet)
        }
    };
    for p in &packets {
        let parsed = Rtp::parse(p).map(|rtp| {
            assert!(rtp.payload + rtp.payload_len <= p.len(), "payload past the end: {rtp:?}, {} bytes", p.len());
            (rtp, rtp.fragment(p))
        });
        if let Some((_, Fragment::First | Fragment::Middle)) = parsed {
            assert!(p[0] >> 6 == 2);
        }
        for o in salvager.packet(p.to_vec(), parsed) {
            emit(o, &mut out);
        }
    }
    if let Some(o) = salvager.finish() {
        emit(o, &mut out);
    }
    assert_eq!(out.len(), packets.len(), "a packet was dropped or added");
    for (a, b) in packets.iter().zip(&out) {
        assert_eq!(a.len(), b.len());
        let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        assert!(changed.len() <= 2, "{changed:?}");
    }

    // The element: every packet pushed is accepted, and the pipeline ends (EOS or a clear error).
    init();
    // The element's output goes to a fakesink: GStreamer 1.22's rtph264depay itself crashes on
    // some packet sequences, with or without nervesalvage in front (docs/reliability.md), which
    // would stop every run. NERVE_FUZZ_DEPAY=1 puts the depayloader back, and
    // NERVE_FUZZ_WITHOUT_SALVAGE=1 takes the element out, to replay such a crash either way.
    let set = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
    let salvage = if set("NERVE_FUZZ_WITHOUT_SALVAGE") { "" } else { "nervesalvage !" };
    let depay = if set("NERVE_FUZZ_DEPAY") { "rtph264depay !" } else { "" };
    let pipeline = gst::parse::launch(&format!("appsrc name=src caps=\"{CAPS}\" format=time ! {salvage} {depay} fakesink"))
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let src = pipeline.by_name("src").expect("src").downcast::<gst_app::AppSrc>().expect("appsrc");
    pipeline.set_state(gst::State::Playing).expect("playing");
    for (i, p) in packets.iter().enumerate() {
        let mut buffer = gst::Buffer::from_slice(p.to_vec());
        buffer.get_mut().expect("fresh buffer").set_pts(gst::ClockTime::from_mseconds(i as u64));
        if src.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Eos, gst::MessageType::Error]);
    assert!(msg.is_some(), "the pipeline neither ended nor failed within 10 s");
    pipeline.set_state(gst::State::Null).expect("stops");
});
