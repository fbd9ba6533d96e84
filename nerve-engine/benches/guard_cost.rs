//! What the run-time output check (`guard::check_output`) costs per frame: nervesr runs it on
//! every model output, so it must stay small beside the model's own time (25 ms at 720p on this
//! machine's CPU provider). Prints the median and 95th percentile over 200 frames per size.
//!
//!   cargo bench -p nerve-engine --bench guard_cost

use std::time::Instant;

use nerve_engine::guard::check_output;

fn main() {
    for (name, w, h) in [("360p -> 720p", 1280usize, 720usize), ("540p -> 1080p", 1920, 1080)] {
        // A plausible picture: the input ramp and its x2 output, all finite.
        let lr: Vec<f32> = (0..(w / 2) * (h / 2)).map(|i| (i % 251) as f32 / 255.0).collect();
        let hr: Vec<f32> = (0..w * h).map(|i| ((i / 2) % 251) as f32 / 255.0).collect();
        let mut times: Vec<f64> = (0..200)
            .map(|_| {
                let t = Instant::now();
                assert!(check_output(std::hint::black_box(&lr), std::hint::black_box(&hr)).is_ok());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("guard_cost {name}: median {:.3} ms, p95 {:.3} ms per frame", times[100], times[190]);
    }
}
