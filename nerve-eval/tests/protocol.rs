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
    let spec = ClipSpec::file(clip(), "texture");
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
    let spec = ClipSpec::file(clip(), "texture");
    // QCIF as the display: x3 (58x48 covers 174x144), x2, and the display size itself
    let rungs: Vec<Rung> = ["60@58x48", "150@88x72", "600@176x144"].iter().map(|r| r.parse().unwrap()).collect();
    let rows = table::evaluate_clip(&spec, (176, 144), &rungs, 6, |_| ()).unwrap();
    // Catmull-Rom and nervesr for each upscaled rung, the decoded picture for the full-size one
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.frames == 6 && r.vmaf.is_finite() && r.kbps > 0.0));
    let row = |kbps: u32, up: &str| rows.iter().find(|r| r.rung_kbps == kbps && r.upscaler == up).unwrap();
    assert_eq!(row(60, "bicubic").scale, 3);
    assert!(row(60, &table::default_model(3, 48).unwrap()).fps > 0.0);
    assert!(row(150, &table::default_model(2, 72).unwrap()).fps > 0.0, "the x2 rung runs the default for its rows");
    // no bars in this clip: the active picture is all the rung covers (174 columns at x3)
    assert!(rows.iter().all(|r| r.active == if r.scale == 3 { "174x144+0+0" } else { "176x144+0+0" } && r.psnr_y_full == r.psnr_y));
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

/// A letterboxed clip's table is scored inside its bars: Sintel's excerpt shown on a 16:9 display
/// keeps its black bands top and bottom; the rows say which part was scored, and the whole-frame
/// figures (bars included) differ from it.
#[test]
fn quality_tables_score_the_active_picture() {
    use nerve_eval::table::{self, Rung};
    nerve_eval::init().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/videos/animation/sintel_excerpt_854x480.mp4");
    if !path.exists() && std::env::var_os("CI").is_none() {
        eprintln!("SKIP: {} missing", path.display());
        return;
    }
    let spec = ClipSpec::file(path, "animation");
    let rungs: Vec<Rung> = ["100@160x90"].iter().map(|r| r.parse().unwrap()).collect();
    let rows = table::evaluate_clip(&spec, (320, 180), &rungs, 4, |_| ()).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let (size, offset) = r.active.split_once('+').unwrap();
        let (w, h): (usize, usize) = {
            let (w, h) = size.split_once('x').unwrap();
            (w.parse().unwrap(), h.parse().unwrap())
        };
        let y: usize = offset.split_once('+').unwrap().1.parse().unwrap();
        assert!(w >= 316 && h < 160 && y >= 8, "{}: bars not left out ({})", r.upscaler, r.active);
        assert!((r.psnr_y - r.psnr_y_full).abs() > 0.01, "{}: active {} dB, whole {} dB", r.upscaler, r.psnr_y, r.psnr_y_full);
    }
}

/// The shipped default x2 model must keep beating bicubic on clips of sources no training used
/// (learning/clips.toml, leave-one-source-out), on the active picture, by a margin: a regression
/// in the model, its export, the element or the conversion shows here. Three small clips, 8
/// frames, x264 CRF 23. Each clip's floor is about 60% of what the model gained there when the
/// test was written (8 frames: +1.35 / +1.16 / +0.48 dB PSNR-Y, +10.7 / +7.8 / +3.9 VMAF NEG),
/// so run-to-run noise passes and a real regression does not.
#[test]
fn default_x2_model_beats_bicubic_on_unseen_sources() {
    use nerve_eval::clips;
    nerve_eval::init().unwrap();
    let entries = clips::all().unwrap();
    let selection = clips::leave_one_source_out(&entries);
    let data = clips::data_dir(None);
    // (clip, floor of the PSNR-Y gain in dB, floor of the VMAF NEG gain)
    let picked = [("test_qcif_cabac.264", 0.8, 6.5), ("CiscoVT2people_320x192_12fps.yuv", 0.7, 4.5), ("armwrestling_demo.mp4", 0.3, 2.3)];
    let ups = [Upscaler::classical("catrom"), Upscaler::nervesr("", 2)];
    for (name, min_db, min_neg) in picked {
        let entry = selection.clips.iter().find(|e| e.path.ends_with(name)).unwrap_or_else(|| panic!("{name} is not an unseen-source clip"));
        let spec = ClipSpec::listed(entry, &data);
        if !spec.path.exists() && std::env::var_os("CI").is_none() {
            eprintln!("SKIP: {} missing", spec.path.display());
            return;
        }
        let rows = ladder::evaluate_clip(&spec, 2, &[23], &ups, 8, |_| ()).unwrap();
        let (bicubic, model) = (&rows[0], &rows[1]);
        let (d_psnr, d_neg) = (model.psnr_y - bicubic.psnr_y, model.vmaf_neg - bicubic.vmaf_neg);
        eprintln!("{name}: {d_psnr:+.2} dB PSNR-Y, {d_neg:+.2} VMAF NEG over bicubic");
        assert!(d_psnr >= min_db, "{name}: nervesr gains only {d_psnr:+.2} dB PSNR-Y over bicubic (floor {min_db})");
        assert!(d_neg >= min_neg, "{name}: nervesr gains only {d_neg:+.2} VMAF NEG over bicubic (floor {min_neg})");
    }
}

/// Bars are found on a real letterboxed clip (Sintel: 2.39:1 in 854x480) and the scores leave
/// them out; a clip without bars is scored whole.
#[test]
fn letterbox_bars_of_a_real_clip_are_left_out_of_the_scores() {
    use nerve_eval::active;
    nerve_eval::init().unwrap();
    let data = nerve_eval::clips::data_dir(None);
    let sintel = frame::decode(&data.join("videos/animation/sintel_excerpt_854x480.mp4"), 12, 4).unwrap();
    let r = active::active_picture(&sintel.frames);
    assert_eq!((r.x, r.width), (0, sintel.frames[0].width), "no pillarbox: {r}");
    assert!(r.y >= 50 && r.y <= 64 && r.height >= 350 && r.height <= 380, "letterbox of about 58 lines each: {r}");
    let plain = frame::decode(&clip(), 12, 4).unwrap();
    assert!(active::active_picture(&plain.frames).is_whole(&plain.frames[0]));
}
