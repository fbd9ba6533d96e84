//! What the run-time output check (`guard::check_output`) and the conversion to pixels cost per
//! frame: nervesr runs both on every model output, in bands on the bands' threads, so they must
//! stay small beside the model's own time (about 30 ms at 1080p on this machine's CPU provider).
//! Prints the median and 95th percentile over 200 frames per size: the check alone, the check
//! and the conversion as two passes, and the one pass nervesr runs (`tensor_to_luma_summarised`).
//!
//!   cargo bench -p nerve-engine --bench guard_cost

use std::time::Instant;

use nerve_engine::convert::{tensor_to_luma, tensor_to_luma_summarised};
use nerve_engine::guard::{OutputSummary, check_output, check_summary};

fn timed(mut f: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[100], times[190])
}

fn main() {
    for (name, w, h) in [("360p -> 720p", 1280usize, 720usize), ("540p -> 1080p", 1920, 1080)] {
        // A plausible picture: the input ramp and its x2 output, all finite.
        let lr: Vec<f32> = (0..(w / 2) * (h / 2)).map(|i| (i % 251) as f32 / 255.0).collect();
        let hr: Vec<f32> = (0..w * h).map(|i| ((i / 2) % 251) as f32 / 255.0).collect();
        let mut plane = vec![0u8; w * h];
        let (m, p) = timed(|| assert!(check_output(std::hint::black_box(&lr), std::hint::black_box(&hr)).is_ok()));
        println!("guard_cost {name}: check median {m:.3} ms, p95 {p:.3} ms per frame");
        let (m, p) = timed(|| {
            assert!(check_output(std::hint::black_box(&lr), std::hint::black_box(&hr)).is_ok());
            tensor_to_luma(std::hint::black_box(&hr), w, h, &mut plane, w);
        });
        println!("guard_cost {name}: check then convert median {m:.3} ms, p95 {p:.3} ms per frame");
        let (m, p) = timed(|| {
            let s: OutputSummary = tensor_to_luma_summarised(std::hint::black_box(&hr), w, h, &mut plane, w);
            assert!(check_summary(std::hint::black_box(&lr), s).is_ok());
        });
        println!("guard_cost {name}: one pass median {m:.3} ms, p95 {p:.3} ms per frame");
    }
}
