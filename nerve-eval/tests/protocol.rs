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
    // The quality/speed frontier plots the model rows; with none it says so instead of drawing.
    let dir = std::env::temp_dir().join(format!("nerve-eval-frontier-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("frontier.png");
    nerve_eval::plot::frontier(&summary, &png).unwrap();
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    let classical: Vec<_> = summary.into_iter().filter(|s| !s.upscaler.starts_with("nervesr")).collect();
    assert!(nerve_eval::plot::frontier(&classical, &dir.join("none.png")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quality_table_rows_and_files_follow_the_ladder() {
    use nerve_eval::table::{self, Rung, TableMeta};
    nerve_eval::init().unwrap();
    let spec = ClipSpec { path: clip(), content: "texture".into() };
    // QCIF as the display: x3 (58x48 covers 174x144), x2, and the display size itself
    let rungs: Vec<Rung> = ["60@58x48", "150@88x72", "600@176x144"].iter().map(|r| r.parse().unwrap()).collect();
    let rows = table::evaluate_clip(&spec, (176, 144), &rungs, 6, |_| ()).unwrap();
    // Catmull-Rom and nervesr for each upscaled rung, the decoded picture for the full-size one
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.frames == 6 && r.vmaf.is_finite() && r.kbps > 0.0));
    let row = |kbps: u32, up: &str| rows.iter().find(|r| r.rung_kbps == kbps && r.upscaler == up).unwrap();
    assert_eq!(row(60, "bicubic").scale, 3);
    assert!(row(60, &table::default_model(3).unwrap()).fps > 0.0);
    assert!(row(600, "none").vmaf > row(60, "bicubic").vmaf + 5.0, "the full-size rung at 10x the bits must look better");
    assert!(row(600, "none").kbps > row(60, "bicubic").kbps);
    let meta = TableMeta { prefix: "t", method: "MEASURED: test", device: "cpu", chunk_s: 4.0 };
    let files = table::tables(&rows, &rungs, &meta).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["t_generic_nervesr", "t_texture_nervesr"]);
    let levels: Vec<usize> = files[0].rungs.iter().map(|r| r.levels.len()).collect();
    assert_eq!(levels, [1, 1, 0]);
    assert_eq!(files[0].rungs[2].vmaf, (row(600, "none").vmaf * 100.0).round() / 100.0);
}
