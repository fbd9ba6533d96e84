//! The RTP loss pipeline on a real clip: the loss is real and repeatable, the lossless twin is
//! intact, the salvaging receiver decodes more of it, and nerverecover gives one frame per input
//! timestamp on the damaged stream.

use std::path::Path;

use nerve_eval::loss::{self, LossConfig};
use nerve_eval::{frame, metrics, recover};

#[test]
fn loss_is_seeded_damages_the_decode_and_nerverecover_fills_every_slot() {
    nerve_eval::init().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/videos/film_archival/chaplin.mp4");
    let clip = frame::decode(&path, 40, 2).unwrap();
    let cfg = LossConfig { loss: 0.1, seed: 7, ..recover::config_for(&clip, 0.1, 7, loss::DECODER) };
    let branches = recover::branches("none");
    let a = loss::run(&clip, &cfg, &branches).unwrap();
    let b = loss::run(&clip, &cfg, &[]).unwrap();
    assert!(a.dropped > 0 && a.dropped < a.packets, "{} of {}", a.dropped, a.packets);
    assert_eq!((a.packets, a.dropped, &a.hit), (b.packets, b.dropped, &b.hit), "the same seed loses the same packets");
    assert!(a.clean.frames.iter().all(Option::is_some), "the lossless twin decodes every frame");
    assert!(a.keyframe[0], "the stream starts with an IDR frame");
    let (w, h) = (clip.frames[0].width, clip.frames[0].height);
    let clean = loss::held(&a.clean, w, h);
    let lossy = loss::held(&a.lossy, w, h);
    assert!(metrics::psnr_y(&clip.frames, &clean) > metrics::psnr_y(&clip.frames, &lossy) + 1.0, "the loss does damage");
    // The salvaging receiver decodes the same lost packets, keeping what arrived of broken slices:
    // closer to the lossless decode than the plain receiver (this seed breaks fragmented slices).
    let salvaged = loss::held(&a.salvaged, w, h);
    let (low, high) = (metrics::psnr_y(&clip.frames, &lossy), metrics::psnr_y(&clip.frames, &clean));
    let kept = metrics::psnr_y(&clip.frames, &salvaged);
    assert!(kept > low && kept <= high + 1e-9, "decoder {low:.2} dB, salvaged {kept:.2}, lossless {high:.2}");
    // The receivable bound lies between what the salvaging decoder shows and the lossless decode.
    let bound = metrics::psnr_y(&clip.frames, &loss::receivable(&a, &salvaged, w, h));
    assert!(bound > kept && bound <= high + 1e-9, "salvaged {kept:.2} dB, bound {bound:.2}, lossless {high:.2}");
    for branch in &a.extra {
        // Every slot from the first to the last frame the decoder gave is filled exactly once
        // (frames lost after the last decoded one leave no trace to fill them by).
        let first = branch.frames.iter().position(Option::is_some).unwrap();
        let last = branch.frames.iter().rposition(Option::is_some).unwrap();
        assert!(branch.frames[first..=last].iter().all(Option::is_some), "a slot was left empty");
        assert_eq!(branch.buffers, last - first + 1, "one frame per timestamp");
        assert!(branch.buffers >= a.lossy.buffers);
    }
}
