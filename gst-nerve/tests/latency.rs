//! nervesr's processing time in the pipeline's latency: in a live pipeline a clock-synchronised
//! sink gives each frame the latency the elements report, and a model that takes longer than the
//! sink's processing deadline (20 ms) made every frame late unless nervesr reported its time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// A live 64x48 test source at 30 fps through nervesr into a synchronised sink; PLAYING, with the
/// first frames through (the caps, hence the measured model time, are known by then).
fn live(processing_latency: i32) -> (gst::Pipeline, Vec<gst::Message>) {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! \
         nervesr name=sr scale=2 threads=1 processing-latency={processing_latency} ! fakesink name=sink sync=true signal-handoffs=true"
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(tx);
    p.by_name("sink").expect("sink").connect("handoff", false, move |_| {
        let _ = tx.lock().map(|t| t.send(()));
        None
    });
    p.set_state(gst::State::Playing).expect("the pipeline plays");
    let bus = p.bus().expect("bus");
    let mut messages = Vec::new();
    let (start, mut frames) = (Instant::now(), 0);
    while frames < 5 {
        assert!(start.elapsed() < Duration::from_secs(60), "5 frames within 60 s");
        while let Some(m) = bus.pop() {
            if let gst::MessageView::Error(e) = m.view() {
                panic!("{} ({:?})", e.error(), e.debug());
            }
            messages.push(m);
        }
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            frames += 1;
        }
    }
    while let Some(m) = bus.pop() {
        messages.push(m);
    }
    (p, messages)
}

fn latency(p: &gst::Pipeline) -> (bool, gst::ClockTime) {
    let mut q = gst::query::Latency::new();
    assert!(p.query(&mut q), "the pipeline answers the latency query");
    let (live, min, _max) = q.result();
    (live, min)
}

fn stop(p: gst::Pipeline) {
    p.set_state(gst::State::Null).expect("the pipeline stops");
}

#[test]
fn a_fixed_processing_latency_is_added_to_the_live_pipelines_latency() {
    let (none, _) = live(0);
    let (live0, base) = latency(&none);
    stop(none);
    let (fixed, _) = live(120);
    let (live1, with) = latency(&fixed);
    let sr = fixed.by_name("sr").expect("nervesr");
    let mut q = gst::query::Latency::new();
    assert!(sr.static_pad("src").expect("src pad").query(&mut q));
    stop(fixed);
    assert!(live0 && live1, "a live source makes a live pipeline");
    // Everything else is the same pipeline: the difference is nervesr's share, exactly.
    assert_eq!(with, base + gst::ClockTime::from_mseconds(120), "120 ms on top of {base}");
    assert!(q.result().1 >= gst::ClockTime::from_mseconds(120), "nervesr's own answer: {:?}", q.result());
}

#[test]
fn the_measured_model_time_is_reported_and_announced() {
    let (none, _) = live(0);
    let (_, base) = latency(&none);
    stop(none);
    let (measured, messages) = live(-1);
    let (_, with) = latency(&measured);
    stop(measured);
    // The model ran (twice, on a grey frame) when the caps were set; its time is now part of the
    // pipeline's latency, and nervesr said so with a LATENCY message for the pipeline to re-query.
    assert!(with > base, "measured model time on top of {base}: {with}");
    assert!(with < base + gst::ClockTime::from_seconds(5), "a 64x48 frame takes no seconds: {with}");
    let announced = messages
        .iter()
        .any(|m| matches!(m.view(), gst::MessageView::Latency(_)) && m.src().is_some_and(|s| s.name() == "sr"));
    assert!(announced, "a LATENCY message from nervesr among {messages:?}");
}

#[test]
fn pass_through_reports_no_processing_latency() {
    init();
    let sr = gst::ElementFactory::make("nervesr").property("scale", 1u32).build().expect("nervesr");
    assert_eq!(sr.property::<i32>("processing-latency"), -1, "measured by default");
    let p = gst::Pipeline::new();
    let src = gst::ElementFactory::make("videotestsrc").property("is-live", true).build().expect("videotestsrc");
    let sink = gst::ElementFactory::make("fakesink").build().expect("fakesink");
    p.add_many([&src, &sr, &sink]).expect("add");
    gst::Element::link_many([&src, &sr, &sink]).expect("link");
    p.set_state(gst::State::Playing).expect("plays");
    let _ = p.state(gst::ClockTime::from_seconds(10));
    std::thread::sleep(Duration::from_millis(300));
    let mut q = gst::query::Latency::new();
    assert!(sr.static_pad("src").expect("src").query(&mut q));
    let mut upstream = gst::query::Latency::new();
    assert!(src.static_pad("src").expect("src").query(&mut upstream));
    p.set_state(gst::State::Null).expect("stops");
    // What the source reports (a live videotestsrc: one frame), nothing more.
    assert_eq!(q.result().1, upstream.result().1, "no model runs at scale=1");
}
