//! `nerve-eval`: measure quality and speed.
//!
//! - `nerve-eval compare --reference R --distorted D`: PSNR-Y, SSIM, VMAF, VMAF NEG.
//! - `nerve-eval sr --scale 2 --crf 23,33`: the streaming ladder protocol on the held-out clips
//!   (or `--clips`), classical scalers beside nervesr with each model; table, `--json`, `--plot`.
//! - `nerve-eval table --display 1280x720 --rungs 300@320x180,...`: a bitrate ladder shown on a
//!   display, classical upscale beside nervesr; nerveabr's quality tables (`--tables DIR`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use nerve_eval::ladder::{self, ClipSpec, Upscaler};
use nerve_eval::table::{self, Rung, TableMeta};
use nerve_eval::{clips, frame, init, loss, plot, recover, vid4};

#[derive(Parser)]
#[command(name = "nerve-eval", about = "Quality and speed of nerve's enhancement, measured against the original")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare a distorted video with its reference (same size): PSNR-Y, SSIM, VMAF, VMAF NEG.
    Compare {
        #[arg(long)]
        reference: PathBuf,
        #[arg(long)]
        distorted: Vec<PathBuf>,
        #[arg(long, default_value_t = 10_000)]
        frames: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The ladder protocol: downscale + x264 at each CRF, decode, upscale, score.
    Sr {
        /// Clips as PATH or CONTENT=PATH; default: leave-one-source-out (learning/clips.toml: every
        /// clip no training used whose source no training clip shares).
        #[arg(long, value_delimiter = ',')]
        clips: Vec<String>,
        #[arg(long, default_value_t = 2)]
        scale: usize,
        #[arg(long, value_delimiter = ',', default_value = "23,33")]
        crf: Vec<u32>,
        /// nervesr models (manifest names or paths); empty string = the default for the scale.
        #[arg(long, value_delimiter = ',', default_value = "")]
        models: Vec<String>,
        /// Classical upscalers (videoscale methods) to run beside it; `catrom` is the bicubic baseline.
        #[arg(long, value_delimiter = ',', default_value = "catrom,lanczos")]
        classical: Vec<String>,
        #[arg(long, default_value_t = 30)]
        frames: usize,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Directory of ../shared/data, for the default clip list.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Packet loss: each clip streamed as sliced H.264 over RTP with seeded packet loss and
    /// decoded; PSNR-Y and VMAF against the original for the decoder's output (lost frames held),
    /// freezing on the last good frame, and nerverecover in both modes.
    Recover {
        /// Clips as PATH or CONTENT=PATH; default: leave-one-source-out (learning/clips.toml).
        #[arg(long = "reference", value_delimiter = ',')]
        clips: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "0.01,0.03,0.05,0.10")]
        loss: Vec<f64>,
        /// Seeds of the loss process; each clip runs once per seed and loss rate.
        #[arg(long, value_delimiter = ',', default_value = "1")]
        seeds: Vec<u64>,
        /// Decode each run this many times: the same packets are lost each time, but a
        /// frame-threaded decoder conceals them differently (the spread of the gain is printed).
        #[arg(long, default_value_t = 1)]
        repeats: u32,
        /// nerverecover model (manifest name or path); empty = the default, "none" = classical.
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long, default_value_t = 120)]
        frames: usize,
        /// The decoder element and its settings (the same for every method).
        #[arg(long, default_value = loss::DECODER)]
        decoder: String,
        /// Skip VMAF (PSNR-Y only, much faster).
        #[arg(long)]
        no_vmaf: bool,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        plot: Option<PathBuf>,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Only redraw --plot from the summary of an earlier run's --json file.
        #[arg(long)]
        replot: Option<PathBuf>,
    },
    /// Stream a clip through the RTP loss pipeline and write the original, the lossless decode,
    /// the lossy decode and the salvaging receiver's decode as raw I420 (`original.yuv`,
    /// `clean.yuv`, `lossy.yuv`, `salvaged.yuv`; a frame that did not come out is all zeros) with
    /// `frames.json` (per frame: present, corrupted, hit by a loss, IDR, intact since the last
    /// IDR). The training data of the recovery model.
    LossFrames {
        #[arg(long)]
        reference: PathBuf,
        #[arg(long, default_value_t = 0.05)]
        loss: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 150)]
        frames: usize,
        #[arg(long)]
        out: PathBuf,
        /// The decoder element and its settings.
        #[arg(long, default_value = loss::DECODER)]
        decoder: String,
    },
    /// nerveabr quality tables: each rung (KBPS@WxH) encoded by x264 at its bitrate, shown on the
    /// display upscaled by Catmull-Rom and by nervesr's default model of the rung's scale and
    /// height; VMAF, VMAF NEG, PSNR-Y (active picture, bars left out) and nervesr's fps per rung,
    /// per content type and for all content.
    Table {
        /// Clips as CONTENT=PATH (or PATH); default: the held-out evaluation clips.
        #[arg(long, value_delimiter = ',')]
        clips: Vec<String>,
        /// Display size every rung is shown at, WIDTHxHEIGHT.
        #[arg(long, default_value = "1280x720")]
        display: String,
        /// The ladder, KBPS@WIDTHxHEIGHT; each height must divide the display height.
        #[arg(long, value_delimiter = ',', default_value = "300@320x180,750@426x240,1200@640x360,1850@640x360,2850@1280x720,4300@1280x720")]
        rungs: Vec<String>,
        #[arg(long, default_value_t = 20)]
        frames: usize,
        /// Chunk duration written into the tables (s).
        #[arg(long, default_value_t = 4.0)]
        chunk_s: f64,
        /// Raw rows and the tables as one JSON document.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write one table file per content type and a generic one into this directory.
        #[arg(long)]
        tables: Option<PathBuf>,
        /// Table names are PREFIX_CONTENT_nervesr.
        #[arg(long, default_value = "pensieve")]
        prefix: String,
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Vid4 x4 (bicubic-downscaled, no compression): PSNR-Y of nervesr beside MATLAB bicubic.
    Vid4 {
        /// nervesr model for x4 (manifest name or path); empty = the default x4 model.
        #[arg(long, default_value = "")]
        model: String,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// The clips a protocol runs on when `--clips` names none (learning/clips.toml, compiled in).
#[derive(Clone, Copy)]
enum DefaultClips {
    /// Leave-one-source-out: every clip no training used whose source no training clip shares.
    LeaveOneSourceOut,
    /// The model cards' held-out clips (what the committed recovery results and quality tables
    /// were measured on).
    HeldOut,
}

fn data_dir(given: Option<PathBuf>) -> PathBuf {
    clips::data_dir(given)
}

fn clip_specs(given: &[String], data: Option<PathBuf>, default: DefaultClips) -> Result<Vec<ClipSpec>> {
    let data = data_dir(data);
    if !given.is_empty() {
        return Ok(given
            .iter()
            .map(|c| match c.split_once('=') {
                Some((content, p)) => ClipSpec::file(p, content),
                None => ClipSpec::file(c, "clip"),
            })
            .collect());
    }
    let entries = clips::all()?;
    Ok(match default {
        DefaultClips::LeaveOneSourceOut => {
            let sel = clips::leave_one_source_out(&entries);
            for (e, why) in &sel.left_out {
                println!("left out {}: {why}", e.path);
            }
            sel.clips.iter().map(|e| ClipSpec::listed(e, &data)).collect()
        }
        DefaultClips::HeldOut => {
            entries.iter().filter(|e| e.role == clips::Role::HeldOut).map(|e| ClipSpec::listed(e, &data)).collect()
        }
    })
}

fn main() -> Result<()> {
    init()?;
    match Cli::parse().command {
        Command::Compare { reference, distorted, frames, json } => {
            if distorted.is_empty() {
                bail!("give at least one --distorted video");
            }
            let r = frame::decode(&reference, frames, 1)?;
            let mut out = serde_json::Map::new();
            println!("{:<32} {:>6} {:>8} {:>7} {:>7} {:>9}", "video", "frames", "PSNR-Y", "SSIM", "VMAF", "VMAF NEG");
            for d in distorted {
                let dist = frame::decode(&d, frames, 1)?;
                let n = r.frames.len().min(dist.frames.len());
                let s = ladder::score(&r.frames[..n], &dist.frames[..n])?;
                let name = d.display().to_string();
                println!("{name:<32} {n:>6} {:>8.2} {:>7.4} {:>7.2} {:>9.2}", s.psnr_y, s.ssim, s.vmaf, s.vmaf_neg);
                out.insert(name, serde_json::json!({"frames": n, "psnr_y": s.psnr_y, "ssim": s.ssim, "vmaf": s.vmaf, "vmaf_neg": s.vmaf_neg}));
            }
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
            }
        }
        Command::Sr { clips, scale, crf, models, classical, frames, json, plot: plot_path, data } => {
            let specs = clip_specs(&clips, data, DefaultClips::LeaveOneSourceOut)?;
            let mut upscalers: Vec<Upscaler> = classical.iter().map(|m| Upscaler::classical(m)).collect();
            upscalers.extend(models.iter().map(|m| Upscaler::nervesr(m, scale)));
            let bar = ProgressBar::new((specs.len() * crf.len() * upscalers.len()) as u64);
            bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")?);
            let mut rows = Vec::new();
            for spec in &specs {
                rows.extend(ladder::evaluate_clip(spec, scale, &crf, &upscalers, frames, |m| {
                    bar.inc(1);
                    bar.set_message(m.to_string());
                })?);
            }
            bar.finish_and_clear();
            println!(
                "x{scale} ladder, {} clips, {frames} frames each; scored on the active picture (static bars left out); \
                 gains over bicubic (videoscale catrom), mean and median over clips",
                specs.len()
            );
            println!("\nper clip (gain over bicubic: PSNR-Y dB active / whole frame, VMAF, VMAF NEG):");
            for (r, g) in ladder::gains(&rows).into_iter().filter(|(r, _)| r.upscaler != "bicubic") {
                println!(
                    "  {:<44} {:<13} crf {:>2} {:<26} {:>+6.2} / {:>+6.2} dB {:>+7.2} {:>+7.2}  active {}",
                    r.clip, r.content, r.crf, r.upscaler, g[0], g[3], g[1], g[2], r.active
                );
            }
            println!();
            println!(
                "{:>4} {:<38} {:>8} {:>7} {:>7} {:>9} | {:>15} {:>15} {:>15} | {:>6} {:>5} {:>10} {:>7}",
                "crf", "upscaler", "PSNR-Y", "SSIM", "VMAF", "VMAF NEG", "dPSNR-Y mean/med", "dVMAF mean/med", "dNEG mean/med",
                "worst", "below", "dPSNR full", "fps"
            );
            let summary = ladder::summarise(&rows);
            for s in &summary {
                println!(
                    "{:>4} {:<38} {:>8.2} {:>7.4} {:>7.2} {:>9.2} | {:>+7.2} {:>+7.2} {:>+7.2} {:>+7.2} {:>+7.2} {:>+7.2} | {:>+6.2} {:>2}/{:<2} {:>+10.2} {:>7.1}",
                    s.crf, s.upscaler, s.psnr_y, s.ssim, s.vmaf, s.vmaf_neg, s.d_psnr_y, s.median_d_psnr_y, s.d_vmaf, s.median_d_vmaf,
                    s.d_vmaf_neg, s.median_d_vmaf_neg, s.worst_d_psnr_y, s.clips_below_bicubic, s.clips, s.d_psnr_y_full, s.fps
                );
            }
            let targets = ladder::targets(&summary, scale);
            for t in &targets {
                println!("{t}");
            }
            if let Some(path) = json {
                let doc = serde_json::json!({
                    "scale": scale,
                    "frames": frames,
                    "protocol": "active picture (static bars left out); leave-one-source-out clips unless --clips; \
                                 gains over bicubic per clip, mean and median over clips",
                    "clips": specs.iter().map(|s| serde_json::json!({"path": s.path, "content": s.content, "source": s.source})).collect::<Vec<_>>(),
                    "rows": rows,
                    "summary": summary,
                    "targets": targets,
                });
                std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
                println!("wrote {}", path.display());
            }
            if let Some(path) = plot_path {
                plot::quality_vs_bitrate(&rows, "vmaf", &path)?;
                println!("wrote {}", path.display());
                if summary.iter().any(|s| s.upscaler.starts_with("nervesr")) {
                    let frontier = path.with_file_name(format!("{}-frontier.png", path.file_stem().and_then(|s| s.to_str()).unwrap_or("sr")));
                    plot::frontier(&summary, &frontier)?;
                    println!("wrote {}", frontier.display());
                }
            }
        }
        Command::Recover { replot: Some(from), plot: plot_path, .. } => {
            let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&from)?)?;
            let summary: Vec<recover::Summary> = serde_json::from_value(doc["summary"].clone())?;
            let path = plot_path.unwrap_or_else(|| from.with_extension("png"));
            plot::quality_vs_loss(&summary, &path)?;
            println!("wrote {}", path.display());
        }
        Command::Recover { clips, loss: rates, seeds, repeats, model, decoder, frames, no_vmaf, json, plot: plot_path, data, replot: None } => {
            let specs = clip_specs(&clips, data, DefaultClips::LeaveOneSourceOut)?;
            let repeats = repeats.max(1);
            let setup = recover::Setup { model: &model, decoder: &decoder, with_vmaf: !no_vmaf };
            let bar = ProgressBar::new((specs.len() * rates.len() * seeds.len()) as u64 * repeats as u64);
            bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")?);
            let mut rows = Vec::new();
            let mut detector: Vec<recover::DetectorScore> = Vec::new();
            // The example frames come from the rate nearest the 5%.
            let example_rate = rates.iter().copied().min_by(|a, b| (a - 0.05).abs().total_cmp(&(b - 0.05).abs())).unwrap_or(0.05);
            let mut examples = Vec::new();
            for spec in &specs {
                let clip = spec.decode(frames, 2)?;
                for &rate in &rates {
                    for (&seed, repeat) in seeds.iter().flat_map(|s| (0..repeats).map(move |k| (s, k))) {
                        bar.set_message(format!("{} {:.0}%", spec.content, rate * 100.0));
                        let (r, d, example) = recover::evaluate(spec, &clip, rate, seed, repeat, &setup)?;
                        rows.extend(r);
                        if rate == example_rate && seed == seeds[0] && repeat == 0 {
                            examples.push(example);
                        }
                        match detector.iter_mut().find(|s| s.loss == rate) {
                            Some(s) => {
                                s.true_positive += d.true_positive;
                                s.false_positive += d.false_positive;
                                s.false_negative += d.false_negative;
                            }
                            None => detector.push(d),
                        }
                        bar.inc(1);
                    }
                }
            }
            bar.finish_and_clear();
            let summary = recover::summarise(&rows);
            println!(
                "packet loss, {} clips x {} seed(s), up to {frames} frames each; mean PSNR-Y / VMAF against the original",
                specs.len(),
                seeds.len()
            );
            println!("{:>6} {:<40} {:>8} {:>7} {:>10} {:>9}", "loss", "method", "PSNR-Y", "VMAF", "dPSNR-Y*", "dVMAF*");
            for s in &summary {
                let (dp, dv) = recover::over_baselines(&summary, s);
                println!("{:>5.0}% {:<40} {:>8.2} {:>7.2} {:>+10.2} {:>+9.2}", s.loss * 100.0, s.method, s.psnr_y, s.vmaf, dp, dv);
            }
            println!("* against the better of decoder and freeze at the same loss rate");
            let by_content = recover::gains_by_content(&rows);
            let by_clip = recover::gains_by_clip(&rows);
            let medians = recover::median_gains(&by_clip);
            println!("median clip's gain over the decoder (dPSNR-Y / dVMAF):");
            for (loss, method, dp, dv) in medians.iter().filter(|m| m.1 != recover::BOUND) {
                println!("{:>5.0}% {:<40} {:>+8.2} {:>+7.2}", loss * 100.0, method, dp, dv);
            }
            println!(
                "gain over the decoder per clip (dPSNR-Y / dVMAF): nerverecover low-latency, nervesalvage + nerverecover \
                 low-latency, and the receivable bound"
            );
            for g in by_clip.iter().filter(|g| g.method == recover::MODES[0]) {
                let other = |method: &str| {
                    by_clip
                        .iter()
                        .find(|b| b.method == method && b.clip == g.clip && b.loss == g.loss)
                        .map_or((f64::NAN, f64::NAN), |b| (b.d_psnr_y, b.d_vmaf))
                };
                let ((sp, sv), (rp, rv)) = (other(recover::SALVAGED_MODES[0]), other(recover::BOUND));
                println!(
                    "{:>5.0}% {:<46} {:>+8.2} {:>+7.2}   salvaged {:>+7.2} {:>+7.2}   bound {:>+7.2} {:>+7.2}",
                    g.loss * 100.0,
                    format!("{} ({})", g.clip, g.content),
                    g.d_psnr_y,
                    g.d_vmaf,
                    sp,
                    sv,
                    rp,
                    rv
                );
            }
            let by_repeat = recover::gains_by_repeat(&rows);
            if repeats > 1 {
                println!("gain over the decoder in each of the {repeats} decodes (nerverecover low-latency; dPSNR-Y / dVMAF):");
                for g in by_repeat.iter().filter(|g| g.method == recover::MODES[0]) {
                    println!("{:>5.0}% decode {:<19} {:>+8.2} {:>+7.2}", g.loss * 100.0, g.repeat + 1, g.d_psnr_y, g.d_vmaf);
                }
            }
            let targets = recover::targets(&summary);
            for t in &targets {
                println!("{t}");
            }
            println!("damage detector (16x16 blocks vs lossy-vs-lossless decode difference):");
            for d in &detector {
                println!("{:>5.0}% precision {:.3} recall {:.3}", d.loss * 100.0, d.precision(), d.recall());
            }
            if let Some(path) = json {
                let det: Vec<_> = detector
                    .iter()
                    .map(|d| serde_json::json!({"loss": d.loss, "precision": d.precision(), "recall": d.recall(), "counts": d}))
                    .collect();
                let doc = serde_json::json!({"frames": frames, "seeds": seeds, "repeats": repeats, "decoder": decoder, "model": model, "rows": rows, "summary": summary, "by_content": by_content, "by_clip": by_clip, "median_gain": medians.iter().map(|(l, m, p, v)| serde_json::json!({"loss": l, "method": m, "d_psnr_y": p, "d_vmaf": v})).collect::<Vec<_>>(), "by_repeat": by_repeat, "protocol": "active picture (static bars left out); leave-one-source-out clips unless --reference", "detector": det, "targets": targets});
                std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
                println!("wrote {}", path.display());
            }
            if let Some(path) = plot_path {
                plot::quality_vs_loss(&summary, &path)?;
                println!("wrote {}", path.display());
                let frames_png = path.with_file_name(format!("{}-frames.png", path.file_stem().and_then(|s| s.to_str()).unwrap_or("recover")));
                plot::loss_examples(&examples, &frames_png)?;
                println!("wrote {}", frames_png.display());
            }
        }
        Command::LossFrames { reference, loss: p, seed, frames, out, decoder } => {
            let clip = frame::decode(&reference, frames, 2)?;
            let cfg = recover::config_for(&clip, p, seed, &decoder);
            let run = loss::run(&clip, &cfg, &[])?;
            std::fs::create_dir_all(&out)?;
            let first = &clip.frames[0];
            let blank = frame::Frame { width: first.width, height: first.height, data: vec![0; first.data.len()] };
            let write = |name: &str, frames: Vec<&frame::Frame>| -> Result<()> {
                let mut bytes = Vec::new();
                for f in frames {
                    bytes.extend_from_slice(&f.data);
                }
                std::fs::write(out.join(name), bytes)?;
                Ok(())
            };
            write("original.yuv", clip.frames.iter().collect())?;
            write("clean.yuv", run.clean.frames.iter().map(|f| f.as_ref().unwrap_or(&blank)).collect())?;
            write("lossy.yuv", run.lossy.frames.iter().map(|f| f.as_ref().unwrap_or(&blank)).collect())?;
            write("salvaged.yuv", run.salvaged.frames.iter().map(|f| f.as_ref().unwrap_or(&blank)).collect())?;
            let intact = run.intact();
            let per_frame: Vec<_> = (0..clip.frames.len())
                .map(|i| {
                    serde_json::json!({
                        "present": run.lossy.frames[i].is_some(),
                        "clean_present": run.clean.frames[i].is_some(),
                        "salvaged_present": run.salvaged.frames[i].is_some(),
                        "corrupted": run.lossy.corrupted[i],
                        "hit": run.hit[i],
                        "keyframe": run.keyframe[i],
                        "intact": intact[i],
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "width": first.width, "height": first.height, "fps": [clip.fps.numer(), clip.fps.denom()],
                "loss": p, "seed": seed, "packets": run.packets, "dropped": run.dropped, "frames": per_frame,
            });
            std::fs::write(out.join("frames.json"), serde_json::to_string_pretty(&doc)?)?;
            let present = run.lossy.frames.iter().filter(|f| f.is_some()).count();
            let hit = run.hit.iter().filter(|&&h| h).count();
            println!(
                "{} frames {}x{}: {} of {} packets lost; {hit} frames hit, {present} decoded, {} corrupted-flagged",
                clip.frames.len(), first.width, first.height, run.dropped, run.packets,
                run.lossy.corrupted.iter().filter(|&&c| c).count()
            );
        }
        Command::Table { clips, display, rungs, frames, chunk_s, json, tables, prefix, data } => {
            let specs = clip_specs(&clips, data, DefaultClips::HeldOut)?;
            let display = table::parse_size(&display)?;
            let rungs: Vec<Rung> = rungs.iter().map(|r| r.parse()).collect::<Result<_>>()?;
            if rungs.is_empty() {
                bail!("give at least one rung");
            }
            for r in &rungs {
                r.scale_to(display)?;
            }
            let per_clip: usize = rungs.iter().map(|r| if r.scale_to(display).map(|s| s.0).unwrap_or(1) == 1 { 1 } else { 2 }).sum();
            let bar = ProgressBar::new((specs.len() * per_clip) as u64);
            bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")?);
            // fps depends on what else the machine runs: the table records the load around it.
            let load_before = table::load_average();
            let mut rows = Vec::new();
            for spec in &specs {
                rows.extend(table::evaluate_clip(spec, display, &rungs, frames, |m| {
                    bar.inc(1);
                    bar.set_message(m.to_string());
                })?);
            }
            bar.finish_and_clear();
            // The exact command, so a table says how to remake it.
            let command: Vec<String> = std::env::args().skip(1).collect();
            let method = format!(
                "MEASURED: nerve-eval {} ({} clips, {frames} frames each; x264 preset medium pass=cbr at each rung's bitrate; \
                 displayed VMAF v0.6.1 at {}x{} on the active picture (static letterbox/pillarbox bars left out): level 0 = Catmull-Rom \
                 upscale (videoscale method=catrom), scale-1 rungs as decoded; levels = nervesr with the default model of the rung's \
                 scale and height; fps = nervesr wall-clock frames/s on the device, \
                 fps_cpu = frames per CPU-second of the process)",
                command.join(" "),
                specs.len(),
                display.0,
                display.1
            );
            let device = format!(
                "{} (nervesr on CPU through ONNX Runtime; fps measured with a 1-minute load average of {load_before:.2} before \
                 the run and {:.2} after it)",
                table::cpu_name(),
                table::load_average()
            );
            let meta = TableMeta { prefix: &prefix, method: &method, device: &device, chunk_s };
            let files = table::tables(&rows, &rungs, &meta)?;
            println!("{} clips, {frames} frames each, shown at {}x{}; VMAF / VMAF NEG / PSNR-Y; fps of nervesr on this machine", specs.len(), display.0, display.1);
            println!(
                "{:<14} {:>6} {:>10} {:>6} {:>7} {:>7} {:>7} {:<20} {:>7} {:>7} {:>7} {:>6} {:>7}",
                "content", "kbps", "res", "kbps*", "VMAF", "NEG", "PSNR", "model", "VMAF", "NEG", "PSNR", "fps", "fps/cpu"
            );
            for f in &files {
                for r in &f.rungs {
                    let (name, v, n, p, fps, fc) = match r.levels.first() {
                        Some(l) => (l.name.as_str(), l.vmaf, l.vmaf_neg, l.psnr_y, l.fps, l.fps_cpu),
                        None => ("-", f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN),
                    };
                    println!(
                        "{:<14} {:>6} {:>10} {:>6.0} {:>7.2} {:>7.2} {:>7.2} {:<20} {:>7.2} {:>7.2} {:>7.2} {:>6.2} {:>7.2}",
                        f.content, r.bitrate_kbps, r.resolution, r.measured_kbps, r.vmaf, r.vmaf_neg, r.psnr_y, name, v, n, p, fps, fc
                    );
                }
            }
            if let Some(path) = json {
                let doc = serde_json::json!({"display": format!("{}x{}", display.0, display.1), "frames": frames, "rows": rows, "tables": files});
                std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
                println!("wrote {}", path.display());
            }
            if let Some(dir) = tables {
                std::fs::create_dir_all(&dir)?;
                for f in &files {
                    let path = dir.join(format!("{}.json", f.name));
                    std::fs::write(&path, serde_json::to_string_pretty(f)? + "\n")?;
                    println!("wrote {}", path.display());
                }
            }
        }
        Command::Vid4 { model, json, data } => {
            let dir = data_dir(data).join("sr/vid4/GT");
            let filter = Upscaler::nervesr(&model, 4).filter;
            let bar = ProgressBar::new(vid4::CLIPS.len() as u64);
            let mut rows = Vec::new();
            for clip in vid4::CLIPS {
                bar.set_message(clip);
                rows.push(vid4::evaluate(&dir, clip, &filter)?);
                bar.inc(1);
            }
            bar.finish_and_clear();
            println!("Vid4 x4 (BI), PSNR-Y in dB, all frames, no crop");
            println!("{:<10} {:>6} {:>14} {:>12} {:>9}", "clip", "frames", "bicubic (RGB)", "bicubic (Y)", "nervesr");
            for r in &rows {
                println!("{:<10} {:>6} {:>14.2} {:>12.2} {:>9.2}", r.clip, r.frames, r.bicubic_rgb_db, r.bicubic_y_db, r.model_db);
            }
            let avg = |f: fn(&vid4::Vid4Row) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
            let (b, by, m) = (avg(|r| r.bicubic_rgb_db), avg(|r| r.bicubic_y_db), avg(|r| r.model_db));
            println!("{:<10} {:>6} {:>14.2} {:>12.2} {:>9.2}", "average", "", b, by, m);
            let t = vid4::target(if model.is_empty() { "the default x4 model" } else { &model }, m);
            println!("{t}");
            if let Some(path) = json {
                let doc = serde_json::json!({"model": model, "rows": rows,
                    "average": {"bicubic_rgb_db": b, "bicubic_y_db": by, "model_db": m}, "targets": [t]});
                std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
            }
        }
    }
    Ok(())
}
