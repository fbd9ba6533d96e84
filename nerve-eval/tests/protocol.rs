//! The metrics and the ladder protocol on a real clip: the measures move the way they must.

use std::path::Path;

use nerve_eval::ladder::{self, ClipSpec, Upscaler};
use nerve_eval::{frame, metrics, run, vmaf};

fn clip() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/videos/natural_motion_texture/test_qcif_cabac.264")
}

#[test]
fn vmaf_is_high_for_identical_frames_and_drops_with_compression() {
    nerve_eval::init().unwrap();
    let reference = frame::decode(&clip(), 12, 4).unwrap();
    assert_eq!((reference.frames[0].width, reference.frames[0].height), (176, 144));
    let (same, same_neg) = vmaf::vmaf(&reference.frames, &reference.frames).unwrap();
    assert!(same > 95.0 && same_neg > 95.0, "{same} {same_neg}");
    let (mild, _) = run::low_rung(&reference, 2, 18).unwrap();
    let (harsh, _) = run::low_rung(&reference, 2, 40).unwrap();
    let up = |f: Vec<frame::Frame>| {
        run::through(&run::clip_of(f, reference.fps), "videoscale method=catrom ! video/x-raw,width=176,height=144").unwrap().0
    };
    let (mild, harsh) = (up(mild), up(harsh));
    let (v_mild, _) = vmaf::vmaf(&reference.frames, &mild).unwrap();
    let (v_harsh, _) = vmaf::vmaf(&reference.frames, &harsh).unwrap();
    assert!(v_mild > v_harsh + 5.0, "CRF 18 {v_mild} vs CRF 40 {v_harsh}");
    assert!(metrics::psnr_y(&reference.frames, &mild) > metrics::psnr_y(&reference.frames, &harsh));
}

#[test]
fn ladder_rows_cover_every_rung_and_upscaler() {
    nerve_eval::init().unwrap();
    let spec = ClipSpec { path: clip(), content: "texture".into() };
    let ups = [Upscaler::classical("catrom"), Upscaler::classical("lanczos"), Upscaler::nervesr("", 2)];
    let rows = ladder::evaluate_clip(&spec, 2, &[23, 33], &ups, 8, |_| ()).unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.frames == 8 && r.fps > 0.0 && r.kbps > 0.0));
    let kbps = |crf| rows.iter().find(|r| r.crf == crf).unwrap().kbps;
    assert!(kbps(23) > kbps(33), "a higher CRF spends fewer bits");
    let summary = ladder::summarise(&rows);
    let bicubic = summary.iter().find(|s| s.upscaler == "bicubic").unwrap();
    assert_eq!(bicubic.d_psnr_y, 0.0);
}
