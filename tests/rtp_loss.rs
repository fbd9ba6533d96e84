//! RTP with packet loss through `nervesalvage`, `nerverecover` and `nervesr`: a real clip
//! (Chaplin, 640x360, 25 fps, its first 4 s) encoded with four slices per frame, packetised with a
//! 1200-byte MTU (slices travel in FU-A fragments), every 17th packet lost (a fixed pattern,
//! away from the first and last frames) and all the packets of one P frame, then
//! `rtpjitterbuffer do-lost=true ! nervesalvage ! rtph264depay ! avdec_h264 max-threads=1 !
//! nerverecover ! nervesr ! appsink`, all in one pipeline, not synced to the clock.
//!
//! Asserts: EOS without an error; one frame out per frame sent, at the sent frames' timestamps
//! (increasing, one frame duration apart), at twice the size; nervesalvage kept the arrived part
//! of broken fragmented slices (`units-salvaged` > 0) and saw every packet that was not lost;
//! nerverecover put out as many frames as it received plus the ones it synthesised, and
//! synthesised the frame that never arrived (no recovery model is shipped and the one-thread
//! decoder conceals lost slices, so frames are not "repaired" here); nervesr enhanced every frame it got.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use nerve_e2e::{field, init, input, record_frames};

const CLIP: &str = "videos/film_archival/chaplin.mp4";
/// The frames sent: the clip's first 4 s.
const UNTIL: gst::ClockTime = gst::ClockTime::from_seconds(4);
const FRAME_NS: u64 = 40_000_000; // 25 fps
/// Every LOSS_PERIOD-th packet is lost, from LOSS_FROM after the first packet to LOSS_UNTIL.
const LOSS_PERIOD: u64 = 17;
const LOSS_FROM: gst::ClockTime = gst::ClockTime::from_mseconds(600);
const LOSS_UNTIL: gst::ClockTime = gst::ClockTime::from_mseconds(3400);
/// And every packet of the frame this long after the first (a P frame: keyframes are every 2 s),
/// so that one frame never reaches the decoder.
const FRAME_LOST_AT: gst::ClockTime = gst::ClockTime::from_mseconds(2400);
const DEADLINE: Duration = Duration::from_secs(90);

/// Drops every LOSS_PERIOD-th RTP packet leaving `pad` inside the loss window; counts what it
/// sees and what it drops. Handles buffer lists (rtph264pay pushes fragments as lists).
fn lose_packets(pad: &gst::Pad) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let (seen, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (seen2, lost2) = (seen.clone(), lost.clone());
    // The encoder's timestamps start at an offset (1000 h in x264enc): the window starts at the
    // first packet's.
    let first: Mutex<Option<gst::ClockTime>> = Mutex::new(None);
    let keep = move |b: &gst::BufferRef| {
        let n = seen2.fetch_add(1, Ordering::SeqCst);
        let base = first.lock().ok().and_then(|mut f| {
            if f.is_none() {
                *f = b.pts();
            }
            *f
        });
        let since = b.pts().zip(base).and_then(|(t, base)| t.checked_sub(base));
        let in_window = since.is_some_and(|t| t >= LOSS_FROM && t < LOSS_UNTIL);
        let whole_frame = since.is_some_and(|t| t >= FRAME_LOST_AT && t.nseconds() < FRAME_LOST_AT.nseconds() + FRAME_NS / 2);
        let drop = whole_frame || (in_window && n % LOSS_PERIOD == LOSS_PERIOD / 2);
        if drop {
            lost2.fetch_add(1, Ordering::SeqCst);
        }
        !drop
    };
    pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, info| {
        match info.data.take() {
            Some(gst::PadProbeData::Buffer(b)) => {
                if !keep(&b) {
                    return gst::PadProbeReturn::Drop;
                }
                info.data = Some(gst::PadProbeData::Buffer(b));
            }
            Some(gst::PadProbeData::BufferList(list)) => {
                let mut kept = gst::BufferList::new_sized(list.len());
                {
                    let kept = kept.get_mut().expect("a new list is writable");
                    for b in list.iter_owned() {
                        if keep(&b) {
                            kept.add(b);
                        }
                    }
                }
                if kept.is_empty() {
                    return gst::PadProbeReturn::Drop;
                }
                info.data = Some(gst::PadProbeData::BufferList(kept));
            }
            other => info.data = other,
        }
        gst::PadProbeReturn::Ok
    });
    (seen, lost)
}

/// Lets the decoded frames with a timestamp before UNTIL through (in order: they leave the
/// decoder in presentation order) and records their timestamps; drops the rest.
fn first_seconds(pad: &gst::Pad) -> Arc<Mutex<Vec<u64>>> {
    let sent: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sent2 = sent.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(b)) = &info.data else { return gst::PadProbeReturn::Ok };
        match b.pts() {
            Some(pts) if pts < UNTIL => {
                if let Ok(mut s) = sent2.lock() {
                    s.push(pts.nseconds());
                }
                gst::PadProbeReturn::Ok
            }
            _ => gst::PadProbeReturn::Drop,
        }
    });
    sent
}

#[test]
fn lossy_rtp_through_salvage_recover_and_sr() {
    let _t = nerve_e2e::Timer::start("rtp_loss");
    init();
    let Some(clip) = input(CLIP) else { return };
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! identity name=source ! videoconvert ! \
         video/x-raw,format=I420 ! \
         x264enc tune=zerolatency speed-preset=veryfast bitrate=3000 key-int-max=50 threads=1 option-string=slices=4:scenecut=0 ! \
         rtph264pay name=pay mtu=1200 config-interval=-1 ! \
         rtpjitterbuffer do-lost=true ! nervesalvage name=salvage ! rtph264depay ! avdec_h264 max-threads=1 ! \
         nerverecover name=recover ! nervesr name=sr ! appsink name=sink sync=false",
        clip.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let source = first_seconds(&pipeline.by_name("source").expect("identity").static_pad("src").expect("src pad"));
    let (sent, lost) = lose_packets(&pipeline.by_name("pay").expect("pay").static_pad("src").expect("src pad"));
    let sink = pipeline.by_name("sink").expect("appsink").downcast::<gst_app::AppSink>().expect("appsink");
    let frames = record_frames(&sink);
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("the pipeline starts");
    let outcome = nerve_e2e::wait(&bus, DEADLINE);
    pipeline.set_state(gst::State::Null).expect("stops");
    outcome.assert_clean_eos("lossy RTP");

    let (sent, lost) = (sent.load(Ordering::SeqCst), lost.load(Ordering::SeqCst));
    let frames = frames.lock().expect("frames").clone();
    let source = source.lock().expect("timestamps").clone();
    let salvage = outcome.last("nervesalvage-stats").expect("nervesalvage posts its stats at EOS");
    let recover = outcome.last("nerverecover-stats").expect("nerverecover posts its stats at EOS");
    let sr = outcome.last("nervesr-stats").expect("nervesr posts its stats at EOS");
    eprintln!("{sent} packets sent, {lost} lost\n{salvage}\n{recover}\n{sr}");
    let pts: Vec<u64> = frames.iter().map(|f| f.pts).collect();
    eprintln!("output timestamps (ms): {:?}", pts.iter().map(|p| p / 1_000_000).collect::<Vec<_>>());
    assert!(lost >= 10, "the loss pattern hit only {lost} of {sent} packets");
    let one_apart = |ts: &[u64]| ts.windows(2).all(|w| (w[1] as i64 - w[0] as i64 - FRAME_NS as i64).abs() <= 1_000_000);
    assert!(source.len() > 90 && one_apart(&source), "the clip's first 4 s are not 25 fps: {source:?}");
    let frames_sent = source.len() as u64;

    // One frame per timestamp: as many as were sent, one frame duration apart, in order, at the
    // sent frames' timestamps (shifted by the encoder's offset).
    assert_eq!(frames.len() as u64, frames_sent, "one frame out per frame sent");
    assert!(one_apart(&pts), "the frames out are not one frame duration apart, in order");
    let offset = pts[0] - source[0];
    assert!(pts.iter().zip(&source).all(|(out, sent)| out - sent == offset), "the frames out are not at the sent timestamps");
    for f in &frames {
        assert_eq!(f.size, (1280, 720), "frame at {} ns is not 2x 640x360", f.pts);
    }

    // nervesalvage: every packet that arrived went through it; broken fragmented slices kept.
    assert_eq!(field(salvage, "packets"), sent - lost, "{salvage}");
    assert!(field(salvage, "units-salvaged") > 0, "no fragmented slice was salvaged: {salvage}");
    assert_eq!(field(salvage, "not-rtp"), 0, "{salvage}");

    // nerverecover: frames out = frames in + synthesised; the losses were worked on.
    let (fin, fout) = (field(recover, "frames-in"), field(recover, "frames-out"));
    let (repaired, synthesised) = (field(recover, "frames-repaired"), field(recover, "frames-synthesised"));
    assert_eq!(fout, fin + synthesised, "{recover}");
    assert_eq!(fout, frames_sent, "{recover}");
    assert!(repaired + synthesised > 0, "nothing repaired or synthesised: {recover}");
    assert!(synthesised >= 1, "the frame lost whole was not synthesised: {recover}");
    assert_eq!(fin, frames_sent - synthesised, "{recover}");
    assert!(field(recover, "gap-events") > 0, "the jitter buffer's lost-packet reports reached nerverecover: {recover}");

    // nervesr: every frame enhanced by the model.
    assert_eq!(field(sr, "frames-enhanced") + field(sr, "frames-classical"), frames_sent, "{sr}");
    assert!(field(sr, "frames-enhanced") > 0, "{sr}");
    assert_eq!(field(sr, "inference-errors"), 0, "{sr}");
}
