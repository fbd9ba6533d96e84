//! Property tests of the parsers that read outside data in the element: DASH MPDs and HLS master
//! playlists (`abr::manifest`), the `ladder` property and quality tables (`nerve_abr::quality`);
//! the throughput traces have theirs in nerveabr-sim/tests/properties.rs. Each property
//! feeds arbitrary and mutated input and checks that nothing panics and that the result is either
//! valid (what the parser promises) or a clear error; parsed manifests and tables also drive the
//! element's `Controller` through every policy. Every failure these properties found is kept
//! below as a named regression test holding its minimal input.
//!
//! `cargo test --release -p gst-nerveabr --test properties`. The seed is fixed so CI is
//! repeatable; `PROPTEST_RNG_SEED=<n>` explores other inputs and `PROPTEST_CASES=<n>` runs more of
//! them (docs/reliability.md).

use std::path::Path;
use std::time::Duration;

use gstnerveabr::abr::manifest::{self, ManifestInfo, Rung};
use gstnerveabr::abr::{Config, Controller, DEFAULT_TABLE, Step};
use nerve_abr::energy::Network;
use nerve_abr::nerve::Preference;
use nerve_abr::quality::{QualityTable, TableFile};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngSeed};

/// The seed used unless `PROPTEST_RNG_SEED` is set.
const SEED: u64 = 0x6e65_7276_6502;

/// `cases` cases from the fixed seed, unless the environment asks for others.
fn config(cases: u32) -> RunnerConfig {
    let mut c = RunnerConfig { failure_persistence: None, ..RunnerConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(SEED);
    }
    c
}

/// Numbers as text that parsers get wrong: huge, negative, not finite, not numbers at all.
const NASTY: &[&str] = &[
    "0", "-0", "-1", "1", "3.5", "1e-300", "1e300", "1e400", "-1e400", "NaN", "nan", "inf", "-inf", "infinity",
    "4294967295", "4294967296", "18446744073709551615", "18446744073709551616", "99999999999999999999999", "",
    " 42", "0x10", "1,5", "é", "PT1e400S", "PTNaNS", "PT-5S", "P-1D", "PT1H", "P1DT", "PTinfS",
];

fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(NASTY).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| n.to_string()),
        1 => "\\PC{0,8}",
    ]
}

// ---- DASH MPD and HLS master playlists --------------------------------------------------------

/// The example of `abr::manifest`'s unit tests, with a second video set and a live-style one.
const MPD: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT30.0S" minBufferTime="PT2S">
 <Period>
  <AdaptationSet contentType="video" segmentAlignment="true">
   <SegmentTemplate timescale="1000" duration="2000" media="$RepresentationID$/$Number$.m4s" initialization="$RepresentationID$/init.mp4"/>
   <Representation id="r2" bandwidth="1200000" width="854" height="480" codecs="avc1.64001e"/>
   <Representation id="r0" bandwidth="300000" width="320" height="180"/>
   <Representation id="r1" bandwidth='750000' width='640' height='360'/>
  </AdaptationSet>
  <AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000"/></AdaptationSet>
  <AdaptationSet><Representation id="v" mimeType="video/mp4" bandwidth="2400000" width="1280" height="720"/></AdaptationSet>
 </Period>
</MPD>"#;

/// The example of `abr::manifest`'s unit tests, plus an audio-only variant and a stray tag.
const HLS: &str = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.4d401f,mp4a.40.2\",RESOLUTION=640x360\nlow.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2400000,RESOLUTION=1280x720\nhi.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.2\"\naudio.m3u8\n#EXT-X-ENDLIST\n";

/// The attributes the ladder scanner reads.
const ATTRS: &[&str] = &["bandwidth", "width", "height", "duration", "timescale", "mediaPresentationDuration", "contentType", "mimeType", "BANDWIDTH", "RESOLUTION"];

/// One edit of a manifest's text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value of the n-th occurrence of ATTRS[a] (quoted or `KEY=value`).
    Attr(usize, usize, String),
    DuplicateLine(usize),
    DeleteLine(usize),
    /// Insert text at the n-th character.
    Insert(usize, String),
    /// Cut at the n-th character.
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0..ATTRS.len(), 0usize..4, nasty()).prop_map(|(a, n, v)| Mutation::Attr(a, n, v)),
        2 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => any::<usize>().prop_map(Mutation::DeleteLine),
        2 => (any::<usize>(), prop_oneof![
            "[<>\"'= /x,\n]{1,4}",
            Just("<Representation bandwidth=\"1\"".to_string()),
            Just("#EXT-X-STREAM-INF:BANDWIDTH=".to_string()),
            Just("é😀".to_string()),
        ]).prop_map(|(n, s)| Mutation::Insert(n, s)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Byte offset of the n-th character (mod the count), so edits keep the text UTF-8.
fn char_offset(text: &str, n: usize) -> usize {
    let count = text.chars().count() + 1;
    text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).nth(n % count).unwrap_or(text.len())
}

fn mutate(base: &str, mutations: &[Mutation]) -> String {
    let mut text = base.to_string();
    for m in mutations {
        match m {
            Mutation::Attr(a, n, value) => {
                let name = ATTRS[*a];
                let hits: Vec<usize> = text.match_indices(name).map(|(i, _)| i).collect();
                let Some(&at) = hits.get(n % hits.len().max(1)) else { continue };
                let after = at + name.len();
                let rest = &text[after..];
                let (start, end) = if let Some(r) = rest.strip_prefix("=\"").or_else(|| rest.strip_prefix("='")) {
                    let quote = rest.as_bytes()[1] as char;
                    (after + 2, after + 2 + r.find(quote).unwrap_or(r.len()))
                } else if let Some(r) = rest.strip_prefix('=') {
                    (after + 1, after + 1 + r.find([',', '\n']).unwrap_or(r.len()))
                } else {
                    continue;
                };
                text.replace_range(start..end, value);
            }
            Mutation::DuplicateLine(n) | Mutation::DeleteLine(n) => {
                let mut lines: Vec<&str> = text.split('\n').collect();
                let i = n % lines.len();
                if matches!(m, Mutation::DuplicateLine(_)) {
                    lines.insert(i, lines[i]);
                } else {
                    lines.remove(i);
                }
                text = lines.join("\n");
            }
            Mutation::Insert(n, s) => {
                let at = char_offset(&text, *n);
                text.insert_str(at, s);
            }
            Mutation::Truncate(n) => {
                let at = char_offset(&text, *n);
                text.truncate(at);
            }
        }
    }
    text
}

/// What `manifest::parse` promises, and that the element's controller can steer what it parsed.
fn check_manifest(text: &str) -> Result<Option<ManifestInfo>, TestCaseError> {
    let Some(info) = manifest::parse(text) else { return Ok(None) };
    prop_assert!(!info.rungs.is_empty());
    for w in info.rungs.windows(2) {
        prop_assert!(w[0].bandwidth < w[1].bandwidth, "sorted, no duplicate bandwidths: {:?}", info.rungs);
    }
    prop_assert!(info.rungs.iter().all(|r| r.bandwidth > 0), "positive bandwidths: {:?}", info.rungs);
    prop_assert!(info.duration_s.is_finite() && info.duration_s >= 0.0, "duration {}", info.duration_s);
    prop_assert!(info.segment_s.is_finite() && info.segment_s >= 0.0, "segment {}", info.segment_s);
    let _ = info.segments();
    Ok(Some(info))
}

const POLICIES: &[&str] = &["bb", "rb", "bola", "robustmpc", "dynamic", "nerve", "robustmpc+sr"];

fn controller_config(policy: &str) -> Config {
    Config { policy: policy.into(), preference: Preference::Balanced, battery: None, device_speed: 1.0, target_height: 0, network: Network::Lte, ppo_model: None, ppo_shield: true }
}

/// A few fragments' decisions by every policy: no panic, and each choice is one of the rungs.
fn steer(table: &TableFile, rungs: &[Rung], segment_s: f64, total: Option<usize>) -> Result<(), TestCaseError> {
    for policy in POLICIES {
        let mut c = match Controller::new(controller_config(policy), table, rungs.to_vec(), segment_s, total) {
            Ok(c) => c,
            Err(e) => {
                prop_assert!(rungs.is_empty() && !e.is_empty(), "{policy}: {e}");
                continue;
            }
        };
        // The demuxer's `current-bandwidth` is a u32; buffer levels from empty to past the cap.
        for (bw, buffer_s) in [(0.0, 0.0), (3e5, 1.0), (2e7, 25.0), (1.0, 40.0), (f64::from(u32::MAX), 3.0), (5e5, 0.0), (1e6, 10.0)] {
            let step = Step { bandwidth_bps: bw, buffer: Duration::from_secs_f64(buffer_s), buffer_cap: Duration::from_secs(30), enhance_available: true };
            let choice = c.decide(step);
            prop_assert!(choice.rung < rungs.len(), "{policy}: rung {} of {}", choice.rung, rungs.len());
            prop_assert_eq!(choice.bandwidth, rungs[choice.rung].bandwidth);
            prop_assert!(choice.upscale.is_finite() && choice.upscale > 0.0, "{policy}: upscale {}", choice.upscale);
        }
    }
    Ok(())
}

fn default_table() -> TableFile {
    serde_json::from_str(DEFAULT_TABLE).expect("the shipped default table")
}

proptest! {
    #![proptest_config(config(2048))]

    /// Arbitrary text (and markup-heavy text): `None`, or a ladder as promised.
    #[test]
    fn manifest_of_random_text_is_a_ladder_or_none(
        text in prop_oneof!["\\PC{0,200}", "(<MPD|<Representation|<AdaptationSet| bandwidth=\"[0-9]{1,3}\"| height=\"1\"|>|/>|#EXTM3U\n|#EXT-X-STREAM-INF:BANDWIDTH=[0-9]{1,3}\n|é){0,12}"],
    ) {
        check_manifest(&text)?;
    }

    /// The MPD example mutated: attribute values made huge, negative, NaN, empty or not numbers,
    /// lines repeated or dropped, markup inserted, the text cut.
    #[test]
    fn mutated_mpd_is_a_ladder_or_none(mutations in prop::collection::vec(mutation(), 1..6)) {
        check_manifest(&mutate(MPD, &mutations))?;
    }

    /// The HLS example mutated the same way.
    #[test]
    fn mutated_hls_is_a_ladder_or_none(mutations in prop::collection::vec(mutation(), 1..6)) {
        check_manifest(&mutate(HLS, &mutations))?;
    }

    /// The `ladder` property: a ladder as promised (sorted, positive, no duplicate), or an error
    /// that quotes the property.
    #[test]
    fn ladder_property_is_a_ladder_or_a_clear_error(
        items in prop::collection::vec((nasty(), prop::option::of(nasty())), 0..6),
        text in "\\PC{0,24}",
        raw in any::<bool>(),
    ) {
        let s = if raw { text } else {
            items.iter().map(|(b, h)| h.as_ref().map_or(b.clone(), |h| format!("{b}:{h}"))).collect::<Vec<_>>().join(",")
        };
        match manifest::parse_ladder(&s) {
            Ok(rungs) => {
                for w in rungs.windows(2) {
                    prop_assert!(w[0].bandwidth < w[1].bandwidth, "{:?} from {:?}", rungs, s);
                }
                prop_assert!(rungs.iter().all(|r| r.bandwidth > 0), "{:?} from {:?}", rungs, s);
            }
            Err(e) => prop_assert!(e.contains(&format!("{s:?}")), "{}", e),
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// What the mutated manifests parse to drives the element's controller through every policy.
    #[test]
    fn parsed_manifests_drive_the_controller(mutations in prop::collection::vec(mutation(), 1..6), hls in any::<bool>()) {
        let text = mutate(if hls { HLS } else { MPD }, &mutations);
        if let Some(info) = check_manifest(&text)? {
            steer(&default_table(), &info.rungs, info.segment_s, info.segments())?;
        }
    }
}

/// Found by `parsed_manifests_drive_the_controller` (minimal input: the SegmentTemplate's
/// `duration="1e300"`): a segment duration too long for a `Duration` (or infinite: "1e400", a
/// timescale of 1e-300) reached `Controller::new`, whose `Duration::from_secs_f64` panicked
/// ("cannot convert float seconds to Duration"), so a remote MPD could abort the player.
/// `mutated_mpd_is_a_ladder_or_none` found the negative one (`duration="-1"`, read as -0.001 s).
#[test]
fn regression_infinite_segment_duration_is_unknown() {
    for (duration, timescale) in [("1e300", "1000"), ("-1", "1000"), ("1e400", "1000"), ("inf", "1"), ("NaN", "1000"), ("1e300", "1e-300"), ("-2000", "-1000"), ("1e30", "1"), ("2000", "0")] {
        let mpd = MPD.replacen("timescale=\"1000\" duration=\"2000\"", &format!("timescale=\"{timescale}\" duration=\"{duration}\""), 1);
        let info = manifest::parse(&mpd).expect("the ladder is still there");
        for policy in POLICIES {
            assert!(Controller::new(controller_config(policy), &default_table(), info.rungs.clone(), info.segment_s, info.segments()).is_ok());
        }
        assert_eq!(info.segment_s, 0.0, "duration {duration} / timescale {timescale}");
    }
}

/// Found with the one above: `mediaPresentationDuration="PT1e400S"` was read as an infinite
/// presentation (and `segments()` as usize::MAX), "PT-5S" as a negative one.
#[test]
fn regression_unusable_presentation_duration_is_unknown() {
    for d in ["PT1e400S", "PT-5S", "PTNaNS", "P-1D"] {
        let info = manifest::parse(&MPD.replacen("PT30.0S", d, 1)).expect("the ladder is still there");
        assert_eq!((info.duration_s, info.segments()), (0.0, None), "{d}");
    }
}

/// Found by `manifest_of_random_text_is_a_ladder_or_none` (minimal input below) and
/// `mutated_hls_is_a_ladder_or_none` (`BANDWIDTH=0`): a bandwidth of 0 became a rung, and a
/// chosen rung of 0 bit/s sets the demuxer's `connection-bitrate` to 0, which means "no limit".
#[test]
fn regression_zero_bandwidth_is_not_a_rung() {
    assert_eq!(manifest::parse("<Representation height=\"1\"<MPD bandwidth=\"0\">"), None);
    let info = manifest::parse(&MPD.replacen("bandwidth=\"300000\"", "bandwidth=\"0\"", 1)).expect("a ladder");
    assert_eq!(info.rungs.iter().map(|r| r.bandwidth).collect::<Vec<_>>(), [750_000, 1_200_000, 2_400_000]);
    let info = manifest::parse(&HLS.replacen("BANDWIDTH=800000", "BANDWIDTH=0", 1)).expect("a ladder");
    assert!(info.rungs.iter().all(|r| r.bandwidth > 0), "{:?}", info.rungs);
    assert!(manifest::parse_ladder("0:240,300000:360").is_err());
}

/// Read from the code while writing `ladder_property_is_a_ladder_or_a_clear_error` (its random
/// items rarely repeat a valid bandwidth): "300000,300000" gave two rungs of the same bandwidth,
/// which the demuxer cannot tell apart.
#[test]
fn regression_duplicate_ladder_bandwidth_is_an_error() {
    let e = manifest::parse_ladder("300000:240, 300000:360").expect_err("a duplicate rung");
    assert!(e.contains("300000"), "{e}");
}

// ---- quality tables ---------------------------------------------------------------------------

fn shipped_tables() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nerve-abr/tables");
    let mut out = vec![DEFAULT_TABLE.to_string()];
    for e in std::fs::read_dir(dir).expect("tables/") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "json") {
            out.push(std::fs::read_to_string(p).expect("a table"));
        }
    }
    out
}

/// A JSON value of any type, with awkward numbers over-represented (JSON has no NaN or inf).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        3 => prop::sample::select(&[0.0, -0.0, -1.0, 1.0, 1e-300, 5e-324, 1e19, 1e308, -1e308, 30.0, 100.0, 101.0][..]).prop_map(|x| serde_json::json!(x)),
        1 => any::<i64>().prop_map(|x| serde_json::json!(x)),
        1 => any::<u64>().prop_map(|x| serde_json::json!(x)),
        1 => Just(serde_json::Value::Null),
        1 => Just(serde_json::json!("fast")),
        1 => Just(serde_json::json!([])),
        1 => Just(serde_json::json!({})),
        1 => any::<bool>().prop_map(serde_json::Value::Bool),
    ]
}

const TABLE_KEYS: &[&str] = &["name", "method", "content", "device", "frame_rate", "chunk_s", "rungs"];
const RUNG_KEYS: &[&str] = &["bitrate_kbps", "resolution", "vmaf", "vmaf_neg", "psnr_y", "measured_kbps", "levels"];
const LEVEL_KEYS: &[&str] = &["name", "vmaf", "vmaf_neg", "psnr_y", "fps", "fps_cpu"];

/// One edit of a table file.
#[derive(Debug, Clone)]
enum TableEdit {
    /// Set (Some) or remove (None) a top-level key.
    Top(usize, Option<serde_json::Value>),
    /// ... a key of rung r.
    Rung(usize, usize, Option<serde_json::Value>),
    /// ... a key of level l of rung r.
    Level(usize, usize, usize, Option<serde_json::Value>),
    DropRung(usize),
    CopyRung(usize),
    /// Cut the serialised text at byte n.
    Truncate(usize),
}

fn table_edit() -> impl Strategy<Value = TableEdit> {
    prop_oneof![
        2 => (0..TABLE_KEYS.len(), prop::option::of(json_value())).prop_map(|(k, v)| TableEdit::Top(k, v)),
        4 => (any::<usize>(), 0..RUNG_KEYS.len(), prop::option::of(json_value())).prop_map(|(r, k, v)| TableEdit::Rung(r, k, v)),
        4 => (any::<usize>(), any::<usize>(), 0..LEVEL_KEYS.len(), prop::option::of(json_value())).prop_map(|(r, l, k, v)| TableEdit::Level(r, l, k, v)),
        1 => any::<usize>().prop_map(TableEdit::DropRung),
        1 => any::<usize>().prop_map(TableEdit::CopyRung),
        1 => any::<usize>().prop_map(TableEdit::Truncate),
    ]
}

fn set(obj: Option<&mut serde_json::Value>, key: &str, v: &Option<serde_json::Value>) {
    if let Some(serde_json::Value::Object(m)) = obj {
        match v {
            Some(v) => m.insert(key.to_string(), v.clone()),
            None => m.remove(key),
        };
    }
}

fn edit_table(base: &str, edits: &[TableEdit]) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(base).expect("a shipped table");
    let mut cut = None;
    for e in edits {
        let rungs_len = doc["rungs"].as_array().map_or(1, |a| a.len().max(1));
        match e {
            TableEdit::Top(k, v) => set(Some(&mut doc), TABLE_KEYS[*k], v),
            TableEdit::Rung(r, k, v) => set(doc["rungs"].get_mut(r % rungs_len), RUNG_KEYS[*k], v),
            TableEdit::Level(r, l, k, v) => {
                let rung = doc["rungs"].get_mut(r % rungs_len);
                let levels = rung.and_then(|x| x.get_mut("levels"));
                let n = levels.as_ref().and_then(|x| x.as_array()).map_or(1, |a| a.len().max(1));
                set(levels.and_then(|x| x.get_mut(l % n)), LEVEL_KEYS[*k], v);
            }
            TableEdit::DropRung(r) => {
                if let Some(a) = doc["rungs"].as_array_mut().filter(|a| !a.is_empty()) {
                    a.remove(r % a.len());
                }
            }
            TableEdit::CopyRung(r) => {
                if let Some(a) = doc["rungs"].as_array_mut().filter(|a| !a.is_empty()) {
                    let copy = a[r % a.len()].clone();
                    a.push(copy);
                }
            }
            TableEdit::Truncate(n) => cut = Some(*n),
        }
    }
    let mut text = doc.to_string();
    if let Some(n) = cut {
        let at = char_offset(&text, n);
        text.truncate(at);
    }
    text
}

/// What a table that parses gives the policies: a quality and a cost for every (rung, level),
/// costs not NaN; and the controller steers a ladder with it.
fn check_table(text: &str) -> Result<(), TestCaseError> {
    let f = match TableFile::parse(text) {
        Ok(f) => f,
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            return Ok(());
        }
    };
    prop_assert!(!f.rungs.is_empty());
    for speed in [1.0, 1e-3, 1e3] {
        let t = QualityTable::from_file(&f, speed);
        prop_assert_eq!(t.rungs(), f.rungs.len());
        for r in 0..t.rungs() {
            prop_assert!(t.get(r, 0).is_some_and(f64::is_finite));
            for l in 0..t.levels() {
                let c = t.cost(r, l);
                prop_assert!(c >= 0.0 && !c.is_nan(), "cost {} at ({}, {})", c, r, l);
            }
        }
    }
    let ladder: Vec<Rung> = [(300_000, 240), (750_000, 360), (1_850_000, 720), (4_300_000, 1080)]
        .iter()
        .map(|&(bandwidth, height)| Rung { bandwidth, width: 0, height })
        .collect();
    steer(&f, &ladder, 2.0, Some(30))
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary text as a table: a usable table or a clear error.
    #[test]
    fn table_of_random_text_is_usable_or_a_clear_error(text in prop_oneof!["\\PC{0,64}", "[{}\\[\\]\":,0-9a-z_]{0,64}"]) {
        check_table(&text)?;
    }

    /// The shipped tables with keys dropped, retyped, zero, negative or huge, rungs dropped or
    /// repeated, the text cut: a usable table or a clear error, and the controller steers with it.
    #[test]
    fn mutated_shipped_table_is_usable_or_a_clear_error(which in any::<prop::sample::Index>(), edits in prop::collection::vec(table_edit(), 1..6)) {
        let tables = shipped_tables();
        check_table(&edit_table(which.get::<String>(&tables), &edits))?;
    }
}

/// Found by `mutated_shipped_table_is_usable_or_a_clear_error` (minimal input: the default table
/// with `"frame_rate": -1.0`): every enhancement level then cost negative compute time, so it
/// always fit the budget. Tables had no check beyond their JSON shape.
#[test]
fn regression_negative_frame_rate_table_is_refused() {
    let mut doc: serde_json::Value = serde_json::from_str(DEFAULT_TABLE).expect("the default table");
    doc["frame_rate"] = serde_json::json!(-1.0);
    let e = TableFile::parse(&doc.to_string()).expect_err("a negative frame rate");
    assert!(e.to_string().contains("frame_rate"), "{e}");
}

#[test]
fn shipped_tables_parse() {
    for t in shipped_tables() {
        TableFile::parse(&t).expect("a shipped table is valid");
    }
}
