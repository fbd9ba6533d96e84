//! Property tests of the parsers that read outside data in gst-nerve: the model manifest
//! (`engine::manifest`) and RTP packets of H.264 (`salvage::fragment` and the `nervesalvage`
//! element). Each property feeds arbitrary and mutated input and checks that nothing panics and
//! that the result is either valid or a clear error; where a round trip or an invariant exists
//! (an unbroken RTP stream goes through byte for byte) it is checked too. Every failure these
//! properties found is kept below as a named regression test holding its minimal input.
//!
//! `cargo test --release -p gst-nerve --test properties`. The seed is fixed so CI is repeatable;
//! `PROPTEST_RNG_SEED=<n>` explores other inputs and `PROPTEST_CASES=<n>` runs more of them
//! (docs/reliability.md).

mod common;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use gst_check::Harness;
use gstnerve::engine::EngineError;
use gstnerve::engine::manifest::{MANIFEST_FILE, Manifest, ModelEntry, find_default_in, resolve_in};
use gstnerve::engine::Task;
use gstnerve::salvage::fragment::{Fragment, Out, Rtp, Salvager};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed};

/// The seed used unless `PROPTEST_RNG_SEED` is set.
const SEED: u64 = 0x6e65_7276_6501;

/// `cases` cases from the fixed seed, unless the environment asks for others.
fn config(cases: u32) -> Config {
    let mut c = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(SEED);
    }
    c
}

// ---- the model manifest ---------------------------------------------------------------------

/// A fresh directory for one test's manifests, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("nerve-prop-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn write(&self, text: &[u8]) -> PathBuf {
        let path = self.0.join(MANIFEST_FILE);
        std::fs::write(&path, text).expect("write the manifest");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shipped_manifest() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models").join(MANIFEST_FILE)).expect("models/manifest.toml")
}

/// What `Manifest::load` promises: a manifest whose every entry is usable, or a manifest error
/// that names the file.
fn check_load(path: &Path) -> Result<Option<Manifest>, TestCaseError> {
    match Manifest::load(path) {
        Ok(m) => {
            prop_assert_eq!(m.dir.as_path(), path.parent().expect("a file in a directory"));
            for e in &m.models {
                check_entry(&m, e)?;
            }
            Ok(Some(m))
        }
        Err(EngineError::Manifest(msg)) => {
            prop_assert!(msg.contains(&path.display().to_string()), "the error names the file: {msg}");
            Ok(None)
        }
        Err(e) => Err(TestCaseError::fail(format!("not a manifest error: {e:?}"))),
    }
}

fn check_entry(m: &Manifest, e: &ModelEntry) -> Result<(), TestCaseError> {
    prop_assert!((1..=8).contains(&e.scale) && (1..=8).contains(&e.frames), "{e:?}");
    prop_assert!(e.sha256.len() == 64 && e.sha256.bytes().all(|b| b.is_ascii_hexdigit()), "{e:?}");
    for t in [&e.input, &e.output] {
        prop_assert_eq!((t.layout.as_str(), t.planes.as_str(), t.range.as_str()), ("NCHW", "Y", "unit"));
    }
    // The model file stays inside the manifest's directory.
    prop_assert!(Path::new(&e.file).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)), "{e:?}");
    prop_assert!(Path::new(&e.file).components().any(|c| matches!(c, Component::Normal(_))), "{e:?}");
    prop_assert!(m.path_of(e).starts_with(&m.dir), "{e:?}");
    Ok(())
}

/// Lookups through a manifest directory never panic, and what they find stays inside it.
fn check_lookups(dir: &Path, names: &[String]) -> Result<(), TestCaseError> {
    let dirs = [dir.to_path_buf()];
    for scale in [1, 2, 4] {
        if let Ok(r) = resolve_in("", Task::SuperResolution, scale, &dirs) {
            prop_assert!(r.path.starts_with(dir), "{}", r.path.display());
        }
    }
    for name in names {
        if let Ok(r) = resolve_in(name, Task::SuperResolution, 2, &dirs) {
            prop_assert!(r.path.starts_with(dir), "{}", r.path.display());
        }
    }
    if let Ok(Some(r)) = find_default_in(&dirs, |_| true) {
        prop_assert!(r.path.starts_with(dir), "{}", r.path.display());
    }
    Ok(())
}

/// `file` values that try to leave the manifest's directory, and some that do not.
fn model_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("../../etc/passwd".to_string()),
        Just("/etc/passwd".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just(String::new()),
        Just("sub/../../x.onnx".to_string()),
        Just("./x.onnx".to_string()),
        Just("sub/x.onnx".to_string()),
        Just("x.onnx/".to_string()),
        Just("C:\\models\\x.onnx".to_string()),
        Just("x\u{0}.onnx".to_string()),
        prop::collection::vec(prop_oneof![Just(".."), Just("."), Just(""), Just("a"), Just("x.onnx"), Just("/")], 1..6).prop_map(|p| p.join("/")),
        "\\PC{0,24}",
    ]
}

/// A TOML value of any type, with the awkward ones over-represented.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(2), Just(8), Just(9), Just(i64::from(u32::MAX) + 1), Just(i64::MAX), Just(i64::MIN)]
            .prop_map(toml::Value::Integer),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(2.0), Just(1e300)].prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
        model_path().prop_map(toml::Value::String),
        prop_oneof![Just("NCHW"), Just("NHWC"), Just("Y"), Just("RGB"), Just("unit"), Just("super-resolution"), Just("recovery")]
            .prop_map(|s| toml::Value::String(s.into())),
        "[0-9a-fA-F]{62,66}".prop_map(toml::Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
            prop::collection::btree_map(prop_oneof![Just("name"), Just("layout"), Just("planes"), Just("range"), Just("x")], inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

const KEYS: &[&str] = &["name", "file", "task", "scale", "frames", "input", "output", "sha256", "version", "parent", "card", "default", "range"];

/// One edit of the shipped manifest.
#[derive(Debug, Clone)]
enum Edit {
    /// Remove key KEYS[k] from entry i.
    Drop(usize, usize),
    /// Set key KEYS[k] of entry i (or an unknown key when k is past KEYS) to a value.
    Set(usize, usize, toml::Value),
    /// Set the model file of entry i.
    File(usize, String),
    /// Remove entry i.
    DropEntry(usize),
    /// Append a copy of entry i.
    Copy(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0..KEYS.len()).prop_map(|(i, k)| Edit::Drop(i, k)),
        (any::<usize>(), 0..KEYS.len() + 1, toml_value()).prop_map(|(i, k, v)| Edit::Set(i, k, v)),
        (any::<usize>(), model_path()).prop_map(|(i, f)| Edit::File(i, f)),
        any::<usize>().prop_map(Edit::DropEntry),
        any::<usize>().prop_map(Edit::Copy),
    ]
}

/// One edit of the manifest's text after the structured ones.
#[derive(Debug, Clone)]
enum TextEdit {
    None,
    /// Repeat line n (a duplicate key, or a duplicate table header).
    DuplicateLine(usize),
    /// Cut the text at byte n.
    Truncate(usize),
    /// Replace byte n.
    Byte(usize, u8),
}

fn text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        3 => Just(TextEdit::None),
        1 => any::<usize>().prop_map(TextEdit::DuplicateLine),
        1 => any::<usize>().prop_map(TextEdit::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(n, b)| TextEdit::Byte(n, b)),
    ]
}

fn apply(edits: &[Edit], text_edit: &TextEdit) -> Vec<u8> {
    let mut doc: toml::Table = toml::from_str(&shipped_manifest()).expect("the shipped manifest parses");
    let Some(toml::Value::Array(models)) = doc.get_mut("model") else { panic!("the shipped manifest has [[model]] tables") };
    for e in edits {
        let n = models.len().max(1);
        match e.clone() {
            Edit::Drop(i, k) => {
                if let Some(toml::Value::Table(t)) = models.get_mut(i % n) {
                    t.remove(KEYS[k]);
                }
            }
            Edit::Set(i, k, v) => {
                if let Some(toml::Value::Table(t)) = models.get_mut(i % n) {
                    t.insert(KEYS.get(k).copied().unwrap_or("unknown-key").to_string(), v);
                }
            }
            Edit::File(i, f) => {
                if let Some(toml::Value::Table(t)) = models.get_mut(i % n) {
                    t.insert("file".into(), toml::Value::String(f));
                }
            }
            Edit::DropEntry(i) => {
                if !models.is_empty() {
                    models.remove(i % n);
                }
            }
            Edit::Copy(i) => {
                if let Some(m) = models.get(i % n).cloned() {
                    models.push(m);
                }
            }
        }
    }
    // Floats such as NaN have no TOML spelling in some encoders; fall back to the unedited text.
    let mut text = toml::to_string(&doc).unwrap_or_else(|_| shipped_manifest()).into_bytes();
    match *text_edit {
        TextEdit::None => {}
        TextEdit::DuplicateLine(n) => {
            let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            let line = lines[n % lines.len()].to_vec();
            let mut out = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                out.extend_from_slice(l);
                out.push(b'\n');
                if i == n % lines.len() {
                    out.extend_from_slice(&line);
                    out.push(b'\n');
                }
            }
            text = out;
        }
        TextEdit::Truncate(n) => text.truncate(n % (text.len() + 1)),
        TextEdit::Byte(n, b) => {
            if !text.is_empty() {
                let i = n % text.len();
                text[i] = b;
            }
        }
    }
    text
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes as a manifest: loaded and valid, or a manifest error naming the file.
    #[test]
    fn manifest_of_random_bytes_is_valid_or_a_clear_error(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let scratch = Scratch::new("bytes");
        check_load(&scratch.write(&bytes))?;
    }

    /// A structurally random `[[model]]` document (any keys, any types).
    #[test]
    fn manifest_of_random_toml_is_valid_or_a_clear_error(
        entries in prop::collection::vec(prop::collection::btree_map(prop::sample::select(KEYS), toml_value(), 0..KEYS.len()), 0..4),
    ) {
        let mut doc = toml::Table::new();
        let models = entries.into_iter().map(|e| toml::Value::Table(e.into_iter().map(|(k, v)| (k.to_string(), v)).collect())).collect();
        doc.insert("model".into(), toml::Value::Array(models));
        let Ok(text) = toml::to_string(&doc) else { return Ok(()) };
        let scratch = Scratch::new("toml");
        if let Some(m) = check_load(&scratch.write(text.as_bytes()))? {
            check_lookups(&scratch.0, &m.models.iter().map(|e| e.name.clone()).collect::<Vec<_>>())?;
        }
    }

    /// The shipped manifest with keys dropped, duplicated, retyped, huge numbers and hostile file
    /// paths: every entry that loads is usable and its model file stays in the directory.
    #[test]
    fn mutated_shipped_manifest_is_valid_or_a_clear_error(edits in prop::collection::vec(edit(), 1..5), text in text_edit()) {
        let scratch = Scratch::new("mutated");
        if let Some(m) = check_load(&scratch.write(&apply(&edits, &text)))? {
            check_lookups(&scratch.0, &m.models.iter().map(|e| e.name.clone()).collect::<Vec<_>>())?;
        }
    }

    /// A model file outside the manifest's directory is refused, one inside it is accepted.
    #[test]
    fn model_files_outside_the_manifest_directory_are_refused(file in model_path()) {
        let scratch = Scratch::new("paths");
        let text = apply(&[Edit::File(0, file.clone())], &TextEdit::None);
        let components = Path::new(&file).components();
        let inside = components.clone().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            && components.clone().any(|c| matches!(c, Component::Normal(_)));
        let loaded = check_load(&scratch.write(&text))?;
        prop_assert_eq!(loaded.is_some(), inside, "file {:?}", file);
    }
}

/// The mutations are not vacuous: some mutated manifests still load, others are refused.
#[test]
fn manifest_mutations_reach_both_outcomes() {
    let mut runner = proptest::test_runner::TestRunner::new(config(256));
    let (mut ok, mut err) = (0, 0);
    let scratch = Scratch::new("outcomes");
    for _ in 0..256 {
        let (edits, text) = (prop::collection::vec(edit(), 1..5), text_edit()).new_tree(&mut runner).expect("a case").current();
        match Manifest::load(&scratch.write(&apply(&edits, &text))) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    assert!(ok >= 16 && err >= 16, "{ok} loaded, {err} refused");
}

#[test]
fn shipped_manifest_loads() {
    let scratch = Scratch::new("shipped");
    let m = Manifest::load(&scratch.write(shipped_manifest().as_bytes())).expect("the shipped manifest loads");
    assert!(!m.models.is_empty());
}

fn manifest_with_file(file: &str) -> String {
    shipped_manifest().replacen("file = \"nerve-sr-x2.onnx\"", &format!("file = {file:?}"), 1)
}

/// Found by `model_files_outside_the_manifest_directory_are_refused`: `file` was joined onto the
/// manifest's directory as it was, so "../../etc/passwd" named a file outside it (and
/// `read_verified` read it).
#[test]
fn regression_model_file_with_parent_components_is_refused() {
    let scratch = Scratch::new("dotdot");
    let path = scratch.write(manifest_with_file("../../etc/passwd").as_bytes());
    let err = Manifest::load(&path).expect_err("a file outside the manifest's directory");
    let msg = err.to_string();
    assert!(msg.contains("nerve-sr-x2") && msg.contains("../../etc/passwd") && msg.contains("inside"), "{msg}");
    assert!(resolve_in("nerve-sr-x2", Task::SuperResolution, 2, std::slice::from_ref(&scratch.0)).is_err());
}

/// Found with the one above: an absolute `file` replaced the manifest's directory (`Path::join`).
#[test]
fn regression_model_file_with_absolute_path_is_refused() {
    let scratch = Scratch::new("abs");
    let path = scratch.write(manifest_with_file("/etc/passwd").as_bytes());
    let msg = Manifest::load(&path).expect_err("an absolute model path").to_string();
    assert!(msg.contains("/etc/passwd") && msg.contains("relative"), "{msg}");
}

/// An empty `file` (or ".") named the manifest's directory itself.
#[test]
fn regression_empty_model_file_is_refused() {
    let scratch = Scratch::new("empty");
    for file in ["", "."] {
        let path = scratch.write(manifest_with_file(file).as_bytes());
        let msg = Manifest::load(&path).expect_err("a model file naming the directory").to_string();
        assert!(msg.contains("nerve-sr-x2") && msg.contains("inside"), "{msg}");
    }
}

/// Subdirectories of the manifest's directory stay allowed.
#[test]
fn model_file_in_a_subdirectory_is_accepted() {
    let scratch = Scratch::new("sub");
    let path = scratch.write(manifest_with_file("sub/./nerve-sr-x2.onnx").as_bytes());
    let m = Manifest::load(&path).expect("a file below the manifest's directory");
    assert!(m.path_of(&m.models[0]).starts_with(&scratch.0));
}

// ---- RTP packets and nervesalvage -----------------------------------------------------------

/// GStreamer's rule for a whole RTP packet (`gst_rtp_buffer_validate_data`): version 2, the
/// CSRCs, the extension header and its words, and the padding count all inside the packet.
/// (A padding count of 0 passes there too.) Returns (payload offset, payload length).
fn reference(data: &[u8]) -> Option<(usize, usize)> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let mut header = 12 + 4 * usize::from(data[0] & 0x0f);
    if data[0] & 0x10 != 0 {
        if data.len() < header + 4 {
            return None;
        }
        header += 4 + 4 * usize::from(u16::from_be_bytes([data[header + 2], data[header + 3]]));
    }
    let padding = if data[0] & 0x20 != 0 { usize::from(data[data.len() - 1]) } else { 0 };
    if data.len() < header + padding {
        return None;
    }
    Some((header, data.len() - header - padding))
}

fn check_parse(data: &[u8]) -> Result<(), TestCaseError> {
    let parsed = Rtp::parse(data);
    prop_assert_eq!(parsed.map(|r| (r.payload, r.payload_len)), reference(data));
    if let Some(rtp) = parsed {
        prop_assert!(rtp.payload + rtp.payload_len <= data.len());
        prop_assert_eq!(rtp.seq, u16::from_be_bytes([data[2], data[3]]));
        prop_assert_eq!(rtp.timestamp, u32::from_be_bytes([data[4], data[5], data[6], data[7]]));
        prop_assert_eq!(rtp.marker, data[1] & 0x80 != 0);
        let payload = &data[rtp.payload..rtp.payload + rtp.payload_len];
        let expected = match payload {
            [i, h, ..] if i & 0x1f == 28 && h & 0x40 != 0 => Fragment::Last,
            [i, h, ..] if i & 0x1f == 28 && h & 0x80 != 0 => Fragment::First,
            [i, _, ..] if i & 0x1f == 28 => Fragment::Middle,
            _ => Fragment::Whole,
        };
        prop_assert_eq!(rtp.fragment(data), expected);
        // Asked about a shorter buffer than it read (never done, but must not panic).
        let _ = rtp.fragment(&data[..data.len() / 2]);
    }
    Ok(())
}

/// An RTP header as the fields say, which need not fit the packet: CSRC count, an extension of
/// `ext` words, a padding count, then the payload, then the cut.
#[derive(Debug, Clone)]
struct Header {
    csrcs: u8,
    ext: Option<u16>,
    ext_present: usize,
    padding: Option<u8>,
    payload: Vec<u8>,
    cut: Option<usize>,
}

fn header() -> impl Strategy<Value = Header> {
    (
        0u8..16,
        prop::option::of(prop_oneof![0u16..4, any::<u16>()]),
        0usize..24,
        prop::option::of(prop_oneof![Just(0u8), 1u8..8, any::<u8>()]),
        prop::collection::vec(any::<u8>(), 0..24),
        prop::option::of(any::<usize>()),
    )
        .prop_map(|(csrcs, ext, ext_present, padding, payload, cut)| Header { csrcs, ext, ext_present, padding, payload, cut })
}

impl Header {
    fn bytes(&self, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80 | self.csrcs | if self.ext.is_some() { 0x10 } else { 0 } | if self.padding.is_some() { 0x20 } else { 0 }, 0x60];
        p.extend(seq.to_be_bytes());
        p.extend(1234u32.to_be_bytes());
        p.extend(0xdead_beefu32.to_be_bytes());
        p.extend((0..u32::from(self.csrcs)).flat_map(u32::to_be_bytes));
        if let Some(words) = self.ext {
            p.extend([0xbe, 0xde]);
            p.extend(words.to_be_bytes());
            // Some of the extension's words, maybe fewer than it claims.
            p.extend(std::iter::repeat_n(0x11, self.ext_present.min(usize::from(words) * 4)));
        }
        p.extend(&self.payload);
        if let Some(n) = self.padding {
            p.extend(std::iter::repeat_n(0, usize::from(n.saturating_sub(1))));
            p.push(n);
        }
        if let Some(cut) = self.cut {
            p.truncate(cut % (p.len() + 1));
        }
        p
    }
}

/// One NAL unit of an access unit: sent whole, or as an FU-A of `fragments` packets.
#[derive(Debug, Clone)]
struct Nal {
    kind: u8,
    fragments: usize,
    body: Vec<u8>,
}

fn nal() -> impl Strategy<Value = Nal> {
    // Single NAL unit types 1..=23 and STAP-A (24) go whole; FU-A needs a type that can be
    // fragmented (1..=23) and at least two packets.
    prop_oneof![
        (1u8..=24, prop::collection::vec(any::<u8>(), 1..40)).prop_map(|(kind, body)| Nal { kind, fragments: 1, body }),
        (1u8..=23, 2usize..6, prop::collection::vec(any::<u8>(), 6..80)).prop_map(|(kind, fragments, body)| Nal { kind, fragments, body }),
    ]
}

/// An RTP stream of H.264 with no loss: access units of NAL units, marker on each unit's last
/// packet, sequence numbers from `first_seq` (wrapping), and a header layout for every packet.
#[derive(Debug, Clone)]
struct Stream {
    first_seq: u16,
    first_ts: u32,
    units: Vec<Vec<Nal>>,
    csrcs: u8,
    ext: Option<u16>,
    padding: Option<u8>,
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        prop_oneof![any::<u16>(), 65530u16..=65535],
        any::<u32>(),
        prop::collection::vec(prop::collection::vec(nal(), 1..4), 1..6),
        0u8..3,
        prop::option::of(0u16..3),
        prop::option::of(1u8..6),
    )
        .prop_map(|(first_seq, first_ts, units, csrcs, ext, padding)| Stream { first_seq, first_ts, units, csrcs, ext, padding })
}

impl Stream {
    fn packets(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut seq = self.first_seq;
        for (u, unit) in self.units.iter().enumerate() {
            let ts = self.first_ts.wrapping_add(3000 * u as u32);
            let mut payloads = Vec::new();
            for nal in unit {
                let nri = 0x60;
                if nal.fragments == 1 {
                    let mut p = vec![nri | nal.kind];
                    p.extend(&nal.body);
                    payloads.push(p);
                    continue;
                }
                let step = nal.body.len().div_ceil(nal.fragments);
                let chunks: Vec<&[u8]> = nal.body.chunks(step).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    let start = if i == 0 { 0x80 } else { 0 };
                    let end = if i + 1 == chunks.len() { 0x40 } else { 0 };
                    let mut p = vec![nri | 28, start | end | nal.kind];
                    p.extend(*chunk);
                    payloads.push(p);
                }
            }
            let last = payloads.len() - 1;
            for (i, payload) in payloads.into_iter().enumerate() {
                let mut p = vec![0x80 | self.csrcs | if self.ext.is_some() { 0x10 } else { 0 } | if self.padding.is_some() { 0x20 } else { 0 }];
                p.push(if i == last { 0x80 | 96 } else { 96 });
                p.extend(seq.to_be_bytes());
                p.extend(ts.to_be_bytes());
                p.extend(0x1234_5678u32.to_be_bytes());
                p.extend((0..u32::from(self.csrcs)).flat_map(|c| (c + 1).to_be_bytes()));
                if let Some(words) = self.ext {
                    p.extend([0xbe, 0xde]);
                    p.extend(words.to_be_bytes());
                    p.extend(std::iter::repeat_n(0x22, 4 * usize::from(words)));
                }
                p.extend(payload);
                if let Some(n) = self.padding {
                    p.extend(std::iter::repeat_n(0, usize::from(n - 1)));
                    p.push(n);
                }
                out.push(p);
                seq = seq.wrapping_add(1);
            }
        }
        out
    }
}

/// The packets through a bare `Salvager`, then end of stream; each output with its edits
/// applied, as the element sends it.
fn salvage(packets: &[Vec<u8>]) -> (Vec<Vec<u8>>, u64) {
    fn emit(o: Out<Vec<u8>>, out: &mut Vec<Vec<u8>>) {
        match o {
            Out::Pass(p) => out.push(p),
            Out::Close { mut packet, rtp, marker } => {
                gstnerve::salvage::fragment::close(&mut packet, &rtp, marker);
                out.push(packet);
            }
        }
    }
    let mut s = Salvager::default();
    let mut out = Vec::new();
    for p in packets {
        let parsed = Rtp::parse(p).map(|r| (r, r.fragment(p)));
        for o in s.packet(p.clone(), parsed) {
            emit(o, &mut out);
        }
    }
    if let Some(o) = s.finish() {
        emit(o, &mut out);
    }
    (out, s.closed)
}

fn harness() -> Harness {
    common::init();
    let mut h = Harness::new("nervesalvage");
    h.set_src_caps_str("application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96");
    h
}

/// The packets through a `nervesalvage` element, then EOS; what came out.
fn through_element(packets: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut h = harness();
    for p in packets {
        prop_assert!(h.push(gst::Buffer::from_mut_slice(p.clone())).is_ok(), "push of {:02x?}", p);
    }
    prop_assert!(h.push_event(gst::event::Eos::new()));
    let mut out = Vec::new();
    while let Some(b) = h.try_pull() {
        out.push(b.map_readable().expect("readable").to_vec());
    }
    Ok(out)
}

/// `got` is `sent` in order, where a packet may differ only in the RTP marker bit and the FU-A
/// end bit (the only edits the element makes).
fn check_only_closed(sent: &[Vec<u8>], got: &[Vec<u8>]) -> Result<(), TestCaseError> {
    prop_assert_eq!(sent.len(), got.len());
    for (s, g) in sent.iter().zip(got) {
        prop_assert_eq!(s.len(), g.len());
        let end_bit = Rtp::parse(s).map(|r| r.payload + 1);
        for (i, (a, b)) in s.iter().zip(g).enumerate() {
            let allowed = match i {
                1 => 0x80,
                _ if Some(i) == end_bit => 0x40,
                _ => 0,
            };
            prop_assert_eq!(a & !allowed, b & !allowed, "byte {} of {:02x?} became {:02x?}", i, s, g);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(4096))]

    /// Arbitrary bytes (half of them with version 2): parsed exactly when GStreamer would take
    /// them for an RTP packet, with the payload inside the packet.
    #[test]
    fn rtp_parse_of_random_bytes_follows_gstreamer(mut data in prop::collection::vec(any::<u8>(), 0..64), v2 in any::<bool>()) {
        if v2 && !data.is_empty() {
            data[0] = (data[0] & 0x3f) | 0x80;
        }
        check_parse(&data)?;
    }

    /// Headers whose CSRC count, extension length or padding count point past the end, and
    /// truncated packets.
    #[test]
    fn rtp_parse_of_crafted_headers_follows_gstreamer(h in header(), seq in any::<u16>()) {
        check_parse(&h.bytes(seq))?;
    }

    /// A well-formed stream with no sequence gap goes through the salvager byte for byte.
    #[test]
    fn an_unbroken_stream_goes_through_the_salvager_unchanged(s in stream()) {
        let packets = s.packets();
        let (out, closed) = salvage(&packets);
        prop_assert_eq!(closed, 0);
        prop_assert_eq!(out, packets);
    }

    /// Losses anywhere: nothing reordered, dropped or added, and only the marker and FU end
    /// bits ever change; at most one unit is closed per gap (and one at the end of stream).
    #[test]
    fn losses_only_close_units(s in stream(), drops in prop::collection::vec(any::<bool>(), 0..64)) {
        let packets: Vec<Vec<u8>> = s.packets().into_iter().enumerate().filter(|(i, _)| !drops.get(*i).copied().unwrap_or(false)).map(|(_, p)| p).collect();
        let (out, closed) = salvage(&packets);
        check_only_closed(&packets, &out)?;
        let gaps = packets.windows(2).filter(|w| {
            let (a, b) = (Rtp::parse(&w[0]).map(|r| r.seq), Rtp::parse(&w[1]).map(|r| r.seq));
            matches!((a, b), (Some(a), Some(b)) if b.wrapping_sub(a) as i16 > 1)
        }).count();
        prop_assert!(closed as usize <= gaps + 1, "{} closed for {} gaps", closed, gaps);
    }
}

/// The crafted headers are not vacuous: some parse, some do not.
#[test]
fn crafted_headers_reach_both_outcomes() {
    let mut runner = proptest::test_runner::TestRunner::new(config(512));
    let (mut some, mut none) = (0, 0);
    for _ in 0..512 {
        let h = header().new_tree(&mut runner).expect("a case").current();
        match Rtp::parse(&h.bytes(1)) {
            Some(_) => some += 1,
            None => none += 1,
        }
    }
    assert!(some >= 64 && none >= 64, "{some} parsed, {none} refused");
}

proptest! {
    #![proptest_config(config(256))]

    /// The element itself: an unbroken stream comes out byte-identical, nothing held at EOS.
    #[test]
    fn an_unbroken_stream_goes_through_the_element_unchanged(s in stream()) {
        let packets = s.packets();
        prop_assert_eq!(through_element(&packets)?, packets);
    }

    /// The element fed anything (RTP or not, broken headers, losses, duplicates): every push
    /// succeeds and every buffer comes out, in order, changed at most in the two bits.
    #[test]
    fn the_element_passes_any_input(
        input in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            (header(), any::<u16>()).prop_map(|(h, seq)| h.bytes(seq)),
            stream().prop_map(|s| s.packets().concat()),
        ], 0..12),
        s in stream(),
        drops in prop::collection::vec(any::<bool>(), 0..32),
    ) {
        let mut packets: Vec<Vec<u8>> = s.packets().into_iter().enumerate().filter(|(i, _)| !drops.get(*i).copied().unwrap_or(false)).map(|(_, p)| p).collect();
        for (i, p) in input.into_iter().enumerate() {
            let at = (i * 7) % (packets.len() + 1);
            packets.insert(at, p);
        }
        let got = through_element(&packets)?;
        check_only_closed(&packets, &got)?;
    }
}
