//! nerveabr-sim: run ABR policies over throughput traces and compare them.
//!
//! ```text
//! nerveabr-sim --traces DIR --policies bb,rb,bola,robustmpc,nerve --json out.json
//! nerveabr-sim --scenario bones --traces DIR --policies bola,mpc,dynamic,bba,nerve --json out.json
//! nerveabr-sim --leave-one-family-out ../shared/data/traces --json lofo.json --plots results/
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use nerve_abr::energy::{EnergyModel, Network};
use nerve_abr::nerve::{NerveParams, Preference};
use nerve_abr::quality::TableFile;
use nerve_abr::{Ladder, QualityTable};
use nerveabr_sim::bones::Settings as BonesSettings;
use nerveabr_sim::bones_data::BonesData;
use nerveabr_sim::chunk::{min_bits_mb, qoe_quality_bound, ChunkSettings};
use nerveabr_sim::report::{table, PolicySummary, Report};
use nerveabr_sim::run::{default_data_dir, run_bones, run_chunk, NerveConfig, PolicySpec};
use nerveabr_sim::trace::{read_dir, Trace};
use nerveabr_sim::{lofo, plot, TraceResult};

/// The quality table used without `--quality-table`: the element's (measured, all content).
const DEFAULT_TABLE: &str = nerve_abr::DEFAULT_TABLE;

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
    #[arg(long, required_unless_present = "leave_one_family_out")]
    traces: Vec<PathBuf>,
    /// Leave-one-family-out evaluation of nerve (chunk scenario) over the trace families under
    /// ROOT (each directory a family, train and test sets merged; a directory of several
    /// .tar.gz archives gives one family per archive): for each family, nerve's parameters are
    /// chosen from --lofo-grid on the other families only, then every policy is scored on it.
    /// Writes --json and, with --plots, leave_one_family_out.png.
    #[arg(long, value_name = "ROOT", conflicts_with_all = ["traces", "bench"])]
    leave_one_family_out: Option<PathBuf>,
    /// Leave-one-family-out grid: `name=v1,v2;name=...` over nerve's parameters (safety,
    /// stall_weight, switch_weight, compute_price, horizon, end_buffer, end_weight, robust,
    /// end_buffer_err, bit_price (a price > 0 brings tail 10), tail, floor, fallback, top_rung),
    /// applied on top of the chunk parameters (and any --nerve-* option).
    #[arg(long, default_value = nerveabr_sim::lofo::DEFAULT_GRID)]
    lofo_grid: String,
    /// Leave-one-family-out: at most this many traces per family (evenly spaced) to choose the
    /// parameters on; every trace is still scored on the left-out family. 0 = all.
    #[arg(long, default_value_t = 0)]
    lofo_tune_limit: usize,
    /// Leave-one-family-out: the baselines reported on every family.
    #[arg(long, default_value = nerveabr_sim::lofo::BASELINES, value_delimiter = ',')]
    lofo_baselines: Vec<String>,
    /// Worker threads (leave-one-family-out mode); 0 = the machine's cores.
    #[arg(long, default_value_t = 0)]
    jobs: usize,
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
    /// ppo: the actor's ONNX file (default: models/abr/ppo.onnx of the model directories).
    #[arg(long)]
    ppo_model: Option<PathBuf>,
    /// ppo: without the nerve planner's stall shield (on by default).
    #[arg(long)]
    ppo_unshielded: bool,
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
    /// nerve: quality points per megabit charged on top at battery-saver (and on a low battery);
    /// with bits priced the top-rung shortcut is off.
    #[arg(long)]
    nerve_saver_bit_price: Option<f64>,
    /// nerve: quality points per joule of enhancement energy at battery-saver (and on a low
    /// battery): below it the saver stops enhancing.
    #[arg(long)]
    nerve_saver_energy_price: Option<f64>,
    /// nerve: chunks after the horizon over which the plan's last choice is assumed to continue.
    #[arg(long)]
    nerve_tail: Option<usize>,
    /// nerve: buffer-safety floor, s (0 = off: stalls only priced).
    #[arg(long)]
    nerve_floor: Option<f64>,
    /// nerve: take the top rung whenever it is affordable (true/false).
    #[arg(long, action = clap::ArgAction::Set)]
    nerve_top_rung: Option<bool>,
    /// nerve: below this buffer (s), while it falls, at most BBA-0's rung (0 = off).
    #[arg(long)]
    nerve_fallback: Option<f64>,
    /// nerve: the floor's guard estimate divides the harmonic mean by (1 + this x the largest
    /// recent prediction error) (0 = the planning estimate only).
    #[arg(long)]
    nerve_guard_robust: Option<f64>,
    /// nerve: also cap the guard estimate at this quantile (0..1) of the session's measured
    /// throughputs (0 = off).
    #[arg(long)]
    nerve_guard_quantile: Option<f64>,
    /// nerve: survival share: each planned download must finish before the buffer empties if the
    /// link falls to this share of the guard estimate (0 = off).
    #[arg(long)]
    nerve_collapse: Option<f64>,
    /// nerve: share of the throughput estimate the guard trusts, independent of --nerve-safety
    /// (0 = the planning estimate).
    #[arg(long)]
    nerve_guard_safety: Option<f64>,
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
    if let Some(x) = a.nerve_saver_bit_price {
        p.saver_bit_price = x;
    }
    if let Some(x) = a.nerve_saver_energy_price {
        p.saver_energy_price = x;
    }
    if let Some(x) = a.nerve_tail {
        p.tail = x;
    }
    if let Some(x) = a.nerve_floor {
        p.floor_s = x;
    }
    if let Some(x) = a.nerve_top_rung {
        p.top_rung = x;
    }
    if let Some(x) = a.nerve_fallback {
        p.fallback_s = x;
    }
    if let Some(x) = a.nerve_guard_robust {
        p.guard_robust = x;
    }
    if let Some(x) = a.nerve_guard_quantile {
        p.guard_quantile = x;
    }
    if let Some(x) = a.nerve_collapse {
        p.collapse = x;
    }
    if let Some(x) = a.nerve_guard_safety {
        p.guard_safety = x;
    }
    NerveConfig { params: p, preference: a.preference, battery: a.battery, ppo_model: a.ppo_model.clone(), ppo_shield: !a.ppo_unshielded }
}

/// The chunk scenario's ladder and quality table (--quality-table, or the shipped default).
fn load_table(args: &Args, settings: &mut BTreeMap<String, String>) -> Result<(Ladder, QualityTable)> {
    let text = match &args.quality_table {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => DEFAULT_TABLE.to_string(),
    };
    let f = TableFile::parse(&text).context("reading the quality table")?;
    settings.insert("quality_table".to_string(), f.name.clone());
    settings.insert("quality_table_method".to_string(), f.method.clone());
    let ladder = Ladder { bitrates_bps: f.rungs.iter().map(|r| r.bitrate_kbps * 1000.0).collect(), chunk: Duration::from_secs_f64(f.chunk_s) };
    Ok((ladder, QualityTable::from_file(&f, args.device_speed)))
}

/// `--leave-one-family-out ROOT`: see `nerveabr_sim::lofo`.
fn leave_one_family_out(args: &Args, root: &Path) -> Result<()> {
    if args.scenario != Scenario::Chunk {
        bail!("--leave-one-family-out runs the chunk scenario only");
    }
    let mut settings = BTreeMap::new();
    let (ladder, qtable) = load_table(args, &mut settings)?;
    let baselines: Vec<PolicySpec> = args.lofo_baselines.iter().map(|p| p.parse::<PolicySpec>().map_err(anyhow::Error::msg)).collect::<Result<_>>()?;
    if baselines.iter().any(|b| b.base == "nerve") {
        bail!("--lofo-baselines: nerve is scored separately");
    }
    if baselines.iter().any(|b| b.base == "ppo") {
        // a learned policy is trained outside the folds (nerve_learning.rl scores it per family)
        bail!("--lofo-baselines: ppo is not a tuned baseline");
    }
    let axes = lofo::parse_grid(&args.lofo_grid).map_err(anyhow::Error::msg)?;
    let mut families = Vec::new();
    for f in lofo::discover(root).with_context(|| format!("reading {}", root.display()))? {
        let traces = lofo::load(&f, args.limit).with_context(|| format!("reading family {}", f.name))?;
        if traces.is_empty() {
            if !args.quiet {
                eprintln!("{}: no traces, not a family", f.name);
            }
            continue;
        }
        families.push((f, traces));
    }
    if families.len() < 2 {
        bail!("{}: {} trace famil(ies) found, need at least 2", root.display(), families.len());
    }
    let jobs = if args.jobs > 0 { args.jobs } else { std::thread::available_parallelism().map_or(1, |n| n.get()) };
    let settings_chunk = ChunkSettings::default();
    let setup = lofo::Setup {
        ladder: &ladder,
        table: &qtable,
        settings: &settings_chunk,
        baselines,
        base: nerve_config(args).params,
        axes,
        tune_limit: args.lofo_tune_limit,
        jobs,
    };
    let n_cells = lofo::cells(&setup.base, &setup.axes).len();
    if !args.quiet {
        for (f, t) in &families {
            eprintln!("family {:<40} {:>4} traces (tuning on {})", f.name, t.len(), lofo::spread(t.len(), setup.tune_limit).len());
        }
        eprintln!("{} grid cells, {} baselines, {} threads", n_cells, setup.baselines.len(), jobs);
    }
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(lofo::work(&families, &setup)) };
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} runs [{elapsed_precise} / eta {eta}]").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let t0 = Instant::now();
    let report = lofo::run(root, &families, &setup, &|| bar.inc(1));
    bar.finish_and_clear();
    print!("{}", lofo::summary(&report));
    println!("\n{} families, {} grid cells, {:.1} s", families.len(), n_cells, t0.elapsed().as_secs_f64());
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let panels: Vec<plot::Panel> = report
            .folds
            .iter()
            .map(|f| {
                let t = &f.targets;
                let bar_q = if t.enhancement_helps { t.best_baseline_qoe } else { (1.0 - report.fast_link_tolerance) * t.best_baseline_qoe };
                plot::Panel {
                    title: format!(
                        "{}: nerve {:+.2} QoE vs best, stall {:+.3} s vs limit",
                        f.family.rsplit('/').next().unwrap_or_default(),
                        t.qoe_lead,
                        t.stall_excess_s
                    ),
                    points: f.policies.iter().map(|(n, s)| (n.clone(), s.rebuffer_s, s.qoe_quality, n == "nerve")).collect(),
                    x_limit: Some(t.least_stall_s + report.stall_slack_s),
                    y_lines: vec![bar_q],
                }
            })
            .collect();
        let file = dir.join("leave_one_family_out.png");
        plot::scatter_panels_png(&file, "rebuffering, s per session", "QoE_vmaf", &panels).map_err(anyhow::Error::msg)?;
        println!("plot written to {}", file.display());
    }
    if let Some(path) = &args.json {
        let mut v = serde_json::to_value(&report)?;
        v["settings"] = serde_json::to_value(&settings)?;
        v["limit_per_source"] = args.limit.into();
        v["tune_limit"] = args.lofo_tune_limit.into();
        std::fs::write(path, serde_json::to_string_pretty(&v)?).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

fn set_name(dir: &Path) -> String {
    let comps: Vec<String> = dir.components().rev().take(2).map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    comps.into_iter().rev().collect::<Vec<_>>().join("/")
}

fn do_main() -> Result<()> {
    let args = Args::parse();
    if let Some(root) = &args.leave_one_family_out {
        return leave_one_family_out(&args, root);
    }
    let specs: Vec<PolicySpec> = args
        .policies
        .iter()
        .map(|p| p.parse::<PolicySpec>().map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    let mut sets: Vec<(String, Vec<Trace>)> = Vec::new();
    // The radio of each set's network, from its path (the energy model's radio).
    let mut networks: BTreeMap<String, Network> = BTreeMap::new();
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
        networks.insert(set_name(dir), Network::of_path(dir));
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
    let (ladder, qtable) = load_table(&args, &mut settings)?;
    // battery saver downloads in bursts (nerve_abr::energy::resume_below_s), whatever the policy
    let chunk_settings = ChunkSettings { resume_below_s: nerve_abr::energy::resume_below_s(args.preference), ..ChunkSettings::default() };
    let bones_settings = BonesSettings { exact_session: args.exact_session, ..BonesSettings::default() };

    if bones_data.is_some() && specs.iter().any(|s| s.base == "ppo") {
        bail!("policy ppo runs in the chunk scenario only (its features are the chunk scenario's)");
    }
    let run_one = |spec: &PolicySpec, network: Network, traces: &[Trace], tick: &dyn Fn()| -> Result<Vec<TraceResult>> {
        match &bones_data {
            Some(d) => Ok(run_bones(spec, d, traces, &nerve, &bones_settings, tick)),
            None => {
                let s = ChunkSettings { energy: EnergyModel::new(network), ..chunk_settings.clone() };
                run_chunk(spec, &ladder, &qtable, traces, &nerve, &s, tick).map_err(anyhow::Error::msg)
            }
        }
    };

    if args.bench {
        let all: Vec<Trace> = sets.iter().flat_map(|s| s.1.iter().cloned()).collect();
        let hundred: Vec<Trace> = all.iter().cycle().take(100).cloned().collect();
        println!("scenario {:?}: time to run each policy over 100 traces (single thread)", args.scenario);
        for spec in &specs {
            let t0 = Instant::now();
            let r = run_one(spec, Network::Lte, &hundred, &|| {})?;
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
            let network = networks.get(set).copied().unwrap_or(Network::Lte);
            let res = run_one(spec, network, traces, &|| bar.inc(1))?;
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
