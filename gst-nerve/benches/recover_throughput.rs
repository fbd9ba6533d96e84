//! Throughput of `nerverecover mode=low-latency` at 640x360 on frames really damaged by packet
//! loss, beside `identity` (the cost of a bare element) in the same run. Run with
//! `cargo bench -p gst-nerve --bench recover_throughput`.
//!
//! The frames: ../shared/data's 640x360 Chaplin clip (241 frames of real film), encoded as sliced H.264,
//! packetised, 5% of the RTP packets dropped (netsim), depacketised and decoded by avdec_h264,
//! so the element sees what it sees in a receiver (black lost slices, damage carried forward).
//! They are decoded once and pushed from memory so the decoder's cost is not counted.
//!
//! `nervesalvage`, which works on the RTP packets before the depayloader, is timed on the same
//! clip's packets with every 20th one lost, beside `identity`.
//!
//! `NERVE_RECOVER_MODEL=path/to/model.onnx` (with its manifest beside it) also times the element
//! running that recovery model, with a lost packet reported (a GAP without duration, as
//! rtph264depay sends it) before every 5th frame, so the model runs on those and on every frame
//! while it carries a repair on.

use std::path::Path;
use std::time::Instant;

use gst::prelude::*;

mod common;

const FRAMES: usize = 600;
const W: usize = 640;
const H: usize = 360;

fn damaged_frames() -> Vec<gst::Buffer> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/videos/film_archival/chaplin.mp4");
    let desc = format!(
        "filesrc location={} ! decodebin ! videoscale method=bilinear ! videoconvert ! \
         video/x-raw,format=I420,width={W},height={H} ! x264enc tune=zerolatency speed-preset=veryfast bitrate=700 \
         key-int-max=60 option-string=slices=4:scenecut=0 ! rtph264pay mtu=1200 config-interval=-1 ! \
         netsim drop-probability=0.05 ! rtpjitterbuffer ! rtph264depay ! avdec_h264 ! appsink name=sink sync=false",
        sample.display()
    );
    common::decode(&desc)
}

/// The same clip as RTP packets (every 20th one lost: a fixed 5%), before any depayloader.
fn lossy_packets() -> Vec<gst::Buffer> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/videos/film_archival/chaplin.mp4");
    let desc = format!(
        "filesrc location={} ! decodebin ! videoscale method=bilinear ! videoconvert ! \
         video/x-raw,format=I420,width={W},height={H} ! x264enc tune=zerolatency speed-preset=veryfast bitrate=700 \
         key-int-max=60 option-string=slices=4:scenecut=0 ! rtph264pay mtu=1200 config-interval=-1 ! appsink name=sink sync=false",
        sample.display()
    );
    common::decode(&desc).into_iter().enumerate().filter(|(i, _)| i % 20 != 19).map(|(_, b)| b).collect()
}

/// Pushes the packets through `filter` (ten passes, the sequence numbers going on from pass to
/// pass); returns (packets per second, the element's stats).
fn run_packets(filter: &str, packets: &[gst::Buffer]) -> (f64, Option<gst::Structure>) {
    let desc = format!(
        "appsrc name=src format=time caps=application/x-rtp,media=video,encoding-name=H264,clock-rate=90000 ! {filter} ! fakesink sync=false"
    );
    let (pipeline, src) = common::start(&desc);
    let first = packets[0].map_readable().map(|m| u16::from_be_bytes([m[2], m[3]])).unwrap();
    let span = packets.last().unwrap().map_readable().map(|m| u16::from_be_bytes([m[2], m[3]])).unwrap().wrapping_sub(first);
    let started = Instant::now();
    let mut pushed = 0u64;
    for pass in 0..10u16 {
        for p in packets {
            let mut b = p.copy();
            {
                let mut map = b.make_mut().map_writable().unwrap();
                let seq = u16::from_be_bytes([map[2], map[3]]).wrapping_add(pass.wrapping_mul(span.wrapping_add(1)));
                map[2..4].copy_from_slice(&seq.to_be_bytes());
            }
            src.push_buffer(b).unwrap();
            pushed += 1;
        }
    }
    let elapsed = common::finish(&pipeline, &src, started, filter);
    let stats = pipeline.by_name("s").map(|e| e.property::<gst::Structure>("stats"));
    pipeline.set_state(gst::State::Null).unwrap();
    (pushed as f64 / elapsed.as_secs_f64(), stats)
}

/// Pushes FRAMES frames (every 7th one left out, so frames must be synthesised too) through
/// `filter` into a fakesink as fast as possible; returns (input fps, the element's stats).
fn run(filter: &str, frames: &[gst::Buffer], loss_every: Option<usize>) -> (f64, Option<gst::Structure>) {
    let desc = format!(
        "appsrc name=src format=time is-live=false caps=video/x-raw,format=I420,width={W},height={H},framerate=30/1 ! \
         {filter} ! fakesink sync=false"
    );
    let (pipeline, src) = common::start(&desc);
    let started = Instant::now();
    let mut pushed = 0;
    for i in 0..FRAMES {
        if i % 7 == 6 {
            continue;
        }
        if loss_every.is_some_and(|k| i % k == 0) {
            src.send_event(gst::event::Gap::builder(gst::ClockTime::from_nseconds(i as u64 * 33_333_333)).build());
        }
        let mut b = frames[i % frames.len()].copy();
        let b_mut = b.make_mut();
        b_mut.set_pts(gst::ClockTime::from_nseconds(i as u64 * 33_333_333));
        b_mut.set_duration(gst::ClockTime::from_nseconds(33_333_333));
        src.push_buffer(b).unwrap();
        pushed += 1;
    }
    let elapsed = common::finish(&pipeline, &src, started, filter);
    let stats = pipeline.by_name("r").map(|e| e.property::<gst::Structure>("stats"));
    pipeline.set_state(gst::State::Null).unwrap();
    (pushed as f64 / elapsed.as_secs_f64(), stats)
}

fn main() {
    gst::init().unwrap();
    gstnerve::plugin_register_static().unwrap();
    let frames = damaged_frames();
    let (base, _) = run("identity", &frames, None);
    let (ll, stats) = run("nerverecover name=r mode=low-latency stats-interval=0", &frames, None);
    let (la, _) = run("nerverecover name=r mode=lookahead stats-interval=0", &frames, None);
    println!("{} decoded frames after 5% RTP packet loss, {W}x{H} I420, pushed {FRAMES} times with every 7th left out", frames.len());
    println!("identity                          {base:>8.1} fps");
    println!("nerverecover mode=low-latency     {ll:>8.1} fps (target >= 30)");
    println!("nerverecover mode=lookahead       {la:>8.1} fps");
    if let Some(s) = stats {
        println!("low-latency stats: {s}");
    }
    let packets = lossy_packets();
    let (pid, _) = run_packets("identity", &packets);
    let (psalv, stats) = run_packets("nervesalvage name=s", &packets);
    println!("{} RTP packets of the same clip (every 20th lost), pushed 10 times", packets.len());
    println!("identity                          {pid:>8.0} packets/s");
    println!("nervesalvage                      {psalv:>8.0} packets/s");
    if let Some(s) = stats {
        println!("nervesalvage stats: {s}");
    }
    if let Ok(model) = std::env::var("NERVE_RECOVER_MODEL") {
        let (m, stats) = run(&format!("nerverecover name=r mode=low-latency stats-interval=0 model={model}"), &frames, Some(5));
        println!("nerverecover low-latency + model  {m:>8.1} fps (target >= 30), loss reported before every 5th frame");
        if let Some(s) = stats {
            println!("with the model: {s}");
        }
    }
}
