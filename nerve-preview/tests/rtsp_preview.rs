//! The preview as a viewer gets it: nerve-preview serves a live input over RTSP on loopback and a
//! real client (`rtspsrc ! rtph264depay ! avdec_h264`) pulls it.
//!
//! - a 240p file input (240p, not 360p: the test must pass on a busy machine, where a preview
//!   keeps time by dropping frames; 360p is what `nerve-preview report` measures): the client
//!   reaches EOS with 480p frames with rising timestamps, and the served
//!   pipeline's `nervesr` enhanced frames (model run, CPU provider) and fell back on few;
//! - a lossy UDP input (MPEG-TS with 1% of its datagrams dropped on the way): the chain has
//!   `nerverecover` before `nervesr` (recover=auto), it saw the frames, and the client still gets
//!   720p frames.

use std::time::{Duration, Instant};

use gst::prelude::*;
use nerve_preview::{PreviewConfig, PreviewServer, report};

const CLIP: &str = "videos/animation/big_buck_bunny_0_30.webm";
const SECONDS: u32 = 4;
/// Frames the client must receive at least, of the SECONDS * 30 sent: a preview keeps real time
/// by dropping frames (decoder QoS) when the machine is short of CPU, so not all of them arrive on
/// a busy machine; on an idle 2-core machine they all do.
const FRAMES: usize = 30;
const DEADLINE: Duration = Duration::from_secs(90);

/// A 16:9 30 fps H.264 clip of `height` lines and `seconds`, made from the shared test clip.
fn input_clip(name: &str, height: u32, seconds: u32) -> Option<std::path::PathBuf> {
    let clip = nerve_e2e::input(CLIP)?;
    nerve_preview::init().expect("GStreamer and the nerve plugin");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nerve-preview");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join(name);
    let size = report::make_input(&clip, height, seconds, &out).expect("the input is made");
    assert_eq!(size.1, height);
    Some(out)
}

struct Received {
    frames: usize,
    /// The served enhancement elements' stats, read while the client is still connected (the
    /// media is torn down, and its elements stopped, when the client leaves).
    stats: Vec<gst::Structure>,
    eos: bool,
    sizes: Vec<(i32, i32)>,
    pts_rising: bool,
}

/// Pulls decoded frames from `url` with a real RTSP client until EOS, `max` frames or the deadline.
fn pull(server: &PreviewServer, max: usize) -> Received {
    let url = server.url();
    let client = gst::parse::launch(&format!(
        "rtspsrc location={url} latency=0 protocols=tcp ! rtph264depay ! h264parse ! avdec_h264 ! \
         appsink name=sink sync=false max-buffers=4"
    ))
    .expect("client pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = client.by_name("sink").expect("appsink").downcast::<gst_app::AppSink>().expect("appsink");
    client.set_state(gst::State::Playing).expect("the client starts");
    let start = Instant::now();
    let (mut frames, mut sizes, mut last, mut pts_rising) = (0, Vec::new(), None, true);
    while frames < max && !sink.is_eos() && start.elapsed() < DEADLINE {
        if let Some(msg) = client.bus().expect("bus").pop_filtered(&[gst::MessageType::Error]) {
            panic!("client error: {msg:?}");
        }
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(500)) else { continue };
        let caps = sample.caps().expect("caps");
        let s = caps.structure(0).expect("structure");
        let size = (s.get::<i32>("width").expect("width"), s.get::<i32>("height").expect("height"));
        if !sizes.contains(&size) {
            sizes.push(size);
        }
        let pts = sample.buffer().and_then(|b| b.pts());
        if let (Some(a), Some(b)) = (last, pts) {
            pts_rising &= b > a;
        }
        last = pts.or(last);
        frames += 1;
    }
    let eos = sink.is_eos();
    let stats = server.stats();
    client.set_state(gst::State::Null).expect("the client stops");
    Received { frames, stats, eos, sizes, pts_rising }
}

/// One preview at a time: the two tests would otherwise share the cores they are measured on.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stat(stats: &[gst::Structure], name: &str) -> gst::Structure {
    stats.iter().find(|s| s.name() == name).unwrap_or_else(|| panic!("no {name} among {stats:?}")).clone()
}

#[test]
fn a_viewer_pulls_the_enhanced_preview_to_the_end() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _t = nerve_e2e::Timer::start("nerve-preview rtsp (file input)");
    let Some(input) = input_clip("file-240p.mp4", 240, SECONDS) else { return };
    let config = PreviewConfig::new(format!("file://{}", input.display()));
    assert!(!config.describe().unwrap().contains("nerverecover"), "a file is not lossy");
    let server = PreviewServer::start(&config, "127.0.0.1", 0, "/preview").expect("the server starts");
    let got = pull(&server, usize::MAX);
    let stats = got.stats.clone();
    drop(server);

    assert!(got.eos, "the client reached the end of the 4 s input");
    assert!(got.frames >= FRAMES, "frames received: {}", got.frames);
    assert_eq!(got.sizes, vec![(852, 480)], "every frame at twice the input size");
    assert!(got.pts_rising, "timestamps rise frame after frame");
    let sr = stat(&stats, "nervesr-stats");
    let enhanced = sr.get::<u64>("frames-enhanced").expect("frames-enhanced");
    let classical = sr.get::<u64>("frames-classical").expect("frames-classical");
    assert_eq!(sr.get::<&str>("provider").expect("provider"), "cpu");
    assert!(enhanced + classical >= got.frames as u64, "every frame received went through nervesr: {sr}");
    // Under QoS pressure nervesr upscales some frames classically; most must be the model's.
    assert!(enhanced * 2 > enhanced + classical, "most frames enhanced by the model: {sr}");
    assert_eq!(sr.get::<u64>("inference-errors").expect("inference-errors"), 0, "{sr}");
}

#[test]
fn a_lossy_udp_input_goes_through_nerverecover() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _t = nerve_e2e::Timer::start("nerve-preview rtsp (lossy UDP input)");
    let Some(input) = input_clip("udp-360p.mp4", 360, 2 * SECONDS) else { return };
    let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    // The sender: the clip as MPEG-TS over UDP in real time, with 1% of its datagrams lost.
    let sender = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse config-interval=-1 ! mpegtsmux alignment=7 ! \
         identity drop-probability=0.01 ! udpsink host=127.0.0.1 port={port} sync=true",
        input.display()
    ))
    .expect("sender pipeline");
    sender.set_state(gst::State::Playing).expect("the sender starts");

    let config = PreviewConfig::new(format!("udp://127.0.0.1:{port}"));
    assert!(config.describe().unwrap().contains("nerverecover"), "UDP is lossy: recovery runs");
    let server = PreviewServer::start(&config, "127.0.0.1", 0, "/preview").expect("the server starts");
    let got = pull(&server, 2 * FRAMES);
    let stats = got.stats.clone();
    drop(server);
    sender.set_state(gst::State::Null).expect("the sender stops");

    // The sender runs 2 * SECONDS; the preview joins after a moment, at the next keyframe.
    assert!(got.frames >= FRAMES, "frames received: {}", got.frames);
    assert_eq!(got.sizes, vec![(1280, 720)]);
    let recover = stats.iter().find(|s| s.has_field("frames-in")).unwrap_or_else(|| panic!("nerverecover stats: {stats:?}"));
    // Frames lost on the way (or dropped by the decoder) come out synthesised: one per timestamp.
    assert!(recover.get::<u64>("frames-in").expect("frames-in") > 0, "{recover}");
    assert!(recover.get::<u64>("frames-out").expect("frames-out") >= got.frames as u64, "{recover}");
    let sr = stat(&stats, "nervesr-stats");
    assert!(sr.get::<u64>("frames-enhanced").expect("frames-enhanced") > 0, "{sr}");
}
