//! Leave-one-family-out evaluation of the `nerve` planner (chunk scenario).
//!
//! A *family* is one network type / source of traces: each directory directly under the trace
//! root, its sub-directories (train and test sets) and archives merged, except that a directory
//! holding two or more `.tar.gz` archives (Lumos: 4G and 5G) makes each archive a family of its
//! own. For each family in turn, the planner's parameters are chosen on the *other* families
//! only, from a small explicit grid, by a stated rule ([`select`]); then every policy is scored
//! on the left-out family. Nothing here looks at the left-out family before its parameters are
//! fixed.
//!
//! Deterministic: the simulators use no randomness and the work is split over threads by index,
//! so the answer does not depend on `jobs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::chunk::{self, ChunkSettings};
use super::run::{chunk_policy, NerveConfig, PolicySpec};
use super::trace::{read_dir, Trace, TraceError};
use super::TraceResult;
use nerve_abr::energy::{EnergyModel, Network};
use nerve_abr::nerve::NerveParams;
use nerve_abr::{Ladder, QualityTable};

/// The baselines every fold reports (bitrate-only policies, their greedy-SR variants, BONES).
pub const BASELINES: &str = "bb,rb,bola,robustmpc,dynamic,bb+sr,rb+sr,bola+sr,robustmpc+sr,dynamic+sr,bones";

/// The bitrate-only baselines (no enhancement), against which "enhancement can help" is judged.
pub const BITRATE_ONLY: &[&str] = &["bb", "rb", "bola", "robustmpc", "dynamic"];

/// The default grid, chosen before any leave-one-family-out run (see the research note of
/// 2026-12-06): the planner's trust in its throughput estimate, its buffer-safety floor and the
/// bit price (with the tail it needs; price 0 = bits free).
pub const DEFAULT_GRID: &str = "safety=0.45,0.55,0.7;floor=4,8,12;bit_price=0,6";

/// Rebuffering allowed above the least-stalling baseline, seconds per session (selection rule
/// and target).
pub const STALL_SLACK_S: f64 = 0.1;

/// A family "can use enhancement" when the best greedy-SR baseline beats the best bitrate-only
/// baseline by more than this many QoE_vmaf points (measured on that family's baselines only).
pub const ENHANCE_HELPS_POINTS: f64 = 0.5;

/// On families where enhancement cannot help, nerve must be within this fraction of the best
/// baseline's QoE_vmaf.
pub const FAST_LINK_TOLERANCE: f64 = 0.005;

/// One family: a name and the directories / archives / files its traces come from.
#[derive(Clone, Debug, Serialize)]
pub struct Family {
    pub name: String,
    pub sources: Vec<PathBuf>,
}

fn is_archive(p: &Path) -> bool {
    let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    n.ends_with(".tar.gz") || n.ends_with(".tgz")
}

fn archive_stem(p: &Path) -> String {
    let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    n.trim_end_matches(".tar.gz").trim_end_matches(".tgz").to_string()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, TraceError> {
    let rd = std::fs::read_dir(dir).map_err(|source| TraceError::Io { path: dir.to_path_buf(), source })?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// The families under `root` (sorted by name): see the module documentation for the rule.
pub fn discover(root: &Path) -> Result<Vec<Family>, TraceError> {
    let mut out = Vec::new();
    for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let entries = sorted_entries(&dir)?;
        let archives: Vec<PathBuf> = entries.iter().filter(|p| p.is_file() && is_archive(p)).cloned().collect();
        let subdirs: Vec<PathBuf> = entries.iter().filter(|p| p.is_dir()).cloned().collect();
        if archives.len() >= 2 {
            // e.g. 5g_4g_lumos/{4g,5g}_lumos_sabre_json.tar.gz: one family per archive; loose
            // trace files and sub-directories, if any, stay a family of their own
            for a in &archives {
                out.push(Family { name: format!("{name}/{}", archive_stem(a)), sources: vec![a.clone()] });
            }
            // (loose files are listed one by one, so the archives are not read twice; files
            // that are not traces, such as licences and parquet, give no trace and no family)
            let mut rest: Vec<PathBuf> = entries.iter().filter(|p| p.is_file() && !is_archive(p)).cloned().collect();
            rest.extend(subdirs);
            if !rest.is_empty() {
                out.push(Family { name, sources: rest });
            }
        } else {
            // the directory itself (loose files, one archive) and its sub-directories
            let mut sources = vec![dir.clone()];
            sources.extend(subdirs);
            out.push(Family { name, sources });
        }
    }
    Ok(out)
}

/// Read a family's traces: every source in order, at most `limit` traces per source (0 = all).
/// Sources that hold no trace (a directory of sub-directories only) add nothing.
pub fn load(f: &Family, limit: usize) -> Result<Vec<Trace>, TraceError> {
    let mut all = Vec::new();
    for s in &f.sources {
        let (mut t, _skipped) = match read_dir(s) {
            Ok(x) => x,
            // a loose file that is not a trace (a licence, parquet) adds nothing
            Err(TraceError::Format { .. }) if s.is_file() => continue,
            Err(e) => return Err(e),
        };
        if limit > 0 {
            t.truncate(limit);
        }
        all.extend(t);
    }
    Ok(all)
}

/// Indices of at most `n` traces out of `len`, evenly spaced (all when `n` is 0 or `n >= len`):
/// the tuning subset of a family.
pub fn spread(len: usize, n: usize) -> Vec<usize> {
    if n == 0 || n >= len {
        return (0..len).collect();
    }
    (0..n).map(|i| i * len / n).collect()
}

/// One grid axis: a parameter name and its values.
#[derive(Clone, Debug, Serialize)]
pub struct Axis {
    pub name: String,
    pub values: Vec<f64>,
}

/// Parameter names a grid may set, as `name=v1,v2;name=...`.
pub const GRID_KEYS: &[&str] = &[
    "safety",
    "stall_weight",
    "switch_weight",
    "compute_price",
    "horizon",
    "end_buffer",
    "end_weight",
    "robust",
    "end_buffer_err",
    "bit_price",
    "tail",
    "floor",
    "fallback",
    "top_rung",
    "guard_robust",
    "guard_quantile",
    "collapse",
    "guard_safety",
];

/// Parse `safety=0.45,0.55;floor=4,8`.
pub fn parse_grid(text: &str) -> Result<Vec<Axis>, String> {
    let mut axes = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, vals) = part.split_once('=').ok_or_else(|| format!("grid axis {part:?}: expected name=v1,v2"))?;
        let name = name.trim();
        if !GRID_KEYS.contains(&name) {
            return Err(format!("grid axis {name:?}: known: {}", GRID_KEYS.join(", ")));
        }
        let values = vals
            .split(',')
            .map(|v| v.trim().parse::<f64>().map_err(|e| format!("grid axis {name}: {v:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if values.is_empty() {
            return Err(format!("grid axis {name}: no values"));
        }
        axes.push(Axis { name: name.to_string(), values });
    }
    Ok(axes)
}

/// Set one named parameter. A bit price above 0 also sets the tail to 10 chunks unless the grid
/// sets `tail` (the pair the bit-saving runs use: price 6, tail 10).
pub fn apply(p: &mut NerveParams, name: &str, v: f64) {
    match name {
        "safety" => p.safety = v,
        "stall_weight" => p.stall_weight = v,
        "switch_weight" => p.switch_weight = v,
        "compute_price" => p.compute_price = v,
        "horizon" => p.horizon = (v.max(1.0)) as usize,
        "end_buffer" => p.end_buffer_s = v,
        "end_weight" => p.end_buffer_weight = v,
        "robust" => p.robust = v,
        "end_buffer_err" => p.end_buffer_err = v,
        "bit_price" => {
            p.bit_price = v;
            p.tail = if v > 0.0 { 10 } else { 0 };
        }
        "tail" => p.tail = v.max(0.0) as usize,
        "floor" => p.floor_s = v,
        "fallback" => p.fallback_s = v,
        "top_rung" => p.top_rung = v != 0.0,
        "guard_robust" => p.guard_robust = v,
        "guard_quantile" => p.guard_quantile = v,
        "collapse" => p.collapse = v,
        "guard_safety" => p.guard_safety = v,
        _ => {}
    }
}

/// One grid cell: its settings and the parameters they give.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub settings: Vec<(String, f64)>,
    #[serde(skip)]
    pub params: NerveParams,
}

impl Cell {
    pub fn label(&self) -> String {
        self.settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

/// Every combination of the axes (the first axis slowest), applied on top of `base`.
pub fn cells(base: &NerveParams, axes: &[Axis]) -> Vec<Cell> {
    let mut out = vec![Cell { settings: Vec::new(), params: base.clone() }];
    for a in axes {
        let mut next = Vec::with_capacity(out.len() * a.values.len());
        for c in &out {
            for &v in &a.values {
                let mut c = c.clone();
                apply(&mut c.params, &a.name, v);
                c.settings.push((a.name.clone(), v));
                next.push(c);
            }
        }
        out = next;
    }
    out
}

/// What one policy scored over a set of traces (means per session).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Score {
    pub traces: usize,
    pub qoe_quality: f64,
    pub qoe_lin: f64,
    /// Mean stall per session, s.
    pub rebuffer_s: f64,
    pub mean_quality: f64,
    pub bits_mb: f64,
    pub enhanced_chunks: f64,
    pub switches: f64,
}

impl Score {
    /// Means over the results at `idx` (all when `idx` is `None`).
    pub fn of(res: &[TraceResult], idx: Option<&[usize]>) -> Self {
        let pick: Vec<&TraceResult> = match idx {
            Some(ix) => ix.iter().filter_map(|&i| res.get(i)).collect(),
            None => res.iter().collect(),
        };
        let n = pick.len();
        if n == 0 {
            return Self::default();
        }
        let m = |f: &dyn Fn(&TraceResult) -> f64| pick.iter().map(|t| f(t)).sum::<f64>() / n as f64;
        Self {
            traces: n,
            qoe_quality: m(&|t| t.qoe_quality),
            qoe_lin: m(&|t| t.qoe_lin),
            rebuffer_s: m(&|t| t.rebuffer_s),
            mean_quality: m(&|t| t.mean_quality),
            bits_mb: m(&|t| t.bits_mb),
            enhanced_chunks: m(&|t| t.enhanced_chunks as f64),
            switches: m(&|t| t.switches as f64),
        }
    }
}

/// How one cell did on the training families of a fold.
#[derive(Clone, Debug, Serialize)]
pub struct CellOnTraining {
    pub cell: usize,
    /// Mean over the training families (each family weighs the same) of nerve's QoE_vmaf.
    pub mean_qoe: f64,
    /// Largest (nerve's stall - least-stalling baseline's stall - slack) over the training
    /// families, s per session; <= 0 means the stall rule holds on every one.
    pub worst_excess_s: f64,
    pub feasible: bool,
}

/// The selection rule: among the cells whose rebuffering is at most the least-stalling
/// baseline's + [`STALL_SLACK_S`] on every training family, the one with the highest mean
/// (over training families, equally weighted) QoE_vmaf; if no cell is feasible, the one with
/// the smallest worst excess stall, then the highest mean QoE. Ties keep the earlier cell.
///
/// `nerve[c][f]` is cell `c` on training family `f`; `least_stall[f]` the least-stalling
/// baseline's stall there.
pub fn select(nerve: &[Vec<Score>], least_stall: &[f64]) -> (usize, Vec<CellOnTraining>) {
    let table: Vec<CellOnTraining> = nerve
        .iter()
        .enumerate()
        .map(|(c, fams)| {
            let k = fams.len().max(1) as f64;
            let mean_qoe = fams.iter().map(|s| s.qoe_quality).sum::<f64>() / k;
            let worst = fams.iter().zip(least_stall).map(|(s, l)| s.rebuffer_s - l - STALL_SLACK_S).fold(f64::NEG_INFINITY, f64::max);
            let worst = if worst.is_finite() { worst } else { 0.0 };
            CellOnTraining { cell: c, mean_qoe, worst_excess_s: worst, feasible: worst <= 1e-12 }
        })
        .collect();
    let mut best: Option<&CellOnTraining> = None;
    for t in &table {
        best = match best {
            None => Some(t),
            Some(b) => {
                let better = match (t.feasible, b.feasible) {
                    (true, false) => true,
                    (false, true) => false,
                    (true, true) => t.mean_qoe > b.mean_qoe,
                    (false, false) => t.worst_excess_s < b.worst_excess_s || (t.worst_excess_s == b.worst_excess_s && t.mean_qoe > b.mean_qoe),
                };
                if better { Some(t) } else { Some(b) }
            }
        };
    }
    (best.map_or(0, |b| b.cell), table)
}

/// Whether each target holds on one left-out family.
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    /// Best greedy-SR baseline minus best bitrate-only baseline, QoE_vmaf points.
    pub enhancement_gain: f64,
    pub enhancement_helps: bool,
    pub best_baseline: String,
    pub best_baseline_qoe: f64,
    pub least_stall_baseline: String,
    pub least_stall_s: f64,
    /// nerve's QoE_vmaf minus the best baseline's.
    pub qoe_lead: f64,
    /// Where enhancement helps: nerve >= best baseline; elsewhere nerve >= (1 - 0.5%) x best.
    pub quality_met: bool,
    /// nerve's stall minus (least-stalling baseline's + slack), s per session; <= 0 is met.
    pub stall_excess_s: f64,
    pub stall_met: bool,
}

/// Judge nerve against the baselines of one family.
pub fn targets(baselines: &[(String, Score)], nerve: &Score) -> Targets {
    let best_of = |pred: &dyn Fn(&str) -> bool| {
        baselines.iter().filter(|(n, _)| pred(n)).map(|(_, s)| s.qoe_quality).fold(f64::NEG_INFINITY, f64::max)
    };
    let sr = best_of(&|n| n.ends_with("+sr"));
    let plain = best_of(&|n| BITRATE_ONLY.contains(&n));
    let gain = if sr.is_finite() && plain.is_finite() { sr - plain } else { 0.0 };
    let helps = gain > ENHANCE_HELPS_POINTS;
    let (mut best_name, mut best_q) = (String::new(), f64::NEG_INFINITY);
    let (mut least_name, mut least_s) = (String::new(), f64::INFINITY);
    for (n, s) in baselines {
        if s.qoe_quality > best_q {
            (best_name, best_q) = (n.clone(), s.qoe_quality);
        }
        if s.rebuffer_s < least_s {
            (least_name, least_s) = (n.clone(), s.rebuffer_s);
        }
    }
    let quality_met = if helps { nerve.qoe_quality >= best_q } else { nerve.qoe_quality >= (1.0 - FAST_LINK_TOLERANCE) * best_q };
    let excess = nerve.rebuffer_s - least_s - STALL_SLACK_S;
    Targets {
        enhancement_gain: gain,
        enhancement_helps: helps,
        best_baseline: best_name,
        best_baseline_qoe: best_q,
        least_stall_baseline: least_name,
        least_stall_s: least_s,
        qoe_lead: nerve.qoe_quality - best_q,
        quality_met,
        stall_excess_s: excess,
        stall_met: excess <= 1e-12,
    }
}

/// Map `f` over `0..n` on `jobs` threads; results in index order (so deterministic).
pub fn par_map<T: Send>(n: usize, jobs: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    let jobs = jobs.clamp(1, n.max(1));
    if jobs == 1 {
        return (0..n).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    slots.into_iter().filter_map(|m| m.into_inner().ok().flatten()).collect()
}

/// Inputs of a run.
pub struct Setup<'a> {
    pub ladder: &'a Ladder,
    pub table: &'a QualityTable,
    pub settings: &'a ChunkSettings,
    /// The baselines scored on every fold.
    pub baselines: Vec<PolicySpec>,
    /// Parameters the grid starts from (`NerveParams::chunk()`).
    pub base: NerveParams,
    pub axes: Vec<Axis>,
    /// Traces per family used for choosing parameters (evenly spaced; 0 = all).
    pub tune_limit: usize,
    pub jobs: usize,
}

/// One left-out family's result.
#[derive(Clone, Debug, Serialize)]
pub struct Fold {
    pub family: String,
    pub traces: usize,
    pub training_families: Vec<String>,
    pub chosen_cell: usize,
    pub chosen: Vec<(String, f64)>,
    /// Every cell on the training families (the selection table).
    pub selection: Vec<CellOnTraining>,
    /// Every policy on the left-out family, in report order, nerve last.
    pub policies: Vec<(String, Score)>,
    pub targets: Targets,
}

/// The whole evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct LofoReport {
    pub root: PathBuf,
    pub families: Vec<Family>,
    pub family_traces: Vec<usize>,
    pub tune_traces: Vec<usize>,
    pub grid: Vec<Axis>,
    pub cells: Vec<Cell>,
    /// `grid_scores[cell][family]`: nerve with each cell on each family's tuning subset.
    pub grid_scores: Vec<Vec<Score>>,
    /// The least-stalling baseline's stall on each family's tuning subset, s per session.
    pub tune_least_stall_s: Vec<f64>,
    /// The cell the same rule picks on all families together (a candidate for the shipped
    /// default; not used by any fold).
    pub all_families_cell: usize,
    pub all_families_choice: Vec<(String, f64)>,
    pub rule: String,
    pub stall_slack_s: f64,
    pub enhance_helps_points: f64,
    pub fast_link_tolerance: f64,
    pub folds: Vec<Fold>,
}

/// The selection rule in words (written into the report).
pub const RULE: &str = "among grid cells whose mean rebuffering per session is at most the least-stalling baseline's + 0.1 s on every training family, the highest mean (families weighted equally) QoE_vmaf over the training families; if none, the smallest worst excess stall, then the highest mean QoE_vmaf; ties keep the earlier cell. Scored on each training family's tuning subset.";

/// Run the evaluation over `families` (already loaded). `tick` is called once per simulated
/// (policy, trace) pair; the total is [`work`].
pub fn run(root: &Path, families: &[(Family, Vec<Trace>)], setup: &Setup<'_>, tick: &(dyn Fn() + Sync)) -> LofoReport {
    let cells = cells(&setup.base, &setup.axes);
    let tune: Vec<Vec<usize>> = families.iter().map(|(_, t)| spread(t.len(), setup.tune_limit)).collect();
    let nerve_spec: PolicySpec = PolicySpec { name: "nerve".into(), base: "nerve".into(), greedy_sr: false };
    // Each family's traces are played on its own network's radio (nerve_abr::energy).
    let settings: Vec<ChunkSettings> = families
        .iter()
        .map(|(f, _)| {
            let network = f.sources.first().map_or_else(|| Network::of_family(&f.name), |p| Network::of_path(p));
            ChunkSettings { energy: EnergyModel::new(network), ..setup.settings.clone() }
        })
        .collect();
    let run_one = |spec: &PolicySpec, params: &NerveParams, f: usize, t: &Trace| -> TraceResult {
        let cfg = NerveConfig { params: params.clone(), ..NerveConfig::default() };
        // the baselines and nerve build without fail (only ppo can fail, and it is not among them:
        // the CLI refuses it in --lofo-baselines)
        let (mut p, mode) = chunk_policy(spec, setup.table, &cfg).unwrap_or_else(|e| unreachable!("{e}"));
        let r = chunk::run(setup.ladder, setup.table, t, p.as_mut(), mode, &settings[f]);
        tick();
        r
    };

    // 1. every baseline on every trace of every family
    let trace_ix: Vec<(usize, usize)> = families.iter().enumerate().flat_map(|(f, (_, t))| (0..t.len()).map(move |i| (f, i))).collect();
    let base_jobs: Vec<(usize, usize, usize)> =
        (0..setup.baselines.len()).flat_map(|b| trace_ix.iter().map(move |&(f, i)| (b, f, i))).collect();
    let flat = par_map(base_jobs.len(), setup.jobs, &|j| {
        let (b, f, i) = base_jobs[j];
        run_one(&setup.baselines[b], &setup.base, f, &families[f].1[i])
    });
    // base_res[b][f] = per-trace results
    let mut base_res: Vec<Vec<Vec<TraceResult>>> = vec![vec![Vec::new(); families.len()]; setup.baselines.len()];
    for ((b, f, _), r) in base_jobs.iter().zip(flat) {
        base_res[*b][*f].push(r);
    }

    // 2. every cell on every family's tuning subset
    let grid_jobs: Vec<(usize, usize, usize)> =
        (0..cells.len()).flat_map(|c| tune.iter().enumerate().flat_map(move |(f, ix)| ix.iter().map(move |&i| (c, f, i)))).collect();
    let flat = par_map(grid_jobs.len(), setup.jobs, &|j| {
        let (c, f, i) = grid_jobs[j];
        run_one(&nerve_spec, &cells[c].params, f, &families[f].1[i])
    });
    let mut grid_res: Vec<Vec<Vec<TraceResult>>> = vec![vec![Vec::new(); families.len()]; cells.len()];
    for ((c, f, _), r) in grid_jobs.iter().zip(flat) {
        grid_res[*c][*f].push(r);
    }

    // 3. per fold: choose on the other families, score on this one
    let grid_scores: Vec<Vec<Score>> = grid_res.iter().map(|fams| fams.iter().map(|r| Score::of(r, None)).collect()).collect();
    let tune_least: Vec<f64> = (0..families.len())
        .map(|f| (0..setup.baselines.len()).map(|b| Score::of(&base_res[b][f], Some(&tune[f])).rebuffer_s).fold(f64::INFINITY, f64::min))
        .collect();
    let mut chosen_per_fold = Vec::new();
    let mut selections = Vec::new();
    for held in 0..families.len() {
        let train: Vec<usize> = (0..families.len()).filter(|&f| f != held).collect();
        let least: Vec<f64> = train.iter().map(|&f| tune_least[f]).collect();
        let nerve: Vec<Vec<Score>> = grid_scores.iter().map(|fams| train.iter().map(|&f| fams[f]).collect()).collect();
        let (chosen, table) = select(&nerve, &least);
        chosen_per_fold.push(chosen);
        selections.push(table);
    }
    let (all_cell, _) = select(&grid_scores, &tune_least);
    // the chosen cell on the whole left-out family (reuses the grid run when it covered it all)
    let eval_jobs: Vec<(usize, usize)> = (0..families.len())
        .filter(|&f| tune[f].len() < families[f].1.len())
        .flat_map(|f| (0..families[f].1.len()).map(move |i| (f, i)))
        .collect();
    let flat = par_map(eval_jobs.len(), setup.jobs, &|j| {
        let (f, i) = eval_jobs[j];
        run_one(&nerve_spec, &cells[chosen_per_fold[f]].params, f, &families[f].1[i])
    });
    let mut eval_res: Vec<Vec<TraceResult>> = vec![Vec::new(); families.len()];
    for ((f, _), r) in eval_jobs.iter().zip(flat) {
        eval_res[*f].push(r);
    }

    let mut folds = Vec::new();
    for (held, ((fam, traces), (chosen, selection))) in families.iter().zip(chosen_per_fold.iter().zip(selections)).enumerate() {
        let nerve = if tune[held].len() < traces.len() { Score::of(&eval_res[held], None) } else { Score::of(&grid_res[*chosen][held], None) };
        let baselines: Vec<(String, Score)> =
            setup.baselines.iter().enumerate().map(|(b, s)| (s.name.clone(), Score::of(&base_res[b][held], None))).collect();
        let targets = targets(&baselines, &nerve);
        let mut policies = baselines;
        policies.push(("nerve".into(), nerve));
        folds.push(Fold {
            family: fam.name.clone(),
            traces: traces.len(),
            training_families: families.iter().enumerate().filter(|(f, _)| *f != held).map(|(_, (x, _))| x.name.clone()).collect(),
            chosen_cell: *chosen,
            chosen: cells[*chosen].settings.clone(),
            selection,
            policies,
            targets,
        });
    }
    LofoReport {
        root: root.to_path_buf(),
        families: families.iter().map(|(f, _)| f.clone()).collect(),
        family_traces: families.iter().map(|(_, t)| t.len()).collect(),
        tune_traces: tune.iter().map(Vec::len).collect(),
        grid: setup.axes.clone(),
        grid_scores,
        tune_least_stall_s: tune_least,
        all_families_cell: all_cell,
        all_families_choice: cells.get(all_cell).map(|c| c.settings.clone()).unwrap_or_default(),
        cells,
        rule: RULE.into(),
        stall_slack_s: STALL_SLACK_S,
        enhance_helps_points: ENHANCE_HELPS_POINTS,
        fast_link_tolerance: FAST_LINK_TOLERANCE,
        folds,
    }
}

/// Simulated (policy, trace) pairs a run takes at most (for a progress bar): baselines on every
/// trace, every cell on every tuning subset, the chosen cell on each family not fully tuned on.
pub fn work(families: &[(Family, Vec<Trace>)], setup: &Setup<'_>) -> u64 {
    let n_cells = cells(&setup.base, &setup.axes).len();
    let all: usize = families.iter().map(|(_, t)| t.len()).sum();
    let tuned: usize = families.iter().map(|(_, t)| spread(t.len(), setup.tune_limit).len()).sum();
    let eval: usize = families.iter().map(|(_, t)| t.len()).filter(|&n| spread(n, setup.tune_limit).len() < n).sum();
    (setup.baselines.len() * all + n_cells * tuned + eval) as u64
}

/// The human summary: one block per left-out family.
pub fn summary(r: &LofoReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "rule: {}\nthe same rule on all families together picks: {}\n",
        r.rule,
        r.cells.get(r.all_families_cell).map(Cell::label).unwrap_or_default()
    ));
    for fold in &r.folds {
        let t = &fold.targets;
        out.push_str(&format!(
            "\nleft out: {} ({} traces; parameters chosen on {} other families)\n",
            fold.family,
            fold.traces,
            fold.training_families.len()
        ));
        out.push_str(&format!("  chosen: {}\n", r.cells.get(fold.chosen_cell).map(Cell::label).unwrap_or_default()));
        out.push_str(&format!("  {:<14} {:>9} {:>9} {:>8} {:>9}\n", "policy", "QoE_vmaf", "rebuf_s", "VMAF", "Mbit"));
        for (n, s) in &fold.policies {
            out.push_str(&format!("  {:<14} {:>9.2} {:>9.3} {:>8.2} {:>9.1}\n", n, s.qoe_quality, s.rebuffer_s, s.mean_quality, s.bits_mb));
        }
        out.push_str(&format!(
            "  enhancement {} (best +sr - best bitrate-only = {:+.2}); quality: nerve {:+.2} vs {} -> {}; stall: {:+.3} s vs {} + {} s -> {}\n",
            if t.enhancement_helps { "helps" } else { "cannot help" },
            t.enhancement_gain,
            t.qoe_lead,
            t.best_baseline,
            if t.quality_met { "met" } else { "NOT met" },
            t.stall_excess_s,
            t.least_stall_baseline,
            r.stall_slack_s,
            if t.stall_met { "met" } else { "NOT met" },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(q: f64, stall: f64) -> Score {
        Score { traces: 1, qoe_quality: q, rebuffer_s: stall, ..Score::default() }
    }

    #[test]
    fn grid_cells_are_the_product_of_the_axes() {
        let axes = parse_grid("safety=0.5,0.6;floor=4,8,12").unwrap_or_default();
        let c = cells(&NerveParams::chunk(), &axes);
        assert_eq!(c.len(), 6);
        assert_eq!(c[0].label(), "safety=0.5 floor=4");
        assert_eq!(c[5].params.safety, 0.6);
        assert_eq!(c[5].params.floor_s, 12.0);
        assert!(parse_grid("magic=1").is_err());
        assert!(parse_grid("safety=x").is_err());
        // a bit price brings its tail
        let p = cells(&NerveParams::chunk(), &parse_grid("bit_price=0,6").unwrap_or_default());
        assert_eq!((p[0].params.tail, p[1].params.tail), (0, 10));
    }

    #[test]
    fn selection_table() {
        // (cells x training families) of (QoE, stall), least-stalling baselines 0.0 and 1.0 s
        let least = [0.0, 1.0];
        // (cells x training families of (QoE, stall), chosen cell, why)
        type Case<'a> = (&'a [[(f64, f64); 2]], usize, &'a str);
        let cases: &[Case] = &[
            // the higher-QoE cell stalls 0.2 s over on family 0: the feasible one wins
            (&[[(80.0, 0.05), (70.0, 1.0)], [(90.0, 0.2), (75.0, 1.0)]], 0, "feasible first"),
            // both feasible: the higher mean QoE
            (&[[(80.0, 0.05), (70.0, 1.0)], [(82.0, 0.1), (70.0, 1.1)]], 1, "best mean QoE"),
            // none feasible: the smallest worst excess, whatever its QoE
            (&[[(95.0, 0.9), (90.0, 1.0)], [(60.0, 0.3), (60.0, 1.0)]], 1, "least excess"),
            // a tie keeps the earlier cell
            (&[[(80.0, 0.0), (70.0, 1.0)], [(80.0, 0.0), (70.0, 1.0)]], 0, "tie"),
        ];
        for (grid, want, why) in cases {
            let nerve: Vec<Vec<Score>> = grid.iter().map(|fams| fams.iter().map(|&(q, s)| score(q, s)).collect()).collect();
            let (got, table) = select(&nerve, &least);
            assert_eq!(got, *want, "{why}: {table:?}");
        }
    }

    #[test]
    fn targets_distinguish_fast_links() {
        let slow = [("bola".to_string(), score(60.0, 0.1)), ("bola+sr".to_string(), score(68.0, 0.1)), ("rb".to_string(), score(65.0, 0.5))];
        let t = targets(&slow, &score(68.5, 0.15));
        assert!(t.enhancement_helps && t.quality_met && t.stall_met, "{t:?}");
        assert_eq!(t.best_baseline, "bola+sr");
        let t = targets(&slow, &score(67.9, 0.25));
        assert!(!t.quality_met && !t.stall_met, "{t:?}");
        // fast link: +sr adds nothing, so 0.5% below the best is allowed
        let fast = [("rb".to_string(), score(96.0, 0.0)), ("rb+sr".to_string(), score(96.1, 0.0))];
        let t = targets(&fast, &score(95.7, 0.05));
        assert!(!t.enhancement_helps && t.quality_met && t.stall_met, "{t:?}");
        assert!(!targets(&fast, &score(95.5, 0.0)).quality_met);
    }

    #[test]
    fn spread_is_even_and_par_map_keeps_order() {
        assert_eq!(spread(10, 3), vec![0, 3, 6]);
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        assert_eq!(spread(4, 0), vec![0, 1, 2, 3]);
        let v = par_map(50, 3, &|i| i * i);
        assert_eq!(v, (0..50).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn families_merge_splits_and_separate_archives() {
        let root = std::env::temp_dir().join(format!("nerveabr-lofo-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mk = |p: &Path| std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{e}"));
        mk(&root.join("a/train"));
        mk(&root.join("a/test"));
        mk(&root.join("b"));
        mk(&root.join("c"));
        std::fs::write(root.join("b/x.tar.gz"), b"").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("c/one.tar.gz"), b"").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("c/two.tgz"), b"").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(root.join("README.md"), b"x").unwrap_or_else(|e| panic!("{e}"));
        let f = discover(&root).unwrap_or_default();
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c/one", "c/two"]);
        assert_eq!(f[0].sources.len(), 3, "the directory and its two splits: {:?}", f[0].sources);
        let _ = std::fs::remove_dir_all(&root);
    }
}
