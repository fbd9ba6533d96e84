//! Network throughput traces: Pensieve's two-column "cooked" files, SABRE JSON and mahimahi
//! packet-delivery files, told apart by their content.

use std::fmt;
use std::path::{Path, PathBuf};

/// A throughput trace as a step function: `points[i] = (t_i, bps_i)`, where `bps_i` holds on
/// the interval ending at `t_i` (Pensieve's and BONES' reading of a two-column file).
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub name: String,
    pub format: Format,
    /// (time in seconds, throughput in bit/s), times increasing.
    pub points: Vec<(f64, f64)>,
    /// Request latency carried by the file (SABRE JSON), seconds.
    pub latency_s: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `time_s throughput_Mbit/s` per line.
    TwoColumn,
    /// `[{"duration_ms", "bandwidth_kbps", "latency_ms"}, ...]`.
    SabreJson,
    /// One delivery opportunity for a 1500-byte packet per line, in ms.
    Mahimahi,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a trace ({why})")]
    Format { path: PathBuf, why: String },
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::TwoColumn => "two-column",
            Format::SabreJson => "sabre-json",
            Format::Mahimahi => "mahimahi",
        })
    }
}

/// Mahimahi packets are MTU-sized: 1500 bytes.
const MAHIMAHI_PACKET_BITS: f64 = 1500.0 * 8.0;
/// Mahimahi opportunities are binned into throughput samples of this length (seconds).
const MAHIMAHI_BIN_S: f64 = 1.0;
/// Longest mahimahi trace read, seconds (a week): the bins are allocated up to the last time.
const MAHIMAHI_MAX_S: f64 = 7.0 * 86_400.0;
/// Bounds every trace stays within, so that sums over it (`mean_bps`) stay finite: times within
/// about 30 years of 0, throughputs up to 1 Tbit/s.
const MAX_TIME_S: f64 = 1e9;
const MAX_BPS: f64 = 1e12;

impl Trace {
    /// Read a trace file, detecting its format from its content.
    pub fn read(path: &Path) -> Result<Self, TraceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TraceError::Io { path: path.to_path_buf(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Self::parse(&name, &text).map_err(|why| TraceError::Format { path: path.to_path_buf(), why })
    }

    /// Parse trace text; `name` is only carried along.
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let head = text.trim_start();
        if head.starts_with('[') || head.starts_with('{') {
            return parse_sabre(name, head);
        }
        let mut cols = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()).take(3) {
            let n = line.split_whitespace().count();
            cols = Some(cols.map_or(n, |c: usize| c.min(n)));
        }
        match cols {
            Some(1) => parse_mahimahi(name, text),
            Some(n) if n >= 2 => parse_two_column(name, text),
            _ => Err("empty file".into()),
        }
    }

    /// BONES' periods: line i (i >= 1) lasts t_i - t_{i-1} at bps_i; the first line only sets the
    /// origin. Returns (duration in ms, bandwidth in kbit/s) pairs.
    pub fn periods_ms_kbps(&self) -> Vec<(f64, f64)> {
        self.points.windows(2).map(|w| ((w[1].0 - w[0].0) * 1000.0, w[1].1 / 1000.0)).filter(|p| p.0 > 0.0).collect()
    }

    /// Mean throughput over the trace, bit/s (time-weighted, BONES' reading).
    pub fn mean_bps(&self) -> f64 {
        let (mut bits, mut secs) = (0.0, 0.0);
        for w in self.points.windows(2) {
            let d = w[1].0 - w[0].0;
            bits += d * w[1].1;
            secs += d;
        }
        if secs > 0.0 { bits / secs } else { 0.0 }
    }
}

fn number(s: &str) -> Result<f64, String> {
    s.parse::<f64>().map_err(|_| format!("{s:?} is not a number"))
}

fn parse_two_column(name: &str, text: &str) -> Result<Trace, String> {
    let mut points = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut it = line.split_whitespace();
        let (Some(t), Some(mbps)) = (it.next(), it.next()) else { continue };
        points.push((number(t)?, number(mbps)? * 1e6));
    }
    check(name, Format::TwoColumn, points, None)
}

#[derive(serde::Deserialize)]
struct SabreSlot {
    duration_ms: f64,
    bandwidth_kbps: f64,
    #[serde(default)]
    latency_ms: Option<f64>,
}

fn parse_sabre(name: &str, text: &str) -> Result<Trace, String> {
    let slots: Vec<SabreSlot> = match serde_json::from_str::<Vec<SabreSlot>>(text) {
        Ok(s) => s,
        Err(e) => {
            // some exports wrap the list: {"trace": [...]} or {"network": [...]}
            let v: serde_json::Value = serde_json::from_str(text).map_err(|_| e.to_string())?;
            let list = v
                .as_object()
                .and_then(|o| o.values().find(|x| x.is_array()))
                .cloned()
                .ok_or_else(|| e.to_string())?;
            serde_json::from_value(list).map_err(|e| e.to_string())?
        }
    };
    let Some(first) = slots.first() else { return Err("empty list".into()) };
    // A leading point at t = 0 carries the first slot's rate, so both readings (Pensieve's and
    // BONES') see every slot.
    let mut points = vec![(0.0, first.bandwidth_kbps * 1000.0)];
    let mut t = 0.0;
    for s in &slots {
        t += s.duration_ms / 1000.0;
        points.push((t, s.bandwidth_kbps * 1000.0));
    }
    let lat = first.latency_ms.map(|l| l / 1000.0);
    check(name, Format::SabreJson, points, lat)
}

fn parse_mahimahi(name: &str, text: &str) -> Result<Trace, String> {
    let mut bins: Vec<f64> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let ms = number(line)?;
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(format!("{line:?} is not a delivery time in ms"));
        }
        if ms / 1000.0 > MAHIMAHI_MAX_S {
            return Err(format!("delivery time {line:?} ms is past a week"));
        }
        let i = (ms / 1000.0 / MAHIMAHI_BIN_S).floor() as usize;
        if bins.len() <= i {
            bins.resize(i + 1, 0.0);
        }
        bins[i] += MAHIMAHI_PACKET_BITS;
    }
    let Some(first) = bins.first() else { return Err("no packets".into()) };
    let mut points = vec![(0.0, first / MAHIMAHI_BIN_S)];
    for (i, b) in bins.iter().enumerate() {
        points.push(((i + 1) as f64 * MAHIMAHI_BIN_S, b / MAHIMAHI_BIN_S));
    }
    check(name, Format::Mahimahi, points, None)
}

fn check(name: &str, format: Format, points: Vec<(f64, f64)>, latency_s: Option<f64>) -> Result<Trace, String> {
    if points.len() < 2 {
        return Err("fewer than two samples".into());
    }
    // NaN fails every comparison: `is_finite` first, then the bound.
    if points.iter().any(|p| !p.0.is_finite() || p.0.abs() > MAX_TIME_S) {
        return Err(format!("a time is not finite or beyond {MAX_TIME_S:e} s"));
    }
    if points.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err("time goes backwards".into());
    }
    if points.iter().any(|p| !(0.0..=MAX_BPS).contains(&p.1)) {
        return Err(format!("a throughput is negative, not finite or above {MAX_BPS:e} bit/s"));
    }
    if latency_s.is_some_and(|l| !l.is_finite() || l < 0.0) {
        return Err("negative or non-finite latency".into());
    }
    Ok(Trace { name: name.to_string(), format, points, latency_s })
}

/// Every trace file directly in `dir` (sorted by name), and every trace inside the `.tar.gz` /
/// `.tgz` archives there (Lumos ships its SABRE JSON traces so); `dir` may also be one archive or
/// one trace file. Files that are not traces (READMEs, licences, parquet) are skipped and
/// returned as the second list.
pub fn read_dir(dir: &Path) -> Result<(Vec<Trace>, Vec<String>), TraceError> {
    let mut paths: Vec<PathBuf> = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        let rd = std::fs::read_dir(dir).map_err(|source| TraceError::Io { path: dir.to_path_buf(), source })?;
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect()
    };
    paths.sort();
    let mut traces = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        if is_archive(&p) {
            match read_archive(&p) {
                Ok((t, s)) => {
                    traces.extend(t);
                    skipped.extend(s);
                }
                Err(e) => skipped.push(e.to_string()),
            }
            continue;
        }
        match Trace::read(&p) {
            Ok(t) => traces.push(t),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    Ok((traces, skipped))
}

fn is_archive(p: &Path) -> bool {
    let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    n.ends_with(".tar.gz") || n.ends_with(".tgz")
}

/// The traces inside a gzip'd tar, sorted by entry name; an entry is named `archive/entry`.
pub fn read_archive(path: &Path) -> Result<(Vec<Trace>, Vec<String>), TraceError> {
    use std::io::Read;
    let io = |source| TraceError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let archive_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut entries = Vec::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let mut text = String::new();
        match entry.read_to_string(&mut text) {
            Ok(_) => entries.push((name, Ok(text))),
            Err(e) => entries.push((name, Err(e.to_string()))),
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut traces = Vec::new();
    let mut skipped = Vec::new();
    for (name, text) in entries {
        let short = Path::new(&name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name.clone());
        match text.and_then(|t| Trace::parse(&format!("{archive_name}/{short}"), &t)) {
            Ok(t) => traces.push(t),
            Err(why) => skipped.push(format!("{}/{name}: not a trace ({why})", path.display())),
        }
    }
    Ok((traces, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_column_is_detected_and_read_in_bit_per_second() {
        let t = Trace::parse("x", "0.0 1.5\n1.0 2.0\n3.0 0.5\n").unwrap(); // ok: test code
        assert_eq!(t.format, Format::TwoColumn);
        assert_eq!(t.points[1], (1.0, 2.0e6));
        // BONES drops the first line: (1 s at 2 Mbit/s), (2 s at 0.5 Mbit/s)
        assert_eq!(t.periods_ms_kbps(), vec![(1000.0, 2000.0), (2000.0, 500.0)]);
        assert!((t.mean_bps() - 1.0e6).abs() < 1e-6);
    }

    #[test]
    fn sabre_json_keeps_every_slot_and_its_latency() {
        let t = Trace::parse(
            "y",
            r#"[{"duration_ms": 500, "bandwidth_kbps": 1000, "latency_ms": 20},
               {"duration_ms": 1000, "bandwidth_kbps": 3000, "latency_ms": 20}]"#,
        )
        .unwrap(); // ok: test code
        assert_eq!(t.format, Format::SabreJson);
        assert_eq!(t.periods_ms_kbps(), vec![(500.0, 1000.0), (1000.0, 3000.0)]);
        assert_eq!(t.latency_s, Some(0.02));
    }

    #[test]
    fn mahimahi_counts_packets_per_second() {
        // 3 packets in the first second, 1 in the second
        let t = Trace::parse("z", "1\n2\n900\n1500\n").unwrap(); // ok: test code
        assert_eq!(t.format, Format::Mahimahi);
        assert_eq!(t.periods_ms_kbps(), vec![(1000.0, 36.0), (1000.0, 12.0)]);
    }

    #[test]
    fn traces_inside_a_tar_gz_are_read() {
        let dir = std::env::temp_dir().join(format!("nerveabr-tgz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap(); // ok: test code
        let path = dir.join("t.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast()); // ok: test code
            let mut b = tar::Builder::new(gz);
            for (name, body) in [("set/b.json", r#"[{"duration_ms": 1000, "bandwidth_kbps": 2000, "latency_ms": 20}, {"duration_ms": 1000, "bandwidth_kbps": 1000, "latency_ms": 20}]"#), ("set/README", "hello"), ("set/a.txt", "0 1\n1 2\n")] {
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, name, body.as_bytes()).unwrap(); // ok: test code
            }
            b.into_inner().unwrap().finish().unwrap(); // ok: test code
        }
        let (t, skipped) = read_dir(&dir).unwrap(); // ok: test code
        assert_eq!(t.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["t.tar.gz/a.txt", "t.tar.gz/b.json"]);
        assert_eq!(t[1].format, Format::SabreJson);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        // the archive itself as --traces
        assert_eq!(read_dir(&path).unwrap().0.len(), 2); // ok: test code
        std::fs::remove_dir_all(&dir).unwrap(); // ok: test code
    }

    #[test]
    fn text_that_is_not_a_trace_is_refused() {
        assert!(Trace::parse("r", "# README\nhello world\n").is_err());
        assert!(Trace::parse("e", "").is_err());
    }
}
