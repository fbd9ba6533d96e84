//! Throughput traces (`nerveabr_sim::trace::Trace::parse`: two-column, mahimahi and SABRE JSON), what
//! `nerveabr-sim` reads: a usable trace or an error; never a panic.
#![no_main]

use nerveabr_sim::trace::Trace;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(trace) = Trace::parse("fuzz", text) else { return };
    assert!(trace.points.len() >= 2, "{} points", trace.points.len());
    for w in trace.points.windows(2) {
        assert!(w[0].0.is_finite() && w[1].0 >= w[0].0, "time goes back: {w:?}");
    }
    for p in &trace.points {
        assert!(p.1.is_finite() && p.1 >= 0.0, "throughput {p:?}");
    }
    assert!(trace.latency_s.is_none_or(|l| l.is_finite() && l >= 0.0), "latency {:?}", trace.latency_s);
    let mean = trace.mean_bps();
    assert!(mean.is_finite() && mean >= 0.0, "mean {mean}");
    for (ms, kbps) in trace.periods_ms_kbps() {
        assert!(ms > 0.0 && ms.is_finite() && kbps.is_finite(), "period ({ms}, {kbps})");
    }
});
