//! Battery saver downloads in bursts: `nerveabr preference=battery-saver` sets the demuxer's
//! `low-watermark-time` to `nerve_abr::energy::BURST_RESUME_S` (at most half its high watermark),
//! the rule the simulator's energy figures use; any other preference puts back the automatic 0,
//! also when the preference changes while the demuxer is steered.

use gst::prelude::*;
use nerve_abr::energy::BURST_RESUME_S;

fn low(d: &gst::Element) -> u64 {
    d.property::<u64>("low-watermark-time")
}

#[test]
fn battery_saver_sets_the_demuxers_low_watermark() {
    gst::init().unwrap();
    gstnerveabr::plugin_register_static().unwrap();
    if gst::ElementFactory::find("dashdemux2").is_none() {
        assert!(std::env::var_os("CI").is_none(), "dashdemux2 (gst-plugins-good 1.22) is missing");
        eprintln!("SKIP: no dashdemux2");
        return;
    }
    for (high_s, want) in [(30u64, (BURST_RESUME_S * 1e9) as u64), (20, 10_000_000_000)] {
        let p = gst::parse::launch(&format!(
            "dashdemux2 name=d high-watermark-time={} ! fakesink videotestsrc ! nerveabr name=abr preference=battery-saver ! fakesink",
            high_s * 1_000_000_000
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        // adaptivedemux2 starts only in a bin that handles streams (urisourcebin, decodebin3)
        p.set_bin_flags(gst::BinFlags::STREAMS_AWARE);
        let d = p.by_name("d").unwrap();
        let abr = p.by_name("abr").unwrap();
        assert_eq!(low(&d), 0, "the demuxer's automatic low watermark before nerveabr steers it");
        p.set_state(gst::State::Ready).unwrap();
        assert_eq!(low(&d), want, "battery saver with a {high_s} s high watermark");
        abr.set_property_from_str("preference", "quality");
        assert_eq!(low(&d), 0, "quality: downloads resume as soon as there is room");
        abr.set_property_from_str("preference", "battery-saver");
        assert_eq!(low(&d), want);
        p.set_state(gst::State::Null).unwrap();
    }
}
