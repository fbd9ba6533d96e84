//! Writes the leave-one-source-out clips' reference frames and decoded x2 low rungs (the `nerve-eval
//! sr` protocol) as raw I420 files with a JSON index, for experiments outside the element.
//! `cargo run --release -p nerve-eval --example dump_rungs -- OUT_DIR [FRAMES]`

use anyhow::Result;
use nerve_eval::{active, clips, ladder::ClipSpec, run};
use std::io::Write;

fn main() -> Result<()> {
    gst::init()?;
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "rungs".into()));
    let frames: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    std::fs::create_dir_all(&out)?;
    let data = clips::data_dir(None);
    let mut index = Vec::new();
    for (i, entry) in clips::leave_one_source_out(&clips::all()?).clips.iter().enumerate() {
        let spec = ClipSpec::listed(entry, &data);
        let reference = spec.decode(frames, 4)?;
        let f0 = &reference.frames[0];
        let region = active::active_picture(&reference.frames);
        let write = |name: &str, fs: &[nerve_eval::frame::Frame]| -> Result<()> {
            let mut file = std::fs::File::create(out.join(name))?;
            for f in fs {
                file.write_all(&f.data)?;
            }
            Ok(())
        };
        write(&format!("{i}-ref.yuv"), &reference.frames)?;
        for crf in [23u32, 33] {
            let (low, _) = run::low_rung(&reference, 2, crf)?;
            write(&format!("{i}-crf{crf}.yuv"), &low)?;
        }
        index.push(serde_json::json!({
            "i": i, "path": entry.path, "content": entry.content, "width": f0.width, "height": f0.height,
            "frames": reference.frames.len(), "active": [region.x, region.y, region.width, region.height],
        }));
        eprintln!("{i} {} {}x{} {} frames, active {region}", entry.path, f0.width, f0.height, reference.frames.len());
    }
    std::fs::write(out.join("index.json"), serde_json::to_string_pretty(&index)?)?;
    Ok(())
}
