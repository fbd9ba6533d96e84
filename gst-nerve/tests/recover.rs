//! `nerverecover` element tests: one frame per expected timestamp, repair of flagged and
//! detected damage, bit-exact pass-through, flush/discontinuity, latency, bad settings, and the
//! real lost-frame bitstreams of ../shared/data.

mod common;

use std::path::PathBuf;

use gst::prelude::*;
use gst_video::prelude::*;
use gst_check::Harness;
use sha2::{Digest, Sha256};

use common::{fixture, frame, info, init, luma_of, stat};

const W: u32 = 64;
const H: u32 = 48;
/// 30 fps (common::info).
const FRAME_NS: u64 = 33_333_333;

fn harness(props: &[(&str, &str)]) -> Harness {
    init();
    let mut builder = gst::ElementFactory::make("nerverecover").property("model", "none");
    for (k, v) in props {
        builder = builder.property_from_str(k, v);
    }
    let element = builder.build().expect("nerverecover exists");
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(info(gst_video::VideoFormat::I420, W, H).to_caps().expect("caps"));
    h
}

fn at(mut b: gst::Buffer, index: u64) -> gst::Buffer {
    let m = b.make_mut();
    m.set_pts(gst::ClockTime::from_nseconds(index * FRAME_NS));
    m.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
    b
}

fn flat(v: u8) -> gst::Buffer {
    frame(&info(gst_video::VideoFormat::I420, W, H), |x, y| v.wrapping_add(((x + y) % 5) as u8), 128, 128)
}

/// Luma `v` with rows 16..32 at 0: a lost slice as avdec_h264 leaves it.
fn holed(v: u8) -> gst::Buffer {
    frame(&info(gst_video::VideoFormat::I420, W, H), |x, y| if (16..32).contains(&y) { 0 } else { v.wrapping_add(((x + y) % 5) as u8) }, 128, 128)
}

fn luma(b: &gst::Buffer) -> Vec<u8> {
    let vf = gst_video::VideoFrame::from_buffer_readable(b.clone(), &info(gst_video::VideoFormat::I420, W, H)).expect("map");
    luma_of(&vf)
}

fn pts_index(b: &gst::Buffer) -> u64 {
    (b.pts().expect("pts").nseconds() + FRAME_NS / 2) / FRAME_NS
}

#[test]
fn clean_frames_pass_through_untouched() {
    let mut h = harness(&[]);
    for i in 0..5 {
        let input = at(flat(90 + i as u8), i);
        let ptr = input.as_ptr();
        let bytes = input.map_readable().expect("map").to_vec();
        let out = h.push_and_pull(input).expect("a frame");
        assert_eq!(out.as_ptr(), ptr, "frame {i}: the very same buffer (no copy)");
        assert_eq!(out.map_readable().expect("map").as_slice(), bytes.as_slice(), "frame {i}: bit-exact");
    }
}

#[test]
fn timestamp_gaps_are_filled_with_the_frame_shown() {
    let mut h = harness(&[]);
    h.push(at(flat(50), 0)).expect("push");
    h.push(at(flat(60), 1)).expect("push");
    h.push(at(flat(70), 4)).expect("push");
    let out: Vec<gst::Buffer> = (0..5).map(|_| h.pull().expect("a frame per expected timestamp")).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(luma(&out[2]), luma(&out[1]));
    assert_eq!(luma(&out[3]), luma(&out[1]));
    assert_eq!(luma(&out[4]), luma(&at(flat(70), 4)));
    assert!(h.try_pull().is_none());
}

#[test]
fn a_second_frame_for_the_slot_just_shown_is_dropped() {
    // avdec_h264 output two frames for one timestamp on a damaged stream (found by fuzzing,
    // fuzz/regressions/h264_recover/repeated-timestamp.bin): one frame per timestamp still.
    let mut h = harness(&[]);
    for (v, i) in [(50, 0), (60, 1), (61, 1), (70, 2)] {
        h.push(at(flat(v), i)).expect("push");
    }
    let out: Vec<gst::Buffer> = std::iter::from_fn(|| h.try_pull()).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(luma(&out[1]), luma(&at(flat(60), 1)), "the first frame of the slot stays");
    let stats = h.element().expect("element").property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames-repeated").expect("frames-repeated"), 1, "{stats}");
}

#[test]
fn a_repeat_marked_discont_is_dropped_too() {
    // Found by fuzzing (fuzz/regressions/h264_recover/discont-repeat.bin): avdec_h264 marked the
    // second frame for 320 ms DISCONT, which made it pass as a new sequence one slot back.
    let mut h = harness(&[]);
    h.push(at(flat(50), 0)).expect("push");
    h.push(at(flat(60), 1)).expect("push");
    let mut again = at(flat(61), 1);
    again.make_mut().set_flags(gst::BufferFlags::DISCONT);
    h.push(again).expect("push");
    h.push(at(flat(70), 2)).expect("push");
    let out: Vec<gst::Buffer> = std::iter::from_fn(|| h.try_pull()).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(luma(&out[1]), luma(&at(flat(60), 1)), "the first frame of the slot stays");
    let stats = h.element().expect("element").property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames-repeated").expect("frames-repeated"), 1, "{stats}");
    assert_eq!(stats.get::<u64>("discont-frames").expect("discont-frames"), 1, "{stats}");
}

#[test]
fn caps_that_change_no_pixel_keep_the_timeline() {
    // A damaged stream made avdec_h264 flip interlace-mode between frames (found by fuzzing,
    // fuzz/regressions/h264_recover/caps-reset-repeat.bin): each caps event used to reset the
    // timeline, so a repeat after it passed and the gap before it was never filled.
    let mut h = harness(&[]);
    let interlaced = || {
        let mut caps = info(gst_video::VideoFormat::I420, W, H).to_caps().expect("caps");
        caps.make_mut().set("interlace-mode", "mixed");
        caps
    };
    h.push(at(flat(50), 0)).expect("push");
    h.set_src_caps(interlaced());
    h.push(at(flat(60), 3)).expect("push");
    h.set_src_caps(info(gst_video::VideoFormat::I420, W, H).to_caps().expect("caps"));
    h.push(at(flat(61), 3)).expect("push");
    h.push(at(flat(70), 4)).expect("push");
    let out: Vec<gst::Buffer> = std::iter::from_fn(|| h.try_pull()).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(luma(&out[1]), luma(&out[0]), "the gap across the caps event is held");
    assert_eq!(luma(&out[3]), luma(&at(flat(60), 3)), "the first frame of the slot stays");
    let stats = h.element().expect("element").property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames-repeated").expect("frames-repeated"), 1, "{stats}");
    assert_eq!(stats.get::<u64>("frames-synthesised").expect("frames-synthesised"), 2, "{stats}");
}

#[test]
fn a_new_size_restarts_the_pictures_but_not_the_timeline() {
    let mut h = harness(&[]);
    h.push(at(flat(50), 0)).expect("push");
    h.push(at(flat(50), 1)).expect("push");
    let small = info(gst_video::VideoFormat::I420, W / 2, H / 2);
    h.set_src_caps(small.to_caps().expect("caps"));
    let frame_small = frame(&small, |_, _| 90, 128, 128);
    h.push(at(frame_small.copy(), 1)).expect("push");
    h.push(at(frame_small, 2)).expect("push");
    let out: Vec<gst::Buffer> = std::iter::from_fn(|| h.try_pull()).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2], "one frame per slot across the new size");
    assert_eq!(out[2].size(), small.size(), "frames after the caps are the new size");
}

#[test]
fn gap_events_become_frames() {
    let mut h = harness(&[]);
    h.push(at(flat(50), 0)).expect("push");
    assert!(h.push_event(gst::event::Gap::builder(gst::ClockTime::from_nseconds(FRAME_NS))
        .duration(gst::ClockTime::from_nseconds(2 * FRAME_NS))
        .build()));
    h.push(at(flat(80), 3)).expect("push");
    let out: Vec<gst::Buffer> = (0..4).map(|_| h.pull().expect("frame")).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(luma(&out[1]), luma(&out[0]));
    let stats = h.element().expect("element").property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("gap-events").expect("field"), 1);
    assert_eq!(stats.get::<u64>("frames-synthesised").expect("field"), 2);
}

#[test]
fn corrupted_flag_without_visible_damage_holds_the_frame_shown() {
    let mut h = harness(&[]);
    let first = h.push_and_pull(at(flat(100), 0)).expect("frame");
    let mut bad = at(flat(160), 1);
    bad.make_mut().set_flags(gst::BufferFlags::CORRUPTED);
    let out = h.push_and_pull(bad).expect("frame");
    assert_eq!(luma(&out), luma(&first));
    assert!(!out.flags().contains(gst::BufferFlags::CORRUPTED));
    let stats = h.element().expect("element").property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames-corrupted").expect("field"), 1);
}

#[test]
fn a_lost_slice_is_detected_and_repaired_from_the_frame_shown() {
    let mut h = harness(&[]);
    let first = h.push_and_pull(at(flat(100), 0)).expect("frame");
    let input = at(holed(103), 1);
    let out = h.push_and_pull(input.clone()).expect("frame");
    let (o, i, f) = (luma(&out), luma(&input), luma(&first));
    let w = W as usize;
    for y in 0..H as usize {
        let row = y * w..(y + 1) * w;
        if (16..32).contains(&y) {
            assert_eq!(o[row.clone()], f[row], "row {y} comes from the frame shown");
        } else {
            assert_eq!(o[row.clone()], i[row], "row {y} is untouched");
        }
    }
    let stats = h.element().expect("element").property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("blocks-repaired").expect("field"), 4);
}

#[test]
fn damage_at_the_stream_start_is_concealed_from_its_surroundings() {
    let mut h = harness(&[]);
    let out = h.push_and_pull(at(holed(100), 0)).expect("frame");
    let o = luma(&out);
    assert!(o.iter().all(|&v| v >= 90), "no black left: min {}", o.iter().min().copied().unwrap_or(0));
}

#[test]
fn lookahead_holds_one_frame_and_interpolates_missing_ones() {
    let mut h = harness(&[("mode", "lookahead")]);
    h.push(at(flat(100), 0)).expect("push");
    assert!(h.try_pull().is_none(), "the first frame waits for its successor");
    h.push(at(flat(200), 2)).expect("push");
    let first = h.pull().expect("frame 0");
    let middle = h.pull().expect("frame 1");
    assert_eq!((pts_index(&first), pts_index(&middle)), (0, 1));
    let (a, m, b) = (luma(&first), luma(&middle), luma(&at(flat(200), 2)));
    assert!(a.iter().zip(&b).zip(&m).all(|((&a, &b), &m)| m.abs_diff((a as u16 + b as u16).div_ceil(2) as u8) <= 1));
    assert!(h.try_pull().is_none());
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(pts_index(&h.pull().expect("the held frame comes out at EOS")), 2);
}

#[test]
fn latency_is_one_frame_in_lookahead_only() {
    for (mode, extra) in [("low-latency", 0u64), ("lookahead", FRAME_NS)] {
        let mut h = harness(&[("mode", mode)]);
        h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
        h.play();
        let latency = h.query_latency().expect("latency answered");
        assert_eq!(latency.nseconds(), 10_000_000 + extra, "{mode}");
    }
}

/// A frame of `format` whose rows 16..32 are in-range luma (90) over chroma 0: damage carried on
/// from a lost slice after its luma recovered. Elsewhere it is `flat(50)`'s picture.
fn green_band(format: gst_video::VideoFormat) -> gst::Buffer {
    let info = info(format, W, H);
    let b = frame(&info, |x, y| if (16..32).contains(&y) { 90 } else { 50u8.wrapping_add(((x + y) % 5) as u8) }, 128, 128);
    let mut f = gst_video::VideoFrame::from_buffer_writable(b, &info).expect("map");
    let planes = if format == gst_video::VideoFormat::Nv12 { 1..2 } else { 1..3 };
    for p in planes {
        let stride = f.plane_stride()[p] as usize;
        let data = f.plane_data_mut(p as u32).expect("chroma");
        for row in 8..16 {
            data[row * stride..(row + 1) * stride].fill(0);
        }
    }
    f.into_buffer()
}

#[test]
fn chroma_left_at_zero_is_repaired_in_i420_and_nv12() {
    for format in [gst_video::VideoFormat::I420, gst_video::VideoFormat::Nv12] {
        init();
        let element = gst::ElementFactory::make("nerverecover").property("model", "none").build().expect("nerverecover");
        let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
        let info = info(format, W, H);
        h.set_src_caps(info.to_caps().expect("caps"));
        let clean = frame(&info, |x, y| 50u8.wrapping_add(((x + y) % 5) as u8), 128, 128);
        let want = clean.map_readable().expect("map").to_vec();
        h.push_and_pull(at(clean, 0)).expect("frame");
        let out = h.push_and_pull(at(green_band(format), 1)).expect("frame");
        assert_eq!(out.map_readable().expect("map").as_slice(), want.as_slice(), "{format:?}: the band comes from the frame shown, luma and chroma");
    }
}

#[test]
fn flush_and_discontinuity_forget_the_past() {
    let mut h = harness(&[]);
    h.push_and_pull(at(flat(50), 0)).expect("frame");
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())));
    h.push(at(flat(60), 10)).expect("push");
    assert_eq!(pts_index(&h.pull().expect("frame")), 10);
    assert!(h.try_pull().is_none(), "nothing synthesised across a flush");
    // A DISCONT far ahead (more than MAX_MISSING slots) starts a new sequence.
    let mut jump = at(flat(70), 300);
    jump.make_mut().set_flags(gst::BufferFlags::DISCONT);
    h.push(jump).expect("push");
    assert_eq!(pts_index(&h.pull().expect("frame")), 300);
    assert!(h.try_pull().is_none(), "nothing synthesised across a discontinuity");
    // So does one that goes back; a hole right after it is not repaired from before it.
    let mut hole = at(holed(100), 30);
    hole.make_mut().set_flags(gst::BufferFlags::DISCONT);
    let out = h.push_and_pull(hole).expect("frame");
    assert!(!luma(&out).contains(&70));
}

#[test]
fn a_discont_within_the_sequence_is_a_loss_not_a_new_stream() {
    let mut h = harness(&[("stats-interval", "0")]);
    h.push_and_pull(at(flat(50), 0)).expect("frame");
    h.push_and_pull(at(flat(60), 1)).expect("frame");
    // Frames 2 and 3 lost upstream: the next one arrives flagged DISCONT, with a lost slice.
    let mut next = at(holed(70), 4);
    next.make_mut().set_flags(gst::BufferFlags::DISCONT);
    h.push(next).expect("push");
    let out: Vec<gst::Buffer> = (0..3).map(|_| h.pull().expect("a frame per expected timestamp")).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(luma(&out[0]), luma(&out[1]), "the missing slots hold the frame shown");
    let repaired = luma(&out[2]);
    let lost_rows = &repaired[16 * W as usize..32 * W as usize];
    assert!(!lost_rows.contains(&0), "the lost slice is repaired from the frame shown before the DISCONT");
    let stats = h.element().expect("element").property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("discont-frames").expect("field"), 1);
    assert_eq!(stats.get::<u64>("frames-synthesised").expect("field"), 2);
}

fn recovery_manifest(model: &str, task: &str, frames: u32) -> PathBuf {
    // One directory per fixture and entry: tests run in parallel, and each writes its own manifest.
    let dir = std::env::temp_dir().join(format!("nerve-recover-test-{}-{model}-{task}-{frames}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bytes = std::fs::read(fixture(model)).expect("fixture");
    std::fs::write(dir.join(model), &bytes).expect("copy");
    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        dir.join("manifest.toml"),
        format!(
            "[[model]]\nname = \"fixture\"\nfile = \"{model}\"\ntask = \"{task}\"\nscale = 1\nframes = {frames}\nsha256 = \"{sha}\"\n\
             input = {{ name = \"frames\", layout = \"NCHW\", planes = \"Y\" }}\noutput = {{ name = \"shown\", layout = \"NCHW\", planes = \"Y\" }}\n"
        ),
    )
    .expect("manifest");
    dir.join(model)
}

fn model_harness(model: &str) -> Harness {
    init();
    let path = recovery_manifest(model, "recovery", 4);
    let element = gst::ElementFactory::make("nerverecover")
        .property("model", path.to_str().expect("utf-8"))
        .build()
        .expect("element");
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps(info(gst_video::VideoFormat::I420, W, H).to_caps().expect("caps"));
    h
}

/// What rtph264depay sends through the decoder for a packet `rtpjitterbuffer do-lost=true`
/// reports lost: a GAP at the timestamp of the frame it belonged to, of duration 0 (`identity
/// drop-probability` sends one without a duration: both mean the same).
fn lost_packet(index: u64) -> gst::Event {
    let ts = gst::ClockTime::from_nseconds(index * FRAME_NS);
    if index.is_multiple_of(2) {
        gst::event::Gap::builder(ts).build()
    } else {
        gst::event::Gap::builder(ts).duration(gst::ClockTime::ZERO).build()
    }
}

fn tinted(v: u8, u: u8) -> gst::Buffer {
    frame(&info(gst_video::VideoFormat::I420, W, H), |x, y| v.wrapping_add(((x + y) % 5) as u8), u, 128)
}

fn chroma_u(b: &gst::Buffer) -> Vec<u8> {
    let vf = gst_video::VideoFrame::from_buffer_readable(b.clone(), &info(gst_video::VideoFormat::I420, W, H)).expect("map");
    let (w, h, stride) = ((W / 2) as usize, (H / 2) as usize, vf.plane_stride()[1] as usize);
    let data = vf.plane_data(1).expect("u plane");
    (0..h).flat_map(|y| data[y * stride..y * stride + w].to_vec()).collect()
}


#[test]
fn a_lost_packet_gap_synthesises_no_frame() {
    let mut h = harness(&[]);
    h.push(at(flat(50), 0)).expect("push");
    assert!(h.push_event(lost_packet(1)));
    h.push(at(flat(52), 1)).expect("push");
    assert!(h.push_event(lost_packet(2)));
    h.push(at(flat(54), 2)).expect("push");
    let out: Vec<gst::Buffer> = (0..3).map(|_| h.pull().expect("frame")).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(luma(&out[1]), luma(&at(flat(52), 1)), "the damaged frame itself comes out");
    assert!(h.try_pull().is_none(), "one frame per timestamp");
    assert_eq!(stat(&h, "gap-events"), 2);
    assert_eq!(stat(&h, "frames-synthesised"), 0);
}

#[test]
fn a_reported_loss_runs_the_model_and_every_plane_follows_its_choice() {
    let mut h = model_harness("recover_hold.onnx");
    let first = at(tinted(100, 90), 0);
    let ptr = first.as_ptr();
    assert_eq!(h.push_and_pull(first.clone()).expect("frame").as_ptr(), ptr, "no loss, nothing carried: untouched");
    assert_eq!(stat(&h, "model-runs"), 0);
    assert!(h.push_event(lost_packet(1)));
    let out = h.push_and_pull(at(tinted(60, 170), 1)).expect("frame");
    assert_eq!(luma(&out), luma(&first), "the model held the frame shown before");
    assert_eq!(chroma_u(&out), chroma_u(&first), "chroma from the source the model chose");
    assert_eq!(stat(&h, "model-runs"), 1);
    // No loss reported, but the frame shown differs from the decoder's: the model runs again to
    // carry the repair on.
    let out = h.push_and_pull(at(tinted(61, 170), 2)).expect("frame");
    assert_eq!(luma(&out), luma(&first));
    assert_eq!(stat(&h, "model-runs"), 2);
    assert_eq!(stat(&h, "frames-synthesised"), 0);
}

#[test]
fn a_model_that_keeps_the_decoder_frame_leaves_it_untouched() {
    let mut h = model_harness("recover_keep.onnx");
    h.push_and_pull(at(flat(100), 0)).expect("frame");
    assert!(h.push_event(lost_packet(1)));
    let input = at(flat(60), 1);
    let bytes = input.map_readable().expect("map").to_vec();
    let out = h.push_and_pull(input).expect("frame");
    assert_eq!(out.map_readable().expect("map").as_slice(), bytes.as_slice(), "bit-exact");
    assert_eq!(stat(&h, "model-runs"), 1);
    // Nothing carried and no loss: the model is not even asked.
    let input = at(flat(61), 2);
    let ptr = input.as_ptr();
    assert_eq!(h.push_and_pull(input).expect("frame").as_ptr(), ptr);
    assert_eq!(stat(&h, "model-runs"), 1);
}

#[test]
fn what_the_model_leaves_lost_the_detector_still_repairs() {
    let mut h = model_harness("recover_carry.onnx");
    let first = h.push_and_pull(at(flat(100), 0)).expect("frame");
    // A lost slice (rows 16..32) repaired classically: the frame shown now differs from the
    // decoder's there.
    h.push_and_pull(at(holed(100), 1)).expect("frame");
    // A reported loss: the model carries the correction everywhere, so the fresh black slice of
    // this frame (rows 32..48, where the decoder's frame before was not black) stays black in
    // its frame, and the slice the decoder refilled takes the carried difference.
    assert!(h.push_event(lost_packet(2)));
    let input = at(frame(&info(gst_video::VideoFormat::I420, W, H), |x, y| if y >= 32 { 0 } else { 100 + ((x + y) % 5) as u8 }, 128, 128), 2);
    let out = h.push_and_pull(input).expect("frame");
    assert_eq!(stat(&h, "model-runs"), 1);
    let (o, f) = (luma(&out), luma(&first));
    let w = W as usize;
    assert_eq!(o[32 * w..], f[32 * w..], "the fresh black slice comes from the frame shown");
    assert!(o[16 * w..32 * w].iter().all(|&v| v >= 200), "the model's carried rows are kept");
    assert_eq!(o[..16 * w], f[..16 * w], "untouched rows");
    assert_eq!(stat(&h, "frames-repaired"), 2, "one count per frame, though two passes repaired it");
}

fn start_error(model: &str) -> String {
    common::start_error_of("nerverecover", &[("model", model)])
}

#[test]
fn bad_models_fail_the_start_clearly() {
    let missing = start_error("/nonexistent/recover.onnx");
    assert!(missing.contains("/nonexistent/recover.onnx"), "{missing}");
    let unknown = start_error("no-such-recovery-model");
    assert!(unknown.contains("'no-such-recovery-model'"), "{unknown}");
    let sr = recovery_manifest("nearest_x2.onnx", "super-resolution", 1);
    let wrong = start_error(sr.to_str().expect("utf-8"));
    assert!(wrong.contains("needs a recovery model"), "{wrong}");
    let inputs = recovery_manifest("recover_hold.onnx", "recovery", 3);
    let contradicts = start_error(inputs.to_str().expect("utf-8"));
    assert!(contradicts.contains("needs a recovery model") || contradicts.contains("channels"), "{contradicts}");
}

/// The NAL units of an Annex-B byte stream, without start codes (nor the zero bytes of 4-byte
/// start codes).
fn nal_units(bytes: &[u8]) -> Vec<&[u8]> {
    let starts: Vec<usize> = (0..bytes.len().saturating_sub(2)).filter(|&i| bytes[i..i + 3] == [0, 0, 1]).map(|i| i + 3).collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut nal = &bytes[s..starts.get(k + 1).map_or(bytes.len(), |&next| next - 3)];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            nal
        })
        .filter(|nal| !nal.is_empty())
        .collect()
}

/// Coded slices (NAL types 1 and 5) of an Annex-B stream, and whether each is an IDR.
fn slices(bytes: &[u8]) -> Vec<(&[u8], bool)> {
    nal_units(bytes).into_iter().filter(|n| matches!(n[0] & 0x1f, 1 | 5)).map(|n| (n, n[0] & 0x1f == 5)).collect()
}

/// 25 fps: these raw streams carry no timing, ffmpeg's default (MANIFEST.md) is 25.
const STREAM_FRAME_NS: u64 = 40_000_000;

/// What came out of one run of a lost-frame bitstream through nerverecover.
struct Run {
    /// Timestamps stamped on the access units h264parse sent to the decoder.
    stamped: Vec<u64>,
    /// Access units whose slice is not in the intact stream (0 expected).
    unmatched: usize,
    /// Timestamps of the decoded frames reaching nerverecover.
    decoded: Vec<u64>,
    /// The frames nerverecover pushed, in order.
    out: Vec<gst::Buffer>,
    stats: gst::Structure,
    info: Option<gst_video::VideoInfo>,
}

/// The stamping probe's record.
#[derive(Default)]
struct Stamps {
    stamped: Vec<u64>,
    unmatched: usize,
    /// Next intact frame to look from, and access units seen.
    cursor: usize,
    ordinal: u64,
}

/// Plays `path` through h264parse, a probe that stamps each access unit with the timestamp of
/// its frame in the intact stream (`reference`: the intact stream's slices, one per frame;
/// `None`: consecutive frames), avdec_h264, nerverecover in `mode`, and an appsink.
fn play_stamped(path: &std::path::Path, reference: Option<&[Vec<u8>]>, mode: &str) -> Run {
    // output-corrupt=false: frames decoded from a missing reference (the P frames before the first
    // IDR of a stream that lost it) are not shown, as ffmpeg, which gave MANIFEST.md's counts,
    // does not show them; capssetter gives the decoded frames the 25 fps the timestamps follow.
    let desc = format!(
        "filesrc location=\"{}\" ! h264parse name=parse ! video/x-h264,stream-format=byte-stream,alignment=au ! \
         avdec_h264 output-corrupt=false ! capssetter caps=\"video/x-raw,framerate=(fraction)25/1\" ! \
         nerverecover name=r model=none mode={mode} stats-interval=0 ! appsink name=sink sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&desc).expect("pipeline").downcast::<gst::Pipeline>().expect("pipeline");
    let reference: Option<Vec<Vec<u8>>> = reference.map(<[Vec<u8>]>::to_vec);
    let stamps = std::sync::Arc::new(std::sync::Mutex::new(Stamps::default()));
    let st = stamps.clone();
    let parse_src = pipeline.by_name("parse").expect("parse").static_pad("src").expect("src pad");
    parse_src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else { return gst::PadProbeReturn::Ok };
        let mut st = st.lock().expect("lock");
        let frame = match &reference {
            None => Some(st.ordinal),
            Some(reference) => {
                let map = buffer.map_readable().expect("map");
                let first = slices(map.as_slice()).first().map(|(n, _)| n.to_vec());
                let from = st.cursor;
                first.and_then(|slice| reference[from..].iter().position(|r| *r == slice)).map(|k| (from + k) as u64)
            }
        };
        st.ordinal += 1;
        let Some(frame) = frame else {
            st.unmatched += 1;
            return gst::PadProbeReturn::Ok;
        };
        st.cursor = frame as usize + 1;
        let ts = gst::ClockTime::from_nseconds(frame * STREAM_FRAME_NS);
        let b = buffer.make_mut();
        b.set_pts(ts);
        b.set_dts(ts);
        b.set_duration(gst::ClockTime::from_nseconds(STREAM_FRAME_NS));
        st.stamped.push(ts.nseconds());
        gst::PadProbeReturn::Ok
    });
    let decoded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let d = decoded.clone();
    let recover_sink = pipeline.by_name("r").expect("element").static_pad("sink").expect("sink pad");
    recover_sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(b)) = info.data.as_ref() {
            d.lock().expect("lock").push(b.pts().map_or(u64::MAX, gst::ClockTime::nseconds));
        }
        gst::PadProbeReturn::Ok
    });
    let sink = pipeline.by_name("sink").expect("sink").downcast::<gst_app::AppSink>().expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("play");
    let (mut out, mut info) = (Vec::new(), None);
    while let Ok(sample) = sink.pull_sample() {
        if info.is_none() {
            info = sample.caps().and_then(|c| gst_video::VideoInfo::from_caps(c).ok());
        }
        out.push(sample.buffer_owned().expect("buffer"));
    }
    let bus = pipeline.bus().expect("bus");
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let stats = pipeline.by_name("r").expect("element").property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).expect("stop");
    assert!(matches!(msg.as_ref().map(|m| m.view()), Some(gst::MessageView::Eos(_))), "{}: {msg:?}", path.display());
    let Stamps { stamped, unmatched, .. } = std::mem::take(&mut *stamps.lock().expect("lock"));
    let decoded = decoded.lock().expect("lock").clone();
    Run { stamped, unmatched, decoded, out, stats, info }
}

/// The luma plane of an output frame of the lost-frame bitstreams.
fn stream_luma(b: &gst::Buffer, info: &gst_video::VideoInfo) -> Vec<u8> {
    luma_of(&gst_video::VideoFrame::from_buffer_readable(b.clone(), info).expect("map"))
}

/// ../shared/data/videos/frame_loss_bitstreams: the intact foreman QCIF stream (100 frames) and
/// the same stream with a P frame cut out (decodes to 99) or its first IDR cut out (decodes to
/// 70). The raw Annex-B streams carry no timing, so each access unit is stamped at 25 fps with
/// the position of its frame in the intact stream (found by matching its slice bytes against the
/// intact stream's): the cut-out frames leave real timestamp gaps for nerverecover to fill.
#[test]
fn real_lost_frame_bitstreams_come_out_one_frame_per_timestamp() {
    init();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/videos/frame_loss_bitstreams");
    let intact_bytes = std::fs::read(dir.join("BA_MW_D.264")).expect("BA_MW_D.264 (../shared/data)");
    let intact: Vec<Vec<u8>> = slices(&intact_bytes).iter().map(|(n, _)| n.to_vec()).collect();
    assert_eq!(intact.len(), 100, "BA_MW_D.264: one slice per frame, 100 frames (MANIFEST.md)");
    // (file, frames decoded as MANIFEST.md counts them, frames out of nerverecover): the P frame
    // cut out of P_LOST is filled; IDR_LOST loses its first 30 frames (3 cut, 27 undecodable
    // without their IDR), all before the first frame shown, so there is nothing to fill.
    for (name, decoded_frames, frames_out) in [("BA_MW_D.264", 100usize, 100usize), ("BA_MW_D_P_LOST.264", 99, 100), ("BA_MW_D_IDR_LOST.264", 70, 70)] {
        let bytes = std::fs::read(dir.join(name)).expect("bitstream");
        // Which intact frames the stream still holds, and where its first IDR is: the decoder can
        // show nothing before that one.
        let (mut kept, mut cursor, mut first_idr) = (Vec::new(), 0, None);
        for (slice, idr) in slices(&bytes) {
            let k = cursor + intact[cursor..].iter().position(|r| r.as_slice() == slice).unwrap_or_else(|| panic!("{name}: a slice not in BA_MW_D.264"));
            kept.push(k as u64);
            if idr && first_idr.is_none() {
                first_idr = Some(k as u64);
            }
            cursor = k + 1;
        }
        let first_idr = first_idr.expect("an IDR");
        let shown: Vec<u64> = kept.iter().copied().filter(|&k| k >= first_idr).collect();
        let cut: Vec<u64> = (0..100).filter(|k| !kept.contains(k)).collect();
        eprintln!("{name}: intact frames cut out {cut:?}, first IDR at frame {first_idr}, {} frames decodable", shown.len());
        assert_eq!(shown.len(), decoded_frames, "{name}: decodable frames against MANIFEST.md");
        // The missing frames within the decoded span are the ones nerverecover must fill; frames
        // missing before the first decodable one have no frame shown before them: none is
        // invented there.
        let (first, last) = (shown[0], *shown.last().expect("frames"));
        let gaps = (first..=last).filter(|k| !shown.contains(k)).count() as u64;

        for mode in ["low-latency", "lookahead"] {
            let what = format!("{name} ({mode})");
            let run = play_stamped(&dir.join(name), Some(&intact), mode);
            assert_eq!(run.unmatched, 0, "{what}: access units not found in the intact stream");
            assert_eq!(run.stamped, kept.iter().map(|k| k * STREAM_FRAME_NS).collect::<Vec<_>>(), "{what}: stamped access units");
            // decoded: what the MANIFEST counts, at the stamped timestamps
            assert_eq!(run.decoded, shown.iter().map(|k| k * STREAM_FRAME_NS).collect::<Vec<_>>(), "{what}: decoded frames ({} for {decoded_frames})", run.decoded.len());
            let stat = |f: &str| run.stats.get::<u64>(f).expect("field");
            assert_eq!(stat("frames-in") as usize, decoded_frames, "{what}: frames-in");
            // out: one frame per 40 ms slot from the first decoded frame to the last, in order
            let pts: Vec<u64> = run.out.iter().map(|b| b.pts().expect("pts").nseconds()).collect();
            let want: Vec<u64> = (first..=last).map(|k| k * STREAM_FRAME_NS).collect();
            assert_eq!(pts, want, "{what}: one frame per timestamp, evenly spaced, in order");
            assert_eq!(run.out.len(), frames_out, "{what}: frames out");
            assert_eq!(stat("frames-synthesised"), gaps, "{what}: one frame synthesised per frame lost");
            assert_eq!(stat("frames-out") as usize, run.out.len(), "{what}: frames-out");
            assert_eq!(stat("frames-out"), stat("frames-in") + stat("frames-synthesised"), "{what}");
            // each synthesised frame holds the frame shown before it (low-latency) or lies
            // between the frames around it (lookahead)
            let info = run.info.as_ref().expect("caps");
            for k in (first..=last).filter(|k| !shown.contains(k)) {
                let at = |k: u64| stream_luma(&run.out[(k - first) as usize], info);
                let (before, made, after) = (at(k - 1), at(k), at(k + 1));
                if mode == "low-latency" {
                    assert_eq!(made, before, "{what}: frame {k} holds frame {}", k - 1);
                } else {
                    let between = made.iter().zip(&before).zip(&after).all(|((&m, &a), &b)| m + 1 >= a.min(b) && m <= a.max(b) + 1);
                    assert!(between, "{what}: frame {k} lies between frames {} and {}", k - 1, k + 1);
                    assert_ne!(made, before, "{what}: frame {k} is not a plain repeat");
                }
            }
        }
    }
}

/// ../shared/data/videos/frame_loss_bitstreams/Error_I_P.264: openh264's error-concealment
/// stream (6 frames, MANIFEST.md), stamped at 25 fps in its own order: nothing is missing from
/// its timeline, so nothing may be invented or dropped.
#[test]
fn an_error_concealment_bitstream_keeps_its_frames() {
    init();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/videos/frame_loss_bitstreams/Error_I_P.264");
    for mode in ["low-latency", "lookahead"] {
        let run = play_stamped(&path, None, mode);
        let want: Vec<u64> = (0..6).map(|k| k * STREAM_FRAME_NS).collect();
        assert_eq!(run.stamped, want, "{mode}: access units");
        assert_eq!(run.decoded, want, "{mode}: decoded frames");
        let pts: Vec<u64> = run.out.iter().map(|b| b.pts().expect("pts").nseconds()).collect();
        assert_eq!(pts, want, "{mode}: frames out");
        assert_eq!(run.stats.get::<u64>("frames-synthesised").expect("field"), 0, "{mode}");
    }
}

/// Letterboxed: 8-line bars (luma 16) above and below a textured picture; chroma `u` everywhere,
/// with the bottom bar's luma at `bottom` (a concealment fill when it is not 16).
fn letterboxed(bottom: u8, u: u8) -> gst::Buffer {
    frame(
        &info(gst_video::VideoFormat::I420, W, H),
        |x, y| if y < 8 { 16 } else if y >= 40 { bottom } else { 90 + ((x * 7 + y * 3) % 40) as u8 },
        u,
        128,
    )
}

#[test]
fn a_letterbox_bar_filled_by_the_decoder_is_kept_from_the_frame_shown() {
    let mut h = harness(&[]);
    h.push(at(letterboxed(16, 128), 0)).expect("push");
    assert!(h.push_event(lost_packet(1)));
    h.push(at(letterboxed(140, 90), 1)).expect("push");
    h.push(at(letterboxed(140, 90), 2)).expect("push");
    let intact = at(letterboxed(16, 128), 3);
    let ptr = intact.as_ptr();
    h.push(intact).expect("push");
    let out: Vec<gst::Buffer> = (0..4).map(|_| h.pull().expect("frame")).collect();
    let w = W as usize;
    for (i, b) in out[1..3].iter().enumerate() {
        let (y, u) = (luma(b), chroma_u(b));
        assert!(y[40 * w..].iter().all(|&v| v == 16), "frame {}: the bar is black again", i + 1);
        assert_eq!(y[8 * w..40 * w], luma(&letterboxed(140, 90))[8 * w..40 * w], "frame {}: the picture is the decoder's", i + 1);
        assert!(u[20 * w / 2..].iter().all(|&v| v == 128), "frame {}: the bar's chroma too", i + 1);
        assert!(u[..20 * w / 2].iter().all(|&v| v == 90), "frame {}: the picture's chroma is the decoder's", i + 1);
    }
    assert_eq!(out[3].as_ptr(), ptr, "the decoder's bar is back: passed through untouched");
    assert_eq!(stat(&h, "frames-bars-kept"), 2);
}

#[test]
fn keep_bars_false_leaves_the_decoder_fill() {
    let mut h = harness(&[("keep-bars", "false")]);
    h.push(at(letterboxed(16, 128), 0)).expect("push");
    assert!(h.push_event(lost_packet(1)));
    let filled = at(letterboxed(140, 90), 1);
    let ptr = filled.as_ptr();
    h.push(filled).expect("push");
    h.pull().expect("frame");
    assert_eq!(h.pull().expect("frame").as_ptr(), ptr, "passed through untouched");
    assert_eq!(stat(&h, "frames-bars-kept"), 0);
}

#[test]
fn lookahead_does_not_blend_a_filled_bar_into_a_missing_frame() {
    let mut h = harness(&[("mode", "lookahead")]);
    h.push(at(letterboxed(16, 128), 0)).expect("push");
    h.push(at(letterboxed(140, 128), 2)).expect("push");
    h.push(at(letterboxed(16, 128), 3)).expect("push");
    let out: Vec<gst::Buffer> = (0..3).map(|_| h.pull().expect("frame")).collect();
    assert_eq!(out.iter().map(pts_index).collect::<Vec<_>>(), vec![0, 1, 2]);
    let w = W as usize;
    assert!(luma(&out[1])[40 * w..].iter().all(|&v| v == 16), "the synthesised frame keeps the bar");
}
