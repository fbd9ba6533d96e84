//! nerveabr-sim: run ABR policies over throughput traces and compare them.
//!
//! ```text
//! nerveabr-sim --traces DIR --policies bb,rb,bola,robustmpc,nerve --json out.json
//! nerveabr-sim --scenario bones --traces DIR --policies bola,mpc,dynamic,bba,nerve --json out.json
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use gstnerveabr::policy::nerve::{NerveParams, Preference};
use gstnerveabr::policy::quality::TableFile;
use gstnerveabr::policy::{Ladder, QualityTable};
use gstnerveabr::sim::bones::Settings as BonesSettings;
use gstnerveabr::sim::bones_data::BonesData;
use gstnerveabr::sim::chunk::{min_bits_mb, qoe_quality_bound, ChunkSettings};
use gstnerveabr::sim::report::{table, PolicySummary, Report};
use gstnerveabr::sim::run::{default_data_dir, run_bones, run_chunk, NerveConfig, PolicySpec};
use gstnerveabr::sim::trace::{read_dir, Trace};
use gstnerveabr::sim::{plot, TraceResult};

/// The quality table used without `--quality-table`: the element's (measured, all content).
const DEFAULT_TABLE: &str = gstnerveabr::abr::DEFAULT_TABLE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Pensieve's chunk simulator, Pensieve's ladder (300..4300 kbit/s, 4 s x 48 chunks).
    Chunk,
    /// BONES' simulator, Big Buck Bunny ladder and measured enhancement tables.
    Bones,
}

#[derive(Parser, Debug)]
#[command(version, about = "Trace-driven comparison of ABR policies (nerveabr)")]
struct Args {
    /// Trace directory (two-column, SABRE JSON or mahimahi files, auto-detected); repeat for
    /// several sets.
    #[arg(long, required = true)]
    traces: Vec<PathBuf>,
    /// Comma-separated policies: bb, rb, bola, robustmpc, mpc, dynamic, bones, nerve; a `+sr`
    /// suffix adds greedy enhancement after a bitrate-only policy (e.g. bola+sr).
    #[arg(long, default_value = "bb,rb,bola,robustmpc,nerve", value_delimiter = ',')]
    policies: Vec<String>,
    #[arg(long, value_enum, default_value = "chunk")]
    scenario: Scenario,
    /// BONES data directory (bbb_video_info.json and the enhancement tables).
    #[arg(long)]
    bones_dir: Option<PathBuf>,
    /// Enhancement table inside --bones-dir.
    #[arg(long, default_value = "imdn_bbb_3060ti.json")]
    enhance: String,
    /// Quality table for the chunk scenario (default: the shipped measured all-content table,
    /// tables/pensieve_generic_nervesr.json; per content type: tables/pensieve_<content>_nervesr.json).
    #[arg(long)]
    quality_table: Option<PathBuf>,
    /// Enhancement speed multiplier relative to the table's device.
    #[arg(long, default_value_t = 1.0)]
    device_speed: f64,
    /// Keep BONES' session quirk (enhancement events advance by the download countdown).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    exact_session: bool,
    /// At most this many traces per directory (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Write the full report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write CDF plots (PNG) of per-trace QoE into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Time each policy over 100 traces (the first traces, repeated if fewer) and exit.
    #[arg(long)]
    bench: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// The simulators are deterministic; the seed is recorded for the record only.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// nerve: user preference (quality, balanced, battery-saver).
    #[arg(long, default_value = "balanced")]
    preference: Preference,
    /// nerve: battery level 0..1 (absent = mains power).
    #[arg(long)]
    battery: Option<f64>,
    #[arg(long)]
    nerve_safety: Option<f64>,
    #[arg(long)]
    nerve_stall_weight: Option<f64>,
    #[arg(long)]
    nerve_switch_weight: Option<f64>,
    #[arg(long)]
    nerve_compute_price: Option<f64>,
    #[arg(long)]
    nerve_horizon: Option<usize>,
    #[arg(long)]
    nerve_end_buffer: Option<f64>,
    #[arg(long)]
    nerve_end_weight: Option<f64>,
    #[arg(long)]
    nerve_robust: Option<f64>,
    #[arg(long)]
    nerve_end_buffer_err: Option<f64>,
    /// nerve: quality points per megabit downloaded (0 = bits are free).
    #[arg(long)]
    nerve_bit_price: Option<f64>,
    /// nerve: chunks after the horizon over which the plan's last choice is assumed to continue.
    #[arg(long)]
    nerve_tail: Option<usize>,
}

fn main() {
    if let Err(e) = do_main() {
        eprintln!("nerveabr-sim: {e:#}");
        std::process::exit(1);
    }
}

fn nerve_config(a: &Args) -> NerveConfig {
    let mut p = match a.scenario {
        Scenario::Chunk => NerveParams::chunk(),
        Scenario::Bones => NerveParams::default(),
    };
    if let Some(x) = a.nerve_safety {
        p.safety = x;
    }
    if let Some(x) = a.nerve_stall_weight {
        p.stall_weight = x;
    }
    if let Some(x) = a.nerve_switch_weight {
        p.switch_weight = x;
    }
    if let Some(x) = a.nerve_compute_price {
        p.compute_price = x;
    }
    if let Some(x) = a.nerve_horizon {
        p.horizon = x.max(1);
    }
    if let Some(x) = a.nerve_end_buffer {
        p.end_buffer_s = x;
    }
    if let Some(x) = a.nerve_end_weight {
        p.end_buffer_weight = x;
    }
    if let Some(x) = a.nerve_robust {
        p.robust = x;
    }
    if let Some(x) = a.nerve_end_buffer_err {
        p.end_buffer_err = x;
    }
    if let Some(x) = a.nerve_bit_price {
        p.bit_price = x;
    }
    if let Some(x) = a.nerve_tail {
        p.tail = x;
    }
    NerveConfig { params: p, preference: a.preference, battery: a.battery }
}

fn set_name(dir: &Path) -> String {
    let comps: Vec<String> = dir.components().rev().take(2).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    comps.into_iter().rev().collect::<Vec<_>>().join("/")
}

fn do_main() -> Result<()> {
    let args = Args::parse();
    let specs: Vec<PolicySpec> = args
        .policies
        .iter()
        .map(|p| p.parse::<PolicySpec>().map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let mut sets: Vec<(String, Vec<Trace>)> = Vec::new();
    for dir in &args.traces {
        let (mut traces, skipped) = read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if !skipped.is_empty() && !args.quiet {
            eprintln!("{}: skipped {} non-trace file(s)", dir.display(), skipped.len());
        }
        if args.limit > 0 {
            traces.truncate(args.limit);
        }
        if traces.is_empty() {
            bail!("{}: no trace files", dir.display());
        }
        sets.push((set_name(dir), traces));
    }
    let nerve = nerve_config(&args);
    let mut settings = BTreeMap::new();
    settings.insert("seed".to_string(), args.seed.to_string());
    settings.insert("device_speed".to_string(), args.device_speed.to_string());

    // Scenario inputs.
    let bones_data = match args.scenario {
        Scenario::Bones => {
            let dir = args.bones_dir.clone().unwrap_or_else(|| default_data_dir().join("abr_bones"));
            let mut d = BonesData::load(&dir, &args.enhance).with_context(|| format!("loading BONES data from {}", dir.display()))?;
            if args.device_speed != 1.0 {
                for row in &mut d.enh_ms {
                    for t in row.iter_mut() {
                        *t /= args.device_speed;
                    }
                }
            }
            settings.insert("enhance".to_string(), args.enhance.clone());
            settings.insert("exact_session".to_string(), args.exact_session.to_string());
            Some(d)
        }
        Scenario::Chunk => None,
    };
    let (ladder, qtable) = {
        let text = match &args.quality_table {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            None => DEFAULT_TABLE.to_string(),
        };
        let f: TableFile = serde_json::from_str(&text).context("parsing the quality table")?;
        settings.insert("quality_table".to_string(), f.name.clone());
        settings.insert("quality_table_method".to_string(), f.method.clone());
        let ladder = Ladder {
            bitrates_bps: f.rungs.iter().map(|r| r.bitrate_kbps * 1000.0).collect(),
            chunk: Duration::from_secs_f64(f.chunk_s),
        };
        (ladder, QualityTable::from_file(&f, args.device_speed))
    };
    let chunk_settings = ChunkSettings::default();
    let bones_settings = BonesSettings { exact_session: args.exact_session, ..BonesSettings::default() };

    let run_one = |spec: &PolicySpec, traces: &[Trace], tick: &dyn Fn()| -> Vec<TraceResult> {
        match &bones_data {
            Some(d) => run_bones(spec, d, traces, &nerve, &bones_settings, tick),
            None => run_chunk(spec, &ladder, &qtable, traces, &nerve, &chunk_settings, tick),
        }
    };

    if args.bench {
        let all: Vec<Trace> = sets.iter().flat_map(|s| s.1.iter().cloned()).collect();
        let hundred: Vec<Trace> = all.iter().cycle().take(100).cloned().collect();
        println!("scenario {:?}: time to run each policy over 100 traces (single thread)", args.scenario);
        for spec in &specs {
            let t0 = Instant::now();
            let r = run_one(spec, &hundred, &|| {});
            let dt = t0.elapsed();
            println!("{:<14} {:>8.3} s  ({} traces)", spec.name, dt.as_secs_f64(), r.len());
        }
        return Ok(());
    }

    let total: u64 = (specs.len() * sets.iter().map(|s| s.1.len()).sum::<usize>()) as u64;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}]").unwrap_or_else(|_| ProgressStyle::default_bar()));

    let mut report = Report {
        scenario: match args.scenario {
            Scenario::Chunk => "chunk".into(),
            Scenario::Bones => "bones".into(),
        },
        settings,
        policies: BTreeMap::new(),
        qoe_quality_bound: bones_data.is_none().then(|| qoe_quality_bound(&ladder, &qtable, &chunk_settings)),
        sets: BTreeMap::new(),
    };
    let summarise = |res: Vec<TraceResult>| {
        let mut p = PolicySummary::from_results(res);
        if bones_data.is_none() {
            p.bits_floor_mb = min_bits_mb(&ladder, &qtable, &chunk_settings, p.mean_quality);
        }
        p
    };
    let mut all_results: BTreeMap<String, Vec<TraceResult>> = BTreeMap::new();
    for (set, traces) in &sets {
        let mut per = BTreeMap::new();
        for spec in &specs {
            bar.set_message(format!("{set}: {}", spec.name));
            let res = run_one(spec, traces, &|| bar.inc(1));
            all_results.entry(spec.name.clone()).or_default().extend(res.iter().cloned());
            per.insert(spec.name.clone(), summarise(res));
        }
        report.sets.insert(set.clone(), per);
    }
    bar.finish_and_clear();
    for (name, res) in all_results {
        report.policies.insert(name, summarise(res));
    }
    let order: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    print!("{}", table(&report, &order));

    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (set, pols) in &report.sets {
            let key = |p: &PolicySummary, t: &TraceResult| if p.qoe_bones.is_some() { t.qoe_bones.unwrap_or(0.0) } else { t.qoe_quality };
            let series: Vec<(String, Vec<f64>)> = order
                .iter()
                .filter_map(|n| pols.get(n).map(|p| (n.clone(), p.per_trace.iter().map(|t| key(p, t)).collect())))
                .collect();
            let file = dir.join(format!("cdf_qoe_{}.png", set.replace(['/', ' '], "_")));
            plot::cdf_png(&file, &format!("{set}: QoE per trace"), "QoE", &series).map_err(anyhow::Error::msg)?;
            let lin: Vec<(String, Vec<f64>)> = order
                .iter()
                .filter_map(|n| pols.get(n).map(|p| (n.clone(), p.per_trace.iter().map(|t| t.qoe_lin).collect())))
                .collect();
            let file = dir.join(format!("cdf_qoelin_{}.png", set.replace(['/', ' '], "_")));
            plot::cdf_png(&file, &format!("{set}: QoE_lin per trace"), "QoE_lin", &lin).map_err(anyhow::Error::msg)?;
        }
        println!("plots written to {}", dir.display());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}
