//! The measured quality tables (`tables/*_nervesr.json`) are exactly what their committed raw
//! measurements give, and each says how it was made.
//!
//! `tables/make_measured.sh` runs `nerve-eval table`, which measures one row per (clip, rung, way
//! of showing it) and writes the rows (`--json`, with the tables it built from them embedded)
//! and one table per content type plus a generic one (`--tables`). Re-measuring (x264 + VMAF on
//! every clip) is too slow for a test, and `nerve-eval` has no command that rebuilds tables from
//! rows, so the tables are rebuilt here from the committed rows by the rules `nerve-eval`
//! documents and applies (`nerve-eval/src/table.rs`, `tables()`): one table per content and a
//! generic one over all rows, rungs in `--rungs` order; per rung the mean over clips of the
//! classical rows (Catmull-Rom, "bicubic"; the decoded picture, "none", for a rung at the display
//! size) and per enhancement level (the other upscalers, sorted by name) of that level's rows;
//! every mean rounded to 2 decimals; the frame rate the mean clip frame rate of the classical
//! rows. The rebuilt tables must equal, byte for byte, both the committed files and the tables
//! `nerve-eval` embedded in the rows file in the same run: the second ties the rebuild to
//! nerve-eval's own code on these rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nerve_abr::quality::{LevelRow, RungRow, TableFile};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The arguments the script gives `nerve-eval` (continuation lines joined).
fn script_args() -> Vec<String> {
    let script = read(&root().join("nerve-abr/tables/make_measured.sh")).replace("\\\n", " ");
    let line = script.lines().find(|l| l.contains("nerve-eval table")).expect("make_measured.sh runs nerve-eval table");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| w.ends_with("/nerve-eval")).expect("the nerve-eval binary");
    words[at + 1..].iter().map(|w| w.to_string()).collect()
}

fn option<'a>(args: &'a [String], name: &str) -> &'a str {
    let at = args.iter().position(|a| a == name).unwrap_or_else(|| panic!("make_measured.sh passes no {name}"));
    &args[at + 1]
}

/// One measurement row of the rows file (`nerve-eval/src/table.rs`, `TableRow`).
struct Row {
    clip: String,
    content: String,
    clip_fps: f64,
    rung_kbps: u64,
    resolution: String,
    kbps: f64,
    upscaler: String,
    psnr_y: f64,
    vmaf: f64,
    vmaf_neg: f64,
    fps: f64,
    fps_cpu: f64,
}

impl Row {
    fn from(v: &Value) -> Self {
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("row field {k}: {v}"));
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("row field {k}: {v}")).to_string();
        Self {
            clip: s("clip"),
            content: s("content"),
            clip_fps: f("clip_fps"),
            rung_kbps: v["rung_kbps"].as_u64().expect("rung_kbps"),
            resolution: s("resolution"),
            kbps: f("kbps"),
            upscaler: s("upscaler"),
            psnr_y: f("psnr_y"),
            vmaf: f("vmaf"),
            vmaf_neg: f("vmaf_neg"),
            fps: f("fps"),
            fps_cpu: f("fps_cpu"),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mean(rows: &[&Row], f: impl Fn(&Row) -> f64) -> f64 {
    rows.iter().map(|r| f(r)).sum::<f64>() / rows.len().max(1) as f64
}

/// The tables of `rows` for the ladder `rungs` ((kbps, "WxH")), by nerve-eval's rules.
fn rebuild(rows: &[Row], rungs: &[(u64, String)], prefix: &str, method: &str, device: &str, chunk_s: f64) -> Vec<TableFile> {
    let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry(r.content.clone()).or_default().push(r);
    }
    if groups.len() > 1 || !groups.contains_key("generic") {
        groups.insert("generic".into(), rows.iter().collect());
    }
    groups
        .into_iter()
        .map(|(content, group)| {
            let table_rungs = rungs
                .iter()
                .map(|(kbps, resolution)| {
                    let of = |up: &str| group.iter().copied().filter(|r| r.rung_kbps == *kbps && &r.resolution == resolution && r.upscaler == up).collect::<Vec<_>>();
                    let base_name = if group.iter().any(|r| r.rung_kbps == *kbps && r.upscaler == "none") { "none" } else { "bicubic" };
                    let base = of(base_name);
                    assert!(!base.is_empty(), "{content}: no {base_name} row for rung {kbps}@{resolution}");
                    let mut models: Vec<&str> = group.iter().filter(|r| r.rung_kbps == *kbps && r.upscaler != "none" && r.upscaler != "bicubic").map(|r| r.upscaler.as_str()).collect();
                    models.sort();
                    models.dedup();
                    let levels = models
                        .iter()
                        .map(|m| {
                            let rows = of(m);
                            LevelRow {
                                name: m.to_string(),
                                vmaf: round2(mean(&rows, |r| r.vmaf)),
                                vmaf_neg: Some(round2(mean(&rows, |r| r.vmaf_neg))),
                                psnr_y: Some(round2(mean(&rows, |r| r.psnr_y))),
                                fps: round2(mean(&rows, |r| r.fps)),
                                fps_cpu: Some(round2(mean(&rows, |r| r.fps_cpu))),
                            }
                        })
                        .collect();
                    RungRow {
                        bitrate_kbps: *kbps as f64,
                        resolution: resolution.clone(),
                        vmaf: round2(mean(&base, |r| r.vmaf)),
                        vmaf_neg: Some(round2(mean(&base, |r| r.vmaf_neg))),
                        psnr_y: Some(round2(mean(&base, |r| r.psnr_y))),
                        measured_kbps: Some(round2(mean(&base, |r| r.kbps))),
                        levels,
                    }
                })
                .collect();
            let shown: Vec<&Row> = group.iter().copied().filter(|r| r.upscaler == "bicubic" || r.upscaler == "none").collect();
            TableFile {
                name: format!("{prefix}_{content}_nervesr"),
                method: method.to_string(),
                content,
                device: device.to_string(),
                frame_rate: round2(mean(&shown, |r| r.clip_fps)),
                chunk_s,
                rungs: table_rungs,
            }
        })
        .collect()
}

/// How `nerve-eval table` writes a table file.
fn file_text(t: &TableFile) -> String {
    serde_json::to_string_pretty(t).expect("serialise") + "\n"
}

#[test]
fn measured_tables_are_rebuilt_exactly_from_their_rows() {
    let args = script_args();
    assert_eq!(args.first().map(String::as_str), Some("table"), "{args:?}");
    let (display, frames, chunk_s, prefix) = (option(&args, "--display"), option(&args, "--frames"), option(&args, "--chunk-s"), option(&args, "--prefix"));
    let (tables_dir, rows_file) = (root().join(option(&args, "--tables")), option(&args, "--json"));
    assert_eq!(tables_dir.canonicalize().ok(), Path::new(env!("CARGO_MANIFEST_DIR")).join("tables").canonicalize().ok(), "the script writes this crate's tables/");
    let rungs: Vec<(u64, String)> = option(&args, "--rungs")
        .split(',')
        .map(|r| {
            let (kbps, size) = r.split_once('@').unwrap_or_else(|| panic!("rung {r}"));
            (kbps.parse().expect("kbps"), size.to_string())
        })
        .collect();

    let doc: Value = serde_json::from_str(&read(&root().join(rows_file))).expect("rows JSON");
    assert_eq!(doc["display"].as_str(), Some(display), "{rows_file}: display");
    assert_eq!(doc["frames"].as_u64().map(|f| f.to_string()).as_deref(), Some(frames), "{rows_file}: frames");
    let rows: Vec<Row> = doc["rows"].as_array().expect("rows").iter().map(Row::from).collect();
    let mut clips: Vec<&str> = rows.iter().map(|r| r.clip.as_str()).collect();
    clips.sort();
    clips.dedup();

    // Provenance: every table names the script's command (hence the rows file, its --json) and
    // the clips and frames the rows hold; all come from one run on one device.
    let embedded: Vec<TableFile> = serde_json::from_value(doc["tables"].clone()).expect("the tables embedded in the rows file");
    let first = embedded.first().expect("embedded tables");
    let label = format!("MEASURED: nerve-eval {} ({} clips, {frames} frames each;", args.join(" "), clips.len());
    let (method, device) = (first.method.clone(), first.device.clone());
    assert!(method.starts_with(&label), "method {method:?} does not start with {label:?}");
    assert!(method.contains(&format!("--json {rows_file} ")), "method does not name the rows file {rows_file}: {method}");
    assert!(device.contains("load average"), "device {device:?}");

    let rebuilt = rebuild(&rows, &rungs, prefix, &method, &device, chunk_s.parse().expect("chunk-s"));
    let names = |t: &[TableFile]| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&embedded), names(&rebuilt), "tables embedded in {rows_file}");
    for (e, r) in embedded.iter().zip(&rebuilt) {
        assert_eq!(file_text(e), file_text(r), "{}: the table embedded in {rows_file} is not what its rows give", r.name);
    }

    // The committed files: exactly the rebuilt tables, no other measured table beside them.
    let mut committed: Vec<String> = std::fs::read_dir(&tables_dir)
        .expect("tables/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("_nervesr.json"))
        .collect();
    committed.sort();
    assert_eq!(committed, rebuilt.iter().map(|t| format!("{}.json", t.name)).collect::<Vec<_>>(), "table files in {}", tables_dir.display());
    for t in &rebuilt {
        let path = tables_dir.join(format!("{}.json", t.name));
        let text = read(&path);
        let parsed: TableFile = serde_json::from_str(&text).expect("a table file");
        assert!(parsed.method.starts_with("MEASURED: "), "{}: not labelled measured", t.name);
        assert_eq!(text, file_text(t), "{} is not what {rows_file} gives (edited by hand, or rows and tables from different runs)", path.display());
    }
}
