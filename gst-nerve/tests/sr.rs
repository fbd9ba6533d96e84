//! `nervesr` behaviour through gst_check::Harness: negotiation, sizes, model output, history,
//! QoS fallback and bad input.

mod common;

use common::*;
use gst::prelude::*;
use gst_video::prelude::*;
use gst_check::Harness;
use gst_video::VideoFormat;

#[test]
fn negotiates_i420_and_nv12_at_twice_the_size_including_odd_sizes() {
    let model = nearest_model();
    for format in [VideoFormat::I420, VideoFormat::Nv12] {
        for (w, h) in [(64, 48), (33, 17), (7, 5), (1, 1)] {
            let mut hs = harness(&[("model", model.to_str().unwrap())]);
            let info = info(format, w, h);
            hs.set_src_caps(info.to_caps().unwrap());
            let out = push_frame(&mut hs, &info, 0, |x, y| ((x * 7 + y * 13) % 256) as u8);
            assert_eq!((out.width(), out.height(), out.format()), (2 * w, 2 * h, format), "{format:?} {w}x{h}");
            // Nearest-neighbour fixture: each input luma sample becomes a 2x2 block.
            let luma = luma_of(&out);
            for y in 0..(2 * h as usize) {
                for x in 0..(2 * w as usize) {
                    let expected = (((x / 2) * 7 + (y / 2) * 13) % 256) as u8;
                    assert_eq!(luma[y * 2 * w as usize + x], expected, "{format:?} {w}x{h} at {x},{y}");
                }
            }
            // Flat chroma stays flat through the classical chroma upscale.
            let chroma = out.plane_data(1).unwrap();
            let stride = out.plane_stride()[1] as usize;
            let cw = out.comp_width(1) as usize;
            for row in 0..out.comp_height(1) as usize {
                let line = &chroma[row * stride..row * stride + cw * if format == VideoFormat::Nv12 { 2 } else { 1 }];
                match format {
                    VideoFormat::Nv12 => assert!(line.chunks(2).all(|p| p == [90, 160])),
                    _ => assert!(line.iter().all(|&v| v == 90)),
                }
            }
            assert_eq!(stats(&hs).get::<u64>("frames-enhanced").unwrap(), 1);
        }
    }
}

/// Runs one frame of `w` x `h` through `nervesr` with `model` (empty: the default for x2) and
/// checks it against ONNX Runtime run directly on the file the manifest names.
fn assert_matches_onnx_runtime(model: &str, w: usize, h: usize) {
    use ort::session::Session;
    use ort::value::TensorRef;

    let pattern = |x: usize, y: usize| (128.0 + 90.0 * ((x as f32 * 0.31).sin() * (y as f32 * 0.17).cos())) as u8;
    for format in [VideoFormat::I420, VideoFormat::Nv12] {
        let mut hs = harness(&[("model", model)]);
        let info = info(format, w as u32, h as u32);
        hs.set_src_caps(info.to_caps().unwrap());
        let out = luma_of(&push_frame(&mut hs, &info, 0, pattern));
        assert_eq!(stats(&hs).get::<u64>("frames-enhanced").unwrap(), 1);

        // The same frame through ONNX Runtime directly, with the model file the manifest names.
        let resolved = gstnerve::engine::manifest::resolve(model, gstnerve::engine::Task::SuperResolution, 2).unwrap();
        let (env, _) = gstnerve::engine::library::environment(None).unwrap();
        let mut session = Session::builder(env).unwrap().commit_from_file(&resolved.path).unwrap();
        // At a stream start a temporal model sees the first frame in every slot.
        let frames = resolved.entry.frames as usize;
        let one: Vec<f32> = (0..h).flat_map(|y| (0..w).map(move |x| pattern(x, y) as f32 / 255.0)).collect();
        let input: Vec<f32> = one.repeat(frames);
        let tensor = TensorRef::from_array_view(([1usize, frames, h, w], input.as_slice())).unwrap();
        let outputs = session.run(ort::inputs!["lr" => tensor]).unwrap();
        let (_, data) = outputs["hr"].try_extract_tensor::<f32>().unwrap();
        assert_eq!(data.len(), out.len());
        let mut differs_from_input_upscale = 0;
        for (i, (&got, &want)) in out.iter().zip(data).enumerate() {
            let want = (want * 255.0).round().clamp(0.0, 255.0);
            assert!((got as f32 - want).abs() <= 1.0, "{model} {format:?} sample {i}: element {got}, ONNX Runtime {want}");
            let (x, y) = (i % (2 * w), i / (2 * w));
            differs_from_input_upscale += (got != pattern(x / 2, y / 2)) as usize;
        }
        // A real model changes the picture: it is not a nearest-neighbour copy of the input.
        assert!(differs_from_input_upscale > out.len() / 4, "{model}");
    }
}

#[test]
fn default_model_output_matches_onnx_runtime_run_directly() {
    assert_matches_onnx_runtime("", 96, 64);
}

#[test]
fn folded_models_run_at_odd_sizes_as_onnx_runtime_runs_them() {
    // Space-to-depth students fold the frame 2x2 inside their graph; an odd frame is padded and
    // the output cropped there, so the element feeds them like any other model. int8 and
    // temporal (two frames folded into eight channels) too.
    for model in [
        "nerve-sr-x2-s2d",
        "nerve-sr-x2-s2d-int8",
        "nerve-sr-x2-s2d-temporal",
        "nerve-sr-x2-s2d-temporal-int8",
        "nerve-sr-x2-s2d-temporal-d4",
        "nerve-sr-x2-s2d-temporal-d4-int8",
        "", // the default, whichever it is (a folded temporal int8 student since 2026-12-07)
    ] {
        assert_matches_onnx_runtime(model, 95, 63);
    }
}

#[test]
fn caps_change_mid_stream_renegotiates_and_keeps_every_frame() {
    let mut hs = harness(&[("model", nearest_model().to_str().unwrap())]);
    let first = info(VideoFormat::I420, 32, 24);
    hs.set_src_caps(first.to_caps().unwrap());
    assert_eq!(push_frame(&mut hs, &first, 0, |_, _| 10).width(), 64);
    let second = info(VideoFormat::Nv12, 41, 29);
    hs.set_src_caps(second.to_caps().unwrap());
    let out = push_frame(&mut hs, &second, 33, |_, _| 20);
    assert_eq!((out.width(), out.height(), out.format()), (82, 58, VideoFormat::Nv12));
    assert!(luma_of(&out).iter().all(|&v| v == 20));
    assert_eq!(stats(&hs).get::<u64>("frames-enhanced").unwrap(), 2);
}

fn previous_frame_harness() -> Harness {
    let dir = model_dir(&[Entry { name: "previous", source: &fixture("previous_x2.onnx"), scale: 2, frames: 2 }]);
    let mut hs = harness(&[("model", dir.join("previous.onnx").to_str().unwrap())]);
    hs.set_src_caps(info(VideoFormat::I420, 16, 8).to_caps().unwrap());
    hs
}

fn first_luma(f: &gst_video::VideoFrame<gst_video::video_frame::Readable>) -> u8 {
    luma_of(f)[0]
}

#[test]
fn temporal_models_get_the_previous_frame_and_history_resets_on_flush_and_discont() {
    let mut hs = previous_frame_harness();
    let i = info(VideoFormat::I420, 16, 8);
    // The fixture outputs the previous frame; at a stream start that is the current one.
    assert_eq!(first_luma(&push_frame(&mut hs, &i, 0, |_, _| 50)), 50);
    assert_eq!(first_luma(&push_frame(&mut hs, &i, 33, |_, _| 100)), 50);
    assert_eq!(first_luma(&push_frame(&mut hs, &i, 66, |_, _| 150)), 100);

    // Flush: the history is gone.
    assert!(hs.push_event(gst::event::FlushStart::new()));
    assert!(hs.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(hs.push_event(gst::event::Segment::new(&segment)));
    assert_eq!(first_luma(&push_frame(&mut hs, &i, 0, |_, _| 200)), 200);
    assert_eq!(first_luma(&push_frame(&mut hs, &i, 33, |_, _| 210)), 200);

    // A discontinuity: the history is gone too.
    let mut buffer = frame(&i, |_, _| 220, 128, 128);
    buffer.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(66));
    hs.push(buffer).unwrap();
    let out = hs.pull().unwrap();
    let caps = hs.sinkpad().unwrap().current_caps().unwrap();
    let f = gst_video::VideoFrame::from_buffer_readable(out, &gst_video::VideoInfo::from_caps(&caps).unwrap()).unwrap();
    assert_eq!(first_luma(&f), 220);
}

#[test]
fn caps_change_resets_history() {
    let mut hs = previous_frame_harness();
    let a = info(VideoFormat::I420, 16, 8);
    push_frame(&mut hs, &a, 0, |_, _| 50);
    let b = info(VideoFormat::I420, 16, 10);
    hs.set_src_caps(b.to_caps().unwrap());
    assert_eq!(first_luma(&push_frame(&mut hs, &b, 33, |_, _| 90)), 90);
}

/// A vertical edge: the nearest-neighbour fixture model and the Catmull-Rom fallback upscale it
/// differently, so each output frame shows which path made it.
fn edge(x: usize, _y: usize) -> u8 {
    if x < 8 { 0 } else { 255 }
}

fn is_nearest(f: &gst_video::VideoFrame<gst_video::video_frame::Readable>) -> bool {
    luma_of(f)[..32].iter().enumerate().all(|(x, &v)| v == edge(x / 2, 0))
}

/// nervesr with the nearest-neighbour fixture, negotiated for 16x16 I420.
fn edge_harness() -> (Harness, gst_video::VideoInfo) {
    let mut hs = harness(&[("model", nearest_model().to_str().unwrap())]);
    let i = info(VideoFormat::I420, 16, 16);
    hs.set_src_caps(i.to_caps().unwrap());
    (hs, i)
}

#[test]
fn late_frames_are_upscaled_classically_then_the_model_returns() {
    let (mut hs, i) = edge_harness();
    assert!(is_nearest(&push_frame(&mut hs, &i, 0, edge)));

    // The sink reports frame 0 rendered 500 ms late: frames up to ~1 s running time are late.
    let qos = gst::event::Qos::new(gst::QOSType::Underflow, 1.5, 500_000_000, gst::ClockTime::ZERO);
    assert!(hs.push_upstream_event(qos));
    for k in 1..5u64 {
        let out = push_frame(&mut hs, &i, 33 * k, edge);
        assert!(!is_nearest(&out), "frame {k} should be upscaled classically");
        assert_eq!(out.width(), 32, "late frames keep their size");
    }
    let s = stats(&hs);
    assert_eq!(s.get::<u64>("frames-classical").unwrap(), 4);
    assert!(s.get::<bool>("falling-back").unwrap());

    // The pipeline caught up: frames are early again, the model comes back.
    let qos = gst::event::Qos::new(gst::QOSType::Overflow, 0.5, -20_000_000, gst::ClockTime::from_mseconds(1200));
    assert!(hs.push_upstream_event(qos));
    assert!(is_nearest(&push_frame(&mut hs, &i, 1233, edge)));
    let s = stats(&hs);
    assert_eq!(s.get::<u64>("frames-enhanced").unwrap(), 2);
    assert!(!s.get::<bool>("falling-back").unwrap());

    // With QoS handling off, nothing falls back however late the sink says it is.
    hs.element().unwrap().set_property("qos", false);
    let qos = gst::event::Qos::new(gst::QOSType::Underflow, 2.0, 5_000_000_000, gst::ClockTime::from_mseconds(1233));
    assert!(hs.push_upstream_event(qos));
    assert!(is_nearest(&push_frame(&mut hs, &i, 1266, edge)));
}

#[test]
fn stats_messages_are_posted_with_counters() {
    let mut hs = harness(&[("model", nearest_model().to_str().unwrap()), ("stats-interval", "2")]);
    let bus = gst::Bus::new();
    hs.element().unwrap().set_bus(Some(&bus));
    let i = info(VideoFormat::Nv12, 8, 8);
    hs.set_src_caps(i.to_caps().unwrap());
    for k in 0..4 {
        push_frame(&mut hs, &i, 33 * k, |_, _| 1);
    }
    let counts: Vec<u64> = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Element]))
        .filter_map(|m| m.structure().filter(|s| s.name() == "nervesr-stats").map(|s| s.get::<u64>("frames-enhanced").unwrap()))
        .collect();
    assert_eq!(counts, vec![2, 4]);
}

#[test]
fn missing_model_file_error_names_the_path() {
    let err = start_error(&[("model", "/nonexistent/dir/model.onnx")]);
    assert!(err.contains("/nonexistent/dir/model.onnx"), "{err}");
}

#[test]
fn unknown_model_name_is_refused() {
    let err = start_error(&[("model", "no-such-model")]);
    assert!(err.contains("no-such-model"), "{err}");
}

#[test]
fn a_file_that_is_not_onnx_is_refused() {
    let garbage = std::env::temp_dir().join(format!("nerve-garbage-{}.onnx", std::process::id()));
    std::fs::write(&garbage, b"this is not a protobuf").unwrap();
    let dir = model_dir(&[Entry { name: "garbage", source: &garbage, scale: 2, frames: 1 }]);
    let err = start_error(&[("model", dir.join("garbage.onnx").to_str().unwrap())]);
    assert!(err.contains("not a loadable ONNX model"), "{err}");
}

#[test]
fn a_model_without_a_manifest_entry_is_refused() {
    let dir = std::env::temp_dir().join(format!("nerve-nomanifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("nearest_x2.onnx"), dir.join("x.onnx")).unwrap();
    let err = start_error(&[("model", dir.join("x.onnx").to_str().unwrap())]);
    assert!(err.contains("manifest"), "{err}");
}

#[test]
fn shapes_that_contradict_the_manifest_are_refused() {
    // Three input channels where the manifest says one frame.
    let dir = model_dir(&[Entry { name: "three", source: &fixture("three_channels_x2.onnx"), scale: 2, frames: 1 }]);
    let err = start_error(&[("model", dir.join("three.onnx").to_str().unwrap())]);
    assert!(err.contains("3 channels, expected 1"), "{err}");
    // An x2 network declared as x3: caught by the probe run.
    let dir = model_dir(&[Entry { name: "liar", source: &fixture("nearest_x2.onnx"), scale: 3, frames: 1 }]);
    let err = start_error(&[("model", dir.join("liar.onnx").to_str().unwrap()), ("scale", "3")]);
    assert!(err.contains("scale 3"), "{err}");
}

#[test]
fn a_model_of_another_scale_than_the_property_is_refused() {
    let err = start_error(&[("model", nearest_model().to_str().unwrap()), ("scale", "4")]);
    assert!(err.contains("scale=4"), "{err}");
}

#[test]
fn an_unavailable_provider_warns_and_runs_on_the_cpu() {
    init();
    let element = gst::ElementFactory::make("nervesr")
        .property_from_str("model", nearest_model().to_str().unwrap())
        .property_from_str("provider", "coreml")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    element.set_state(gst::State::Paused).expect("starts on the CPU");
    let warning = bus.pop_filtered(&[gst::MessageType::Warning]).expect("a warning");
    if let gst::MessageView::Warning(w) = warning.view() {
        assert!(w.error().to_string().contains("coreml"), "{}", w.error());
    }
    assert_eq!(element.property::<gst::Structure>("stats").get::<&str>("provider").unwrap(), "cpu");
    element.set_state(gst::State::Null).unwrap();
}

#[test]
fn enhance_can_be_switched_off_and_on_while_playing() {
    let (mut hs, i) = edge_harness();
    assert!(is_nearest(&push_frame(&mut hs, &i, 0, edge)));
    hs.element().unwrap().set_property("enhance", false);
    assert!(!is_nearest(&push_frame(&mut hs, &i, 33, edge)));
    hs.element().unwrap().set_property("enhance", true);
    assert!(is_nearest(&push_frame(&mut hs, &i, 66, edge)));
    let s = stats(&hs);
    assert_eq!((s.get::<u64>("frames-enhanced").unwrap(), s.get::<u64>("frames-classical").unwrap()), (2, 1));
}

#[test]
fn fit_mode_runs_the_model_then_resamples_its_output_to_the_display() {
    // scale=0 with a 30x20 input and a 75x50 display: x2 is the largest factor that fits, so the
    // model's 60x40 output (the middle plane) is resampled to 75x50. With a nearest-neighbour
    // fixture the expected luma is computable here: resample(nearest x2 (input)). The classical
    // path, resample(input), gives other samples, so the test tells the two apart.
    use gstnerve::engine::resample::{PlaneGeometry, Resampler};

    let mut hs = harness(&[("model", nearest_model().to_str().unwrap()), ("scale", "0")]);
    let input = info(VideoFormat::I420, 30, 20);
    hs.set_src_caps(input.to_caps().unwrap());
    hs.set_sink_caps(info(VideoFormat::I420, 75, 50).to_caps().unwrap());
    let pattern = |x: usize, y: usize| ((x * 37 + y * 91) % 251) as u8;
    let out = push_frame(&mut hs, &input, 0, pattern);
    assert_eq!((out.width(), out.height()), (75, 50));
    assert_eq!(stats(&hs).get::<u64>("frames-enhanced").unwrap(), 1, "{}", stats(&hs));

    let luma: Vec<u8> = (0..20).flat_map(|y| (0..30).map(move |x| pattern(x, y))).collect();
    let doubled: Vec<u8> = (0..40).flat_map(|y| (0..60).map(move |x| pattern(x / 2, y / 2))).collect::<Vec<_>>();
    let geometry = |width, height| PlaneGeometry { width, height, comps: 1 };
    let resample = |src: &[u8], w: usize, h: usize| {
        let mut dst = vec![0u8; 75 * 50];
        Resampler::new(geometry(w, h), geometry(75, 50)).run(src, w, &mut dst, 75);
        dst
    };
    let got = luma_of(&out);
    assert_eq!(got, resample(&doubled, 60, 40), "the model's x2 output resampled to the display");
    assert_ne!(got, resample(&luma, 30, 20), "not the classical upscale");
}
