//! The Python module `nerveabr_py` (pyo3): traces, the environment, and the simulator's
//! policies for comparison. Observations are lists of floats (the gymnasium wrapper makes them
//! numpy arrays); see `Env.layout()` for what each entry is.

use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use nerve_abr::energy::Network;
use nerve_abr::learned::{training_table, Actor, Features, Ppo, Shield, HISTORY};
use nerve_abr::nerve::Preference;
use nerve_abr::quality::TableFile;
use nerve_abr::spec::{planner, EnhanceMode};
use nerve_abr::{Decision, DEFAULT_TABLE};
use nerveabr_sim::lofo;
use nerveabr_sim::trace::{read_dir, Trace};
use nerveabr_sim::TraceResult;

use crate::env::{chunk_nerve, Augment, Draw, Env, EnvConfig, NetTrace, StepOut};

fn value_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A throughput trace: `times` (s, increasing) and `bps` (bit/s; `bps[i]` holds on the interval
/// ending at `times[i]`), and the radio it was measured on (`network`: 3g, lte, 5g, wifi).
#[pyclass(name = "Trace", module = "nerveabr_py")]
#[derive(Clone)]
struct PyTrace {
    inner: NetTrace,
}

#[pymethods]
impl PyTrace {
    #[new]
    #[pyo3(signature = (name, times, bps, network = "lte"))]
    fn new(name: String, times: Vec<f64>, bps: Vec<f64>, network: &str) -> PyResult<Self> {
        if times.len() != bps.len() {
            return Err(value_err(format!("{} times for {} throughputs", times.len(), bps.len())));
        }
        let text: String = times.iter().zip(&bps).map(|(t, b)| format!("{t} {}\n", b / 1e6)).collect();
        // the simulator's own reader checks it (times not going back, finite, not negative)
        let mut trace = Trace::parse(&name, &text).map_err(value_err)?;
        trace.points = times.into_iter().zip(bps).collect();
        Ok(Self { inner: NetTrace { trace, network: Network::parse(network).map_err(value_err)? } })
    }

    #[getter]
    fn name(&self) -> String {
        self.inner.trace.name.clone()
    }

    #[getter]
    fn times(&self) -> Vec<f64> {
        self.inner.trace.points.iter().map(|p| p.0).collect()
    }

    #[getter]
    fn bps(&self) -> Vec<f64> {
        self.inner.trace.points.iter().map(|p| p.1).collect()
    }

    #[getter]
    fn network(&self) -> &'static str {
        self.inner.network.name()
    }

    fn __repr__(&self) -> String {
        format!("Trace({:?}, {} points, {})", self.inner.trace.name, self.inner.trace.points.len(), self.inner.network.name())
    }
}

/// Traces under `path` (a directory, a .tar.gz archive or a file), each on the radio its path
/// names (`Network::of_path`, as `nerveabr-sim` assigns it).
#[pyfunction]
fn load(path: PathBuf) -> PyResult<Vec<PyTrace>> {
    let network = Network::of_path(&path);
    let (traces, _skipped) = read_dir(&path).map_err(value_err)?;
    Ok(traces.into_iter().map(|trace| PyTrace { inner: NetTrace { trace, network } }).collect())
}

/// The trace families under `root` by the leave-one-family-out rule of `nerveabr-sim`
/// (`lofo::discover`): a list of (family name, its traces).
#[pyfunction]
#[pyo3(signature = (root, limit = 0))]
fn families(root: PathBuf, limit: usize) -> PyResult<Vec<(String, Vec<PyTrace>)>> {
    let mut out = Vec::new();
    for f in lofo::discover(&root).map_err(value_err)? {
        let network = f.sources.first().map_or_else(|| Network::of_family(&f.name), |p| Network::of_path(p));
        let traces = lofo::load(&f, limit).map_err(value_err)?;
        if traces.is_empty() {
            continue;
        }
        out.push((f.name.clone(), traces.into_iter().map(|trace| PyTrace { inner: NetTrace { trace, network } }).collect()));
    }
    Ok(out)
}

fn table_file(table: Option<&Path>) -> PyResult<TableFile> {
    match table {
        None => TableFile::parse(DEFAULT_TABLE).map_err(value_err),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| value_err(format!("{}: {e}", p.display())))?;
            TableFile::parse(&text).map_err(|e| value_err(format!("{}: {e}", p.display())))
        }
    }
}

/// A number or a (lo, hi) range drawn per episode.
fn draw(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Draw> {
    if let Ok(x) = v.extract::<f64>() {
        return Ok(Draw::Fixed(x));
    }
    if let Ok((lo, hi)) = v.extract::<(f64, f64)>() {
        return Ok(Draw::Uniform(lo, hi));
    }
    Err(value_err(format!("{what}: a number or a (lo, hi) pair")))
}

fn preference_of(v: &Bound<'_, PyAny>) -> PyResult<Preference> {
    if let Ok(w) = v.extract::<f64>() {
        return Ok(Preference::of_weight(w));
    }
    let s: String = v.extract()?;
    s.parse().map_err(value_err)
}

fn result_dict<'py>(py: Python<'py>, r: &TraceResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("trace", &r.trace)?;
    d.set_item("qoe_quality", r.qoe_quality)?;
    d.set_item("qoe_lin", r.qoe_lin)?;
    d.set_item("mean_quality", r.mean_quality)?;
    d.set_item("rebuffer_s", r.rebuffer_s)?;
    d.set_item("startup_s", r.startup_s)?;
    d.set_item("play_s", r.play_s)?;
    d.set_item("bits_mb", r.bits_mb)?;
    d.set_item("switches", r.switches)?;
    d.set_item("enhanced_chunks", r.enhanced_chunks)?;
    d.set_item("compute_s", r.compute_s)?;
    d.set_item("energy_j", r.energy_j)?;
    d.set_item("battery_pct", r.battery_pct)?;
    Ok(d)
}

/// A Python callable `obs -> action index` as the learned policy's actor (one-hot scores).
struct PyActor {
    f: Py<PyAny>,
    actions: usize,
}

impl Actor for PyActor {
    fn scores(&mut self, input: &[f32]) -> Result<Vec<f32>, String> {
        Python::attach(|py| {
            let a: usize = self.f.call1(py, (input.to_vec(),)).and_then(|r| r.extract(py)).map_err(|e| e.to_string())?;
            if a >= self.actions {
                return Err(format!("action {a} out of 0..{}", self.actions));
            }
            let mut s = vec![0.0f32; self.actions];
            s[a] = 1.0;
            Ok(s)
        })
    }
}

/// The chunk scenario of `nerveabr-sim` as an environment. One episode = one session on one
/// trace: `reset` plays the fixed first chunk, each `step` one more; the episode ends after
/// `chunks - 1` steps.
///
/// traces: list of Trace; table: quality-table JSON path (None = the shipped generic table);
/// preference: weight 0 (quality) .. 1 (battery saver), a number or a (lo, hi) range drawn per
/// episode; battery: None (mains), a level 0..1 or a (lo, hi) range; scale, noise,
/// random_start: trace augmentation per episode; energy_price: VMAF points per joule at weight
/// 1; reward_scale: reward = reward_scale x (QoE points - weight x energy_price x joules);
/// teacher: a named policy (`nerve`, `bones`) whose choice for the next chunk comes in every
/// `info` as `teacher_action`, for imitation; buffer_cap: the player's buffer cap in seconds, a
/// number or a (lo, hi) range drawn per episode, log-uniformly (default 60); chunk_choices: chunk durations (s)
/// drawn per episode, the session as long in seconds (default: the table's); tables: other
/// quality-table JSON paths of the same ladder (content types), each episode playing one of
/// `table` and these, uniformly (default: `table` only).
#[pyclass(name = "Env", module = "nerveabr_py")]
struct PyEnv {
    env: Env,
}

fn step_tuple<'py>(py: Python<'py>, out: StepOut, env: &Env) -> PyResult<(Vec<f32>, f64, bool, bool, Bound<'py, PyDict>)> {
    let info = PyDict::new(py);
    let o = &out.outcome;
    info.set_item("chunk", o.index)?;
    info.set_item("rung", o.rung)?;
    info.set_item("level", o.level)?;
    info.set_item("quality", o.quality)?;
    info.set_item("quality_change", o.quality_change)?;
    info.set_item("rebuffer_s", o.rebuffer_s)?;
    info.set_item("energy_j", o.energy_j)?;
    info.set_item("download_s", o.download_s)?;
    info.set_item("bits", o.bits)?;
    info.set_item("buffer_s", o.buffer_s)?;
    info.set_item("qoe", out.qoe)?;
    info.set_item("preference", env.preference())?;
    if let Some(a) = env.advice() {
        info.set_item("teacher_action", a)?;
    }
    if out.terminated
        && let Some(r) = env.result()
    {
        info.set_item("episode", result_dict(py, &r)?)?;
    }
    Ok((out.obs, out.reward, out.terminated, false, info))
}

#[pymethods]
impl PyEnv {
    #[new]
    #[pyo3(signature = (traces, table = None, seed = 0, preference = None, battery = None, scale = (1.0, 1.0), noise = 0.0, random_start = false, chunks = 48, device_speed = 1.0, energy_price = None, reward_scale = None, teacher = None, buffer_cap = None, chunk_choices = None, tables = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        traces: Vec<PyTrace>,
        table: Option<PathBuf>,
        seed: u64,
        preference: Option<&Bound<'_, PyAny>>,
        battery: Option<&Bound<'_, PyAny>>,
        scale: (f64, f64),
        noise: f64,
        random_start: bool,
        chunks: usize,
        device_speed: f64,
        energy_price: Option<f64>,
        reward_scale: Option<f64>,
        teacher: Option<&str>,
        buffer_cap: Option<&Bound<'_, PyAny>>,
        chunk_choices: Option<Vec<f64>>,
        tables: Option<Vec<PathBuf>>,
    ) -> PyResult<Self> {
        if chunks < 2 {
            return Err(value_err("chunks: at least 2"));
        }
        if !(scale.0 > 0.0 && scale.1 >= scale.0) || !(0.0..=5.0).contains(&noise) {
            return Err(value_err("scale: 0 < lo <= hi; noise: 0..5"));
        }
        let file = table_file(table.as_deref())?;
        let alternatives = tables.unwrap_or_default().iter().map(|p| table_file(Some(p))).collect::<PyResult<Vec<_>>>()?;
        let mut config = EnvConfig::new(&file, device_speed.max(1e-3)).with_alternatives(alternatives).map_err(value_err)?;
        config.settings.chunks = chunks;
        if let Some(p) = preference {
            config.preference = draw(p, "preference")?;
        }
        config.battery = battery.map(|b| draw(b, "battery")).transpose()?;
        if let Some(c) = buffer_cap {
            // a range of caps is drawn log-uniformly: small caps (a live player's 4 s) behave
            // unlike large ones and must not be rare (uniform 4..60 s gave them 7% of sessions)
            config.buffer_cap = match draw(c, "buffer_cap")? {
                Draw::Uniform(lo, hi) if lo > 0.0 => Draw::LogUniform(lo, hi),
                d => d,
            };
        }
        if let Some(c) = chunk_choices {
            if c.iter().any(|x| !(0.25..=30.0).contains(x)) {
                return Err(value_err("chunk_choices: durations of 0.25-30 s"));
            }
            config.chunk_choices = c;
        }
        config.augment = Augment { scale, noise, random_start };
        if let Some(p) = energy_price {
            config.reward.energy_price = p;
        }
        if let Some(s) = reward_scale {
            config.reward.scale = s;
        }
        config.teacher = teacher.map(str::parse).transpose().map_err(value_err)?;
        let env = Env::new(config, traces.into_iter().map(|t| t.inner).collect(), seed).map_err(value_err)?;
        Ok(Self { env })
    }

    #[getter]
    fn obs_dim(&self) -> usize {
        self.env.obs_dim()
    }

    #[getter]
    fn n_actions(&self) -> usize {
        self.env.action().count()
    }

    #[getter]
    fn rungs(&self) -> usize {
        self.env.action().rungs
    }

    #[getter]
    fn levels(&self) -> usize {
        self.env.action().levels
    }

    #[getter]
    fn n_traces(&self) -> usize {
        self.env.traces.len()
    }

    #[getter]
    fn chunks(&self) -> usize {
        self.env.config.settings.chunks
    }

    /// The trace index of the current episode.
    #[getter]
    fn trace(&self) -> Option<usize> {
        self.env.trace_index()
    }

    /// (name, offset, length) of each observation block.
    fn layout(&self) -> Vec<(&'static str, usize, usize)> {
        let (r, l) = (self.env.action().rungs, self.env.action().levels);
        let blocks = [
            ("buffer_over_60s", 1),
            ("throughput_mbps_over_10", HISTORY),
            ("download_time_over_chunk", HISTORY),
            ("last_quality_over_100", 1),
            ("last_rung_over_top", 1),
            ("next_chunk_mbit_over_10", r),
            ("quality_over_100", r * l),
            ("enhance_speed", r * (l - 1)),
            ("battery_level", 1),
            ("on_battery", 1),
            ("preference_weight", 1),
            ("enhancer_available", 1),
            ("buffer_fill", 1),
            ("buffer_change_over_chunk", 1),
        ];
        let mut at = 0;
        blocks
            .iter()
            .map(|&(n, len)| {
                let b = (n, at, len);
                at += len;
                b
            })
            .collect()
    }

    /// (rung, level) of an action index.
    fn decision(&self, action: usize) -> (usize, usize) {
        let d = self.env.action().decision(action);
        (d.rung, d.level)
    }

    /// Start an episode; returns (obs, info). `trace` picks a trace by index (else drawn),
    /// `preference` a weight for this episode (else the environment's).
    #[pyo3(signature = (seed = None, trace = None, preference = None))]
    fn reset<'py>(&mut self, py: Python<'py>, seed: Option<u64>, trace: Option<usize>, preference: Option<f64>) -> PyResult<(Vec<f32>, Bound<'py, PyDict>)> {
        if let Some(s) = seed {
            self.env.seed(s);
        }
        let obs = self.env.reset(trace, preference, None);
        let info = PyDict::new(py);
        info.set_item("trace", self.env.trace_index())?;
        info.set_item("preference", self.env.preference())?;
        info.set_item("battery", self.env.battery())?;
        if let Some(a) = self.env.advice() {
            info.set_item("teacher_action", a)?;
        }
        Ok((obs, info))
    }

    /// Play one chunk at an action index: (obs, reward, terminated, truncated, info); info holds
    /// the reward's parts (quality, quality_change, rebuffer_s, energy_j, qoe) and, at the end,
    /// `episode`: the session's scores as `nerveabr-sim` reports them.
    fn step<'py>(&mut self, py: Python<'py>, action: usize) -> PyResult<(Vec<f32>, f64, bool, bool, Bound<'py, PyDict>)> {
        let out = self.env.step(action).map_err(|e| PyRuntimeError::new_err(e))?;
        step_tuple(py, out, &self.env)
    }

    /// Play one chunk at (rung, level).
    fn step_decision<'py>(&mut self, py: Python<'py>, rung: usize, level: usize) -> PyResult<(Vec<f32>, f64, bool, bool, Bound<'py, PyDict>)> {
        let out = self.env.step_decision(Decision { rung, level }).map_err(|e| PyRuntimeError::new_err(e))?;
        step_tuple(py, out, &self.env)
    }

    /// The current episode's session scores (the whole session's once it ended).
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.env.result().map(|r| result_dict(py, &r)).transpose()
    }

    /// A named policy of the simulator (`nerve`, `bola`, `robustmpc+sr`, ...) on trace
    /// `trace`, unaugmented: the session scores. `preference`: "quality", "balanced",
    /// "battery-saver" or a weight; `battery`: None (mains) or 0..1.
    #[pyo3(signature = (policy, trace, preference = None, battery = None))]
    fn run_policy<'py>(&self, py: Python<'py>, policy: &str, trace: usize, preference: Option<&Bound<'_, PyAny>>, battery: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let pref = preference.map(preference_of).transpose()?.unwrap_or_default();
        let r = self.env.run_policy(policy, trace, pref, battery).map_err(value_err)?;
        result_dict(py, &r)
    }

    /// The learned policy on trace `trace`, unaugmented, through the simulator's own `run` and
    /// the `ppo` policy of nerve-abr (the element's): `actor(obs: list[float]) -> action index`
    /// is called once per decision with the same features as in training. `shield`: capped by
    /// the `nerve` planner's stall constraint, as the element plays it by default; the result
    /// then has `shielded` (decisions the shield lowered). `shield_at`: where the shield caps
    /// the rung: `safe-set` (the highest rung the planner holds safe), `planner-rung` (the
    /// planner's own rung), `planner-climb` (climbing no higher than the planner would) or
    /// `shadow` (the planner's decision whole while the actor holds less buffer than the
    /// planner's own session would, else the safe set); `None`: the element's
    /// (`Shield::default()`). `model`: the actor's ONNX file, when it is one: a training table
    /// shipped beside it (`<model>.table.json`, `nerve_abr::learned::training_table`) is what
    /// its features read, as in the element; the shield and the scores keep this environment's.
    #[pyo3(signature = (actor, trace, preference = 0.5, battery = None, shield = false, shield_at = None, model = None))]
    #[allow(clippy::too_many_arguments)]
    fn run_actor<'py>(
        &self,
        py: Python<'py>,
        actor: Py<PyAny>,
        trace: usize,
        preference: f64,
        battery: Option<f64>,
        shield: bool,
        shield_at: Option<&str>,
        model: Option<PathBuf>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let at = shield_at.map_or(Ok(Shield::default()), Shield::parse).map_err(PyValueError::new_err)?;
        let mut features = Features::new(self.env.config.table.clone(), self.env.config.ladder.rungs());
        if let Some(trained) = model.as_deref().map(training_table).transpose().map_err(value_err)?.flatten() {
            features = features.trained_on(&trained).map_err(|e| value_err(format!("the actor's training table has {e}")))?;
        }
        features.preference = preference.clamp(0.0, 1.0);
        features.battery = battery;
        let actions = features.action().count();
        let mut ppo = Ppo::new(features, Box::new(PyActor { f: actor, actions }));
        let pref = Preference::of_weight(preference);
        if shield {
            ppo = ppo.with_shield_at(planner(&self.env.config.table, &chunk_nerve(pref, battery)), at);
        }
        let r = self.env.run_with(&mut ppo, EnhanceMode::Joint, trace, pref);
        if let Some(e) = ppo.error {
            return Err(PyRuntimeError::new_err(format!("the actor failed: {e}")));
        }
        let d = result_dict(py, &r)?;
        if shield {
            d.set_item("shielded", ppo.shielded)?;
        }
        Ok(d)
    }
}

#[pymodule]
fn nerveabr_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTrace>()?;
    m.add_class::<PyEnv>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(families, m)?)?;
    m.add("HISTORY", HISTORY)?;
    m.add("DEFAULT_TABLE", DEFAULT_TABLE)?;
    Ok(())
}
